"""CPU and memory of processes, read from /proc (Linux only).

CPU is utime + stime from /proc/<pid>/stat, in seconds; a delta over a run divided by the run's
wall time is the cores that process kept busy. Memory is VmRSS (what `ps` shows; pages shared
between forked workers count once per process) and Pss (shared pages split between sharers, so
a sum over processes is the real footprint).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from tests.e2e.stack import cmdline

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` and of its children it has waited for, in seconds (0 once gone).

    Counting the reaped children keeps the CPU of a worker that exited during a run (uWSGI's
    max-requests recycling): it moves into its parent's cutime + cstime.
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # After the command name: state is fields[0], utime fields[11], stime fields[12], then the
    # waited-for children's cutime fields[13] and cstime fields[14].
    return sum(int(value) for value in fields[11:15]) / CLOCK_TICKS


def memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of `pid` in KiB; (0, 0) once it is gone."""
    rss = pss = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def role(pid: int) -> str:
    """Which server a process is: nginx, uwsgi, daphne, supervisord, redis, gunicorn or other."""
    text = cmdline(pid)
    words = [Path(word).name for word in text.split()[:3]]
    if text.startswith("nginx") or "nginx" in words:
        return "nginx"
    if text.lower().startswith("uwsgi") or "uwsgi" in words:
        return "uwsgi"
    if "daphne" in words:
        return "daphne"
    if "supervisord" in words:
        return "supervisord"
    if text.startswith("redis-server") or "redis-server" in words:
        return "redis"
    if "gunicorn" in text.split()[0:3] or any("gunicorn" in word for word in words):
        return "gunicorn"
    return "other"


def by_role(pids: Iterable[int]) -> dict[str, list[int]]:
    """{role: pids}."""
    roles: dict[str, list[int]] = {}
    for pid in pids:
        roles.setdefault(role(pid), []).append(pid)
    return roles


_ROLES: dict[int, str] = {}


def cpu_snapshot(pids: Iterable[int]) -> dict[int, float]:
    """{pid: CPU seconds so far}; remembers each process's role for after it is gone."""
    snapshot = {}
    for pid in pids:
        snapshot[pid] = cpu_seconds(pid)
        if pid not in _ROLES:
            _ROLES[pid] = role(pid)
    return snapshot


def remembered_role(pid: int) -> str:
    """The role `pid` had when a snapshot first saw it."""
    return _ROLES.get(pid) or role(pid)


def cpu_cores(before: dict[int, float], after: dict[int, float], seconds: float) -> float:
    """Cores kept busy between two snapshots over `seconds`.

    `after` lists the processes alive at the end: one started meanwhile counts whole, one gone
    meanwhile counts in its parent's reaped-children time.
    """
    used = sum(after.values()) - sum(before.values())
    return used / seconds if seconds > 0 else 0.0


def memory_by_role(pids: Iterable[int]) -> dict[str, dict[str, float]]:
    """{role: {"rss_mb", "pss_mb", "processes"}}, plus a "total" row."""
    table: dict[str, dict[str, float]] = {}
    total = {"rss_mb": 0.0, "pss_mb": 0.0, "processes": 0}
    for name, members in sorted(by_role(pids).items()):
        rss = pss = 0
        for pid in members:
            one_rss, one_pss = memory_kib(pid)
            rss, pss = rss + one_rss, pss + one_pss
        row = {"rss_mb": rss / 1024, "pss_mb": pss / 1024, "processes": len(members)}
        table[name] = row
        for key in total:
            total[key] += row[key]
    table["total"] = total
    return table


def cpu_model() -> str:
    """`<count> x <model name>` from /proc/cpuinfo."""
    models = [
        line.split(":", 1)[1].strip()
        for line in Path("/proc/cpuinfo").read_text().splitlines()
        if line.startswith("model name")
    ]
    count = os.cpu_count() or len(models)
    return f"{count} x {models[0] if models else 'unknown CPU'}"
