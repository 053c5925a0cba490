"""The scraper over real HTTP on loopback: small aiohttp servers stand in for vLLM's /metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from engine.sim.config import SimConfig
from engine.sim.metrics import WorkerMetrics
from epp.metrics import scraper as scraper_module
from epp.metrics.scraper import Scraper, ScrapeTarget
from epp.metrics.snapshot import MetricsBoard
from epp.pools.directory import Pool
from tests.epp.fakes import MutableSource
from tests.helpers import metric_samples
from tokenlabs.devstack import free_ports
from tokenlabs.telemetry import Telemetry

INTERVAL_S = 0.02


def vllm_page(waiting: int = 0, running: int = 0, kv_cache_usage: float = 0.0) -> str:
    return (
        f'vllm:num_requests_waiting{{model_name="m"}} {waiting}\n'
        f'vllm:num_requests_running{{model_name="m"}} {running}\n'
        f'vllm:kv_cache_usage_perc{{model_name="m"}} {kv_cache_usage}\n'
    )


@dataclass
class MetricsServer:
    """One endpoint's metrics page; a test changes what it answers between scrapes."""

    page: str = field(default_factory=vllm_page)
    status: int = 200
    delay_s: float = 0.0
    chunk_bytes: int = 0  # > 0: stream the page in chunks this big, with a pause between them
    path: str = "/metrics"
    requests: int = 0
    address: str = ""
    _release: asyncio.Event = field(default_factory=asyncio.Event)
    _runner: web.AppRunner | None = None

    async def start(self, port: int = 0) -> str:
        app = web.Application()
        app.router.add_get(self.path, self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.address = f"127.0.0.1:{self._runner.addresses[0][1]}"
        return self.address

    async def stop(self) -> None:
        self._release.set()  # a handler still sleeping ends now
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        if self.delay_s:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._release.wait(), self.delay_s)
        if self.status != 200:
            return web.Response(status=self.status, text="no")
        if not self.chunk_bytes:
            return web.Response(text=self.page)
        response = web.StreamResponse()
        await response.prepare(request)
        data = self.page.encode()
        for start in range(0, len(data), self.chunk_bytes):
            await response.write(data[start : start + self.chunk_bytes])
            await asyncio.sleep(0.001)
        await response.write_eof()
        return response


Serve = Callable[..., Awaitable[MetricsServer]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Starts metrics servers (``serve(page=..., port=...)``); all stopped after the test."""
    started: list[MetricsServer] = []

    async def start(port: int = 0, **options: object) -> MetricsServer:
        server = MetricsServer(**options)  # type: ignore[arg-type]
        await server.start(port)
        started.append(server)
        return server

    yield start
    for server in started:
        await server.stop()


@pytest.fixture
def telemetry() -> Telemetry:
    return Telemetry.create("epp-test")


@pytest.fixture
def board() -> MetricsBoard:
    return MetricsBoard()


def down_address() -> str:
    """A loopback port nothing listens on (connection refused)."""
    return f"127.0.0.1:{free_ports(1)[0]}"


def make_scraper(
    pools: list[Pool],
    board: MetricsBoard,
    telemetry: Telemetry,
    timeout_s: float = 1.0,
    staleness_s: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
    on_departed: Callable[[set[str]], None] = lambda _addresses: None,
) -> Scraper:
    return Scraper(pools, board, telemetry, INTERVAL_S, timeout_s, staleness_s, clock, on_departed)


def scrapes(telemetry: Telemetry, pool: str, endpoint: str, result: str) -> float:
    labels = frozenset({("pool", pool), ("endpoint", endpoint), ("result", result)})
    return metric_samples(telemetry.render().decode()).get(("tokenlabs_epp_scrapes_total", labels), 0.0)


def gauge(telemetry: Telemetry, name: str, pool: str, endpoint: str) -> float | None:
    labels = frozenset({("pool", pool), ("endpoint", endpoint)})
    return metric_samples(telemetry.render().decode()).get((f"tokenlabs_epp_endpoint_{name}", labels))


async def until(condition: Callable[[], bool], timeout_s: float = 3.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


def scrape_tasks() -> list[asyncio.Task[object]]:
    return [task for task in asyncio.all_tasks() if task.get_name().startswith("epp-scrape")]


async def test_first_round_completes_with_an_endpoint_down(
    serve: Serve, board: MetricsBoard, telemetry: Telemetry
) -> None:
    up = await serve(page=vllm_page(waiting=3, running=2, kv_cache_usage=0.5), path="/stats/metrics")
    down = down_address()
    scraper = make_scraper([Pool("p", MutableSource(up.address, down), "/stats/metrics")], board, telemetry)
    await asyncio.wait_for(scraper.start(), 2.0)
    try:
        assert set(board.current) == {up.address}  # the refused one published nothing
        metrics = board.current[up.address]
        assert (metrics.waiting, metrics.running, metrics.kv_cache_usage) == (3, 2, 0.5)
        assert scrapes(telemetry, "p", down, "error") >= 1
        assert scrapes(telemetry, "p", up.address, "ok") >= 1
        assert {target.address for target in scraper.targets} == {up.address, down}
    finally:
        await scraper.stop()


async def test_start_waits_for_a_slow_first_scrape(serve: Serve, board: MetricsBoard, telemetry: Telemetry) -> None:
    slow = await serve(delay_s=0.15)
    scraper = make_scraper([Pool("p", MutableSource(slow.address))], board, telemetry)
    started = time.monotonic()
    await asyncio.wait_for(scraper.start(), 2.0)
    try:
        assert time.monotonic() - started >= 0.14
        assert slow.address in board.current
    finally:
        await scraper.stop()


async def test_failing_endpoints_are_counted_and_not_published(
    serve: Serve, board: MetricsBoard, telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scraper_module, "MAX_METRICS_BYTES", 2000)
    good = await serve()
    bad = [
        await serve(status=500),
        await serve(page="process_cpu_seconds_total 1.0\n"),  # not a vLLM server
        await serve(page='vllm:num_requests_waiting{model_name="m" 1\n'),  # malformed wanted line
        await serve(page=vllm_page() + "# padding\n" * 300),  # larger than the limit (2000 bytes here)
    ]
    pool = Pool("p", MutableSource(good.address, *(server.address for server in bad)))
    scraper = make_scraper([pool], board, telemetry)
    await scraper.start()
    try:
        assert set(board.current) == {good.address}
        for server in bad:
            assert server.requests >= 1
            assert scrapes(telemetry, "p", server.address, "error") >= 1
            assert scrapes(telemetry, "p", server.address, "ok") == 0
    finally:
        await scraper.stop()


async def test_a_page_arriving_in_many_chunks_is_read_whole(
    serve: Serve, board: MetricsBoard, telemetry: Telemetry
) -> None:
    # A realistic page (tens of kB of histograms) with the gauges last, streamed in small chunks: reading only
    # what the first read returns would miss them.
    metrics = WorkerMetrics("m", SimConfig(), lambda: 0, lambda: 0, lambda: 0.0)
    histograms = metrics.render().decode().replace("vllm:num_requests", "other:num_requests")
    page = histograms * 4 + vllm_page(waiting=9, running=4, kv_cache_usage=0.25)
    assert len(page) > 5 * 4096
    server = await serve(page=page, chunk_bytes=4096)
    scraper = make_scraper([Pool("p", MutableSource(server.address))], board, telemetry)
    await scraper.start()
    try:
        read = board.current[server.address]
        assert (read.waiting, read.running, read.kv_cache_usage) == (9, 4, 0.25)
    finally:
        await scraper.stop()


async def test_a_hanging_endpoint_is_bounded_by_the_scrape_timeout(
    serve: Serve, board: MetricsBoard, telemetry: Telemetry
) -> None:
    hanging = await serve(delay_s=30.0)
    good = await serve()
    scraper = make_scraper([Pool("p", MutableSource(hanging.address, good.address))], board, telemetry, timeout_s=0.1)
    started = time.monotonic()
    await asyncio.wait_for(scraper.start(), 2.0)
    try:
        assert time.monotonic() - started < 1.0  # the first round ends at the timeout, not when the server answers
        assert scrapes(telemetry, "p", hanging.address, "error") == 1
        assert hanging.address not in board.current
        # Endpoints are scraped independently: the good one went on at its own interval meanwhile.
        assert scrapes(telemetry, "p", good.address, "ok") >= 2
    finally:
        await scraper.stop()


async def test_an_endpoint_that_recovers_is_published_again_and_logged_once_per_change(
    serve: Serve, board: MetricsBoard, telemetry: Telemetry, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=scraper_module.__name__)
    address = down_address()
    scraper = make_scraper([Pool("p", MutableSource(address))], board, telemetry)
    await scraper.start()
    try:
        await until(lambda: scrapes(telemetry, "p", address, "error") >= 3)
        assert address not in board.current
        server = await serve(port=int(address.rsplit(":", 1)[1]), page=vllm_page(waiting=2))
        await until(lambda: address in board.current)
        assert board.current[address].waiting == 2
        messages = [record.getMessage() for record in caplog.records]
        assert messages.count("endpoint metrics unavailable") == 1  # not once per failed attempt
        assert messages.count("endpoint metrics back") == 1
        # Down again: nothing new is published, so its last metrics age (the staleness filter drops them later).
        last = board.current[address]
        await server.stop()
        errors = scrapes(telemetry, "p", address, "error")
        await until(lambda: scrapes(telemetry, "p", address, "error") >= errors + 2)
        assert board.current[address] is last
    finally:
        await scraper.stop()


async def test_membership_changes_start_and_stop_scraping(
    serve: Serve, board: MetricsBoard, telemetry: Telemetry
) -> None:
    first, second = await serve(page=vllm_page(waiting=1)), await serve(page=vllm_page(waiting=2))
    source = MutableSource(first.address)
    departed: list[set[str]] = []
    scraper = make_scraper([Pool("p", source)], board, telemetry, on_departed=departed.append)
    await scraper.start()
    try:
        source.current = (first.address, second.address)
        await until(lambda: second.address in board.current)
        assert board.current[second.address].waiting == 2
        source.current = (second.address,)
        await until(lambda: scraper.targets == (ScrapeTarget("p", second.address, f"http://{second.address}/metrics"),))
        assert set(board.current) == {second.address}  # the departed endpoint's metrics are forgotten
        assert departed == [{first.address}]  # and the picker is told, to forget what it learned about it
        await until(lambda: not any(first.address in task.get_name() for task in scrape_tasks()))
        await asyncio.sleep(INTERVAL_S)  # a request sent just before the cancel may still be arriving
        requests = first.requests
        await asyncio.sleep(INTERVAL_S * 4)
        assert first.requests == requests
    finally:
        await scraper.stop()


async def test_an_endpoint_leaving_one_pool_but_still_in_another_keeps_its_metrics(
    serve: Serve, board: MetricsBoard, telemetry: Telemetry
) -> None:
    shared = await serve()
    first, second = MutableSource(shared.address), MutableSource(shared.address)
    scraper = make_scraper([Pool("one", first), Pool("two", second)], board, telemetry)
    await scraper.start()
    try:
        assert len(scraper.targets) == 2
        first.current = ()
        await until(lambda: len(scraper.targets) == 1)
        assert scraper.targets[0].pool == "two"
        assert shared.address in board.current
    finally:
        await scraper.stop()


async def test_endpoint_gauges_and_scrape_counts_are_exported(
    serve: Serve, board: MetricsBoard, telemetry: Telemetry
) -> None:
    offset = [0.0]

    def clock() -> float:
        return time.monotonic() + offset[0]

    up = await serve(page=vllm_page(waiting=4, running=3, kv_cache_usage=0.125))
    down = down_address()
    scraper = make_scraper([Pool("p", MutableSource(up.address, down))], board, telemetry, clock=clock)
    await scraper.start()
    try:
        assert gauge(telemetry, "ready", "p", up.address) == 1.0
        assert gauge(telemetry, "waiting_requests", "p", up.address) == 4.0
        assert gauge(telemetry, "running_requests", "p", up.address) == 3.0
        assert gauge(telemetry, "kv_cache_usage", "p", up.address) == 0.125
        assert gauge(telemetry, "ready", "p", down) == 0.0  # never scraped: not ready, and no other gauge
        assert gauge(telemetry, "waiting_requests", "p", down) is None
        assert scrapes(telemetry, "p", up.address, "ok") >= 1
        assert scrapes(telemetry, "p", down, "error") >= 1
        # Metrics older than the staleness (1 s) read not ready; no await in between, so no scrape refreshes them.
        offset[0] += 1.5
        assert gauge(telemetry, "ready", "p", up.address) == 0.0
    finally:
        await scraper.stop()


async def test_stop_leaves_no_task_behind(serve: Serve, board: MetricsBoard, telemetry: Telemetry) -> None:
    servers = [await serve() for _ in range(3)]
    scraper = make_scraper(
        [Pool("p", MutableSource(*(server.address for server in servers)), "/metrics")], board, telemetry
    )
    await scraper.start()
    assert len(scrape_tasks()) == 4  # one per endpoint and the membership reconciler
    await scraper.stop()
    assert scrape_tasks() == []
    assert scraper.targets == ()


async def test_an_empty_pool_starts_at_once(board: MetricsBoard, telemetry: Telemetry) -> None:
    scraper = make_scraper([Pool("p", MutableSource())], board, telemetry)
    await asyncio.wait_for(scraper.start(), 0.5)
    await scraper.stop()
    assert dict(board.current) == {}
