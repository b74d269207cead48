"""Chat clients of the running stack and the room page in a browser, for the tests' assertions.

The requests themselves (a page, a WebSocket through nginx, with the site's Host and Origin) are
harness.clients'; this module adds the chat on top: members that record every frame, waiting
for deliveries, and Selenium helpers for the room page.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import TYPE_CHECKING
from uuid import uuid4

from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.wait import WebDriverWait
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from harness.clients import http_get, open_ws, room_path
from harness.processes import wait_until

if TYPE_CHECKING:
    from harness.stack import Stack

RECEIVE_TIMEOUT = 10.0
# Clients opened, at most, to have one on every Daphne process: the kernel spreads connections
# over processes sharing a socket unevenly.
MAX_CLIENTS = 40

# uwsgi.ini's log-format: `uwsgi worker=%(wid) pid=%(pid) %(addr) "%(method) %(uri) %(proto)" ...`
UWSGI_REQUEST = re.compile(
    r'^uwsgi worker=(?P<worker>\d+) pid=(?P<pid>\d+) \S+ "(?P<method>\S+) (?P<uri>\S+) [^"]*" '
    r"(?P<status>\d{3}) ",
    re.MULTILINE,
)


class PageParser(HTMLParser):
    """Collects element ids and the text of <script id=...> elements (json_script)."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.scripts: dict[str, str] = {}
        self.script_sources: list[str] = []
        self._script_id: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if attributes.get("id"):
            self.ids.add(attributes["id"])
        if tag == "script":
            self._script_id = attributes.get("id")
            if attributes.get("src"):
                self.script_sources.append(attributes["src"])

    def handle_data(self, data: str) -> None:
        if self._script_id:
            self.scripts[self._script_id] = self.scripts.get(self._script_id, "") + data

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._script_id = None


def unique(prefix: str) -> str:
    """A room name no other test uses."""
    return f"{prefix}-{uuid4().hex[:8]}"


class ChatClient:
    """One member of a room: records every frame the server sends it, in order."""

    def __init__(self, websocket: ClientConnection, room: str) -> None:
        self.websocket = websocket
        self.room = room
        self.frames: list[dict] = []
        self.close_code: int | None = None
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for data in self.websocket:
                self.frames.append(json.loads(data))
        except ConnectionClosed:
            pass
        self.close_code = self.websocket.close_code

    @property
    def messages(self) -> list[str]:
        """The chat messages received, in order."""
        return [frame["message"] for frame in self.frames if frame.get("type") == "message"]

    @property
    def errors(self) -> list[str]:
        """The error frames received, in order."""
        return [frame["error"] for frame in self.frames if frame.get("type") == "error"]

    @property
    def closed(self) -> bool:
        """True once the connection has closed."""
        return self._reader.done()

    async def say(self, message: str) -> None:
        """Send a chat message the way room.js does."""
        await self.websocket.send(json.dumps({"message": message}))

    async def close(self) -> None:
        """Close the WebSocket and wait for the reader to finish."""
        await self.websocket.close()
        await self._reader


async def join(stack: Stack, room: str) -> ChatClient:
    """Open a WebSocket to `room` and start recording what it receives."""
    return ChatClient(await open_ws(stack, room_path(room)), room)


async def eventually(
    condition: Callable[[], object],
    *,
    timeout: float = RECEIVE_TIMEOUT,
    what: str | Callable[[], str] = "",
) -> None:
    """Wait (without blocking the loop) until `condition()` is truthy; fail at the deadline.

    `what` describes the wait in the failure; a callable is asked then, to show the state.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            description = what() if callable(what) else what or condition
            raise AssertionError(f"not within {timeout:.0f} s: {description}")
        await asyncio.sleep(0.02)


async def round_trip(stack: Stack, room: str, text: str, timeout: float) -> bool:
    """Two fresh clients in `room`: True when one's message reaches both within `timeout`."""
    try:
        first, second = await join(stack, room), await join(stack, room)
    except Exception:  # noqa: BLE001 - not serving yet
        return False
    try:
        await first.say(text)
        await eventually(lambda: first.messages and second.messages, timeout=timeout)
        return first.messages == second.messages == [text]
    except (AssertionError, OSError):
        return False
    finally:
        await asyncio.gather(first.close(), second.close(), return_exceptions=True)


async def join_every_daphne(
    stack: Stack, room: str, clients: list[ChatClient], *, at_least: int
) -> None:
    """Join `room` until `clients` holds at least `at_least` members and every Daphne process
    holds one of them (`stack.daphne_clients()`: {process: client connections}). It appends as
    it goes, so the caller can close every client whatever happens."""
    while True:
        if len(clients) >= at_least:
            held = await asyncio.to_thread(stack.daphne_clients)
            if held and all(held.values()):
                return
        assert len(clients) < MAX_CLIENTS, f"{MAX_CLIENTS} clients and a Daphne holds none"
        clients.append(await join(stack, room))


async def chat_across(stack, room: str, fault: Callable[[], object], *, timeout: float) -> None:
    """Members on every Daphne process live through `fault` (a Redis restart) with their sockets
    open: once Redis holds as many pub/sub subscriptions as before (`stack.redis_subscriptions()`),
    each of them speaks, and every message reaches everyone; no socket closes, nobody is told of
    an error. No client joins after the fault: a fresh subscription used to revive a process whose
    pub/sub connection had stayed deaf (config/channel_layer.py), hiding exactly that."""
    clients: list[ChatClient] = []
    try:
        await join_every_daphne(stack, room, clients, at_least=4)
        subscribed = await asyncio.to_thread(stack.redis_subscriptions)
        await asyncio.to_thread(fault)
        deadline = time.monotonic() + timeout
        while await asyncio.to_thread(stack.redis_subscriptions) < subscribed:
            assert time.monotonic() < deadline, f"{subscribed} subscriptions not back in Redis"
            await asyncio.sleep(0.1)
        texts = [f"across {index}" for index in range(len(clients))]
        for client, text in zip(clients, texts, strict=True):
            await client.say(text)
        await eventually(
            lambda: all(len(client.messages) >= len(texts) for client in clients),
            what=lambda: str([(c.messages, c.errors, c.close_code) for c in clients]),
        )
        assert [sorted(client.messages) for client in clients] == [sorted(texts)] * len(clients)
        assert [client.errors for client in clients] == [[]] * len(clients)
        assert not [client for client in clients if client.closed]
    finally:
        await asyncio.gather(*(client.close() for client in clients), return_exceptions=True)


# --- The room page in a browser ------------------------------------------------------------------

# Every state #connection-state shows, in order (room.js sets data-state on each change).
RECORD_STATES = """
const label = document.getElementById("connection-state");
window.e2eStates = [label.dataset.state];
new MutationObserver(() => window.e2eStates.push(label.dataset.state))
    .observe(label, {attributes: true, attributeFilter: ["data-state"]});
"""
# The text of each line of #chat-log: room.js appends <time>, " ", then the message as text.
LOGGED_MESSAGES = """
return Array.from(document.querySelectorAll("#chat-log li"), (item) => item.lastChild.textContent);
"""


def steadily(condition: Callable[[], object], times: int = 5) -> Callable[[], bool]:
    """`condition` made to hold `times` times in a row. After nginx reloads (gracefully), an old
    worker may still take a connection or two before it hears it must stop: one answer from the
    new configuration does not yet mean every answer."""
    return lambda: all(condition() for _ in range(times))


@dataclass
class Reload:
    """What `pages_during` saw: pages loaded, failures, seconds until `changed`, the echo."""

    loaded: int
    failures: list[str]
    seconds: float
    echoed: dict


async def pages_during(
    site, action: Callable[[], object], changed: Callable[[], bool], *, timeout: float
) -> Reload:
    """Load pages without pause and hold a WebSocket open while `action` runs (in a thread) and
    until `changed` says its effect is served (a certificate renewed and reloaded); then one more
    second of pages, and a message over the socket opened before. Every failed page is kept."""
    websocket = await open_ws(site, room_path(unique("reload")))
    loaded, failures, done = 0, [], asyncio.Event()

    async def load_pages() -> None:
        nonlocal loaded
        while not done.is_set():
            try:
                status = (await asyncio.to_thread(http_get, site, "/chat/lobby/"))[0]
            except OSError as error:
                failures.append(repr(error))
            else:
                loaded += 1
                if status != 200:
                    failures.append(f"status {status}")

    loader = asyncio.create_task(load_pages())
    began = time.monotonic()
    await asyncio.to_thread(action)
    await asyncio.to_thread(
        wait_until, changed, timeout=timeout, interval=0.2, what="the change served"
    )
    seconds = time.monotonic() - began
    await asyncio.sleep(1)  # pages keep loading on the new workers
    done.set()
    await loader
    await websocket.send(json.dumps({"message": "after the reload"}))
    echoed = json.loads(await asyncio.wait_for(websocket.recv(), 10))
    await websocket.close()
    return Reload(loaded, failures, seconds, echoed)


def open_room_page(browser: WebDriver, stack: Stack, room: str) -> None:
    """Load the room page through nginx and wait until its WebSocket is open."""
    browser.get(f"{stack.origin}/chat/{room}/")
    wait_for_page(browser, lambda: page_state(browser)["state"] == "open", what="state open")
    browser.execute_script(RECORD_STATES)


def page_state(browser: WebDriver) -> dict:
    """#connection-state's data attributes: state and how many times the socket opened."""
    label = browser.find_element(By.ID, "connection-state")
    return {
        "state": label.get_attribute("data-state"),
        "connections": label.get_attribute("data-connections"),
    }


def page_messages(browser: WebDriver) -> list[str]:
    """The messages #chat-log shows, in order."""
    return browser.execute_script(LOGGED_MESSAGES)


def type_message(browser: WebDriver, text: str) -> None:
    """Type into the message box and submit the form, as a person would."""
    box = browser.find_element(By.ID, "chat-message-input")
    box.send_keys(text)
    box.send_keys(Keys.ENTER)


def wait_for_page(
    browser: WebDriver, condition: Callable[[], object], *, timeout: float = 15, what: str = ""
) -> None:
    """Poll the page until `condition()` holds; fail with the page's state and error text."""
    try:
        WebDriverWait(browser, timeout, poll_frequency=0.05).until(lambda _: condition())
    except TimeoutException:
        error = browser.find_element(By.ID, "chat-error").text
        raise AssertionError(
            f"page: not within {timeout} s: {what}; state {page_state(browser)}, "
            f"messages {page_messages(browser)}, error {error!r}"
        ) from None
