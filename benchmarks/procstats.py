"""CPU and memory of the servers over a benchmark run, by role (nginx, uwsgi, daphne, ...).

CPU comes from psutil's cpu_times(): user + system are a process's own seconds; children_user +
children_system are those of the children it has waited for (reaped). Seconds used over a run
divided by the run's wall time are the cores those processes kept busy (`cpu_used`,
`cpu_cores`). Memory is RSS (what `ps` shows; pages shared between forked workers count once per
process) and PSS (shared pages split between sharers, so a sum over processes is the real
footprint), from harness.processes.memory_kib.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

import psutil

from harness.processes import cmdline, command_name, memory_kib

# A snapshot is read again until two reads agree (`cpu_snapshot`); a reap is rare, so two or
# three reads suffice, and this only bounds a pathological case.
SNAPSHOT_TRIES = 5


class Times(NamedTuple):
    """One process's CPU seconds so far."""

    own: float  # user + system: its own threads
    reaped: float  # children_user + children_system: the children it has waited for (and theirs)
    parent: int
    start: float  # its start time: tells a process from a later one reusing its pid
    zombie: bool  # exited, not yet waited for: its seconds are final, not yet its parent's

    @property
    def total(self) -> float:
        return self.own + self.reaped


def role(pid: int) -> str:
    """Which server a process is: nginx, uwsgi, daphne, supervisord, redis, gunicorn,
    docker-proxy (Docker's userland proxy, carrying the published port) or other."""
    # A zombie has no command line left; its command name (comm) still says what it was.
    text = cmdline(pid) or command_name(pid)
    words = [Path(word).name for word in text.split()[:3]]
    if "docker-proxy" in words:
        return "docker-proxy"
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


def remembered_role(pid: int) -> str:
    """The role `pid` had when a snapshot first saw it."""
    return _ROLES.get(pid) or role(pid)


def read_times(pid: int) -> Times | None:
    """`pid`'s Times, or None once it is gone (reaped)."""
    try:
        process = psutil.Process(pid)
        with process.oneshot():
            cpu = process.cpu_times()
            return Times(
                own=cpu.user + cpu.system,
                reaped=cpu.children_user + cpu.children_system,
                parent=process.ppid(),
                start=process.create_time(),
                zombie=process.status() == psutil.STATUS_ZOMBIE,
            )
    except psutil.Error:
        return None


def zombie_children(parents: set[int]) -> set[int]:
    """Exited children of `parents` not yet waited for.

    A process list that keeps only live processes drops them, yet their seconds are not in the
    parent's cutime yet either: a uWSGI worker recycled at the end of a run is such a zombie
    until the master's next loop reaps it.
    """
    return {
        process.pid
        for process in psutil.process_iter(["ppid", "status"])
        if process.pid not in parents
        and process.info["ppid"] in parents
        and process.info["status"] == psutil.STATUS_ZOMBIE
    }


def cpu_snapshot(
    pids: Iterable[int], *, follow: dict[int, Times] | None = None
) -> dict[int, Times]:
    """{pid: Times} of `pids`, their zombie children, and the processes of an earlier snapshot
    (`follow`) that still exist; remembers each process's role for after it is gone.

    Read twice until both reads see the same processes with the same reaped seconds: a child
    reaped between the reads of it and of its parent would otherwise be counted twice or not
    at all.
    """
    wanted = set(pids)
    for pid, times in (follow or {}).items():
        now = read_times(pid)
        if now is not None and now.start == times.start:
            wanted.add(pid)
    snapshot = read_snapshot(wanted)
    for _ in range(SNAPSHOT_TRIES):
        again = read_snapshot(wanted)
        if reaped_view(again) == reaped_view(snapshot):
            break
        snapshot = again
    for pid in snapshot:
        if pid not in _ROLES:
            _ROLES[pid] = role(pid)
    return snapshot


def read_snapshot(pids: set[int]) -> dict[int, Times]:
    wanted = pids | zombie_children(pids)
    return {pid: times for pid in wanted if (times := read_times(pid)) is not None}


def reaped_view(snapshot: dict[int, Times]) -> dict[int, tuple[float, float]]:
    """What a reap changes: which processes exist, and their reaped seconds."""
    return {pid: (times.start, times.reaped) for pid, times in snapshot.items()}


def cpu_used(before: dict[int, Times], after: dict[int, Times]) -> dict[int, float]:
    """CPU seconds each process of `after` used between two snapshots; never negative.

    A process present at both ends counts its own seconds' growth; one started meanwhile counts
    all of its own. The seconds of processes that exited meanwhile (uWSGI's recycled workers)
    are in the growth of their reaper's cutime + cstime, together with what they had used
    before the run: that part, their `before` total, is taken off the reaper's growth, never
    off anything else, so no term can go below zero. When the reaper is not watched, the exited
    process's last seconds are unknown and count as nothing.
    """
    same = {
        pid for pid, times in after.items() if pid in before and before[pid].start == times.start
    }
    earlier = {pid: times.reaped for pid, times in before.items() if pid in same}
    used_before_run = {pid: 0.0 for pid in after}
    for pid, times in before.items():
        if pid not in same:
            reaper = surviving_ancestor(pid, before, same)
            if reaper is not None:
                used_before_run[reaper] += times.total
    used = {}
    for pid, times in after.items():
        own = times.own - (before[pid].own if pid in same else 0.0)
        reaped = times.reaped - earlier.get(pid, 0.0) - used_before_run[pid]
        # Below zero only if the reaper had not yet taken in a gone child's seconds (reads
        # that never agreed): count nothing rather than less than nothing.
        used[pid] = own + max(0.0, reaped)
    return used


def surviving_ancestor(pid: int, before: dict[int, Times], alive: set[int]) -> int | None:
    """The nearest ancestor of a process gone since `before` that `after` still has: the one
    whose reaped seconds took in the gone process's (directly, or through a parent gone too)."""
    parent = before[pid].parent
    seen = {pid}
    while parent not in alive:
        if parent not in before or parent in seen:
            return None
        seen.add(parent)
        parent = before[parent].parent
    return parent


def cpu_cores(before: dict[int, Times], after: dict[int, Times], seconds: float) -> float:
    """Cores kept busy between two snapshots over `seconds` (see `cpu_used`)."""
    return sum(cpu_used(before, after).values()) / seconds if seconds > 0 else 0.0


def cpu_by_role(before: dict[int, Times], after: dict[int, Times], seconds: float) -> dict:
    """Cores per role between two snapshots (`cpu_used` says who counts: a recycled worker's
    seconds count under its reaper, the uWSGI master), plus a "total"."""
    roles: dict[str, float] = {}
    for pid, used in cpu_used(before, after).items():
        name = remembered_role(pid)
        roles[name] = roles.get(name, 0.0) + used / seconds
    roles["total"] = sum(roles.values())
    return {key: round(value, 3) for key, value in roles.items()}


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
    """`<count> x <model name>` from /proc/cpuinfo (psutil does not name the CPU)."""
    models = [
        line.split(":", 1)[1].strip()
        for line in Path("/proc/cpuinfo").read_text().splitlines()
        if line.startswith("model name")
    ]
    count = os.cpu_count() or len(models)
    return f"{count} x {models[0] if models else 'unknown CPU'}"
