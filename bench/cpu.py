"""CPU time per process tree from /proc, as shares of the whole machine over a window.

Shares are of all cores' time (``/proc/stat``), so on a saturated 2-core box the columns add up to 100 % with
``other`` (everything not watched: other users of a shared machine included) and ``idle``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class Snapshot:
    ticks: Mapping[str, int]  # name → utime+stime of the watched process tree
    busy: int  # all cores, /proc/stat
    total: int


def _stat_fields(pid: int) -> list[str] | None:
    """Fields after ``(comm)`` (which may contain spaces); None when the process has gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text[text.rindex(")") + 2 :].split()


def process_ticks(pid: int) -> int:
    fields = _stat_fields(pid)
    # utime and stime are fields 14 and 15 of stat(5); the list starts at field 3 (state).
    return int(fields[11]) + int(fields[12]) if fields else 0


def children_by_parent() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(int(entry.name))):
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def tree_ticks(root: int, children: Mapping[int, list[int]]) -> int:
    """A server that forks workers is still one entry: count every descendant with it."""
    pending, total = [root], 0
    while pending:
        pid = pending.pop()
        total += process_ticks(pid)
        pending.extend(children.get(pid, ()))
    return total


def machine_ticks() -> tuple[int, int]:
    """(busy, total) over all cores; iowait counts as idle."""
    # user nice system idle iowait irq softirq steal (guest time is already inside user)
    values = [int(v) for v in (PROC / "stat").read_text().splitlines()[0].split()[1:9]]
    total = sum(values)
    return total - values[3] - values[4], total


def snapshot(trees: Mapping[str, int], own: str) -> Snapshot:
    """Ticks of each watched tree (name → root pid), plus this process alone as ``own`` (its tree is everything)."""
    children = children_by_parent()
    ticks = {name: tree_ticks(pid, children) for name, pid in trees.items()}
    ticks[own] = process_ticks(os.getpid())
    busy, total = machine_ticks()
    return Snapshot(ticks, busy, total)


def shares(before: Snapshot, after: Snapshot) -> dict[str, float]:
    """Percent of the machine's CPU time between the snapshots, per watched name plus ``other`` and ``idle``."""
    total = max(1, after.total - before.total)
    watched = {name: max(0, after.ticks[name] - before.ticks.get(name, 0)) for name in after.ticks}
    busy = after.busy - before.busy
    percent = {name: 100.0 * ticks / total for name, ticks in watched.items()}
    percent["other"] = 100.0 * max(0, busy - sum(watched.values())) / total
    percent["idle"] = 100.0 * (total - busy) / total
    return percent
