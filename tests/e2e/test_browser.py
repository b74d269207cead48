"""Headless Chromium on the room page through nginx chats with a Python WebSocket client."""

from __future__ import annotations

import asyncio
from uuid import uuid4

import pytest

from harness.stack import Stack
from tests.e2e.clients import (
    eventually,
    join,
    open_room_page,
    page_messages,
    type_message,
    wait_for_page,
)


@pytest.mark.e2e
def test_page_and_websocket_client_see_each_others_messages(stack: Stack, browser) -> None:
    room = f"browser-{uuid4().hex[:8]}"
    from_python, from_chromium = f"hello from python {room}", f"hello from chromium {room}"

    async def scenario() -> None:
        await asyncio.to_thread(open_room_page, browser, stack, room)
        peer = await join(stack, room)
        await peer.say(from_python)
        await asyncio.to_thread(
            wait_for_page, browser, lambda: page_messages(browser), what="the peer's message"
        )
        await asyncio.to_thread(type_message, browser, from_chromium)
        await asyncio.to_thread(
            wait_for_page, browser, lambda: len(page_messages(browser)) >= 2, what="own message"
        )
        await eventually(lambda: len(peer.messages) >= 2, what="the page's message")
        await asyncio.sleep(0.5)
        assert await asyncio.to_thread(page_messages, browser) == [from_python, from_chromium]
        assert peer.messages == [from_python, from_chromium]
        await peer.close()

    asyncio.run(asyncio.wait_for(scenario(), 90))
