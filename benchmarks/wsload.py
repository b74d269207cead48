"""One WebSocket load-generator process (run.py starts several; they talk JSON lines on stdio).

Usage: python wsload.py '<json config>'. The config names the server, the rooms, how many
clients each room has, and which of them this process (index `worker` of `workers`) holds.
After connecting it prints {"ready": ...}; then each stdin line is a command:

  {"cmd": "step", "step": k, "rate": messages per second for this process, "duration": s,
   "drain": s}
      send for `duration` seconds at `rate` (round-robin over this process's clients), then
      keep receiving until nothing arrives for 0.5 s (at most `drain` s); reply with what was
      sent per room, what was received, and every latency in microseconds.
  {"cmd": "quit"}

A message is {"message": "<step>.<worker>.<seq>:<send time ns>"}; a receiver takes the send
time out of the broadcast frame, so latency is send -> each receiver.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

try:
    import uvloop
except ImportError:  # pragma: no cover - plain asyncio works, a little slower
    uvloop = None

MARKER = '"message": "'
CONNECT_BATCH = 50


class Generator:
    def __init__(self, config: dict) -> None:
        self.config = config
        self.worker = config["worker"]
        self.clients: list[tuple[str, ClientConnection]] = []
        self.step = -1
        self.received = 0
        self.late = 0
        self.latencies: list[int] = []
        self.closed = 0
        self.last_arrival = 0.0

    async def connect_all(self) -> None:
        config = self.config
        wanted = [
            (room, index)
            for room in config["rooms"]
            for index in range(config["clients_per_room"])
            if (hash_index(room, index, config)) % config["workers"] == self.worker
        ]
        for start in range(0, len(wanted), CONNECT_BATCH):
            batch = wanted[start : start + CONNECT_BATCH]
            sockets = await asyncio.gather(*(self.open(room) for room, _ in batch))
            self.clients.extend(zip((room for room, _ in batch), sockets, strict=True))
        for _, websocket in self.clients:
            asyncio.get_running_loop().create_task(self.read(websocket))

    async def open(self, room: str) -> ClientConnection:
        config = self.config
        return await connect(
            config["url"].format(room=room),
            host=config["connect_host"],
            port=config["port"],
            origin=config["origin"],
            compression=None,
            ping_interval=None,
            open_timeout=30,
            max_queue=None,
        )

    async def read(self, websocket: ClientConnection) -> None:
        try:
            async for data in websocket:
                now = time.time_ns()
                start = data.find(MARKER)
                if start < 0:
                    continue
                start += len(MARKER)
                body = data[start : data.find('"', start)]
                ident, _, sent = body.rpartition(":")
                if int(ident.split(".", 1)[0]) == self.step:
                    self.received += 1
                    self.latencies.append((now - int(sent)) // 1000)
                else:
                    self.late += 1
                self.last_arrival = time.monotonic()
        except ConnectionClosed:
            pass
        self.closed += 1

    async def run_step(self, command: dict) -> dict:
        self.step = command["step"]
        self.received = self.late = 0
        self.latencies = []
        rate, duration = command["rate"], command["duration"]
        sent: dict[str, int] = {}
        errors = 0
        count = len(self.clients)
        sequence = 0
        begin = time.monotonic()
        while True:
            elapsed = time.monotonic() - begin
            if elapsed >= duration:
                break
            due = int(elapsed * rate) - sequence
            for _ in range(due):
                room, websocket = self.clients[sequence % count]
                text = f'{{"message": "{self.step}.{self.worker}.{sequence}:{time.time_ns()}"}}'
                sequence += 1
                try:
                    await websocket.send(text)
                except ConnectionClosed:
                    errors += 1
                    continue
                sent[room] = sent.get(room, 0) + 1
            await asyncio.sleep(0.002)
        send_seconds = time.monotonic() - begin
        self.last_arrival = time.monotonic()
        deadline = time.monotonic() + command["drain"]
        while time.monotonic() < deadline and time.monotonic() - self.last_arrival < 0.5:
            await asyncio.sleep(0.05)
        return {
            "step": self.step,
            "sent": sent,
            "send_seconds": send_seconds,
            "received": self.received,
            "late_from_earlier_steps": self.late,
            "latencies_us": self.latencies,
            "send_errors": errors,
            "closed": self.closed,
        }

    async def serve(self) -> None:
        await self.connect_all()
        emit({"ready": len(self.clients)})
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                break
            command = json.loads(line)
            if command["cmd"] == "quit":
                break
            emit(await self.run_step(command))
        await asyncio.gather(*(websocket.close() for _, websocket in self.clients))


def hash_index(room: str, index: int, config: dict) -> int:
    """Spread each room's clients over the processes (client i of room r -> (r + i) % workers)."""
    return config["rooms"].index(room) + index


def emit(payload: dict) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


def main() -> None:
    config = json.loads(sys.argv[1])
    generator = Generator(config)
    if uvloop is not None:
        uvloop.run(generator.serve())
    else:
        asyncio.run(generator.serve())


if __name__ == "__main__":
    main()
