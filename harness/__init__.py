"""Run a baked project natively: shared by the full-stack tests (tests/) and the benchmarks.

- `harness.bake`: reads the bake through the project's own checker (deploy/check.py): .env,
  compose.yaml's services with `${VAR}` interpolated, and what they mean natively.
- `harness.processes`: process trees, memory, sockets and ports (psutil), and waiting.
- `harness.stack`: `Server` (one long-running process) and `Stack` (every compose service).
- `harness.clients`: HTTP and WebSocket requests through the stack's nginx.
"""
