"""Helpers for the WebSocket tests: a communicator that talks to the real ASGI application, and a
real redis-server for the tests of the Redis layer."""

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from channels.testing import WebsocketCommunicator

from config.asgi import application

ORIGIN = (b"origin", b"http://localhost")


@asynccontextmanager
async def connected(path: str, headers: list | None = None) -> AsyncIterator[WebsocketCommunicator]:
    """Open a WebSocket on `path` through the full stack of config/asgi.py, and close it after."""
    communicator = WebsocketCommunicator(application, path, headers=headers or [ORIGIN])
    accepted, _ = await communicator.connect()
    assert accepted, f"handshake to {path} was refused"
    try:
        yield communicator
    finally:
        await communicator.disconnect()


def free_port() -> int:
    """Ask the kernel for a free TCP port on 127.0.0.1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RedisServer:
    """A redis-server on a free port of 127.0.0.1, without persistence, that a test can kill and
    start again on the same port (as a restarted Redis container comes back empty)."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            if os.environ.get("REQUIRE_E2E") == "1":
                pytest.fail("redis-server is not installed, and REQUIRE_E2E=1 forbids skipping")
            pytest.skip("redis-server is not installed")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        self.argv += ["--appendonly", "no", "--dir", str(workdir)]
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(  # noqa: S603 - a fixed binary and arguments
            self.argv, stdout=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.stop()
                    pytest.fail(f"redis-server did not listen on port {self.port}")
                time.sleep(0.05)

    def kill(self) -> None:
        """Kill -9: no goodbye to its clients beyond what the kernel sends."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server for this module's tests, stopped by PID afterwards."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server.url
    server.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, to kill and restart."""
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()
