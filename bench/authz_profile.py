"""The authz server under cProfile for the loaded window only, and that profile summarised as its top costs.

    python -m bench.authz_profile STATS_PATH CONFIG    # `tokenlabs serve authz --config CONFIG`, profiled on cue

The profiler runs in the server's event-loop thread (where all of its Python code runs) from SIGUSR1 until
SIGUSR2, which also writes the stats to STATS_PATH, so neither start-up nor the tenant load is in the profile.
cProfile sees Python functions and builtins: the Cython and C-core parts of grpc.aio run inside the event loop's
``Context.run`` calls and show up as that builtin's self time. The profiler's own overhead inflates Python calls
relative to C, so shares are indicative; the unprofiled CPU time per check is in the direct runs.
"""

from __future__ import annotations

import cProfile
import os
import pstats
import signal
import sys
import sysconfig
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from bench.authz_direct import authz_stack, load_round, server_pid, start
from bench.stack_config import REPO
from tokenlabs.settings import Settings

Function = tuple[str, int, str]  # pstats' key: (file, line, name); builtins have file "~"
IDLE = ("~", 0, "<method 'poll' of 'select.epoll' objects>")
LOOP_CALLBACKS = ("~", 0, "<method 'run' of '_contextvars.Context' objects>")
CHECK = ("authz/servicer.py", "Check")  # what a check is counted by
# Where a function's self time goes, by how its file's path starts (relative to the repo, site-packages or stdlib).
CATEGORIES = (
    ("authz/", "authz: servicer, policy, snapshot"),
    ("tokenlabs/", "tokenlabs: messages, quota store, telemetry"),
    ("google/protobuf/", "protobuf (Python side)"),
    ("opentelemetry/", "telemetry libraries"),
    ("prometheus_client/", "telemetry libraries"),
    ("grpc", "grpc (Python side)"),
    ("asyncio/", "asyncio event loop"),
    ("selectors.py", "asyncio event loop"),
)
OURS = (CATEGORIES[0][1], CATEGORIES[1][1])
# Longest first: the repo may sit inside a virtualenv's tree or the other way round.
PATH_ROOTS = sorted((f"{REPO}/", *(f"{p}/" for p in sysconfig.get_paths().values())), key=len, reverse=True)
GRPC_NATIVE = "grpc.aio Cython + C core (self time of the loop's Context.run)"
TOP = 10


def main(argv: Sequence[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    stats_path, config = argv
    profiler = cProfile.Profile()

    def begin(_signum: int, _frame: FrameType | None) -> None:
        profiler.enable()

    def end(_signum: int, _frame: FrameType | None) -> None:
        profiler.disable()
        profiler.dump_stats(f"{stats_path}.part")
        os.replace(f"{stats_path}.part", stats_path)

    signal.signal(signal.SIGUSR1, begin)
    signal.signal(signal.SIGUSR2, end)
    # Imported here so that the bench's own process, which only summarises, does not load the servers.
    from tokenlabs.cli import main as tokenlabs_main

    return tokenlabs_main(["serve", "authz", "--config", config])


async def profile_run(
    settings: Settings, config: Path, stats_path: Path, tenants: int, duration_s: float, concurrency: int
) -> dict[str, Any]:
    """A profiled server loaded with ``tenants``, one direct authz run at ``concurrency`` while profiling."""
    stack = authz_stack(settings, [sys.executable, "-m", "bench.authz_profile", str(stats_path), str(config)])
    try:
        await start(stack)
        pid = server_pid(stack)
        os.kill(pid, signal.SIGUSR1)
        address = settings.authz.grpc_address
        (run,) = await load_round(address, pid, tenants, duration_s, [f"authz:{concurrency}"], 0, "profiled")
        # Handled before the SIGTERM of stop(): Python runs pending signal handlers in signal-number order, and
        # the event loop only sees SIGTERM afterwards.
        os.kill(pid, signal.SIGUSR2)
    finally:
        await stack.stop()
    return {"concurrency": concurrency, "load": run, **summarise_profile(stats_path)}


def summarise_profile(path: Path) -> dict[str, Any]:
    """Busy time (everything but waiting in epoll) per check, split into categories, the top functions by self
    time, and our own functions by cumulative time; µs are per check under the profiler."""
    if not path.exists():
        raise RuntimeError("the profiled authz server wrote no profile")
    stats: dict[Function, Any] = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    checks = max(1, sum(v[1] for f, v in stats.items() if f[0].endswith(CHECK[0]) and f[2] == CHECK[1]))
    busy = sum(v[2] for f, v in stats.items() if f != IDLE)

    def share(seconds: float) -> dict[str, float]:
        return {"us_per_check": round(seconds / checks * 1e6, 1), "percent": round(100 * seconds / busy, 1)}

    categories: dict[str, float] = {}
    for function, (_, _, self_s, _, callers) in stats.items():
        if function != IDLE:
            name = _category(function, callers)
            categories[name] = categories.get(name, 0.0) + self_s
    by_self = sorted((f for f in stats if f != IDLE), key=lambda f: stats[f][2], reverse=True)
    ours = [f for f in stats if _category(f, {}) in OURS]
    by_cumulative = sorted(ours, key=lambda f: stats[f][3], reverse=True)
    return {
        "checks": checks,
        "profiled_s": round(busy + stats.get(IDLE, (0, 0, 0.0))[2], 3),
        "busy_us_per_check": round(busy / checks * 1e6, 1),
        "categories": [
            {"category": name, **share(seconds)}
            for name, seconds in sorted(categories.items(), key=lambda item: item[1], reverse=True)
            if seconds > 0
        ],
        "top_self": [{"function": _name(f), **share(stats[f][2])} for f in by_self[:TOP]],
        "ours_cumulative": [{"function": _name(f), **share(stats[f][3])} for f in by_cumulative[:TOP]],
    }


def _category(function: Function, callers: dict[Function, Any]) -> str:
    """A builtin's self time belongs to its heaviest caller's category (sha256 under ``authz`` is ours)."""
    if function == LOOP_CALLBACKS:
        return GRPC_NATIVE
    if function[0] == "~":
        callers = {f: v for f, v in callers.items() if f[0] != "~"}
        if not callers:
            return "other"
        return _category(max(callers, key=lambda f: callers[f][3]), {})
    return next((name for start, name in CATEGORIES if _relative(function[0]).startswith(start)), "other")


def _relative(file: str) -> str:
    return next((file[len(root) :] for root in PATH_ROOTS if file.startswith(root)), file)


def _name(function: Function) -> str:
    file, line, name = function
    return name if file == "~" else f"{_relative(file)}:{line}({name})"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
