"""Metrics and logs for the plugin servers.

Metrics go through the OpenTelemetry SDK into a Prometheus registry owned by the server (never the process-global
one, so several servers can live in one test process) and are served as ``/metrics`` over HTTP. Logs are one JSON
object per line; every record passes one redaction step so that an API key can not reach a log even by mistake.
"""

from __future__ import annotations

import bisect
import logging
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

# Latency buckets in seconds sized for in-process decisions (tens of µs) up to slow store round trips.
DECISION_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)

_SECRET_PATTERNS = (
    re.compile(r"(?i)(bearer\s+)[^\s\"',;]+"),
    re.compile(r"(?i)((?:api[_-]?key|authorization|x-api-key)[\"']?\s*[:=]\s*[\"']?)[^\s\"',;]+"),
    re.compile(r"()tlabs_[A-Za-z0-9_\-]+"),
)
REDACTED = "[redacted]"


def redact(text: str) -> str:
    """Replace anything shaped like a credential with a marker."""
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda match: match.group(1) + REDACTED, text)
    return text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and any ``extra={...}`` fields."""

    _STANDARD = frozenset(vars(logging.makeLogRecord({})))

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in self._STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return redact(orjson.dumps(entry, default=str).decode())


def configure_logging(level: str, stream: Any = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


class Counter:
    """A monotonic counter whose hot path is one dict update.

    OpenTelemetry's synchronous instruments clean and hash the attribute dict on every ``add`` (≈15-20 µs here,
    more than the decision being counted). This keeps plain totals keyed by label values and hands them to the
    SDK as an observable counter, read only when ``/metrics`` is scraped. Not thread-safe: one event loop owns it.
    """

    def __init__(self, meter: Meter, name: str, description: str, labels: tuple[str, ...]) -> None:
        self._labels = labels
        self._totals: dict[tuple[str, ...], float] = {}
        meter.create_observable_counter(name, callbacks=[self._observe], description=description)

    def add(self, values: tuple[str, ...], amount: float = 1) -> None:
        self._totals[values] = self._totals.get(values, 0) + amount

    def _observe(self, _: CallbackOptions) -> Iterable[Observation]:
        return [Observation(total, dict(zip(self._labels, key, strict=True))) for key, total in self._totals.items()]


class Histogram(Collector):
    """A latency histogram whose hot path is a bisect and two list updates.

    OpenTelemetry has no observable histogram, and its synchronous one costs more than the decisions it times, so
    this one is exported straight into the server's Prometheus registry. Not thread-safe: one event loop owns it.
    """

    def __init__(self, name: str, description: str, labels: tuple[str, ...], buckets: Sequence[float]) -> None:
        self._name = name
        self._description = description
        self._labels = labels
        self._bounds = tuple(buckets)
        # label values -> [per-bucket counts..., +Inf count], [sum]
        self._series: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}

    def observe(self, values: tuple[str, ...], amount: float) -> None:
        series = self._series.get(values)
        if series is None:
            series = self._series[values] = ([0] * (len(self._bounds) + 1), [0.0])
        series[0][bisect.bisect_left(self._bounds, amount)] += 1
        series[1][0] += amount

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self._name, self._description, labels=self._labels)
        for values, (counts, total) in self._series.items():
            cumulative, buckets = 0, []
            for bound, count in zip((*self._bounds, float("inf")), counts, strict=True):
                cumulative += count
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
            family.add_metric(list(values), buckets, total[0])
        yield family


@dataclass(frozen=True)
class Telemetry:
    """The meter a server creates its instruments from, and the registry its ``/metrics`` serves."""

    service: str
    meter: Meter
    registry: CollectorRegistry
    provider: MeterProvider
    decision_seconds: Histogram

    @classmethod
    def create(cls, service: str) -> Telemetry:
        registry = CollectorRegistry(auto_describe=True)
        reader = PrometheusMetricReader(registry=registry, disable_target_info=True, scope_info_enabled=False)
        provider = MeterProvider(
            resource=Resource.create({"service.name": f"tokenlabs-{service}"}), metric_readers=[reader]
        )
        meter = provider.get_meter(f"tokenlabs.{service}")
        decision_seconds = Histogram(
            "tokenlabs_decision_duration_seconds",
            "Time to decide one Envoy message, by server, phase and result.",
            ("server", "phase", "result"),
            DECISION_BUCKETS,
        )
        registry.register(decision_seconds)
        return cls(service, meter, registry, provider, decision_seconds)

    def counter(self, name: str, description: str, labels: tuple[str, ...]) -> Counter:
        return Counter(self.meter, name, description, labels)

    def histogram(self, name: str, description: str, labels: tuple[str, ...], buckets: Sequence[float]) -> Histogram:
        histogram = Histogram(name, description, labels, buckets)
        self.registry.register(histogram)
        return histogram

    def record_decision(self, phase: str, result: str, seconds: float) -> None:
        self.decision_seconds.observe((self.service, phase, result), seconds)

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))

    def shutdown(self) -> None:
        self.provider.shutdown()


async def start_metrics_http(telemetry: Telemetry, host: str, port: int) -> web.AppRunner:
    """Serve ``GET /metrics`` on its own port; returns the runner to clean up on shutdown."""

    async def metrics(_: web.Request) -> web.Response:
        response = web.Response(body=telemetry.render())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
