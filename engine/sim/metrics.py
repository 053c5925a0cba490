"""The worker's Prometheus metrics, named and labelled as vLLM names them so scrapers need no special case.

Every worker owns its registry: several workers share one process, and each must expose only its own state.
Like vLLM, the ``model_name`` label carries the worker's first served name even when it serves aliases. Histogram
buckets reach further down than vLLM's, whose defaults start at 10 ms (inter-token) or 300 ms (queue time), below
which a simulated worker spends most of its time.

:class:`VllmMetrics` holds what every vLLM-compatible worker exposes (the queue gauges, token counters, latency
histograms, the cache configuration); :class:`WorkerMetrics` adds the simulator's prefix cache and preemptions, and
the torch engine (``engine.serve``) adds its speculative-decoding counters.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from engine.sim.config import SimConfig

# The classic text format: every Prometheus version and vLLM-aware scraper parses it.
METRICS_CONTENT_TYPE: Final = CONTENT_TYPE_PLAIN_0_0_4

_TTFT_BUCKETS_SECONDS: Final = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
_ITL_BUCKETS_SECONDS: Final = (
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0,
)  # fmt: skip
_REQUEST_BUCKETS_SECONDS: Final = (
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0,
)  # fmt: skip


@dataclass(frozen=True)
class CacheConfigInfo:
    """The labels of ``vllm:cache_config_info``: the KV cache holds ``block_size * num_blocks`` tokens."""

    block_size: int
    num_blocks: int
    enable_prefix_caching: bool


class VllmMetrics:
    """The metrics every vLLM-compatible worker here exposes. The gauges are read from the worker at scrape time;
    the counters and histograms are the worker's to update."""

    def __init__(
        self,
        model_name: str,
        cache_info: CacheConfigInfo,
        running: Callable[[], float],
        waiting: Callable[[], float],
        kv_cache_usage: Callable[[], float],
    ) -> None:
        self.registry = CollectorRegistry()
        self.model_name = model_name

        def gauge_reading(name: str, documentation: str, read: Callable[[], float]) -> None:
            # Read at scrape time, so the exposed value can never drift from the worker's state.
            Gauge(name, documentation, ("model_name",), registry=self.registry).labels(model_name).set_function(read)

        gauge_reading("vllm:num_requests_running", "Requests in the running batch.", running)
        gauge_reading("vllm:num_requests_waiting", "Requests queued, preempted ones included.", waiting)
        gauge_reading("vllm:kv_cache_usage_perc", "KV cache usage, 1 means every block is in use.", kv_cache_usage)

        self.prompt_tokens = self.counter(
            "vllm:prompt_tokens", "Prompt tokens of requests that reached their first token."
        )
        self.generation_tokens = self.counter("vllm:generation_tokens", "Generated tokens.")
        self._request_success = Counter(
            "vllm:request_success",
            "Requests that finished generating, by why they finished.",
            ("model_name", "finished_reason"),
            registry=self.registry,
        )

        def histogram(name: str, documentation: str, buckets: tuple[float, ...]) -> Histogram:
            return Histogram(name, documentation, ("model_name",), buckets=buckets, registry=self.registry).labels(
                model_name
            )

        self.time_to_first_token = histogram(
            "vllm:time_to_first_token_seconds",
            "Time from arrival to the first generated token, waiting included.",
            _TTFT_BUCKETS_SECONDS,
        )
        self.inter_token_latency = histogram(
            "vllm:inter_token_latency_seconds",
            "Time between two consecutive tokens of a request.",
            _ITL_BUCKETS_SECONDS,
        )
        self.e2e_request_latency = histogram(
            "vllm:e2e_request_latency_seconds",
            "Time from arrival to the last generated token.",
            _REQUEST_BUCKETS_SECONDS,
        )
        self.request_queue_time = histogram(
            "vllm:request_queue_time_seconds",
            "Time from entering the queue to being first scheduled.",
            _REQUEST_BUCKETS_SECONDS,
        )
        Gauge(
            "vllm:cache_config_info",
            "Information of the KV cache configuration.",
            ("block_size", "num_gpu_blocks", "enable_prefix_caching"),
            registry=self.registry,
        ).labels(str(cache_info.block_size), str(cache_info.num_blocks), str(cache_info.enable_prefix_caching)).set(1)

    def counter(self, name: str, documentation: str) -> Counter:
        """A counter labelled with the model name only, in this worker's registry (exposed as ``name_total``)."""
        return Counter(name, documentation, ("model_name",), registry=self.registry).labels(self.model_name)

    def record_success(self, finished_reason: str) -> None:
        self._request_success.labels(self.model_name, finished_reason).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class WorkerMetrics(VllmMetrics):
    """The simulator's metrics: the shared ones, its prefix cache and its preemptions."""

    def __init__(
        self,
        model_name: str,
        config: SimConfig,
        running: Callable[[], float],
        waiting: Callable[[], float],
        kv_cache_usage: Callable[[], float],
    ) -> None:
        cache_info = CacheConfigInfo(config.block_size, config.num_kv_blocks, config.enable_prefix_caching)
        super().__init__(model_name, cache_info, running, waiting, kv_cache_usage)
        self.prefix_cache_queries = self.counter(
            "vllm:prefix_cache_queries", "Tokens of newly admitted requests looked up in the prefix cache."
        )
        self.prefix_cache_hits = self.counter("vllm:prefix_cache_hits", "Of those, tokens found in the prefix cache.")
        self.num_preemptions = self.counter("vllm:num_preemptions", "Running requests preempted to free KV blocks.")
