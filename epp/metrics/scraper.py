"""Scrape every pool member's ``/metrics`` on an interval, concurrently, and publish what was read.

One task per endpoint: fetch (bounded by the timeout), parse, publish to the ``MetricsBoard``, sleep out the rest
of the interval. A failed scrape publishes nothing, so the endpoint's metrics age and the picker's staleness filter
drops it; the failure is counted and logged once per change of state, not on every attempt. Pool membership is
re-read every interval: tasks start for new members and stop for departed ones (whose metrics are forgotten).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import aiohttp
from opentelemetry.metrics import CallbackOptions, Observation

from epp.metrics.snapshot import EndpointMetrics, MetricsBoard, read_vllm_metrics
from epp.metrics.text_format import MetricsFormatError
from epp.pools.directory import Pool
from tokenlabs.telemetry import Telemetry

log = logging.getLogger(__name__)

# /metrics of vLLM is tens of kilobytes; anything much larger is not a metrics page worth parsing.
MAX_METRICS_BYTES = 4 * 1024 * 1024

Clock = Callable[[], float]


@dataclass(frozen=True)
class ScrapeTarget:
    pool: str
    address: str
    url: str


class Scraper:
    def __init__(
        self,
        pools: Iterable[Pool],
        board: MetricsBoard,
        telemetry: Telemetry,
        interval_s: float,
        timeout_s: float,
        staleness_s: float,
        clock: Clock = time.monotonic,
        on_departed: Callable[[set[str]], None] = lambda _addresses: None,
    ) -> None:
        self._pools = tuple(pools)
        self._board = board
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self._staleness_s = staleness_s
        self._clock = clock
        self._on_departed = on_departed
        self._tasks: dict[ScrapeTarget, asyncio.Task[None]] = {}
        self._failing: set[ScrapeTarget] = set()
        self._attempted: set[ScrapeTarget] = set()
        self._first_round = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._reconciler: asyncio.Task[None] | None = None
        self._scrapes = telemetry.counter(
            "tokenlabs_epp_scrapes",
            "Endpoint metrics scrapes by pool, endpoint and result.",
            ("pool", "endpoint", "result"),
        )
        meter = telemetry.meter
        for name, read, description in (
            ("ready", self._ready_value, "1 when the endpoint's metrics are fresh enough to schedule on."),
            ("waiting_requests", lambda m: m.waiting, "vllm:num_requests_waiting at the last good scrape."),
            ("running_requests", lambda m: m.running, "vllm:num_requests_running at the last good scrape."),
            ("kv_cache_usage", lambda m: m.kv_cache_usage, "vllm:kv_cache_usage_perc at the last good scrape."),
        ):
            meter.create_observable_gauge(
                f"tokenlabs_epp_endpoint_{name}", callbacks=[self._observer(read)], description=description
            )

    @property
    def targets(self) -> tuple[ScrapeTarget, ...]:
        return tuple(self._tasks)

    async def start(self) -> None:
        """Start scraping; returns once every current member has been tried once (successfully or not)."""
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self._timeout_s),
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
        )
        self._reconcile()
        self._reconciler = asyncio.create_task(self._reconcile_forever(), name="epp-scrape-reconcile")
        await self._wait_first_round()

    async def stop(self) -> None:
        tasks = [*self._tasks.values(), *([self._reconciler] if self._reconciler else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        if self._session is not None:
            await self._session.close()

    async def _wait_first_round(self) -> None:
        while not self._attempted.issuperset(self._tasks):
            self._first_round.clear()
            await self._first_round.wait()

    async def _reconcile_forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            self._reconcile()

    def _reconcile(self) -> None:
        wanted = {
            ScrapeTarget(pool.name, address, f"http://{address}{pool.metrics_path}")
            for pool in self._pools
            for address in pool.endpoints
        }
        departed = set(self._tasks) - wanted
        for target in departed:
            self._tasks.pop(target).cancel()
            self._failing.discard(target)
            self._attempted.discard(target)
            log.info("stopped scraping", extra={"pool": target.pool, "endpoint": target.address})
        if departed:
            gone = {target.address for target in departed} - {target.address for target in wanted}
            self._board.forget(gone)
            self._on_departed(gone)
        for target in wanted - set(self._tasks):
            self._tasks[target] = asyncio.create_task(self._scrape_forever(target), name=f"epp-scrape-{target.address}")

    async def _scrape_forever(self, target: ScrapeTarget) -> None:
        while True:
            started = self._clock()
            await self._scrape_once(target, started)
            self._attempted.add(target)
            self._first_round.set()
            await asyncio.sleep(max(0.0, self._interval_s - (self._clock() - started)))

    async def _scrape_once(self, target: ScrapeTarget, started: float) -> None:
        assert self._session is not None
        try:
            async with self._session.get(target.url) as response:
                if response.status != 200:
                    raise ValueError(f"HTTP {response.status}")
                # content.read(n) returns only what is buffered (often the first chunk): read to the end.
                body = bytearray()
                async for chunk in response.content.iter_any():
                    body += chunk
                    if len(body) > MAX_METRICS_BYTES:
                        raise ValueError(f"metrics page larger than {MAX_METRICS_BYTES} bytes")
            metrics = read_vllm_metrics(body.decode("utf-8", errors="replace"), scraped_at=started)
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError, MetricsFormatError) as error:
            self._scrapes.add((target.pool, target.address, "error"))
            if target not in self._failing:
                self._failing.add(target)
                log.warning(
                    "endpoint metrics unavailable",
                    extra={
                        "pool": target.pool,
                        "endpoint": target.address,
                        "error": str(error) or type(error).__name__,
                    },
                )
            return
        self._board.publish(target.address, metrics)
        self._scrapes.add((target.pool, target.address, "ok"))
        if target in self._failing:
            self._failing.discard(target)
            log.info("endpoint metrics back", extra={"pool": target.pool, "endpoint": target.address})

    def _ready_value(self, metrics: EndpointMetrics) -> float:
        return 1.0 if self._clock() - metrics.scraped_at <= self._staleness_s else 0.0

    def _observer(self, read: Callable[[EndpointMetrics], float]) -> Callable[[CallbackOptions], list[Observation]]:
        def observe(_: CallbackOptions) -> list[Observation]:
            board = self._board.current
            observations = []
            for target in self._tasks:
                metrics = board.get(target.address)
                if metrics is not None:
                    value = read(metrics)
                elif read == self._ready_value:
                    value = 0.0
                else:
                    continue
                observations.append(Observation(value, {"pool": target.pool, "endpoint": target.address}))
            return observations

        return observe
