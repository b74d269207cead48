"""Processes, ports and waiting: what the harness and the benchmarks ask the kernel (psutil).

Process trees, command lines, ages, memory and the TCP connections a process holds all come
from psutil; sessions from os.getsid. Nothing here starts or stops anything (harness.stack does).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterable
from contextlib import ExitStack, suppress
from typing import TypeVar

import psutil

LOOPBACK = "127.0.0.1"

T = TypeVar("T")


# --- Waiting and ports ---------------------------------------------------------------------------


def wait_until(
    condition: Callable[[], T], *, timeout: float, interval: float = 0.05, what: str = ""
) -> T:
    """Poll `condition` until it returns something truthy; raise TimeoutError at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"after {timeout:.0f} s: {what or condition}")
        time.sleep(interval)


def free_ports(count: int) -> list[int]:
    """`count` distinct ports 127.0.0.1 can bind now (bind-0 probes, held until all are found)."""
    with ExitStack() as stack:
        ports = []
        for _ in range(count):
            probe = stack.enter_context(socket.socket())
            probe.bind((LOOPBACK, 0))
            ports.append(probe.getsockname()[1])
        return ports


def port_accepts(port: int) -> bool:
    """True when 127.0.0.1:`port` accepts a TCP connection."""
    try:
        socket.create_connection((LOOPBACK, port), timeout=0.5).close()
    except OSError:
        return False
    return True


# --- Process trees ---------------------------------------------------------------------------


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, parents before children ([] once `pid` is gone)."""
    try:
        return [child.pid for child in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


def tree(pid: int) -> list[int]:
    """`pid` and every process below it ([] once it is gone)."""
    return [pid, *descendants(pid)] if psutil.pid_exists(pid) else []


def parent(pid: int) -> int | None:
    """The parent PID of `pid` (None once it is gone)."""
    try:
        return psutil.Process(pid).ppid()
    except psutil.Error:
        return None


def session_members(session: int) -> list[int]:
    """Every process in session `session` (supervisord's programs sit in their own process
    groups, but stay in the session of the server that started them)."""
    members = []
    for pid in psutil.pids():
        try:
            if os.getsid(pid) == session:
                members.append(pid)
        except OSError:
            continue
    return members


def cmdline(pid: int) -> str:
    """The command line of `pid` ("" once it is gone, or a zombie)."""
    try:
        return " ".join(psutil.Process(pid).cmdline()).strip()
    except psutil.Error:
        return ""


def command_name(pid: int) -> str:
    """The command name of `pid` (kept while it is a zombie; "" once it is gone)."""
    try:
        return psutil.Process(pid).name()
    except psutil.Error:
        return ""


def process_age(pid: int) -> float:
    """Seconds since `pid` started."""
    return time.time() - psutil.Process(pid).create_time()


def is_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


# --- Memory and sockets ----------------------------------------------------------------------


def memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of `pid` in KiB; (0, 0) once it is gone.

    RSS is what `ps` shows (pages shared between forked workers count once per process); PSS
    splits shared pages between their sharers, so a sum over processes is the real footprint.
    """
    try:
        info = psutil.Process(pid).memory_full_info()
    except psutil.Error:
        return 0, 0
    return info.rss // 1024, info.pss // 1024


def rss_kib(pids: Iterable[int]) -> int:
    """The RSS of `pids` together, in KiB (processes gone count 0)."""
    total = 0
    for pid in pids:
        with suppress(psutil.Error):
            total += psutil.Process(pid).memory_info().rss // 1024
    return total


Connection = tuple[tuple, tuple]


def established_sockets(pids: Iterable[int], port: int) -> dict[int, set[Connection]]:
    """{pid: its ESTABLISHED TCP connections whose local port is `port`, as (local, remote)}.

    Processes that share a listening socket (supervisor's fcgi-program) each hold only the
    connections they accepted themselves.
    """
    held = {}
    for pid in pids:
        try:
            connections = psutil.Process(pid).net_connections(kind="tcp")
        except psutil.Error:
            connections = []
        held[pid] = {
            (tuple(connection.laddr), tuple(connection.raddr))
            for connection in connections
            if connection.status == psutil.CONN_ESTABLISHED and connection.laddr.port == port
        }
    return held
