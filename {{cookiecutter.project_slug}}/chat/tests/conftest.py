"""Helpers for the WebSocket tests: a communicator that talks to the real ASGI application."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

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
