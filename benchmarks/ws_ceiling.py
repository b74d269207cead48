"""The WebSocket ceiling: the chat's broadcast with no Django, no Channels, no Redis.

One asyncio process of the `websockets` library, the same URLs and frames as the chat:
a client sends {"message": ...} to /ws/chat/<room>/ and every member of the room gets
{"type": "message", "message": ..., "sent_at": ...}.

Usage: python ws_ceiling.py <port>   (binds 127.0.0.1 only)
"""

import asyncio
import json
import sys
from datetime import UTC, datetime

from websockets.asyncio.server import ServerConnection, broadcast, serve

ROOMS: dict[str, set[ServerConnection]] = {}


async def chat(websocket: ServerConnection) -> None:
    members = ROOMS.setdefault(websocket.request.path, set())
    members.add(websocket)
    try:
        async for text in websocket:
            message = json.loads(text)["message"]
            sent_at = datetime.now(UTC).isoformat(timespec="milliseconds")
            frame = json.dumps({"type": "message", "message": message, "sent_at": sent_at})
            broadcast(members, frame)
    finally:
        members.discard(websocket)


async def main(port: int) -> None:
    async with serve(chat, "127.0.0.1", port, compression=None, ping_interval=None) as server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
