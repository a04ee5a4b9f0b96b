"""CPU time from the processes' own accounting (/proc/<pid>/stat), for the
service bench's CPU per operation.

A server's CPU is its own utime+stime, plus that of its live descendants
(worker processes a server may fork), plus cutime+cstime (descendants it has
already reaped). PostgreSQL's is the sum over the backends serving one
database: their pids from pg_stat_activity, each read before and after. A
backend that exits during a phase loses what it used in it; one that starts
counts from zero. None means /proc could not be read (another OS, hidepid):
the bench prints "n/a" then.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import psycopg

PROC = Path("/proc")
TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (which may hold spaces)."""
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()


# Positions in _fields: proc(5)'s field number minus 3 (ppid is field 4,
# utime 14, stime 15, cutime 16, cstime 17).
_PPID, _UTIME, _STIME, _CUTIME, _CSTIME = 1, 11, 12, 13, 14


def process_seconds(pid: int, *, reaped_children: bool = False) -> float | None:
    fields = _fields(pid)
    if fields is None:
        return None
    ticks = int(fields[_UTIME]) + int(fields[_STIME])
    if reaped_children:
        ticks += int(fields[_CUTIME]) + int(fields[_CSTIME])
    return ticks / TICKS_PER_SECOND


def _children_by_parent() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _fields(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[_PPID]), []).append(int(entry.name))
    return children


def tree_seconds(pid: int) -> float | None:
    """CPU seconds of a process, its live descendants and its reaped children."""
    own = process_seconds(pid, reaped_children=True)
    if own is None:
        return None
    children = _children_by_parent()
    total, pending = own, list(children.get(pid, ()))
    while pending:
        child = pending.pop()
        total += process_seconds(child, reaped_children=True) or 0.0
        pending.extend(children.get(child, ()))
    return total


def proc_readable() -> bool:
    return process_seconds(os.getpid()) is not None


def backend_pids(admin_conninfo: str, database: str) -> list[int]:
    """The PostgreSQL backends connected to `database` (queried from another database)."""
    with psycopg.connect(admin_conninfo, autocommit=True, connect_timeout=5) as connection:
        rows = connection.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s", (database,)
        ).fetchall()
    return [int(row[0]) for row in rows]


def backends_seconds(pids: Iterable[int]) -> dict[int, float]:
    """Each readable backend's CPU seconds (PostgreSQL runs as another user;
    /proc/<pid>/stat is world-readable unless /proc is mounted with hidepid)."""
    result = {}
    for pid in pids:
        seconds = process_seconds(pid)
        if seconds is not None:
            result[pid] = seconds
    return result


class PostgresCpu:
    """CPU used by the backends of one database between start() and stop()."""

    def __init__(self, admin_conninfo: str, database: str) -> None:
        self._admin = admin_conninfo
        self._database = database
        self._before: dict[int, float] = {}
        self._readable = True

    def start(self) -> None:
        pids = backend_pids(self._admin, self._database)
        self._before = backends_seconds(pids)
        self._readable = not pids or bool(self._before)

    def stop(self) -> float | None:
        pids = backend_pids(self._admin, self._database)
        after = backends_seconds(pids)
        if not self._readable or (pids and not after):
            return None
        return sum(seconds - self._before.get(pid, 0.0) for pid, seconds in after.items())
