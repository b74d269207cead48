"""The consumer against a real redis-server: messages flow, and an idle socket stays open.

With redis-py 8 and channels-redis' default client settings, the layer's blocking read times out
after 5 s and every idle WebSocket is closed with 1011 (channels_redis#422); settings.py sets
socket_timeout=None. This test idles longer than that against a real server to keep it so.
"""

import asyncio
import json
import logging
import logging.config

import pytest
from django.test import override_settings

from chat.tests.conftest import connected
from config.settings import CHANNEL_LAYER_BACKENDS, redis_channel_layer

IDLE_SECONDS = 11


@pytest.mark.parametrize("kind", CHANNEL_LAYER_BACKENDS)
async def test_idle_socket_outlives_the_redis_client_timeout(redis_url: str, kind: str) -> None:
    """A socket idle for longer than redis-py's 5 s default still sends and receives."""
    layers = {"default": redis_channel_layer(redis_url, kind)}
    with override_settings(CHANNEL_LAYERS=layers):
        async with connected("/ws/chat/idle/") as alice, connected("/ws/chat/idle/") as bob:
            await asyncio.sleep(IDLE_SECONDS)
            assert await alice.receive_nothing(timeout=0.1), "the socket was closed while idle"
            await alice.send_to(text_data=json.dumps({"message": "after the idle"}))
            for client in (alice, bob):
                assert (await client.receive_json_from(timeout=5))["message"] == "after the idle"


async def test_core_layer_logs_the_messages_it_drops(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Past its capacity the core layer drops a message and says so in the log, even when
    DJANGO_LOG_LEVEL asks for warnings only (settings.LOGGING keeps channels_redis at INFO)."""
    from channels_redis.core import RedisChannelLayer
    from django.conf import settings

    monkeypatch.setenv("CHANNEL_LAYER_CAPACITY", "2")
    layer = RedisChannelLayer(**redis_channel_layer(redis_url, "core")["CONFIG"])
    channel = await layer.new_channel()
    await layer.group_add("overflow", channel)
    quiet = {**settings.LOGGING, "root": {**settings.LOGGING["root"], "level": "WARNING"}}
    logging.config.dictConfig(quiet)
    logging.getLogger().addHandler(caplog.handler)  # dictConfig replaced the root's handlers
    try:
        for number in range(4):
            await layer.group_send("overflow", {"type": "chat.message", "n": number})
    finally:
        logging.getLogger().removeHandler(caplog.handler)
        logging.config.dictConfig(settings.LOGGING)
        await layer.flush()
    dropped = [r for r in caplog.records if "over capacity" in r.getMessage()]
    assert len(dropped) == 2
