"""Counters in Redis, shared by every replica: one Lua script per call, so each call is one atomic round trip.

Layout: one HASH per (scope, window length) at ``tokenlabs:{<scope>}:<seconds>`` with fields ``i`` (the window
index the count belongs to) and ``n`` (units used in it). The braces are a Redis Cluster hash tag: all windows of
a scope share a slot, so one script may touch them all. The scripts read the clock with ``TIME``, so every replica
agrees on the windows whatever its own clock says; a hash whose ``i`` is not the current index counts as zero, and
each hash expires shortly after its window ends. The client here talks to one Redis (a standalone server or a
Sentinel-managed primary behind one address); the hash tag keeps the layout ready for a cluster client.

Nothing is retried here: a command that timed out may have been applied, and applying an acquire twice would count
it twice. Every failure, including the per-call timeout, is raised as ``QuotaStoreError``. (The fail-over store
holds the adjusts that failed and replays them with ``adjust_many``, at least once; see ``failover``.)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from tokenlabs.quota.store import Adjustment, QuotaStoreError
from tokenlabs.quota.windows import Admission, Limit, WindowState

KEY_PREFIX = "tokenlabs"
# Keys outlive their window a little so that a replica promoted with a slightly fast clock does not drop a count
# while the old primary's clock still calls its window current.
EXPIRY_GRACE_MS = 1000
HEALTH_CHECK_INTERVAL_S = 15
MAX_CONNECTIONS = 64

# Shared by the scripts: ``window(k, seconds)`` gives, by the server's clock, the current index of KEYS[k]'s
# window, its count (0 when the hash holds another window) and the ms until it ends.
_WINDOWS_LUA = """
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function window(k, seconds)
  local index = math.floor(tonumber(t[1]) / seconds)
  local stored = redis.call('HMGET', KEYS[k], 'i', 'n')
  local used = 0
  if tonumber(stored[1]) == index then used = tonumber(stored[2]) or 0 end
  return index, used, (index + 1) * seconds * 1000 - now_ms
end
"""

# ARGV: amount, grace ms, then per key: seconds, limit. Returns admitted, then per key: index, used, reset ms, fits.
# Numbers are written with '%d': Redis would turn a Lua number argument into text that may use an exponent.
_ACQUIRE_LUA = (
    _WINDOWS_LUA
    + """
local amount = tonumber(ARGV[1])
local grace = tonumber(ARGV[2])
local reply = {1}
local seconds = {}
for k = 1, #KEYS do
  seconds[k] = tonumber(ARGV[1 + 2 * k])
  local index, used, reset = window(k, seconds[k])
  local fits = 0
  if used + amount <= tonumber(ARGV[2 + 2 * k]) then fits = 1 else reply[1] = 0 end
  table.insert(reply, index)
  table.insert(reply, used)
  table.insert(reply, reset)
  table.insert(reply, fits)
end
if reply[1] == 1 then
  for k = 1, #KEYS do
    local base = 4 * k - 2
    reply[base + 1] = reply[base + 1] + amount
    redis.call('HSET', KEYS[k], 'i', string.format('%d', reply[base]), 'n', string.format('%d', reply[base + 1]))
    redis.call('PEXPIREAT', KEYS[k], string.format('%d', (reply[base] + 1) * seconds[k] * 1000 + grace))
  end
end
return reply
"""
)

# ARGV: delta, then per key: the window index the change belongs to. Counters stay at or above zero.
_ADJUST_LUA = """
local delta = tonumber(ARGV[1])
for k = 1, #KEYS do
  local stored = redis.call('HMGET', KEYS[k], 'i', 'n')
  if tonumber(stored[1]) == tonumber(ARGV[1 + k]) then
    redis.call('HSET', KEYS[k], 'n', string.format('%d', math.max((tonumber(stored[2]) or 0) + delta, 0)))
  end
end
return {}
"""

# ARGV: per key: seconds. Returns per key: index, used, reset ms. Writes nothing.
_PEEK_LUA = (
    _WINDOWS_LUA
    + """
local reply = {}
for k = 1, #KEYS do
  local index, used, reset = window(k, tonumber(ARGV[k]))
  table.insert(reply, index)
  table.insert(reply, used)
  table.insert(reply, reset)
end
return reply
"""
)


def counter_key(scope: str, seconds: int) -> str:
    """The hash holding ``scope``'s counter for windows of ``seconds``."""
    if "}" in scope:
        # A brace would end the hash tag early and scatter the scope's windows over several cluster slots.
        raise ValueError(f"quota scope must not contain '}}': {scope!r}")
    return f"{KEY_PREFIX}:{{{scope}}}:{seconds}"


class RedisQuotaStore:
    """The ``QuotaStore`` contract over the Redis at ``url`` (``redis://``, ``rediss://`` or ``unix://``).

    Each call waits at most ``timeout_s`` for a pooled connection, the connect, the round trip and the reply;
    at most ``max_connections`` commands are in flight at once, later ones queue for a connection.
    """

    def __init__(self, url: str, timeout_s: float, max_connections: int = MAX_CONNECTIONS) -> None:
        self._timeout_s = timeout_s
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=timeout_s,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            health_check_interval=HEALTH_CHECK_INTERVAL_S,
            retry=Retry(NoBackoff(), 0),
        )
        self._client = Redis.from_pool(pool)
        self._acquire = self._client.register_script(_ACQUIRE_LUA)
        self._adjust = self._client.register_script(_ADJUST_LUA)
        self._peek = self._client.register_script(_PEEK_LUA)

    @contextlib.asynccontextmanager
    async def _call(self, operation: str) -> AsyncIterator[None]:
        """Bound the body by the per-call timeout and raise its failures as ``QuotaStoreError``."""
        try:
            async with asyncio.timeout(self._timeout_s):
                yield
        except TimeoutError as exc:
            raise QuotaStoreError(f"redis {operation} timed out after {self._timeout_s:g}s") from exc
        except (RedisError, OSError) as exc:
            raise QuotaStoreError(f"redis {operation} failed: {type(exc).__name__}: {exc}") from exc

    async def _run(self, operation: str, script: AsyncScript, keys: list[str], args: list[int]) -> list[int]:
        async with self._call(operation):
            reply = await script(keys=keys, args=args)
        if not isinstance(reply, list) or not all(isinstance(value, int) for value in reply):
            raise QuotaStoreError(f"redis {operation} answered nonsense: {reply!r:.80}")
        return reply

    async def acquire(self, scope: str, limits: Sequence[Limit], amount: int = 1) -> Admission:
        if not limits:
            return Admission(True, ())
        args = [amount, EXPIRY_GRACE_MS]
        for limit in limits:
            args += (limit.seconds, limit.limit)
        reply = await self._run("acquire", self._acquire, [counter_key(scope, limit.seconds) for limit in limits], args)
        if len(reply) != 1 + 4 * len(limits):
            raise QuotaStoreError(f"redis acquire answered {len(reply)} values for {len(limits)} windows")
        return Admission(
            reply[0] == 1,
            tuple(
                WindowState(limit, reply[base], reply[base + 1], reply[base + 2] / 1000, reply[base + 3] == 1)
                for limit, base in zip(limits, range(1, len(reply), 4), strict=True)
            ),
        )

    async def adjust(self, scope: str, windows: Sequence[WindowState], delta: int) -> None:
        if not windows or delta == 0:
            return
        keys = [counter_key(scope, state.limit.seconds) for state in windows]
        await self._run("adjust", self._adjust, keys, [delta, *(state.index for state in windows)])

    async def adjust_many(self, adjustments: Sequence[Adjustment]) -> None:
        """Each ``(scope, windows, delta)`` as one ``adjust``, all in one round trip (a pipeline on one connection,
        within one timeout). Not a transaction: each item is atomic on its own, and after a failure any of them
        may have been applied."""
        calls = [
            (
                [counter_key(scope, state.limit.seconds) for state in windows],
                [delta, *(state.index for state in windows)],
            )
            for scope, windows, delta in adjustments
            if windows and delta != 0
        ]
        if not calls:
            return
        async with self._call("adjust_many"), self._client.pipeline(transaction=False) as pipe:
            for keys, args in calls:
                await self._adjust(keys=keys, args=args, client=pipe)
            await pipe.execute()

    async def peek(self, scope: str, limits: Sequence[Limit]) -> tuple[WindowState, ...]:
        if not limits:
            return ()
        keys = [counter_key(scope, limit.seconds) for limit in limits]
        reply = await self._run("peek", self._peek, keys, [limit.seconds for limit in limits])
        if len(reply) != 3 * len(limits):
            raise QuotaStoreError(f"redis peek answered {len(reply)} values for {len(limits)} windows")
        return tuple(
            WindowState(limit, reply[base], reply[base + 1], reply[base + 2] / 1000)
            for limit, base in zip(limits, range(0, len(reply), 3), strict=True)
        )

    async def close(self) -> None:
        await self._client.aclose()
