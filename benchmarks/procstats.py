"""CPU and memory of processes, read from /proc (Linux only).

CPU comes from /proc/<pid>/stat: utime + stime are a process's own seconds; cutime + cstime are
those of the children it has waited for (reaped). Seconds used over a run divided by the run's
wall time are the cores those processes kept busy (`cpu_used`, `cpu_cores`). Memory is VmRSS
(what `ps` shows; pages shared between forked workers count once per process) and Pss (shared
pages split between sharers, so a sum over processes is the real footprint).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from tests.e2e.stack import cmdline

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# A snapshot is read again until two reads agree (`cpu_snapshot`); a reap is rare, so two or
# three reads suffice, and this only bounds a pathological case.
SNAPSHOT_TRIES = 5


class Times(NamedTuple):
    """One process's CPU seconds so far, as /proc/<pid>/stat gives them."""

    own: float  # utime + stime: its own threads
    reaped: float  # cutime + cstime: the children it has waited for (and theirs)
    parent: int
    start: int  # clock ticks after boot: tells a process from a later one reusing its pid
    zombie: bool  # exited, not yet waited for: its seconds are final, not yet its parent's

    @property
    def total(self) -> float:
        return self.own + self.reaped


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


def command_name(pid: int) -> str:
    """/proc/<pid>/comm: the command name, kept while the process is a zombie."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


_ROLES: dict[int, str] = {}


def remembered_role(pid: int) -> str:
    """The role `pid` had when a snapshot first saw it."""
    return _ROLES.get(pid) or role(pid)


def read_times(pid: int) -> Times | None:
    """`pid`'s Times, or None once it is gone (reaped)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # After the command name: state fields[0], ppid fields[1], utime fields[11], stime fields[12],
    # the waited-for children's cutime fields[13] and cstime fields[14], starttime fields[19].
    ticks = [int(value) for value in fields[11:15]]
    return Times(
        own=(ticks[0] + ticks[1]) / CLOCK_TICKS,
        reaped=(ticks[2] + ticks[3]) / CLOCK_TICKS,
        parent=int(fields[1]),
        start=int(fields[19]),
        zombie=fields[0] == "Z",
    )


def zombie_children(parents: set[int]) -> set[int]:
    """Exited children of `parents` not yet waited for.

    A process list that keeps only live processes drops them, yet their seconds are not in the
    parent's cutime yet either: a uWSGI worker recycled at the end of a run is such a zombie
    until the master's next loop reaps it.
    """
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) not in parents:
            times = read_times(int(entry))
            if times is not None and times.zombie and times.parent in parents:
                found.add(int(entry))
    return found


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


def reaped_view(snapshot: dict[int, Times]) -> dict[int, tuple[int, float]]:
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
