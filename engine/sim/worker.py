"""One simulated vLLM worker: its engine, its metrics and its OpenAI-compatible HTTP API."""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import aclosing

from aiohttp import web

from engine.sim.config import SimConfig
from engine.sim.engine_core import Clock, EngineCore, Sleep
from engine.sim.errors import ApiError
from engine.sim.json_http import (
    WorkerRoutes,
    error_response,
    event_stream_response,
    json_response,
    new_header,
    read_json_object,
)
from engine.sim.latency import speech_seconds
from engine.sim.metrics import WorkerMetrics
from engine.sim.planning import GenerationPlan, plan_generation
from engine.sim.request_parsing import (
    check_context_length,
    parse_chat_completion,
    parse_completion,
)
from engine.sim.response_payloads import (
    FinishedChoice,
    chat_completion,
    text_completion,
)
from engine.sim.scheduler import Scheduler
from engine.sim.speech import CONTENT_TYPES, SpeechRequest, encode_audio, parse_speech
from engine.sim.sse_streams import ChatEventStream, CompletionEventStream, EventStream, usage_of
from engine.sim.tokens import chat_prompt_tokens, tokenize

_logger = logging.getLogger(__name__)

TokenSink = Callable[[int, int, tuple[str, ...]], Awaitable[None]]


class SimWorker:
    """Runs generation plans on a simulated engine (continuous batching, a prefix-caching KV cache, preemption)
    under the latency model, and keeps its vLLM metrics true.

    ``clock`` (monotonic seconds) and ``sleep`` are injectable so tests can hold or skip simulated time.
    """

    def __init__(
        self,
        model_names: Sequence[str],
        config: SimConfig,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if not model_names or not all(model_names):
            raise ValueError(f"a worker needs at least one non-empty model name, got {list(model_names)!r}")
        self.model_names = tuple(model_names)
        self.config = config
        self.scheduler = Scheduler(config)
        self.metrics = WorkerMetrics(
            self.model_names[0],
            config,
            running=lambda: self.scheduler.num_running,
            waiting=lambda: self.scheduler.num_waiting,
            kv_cache_usage=lambda: self.scheduler.kv_cache.usage,
        )
        self.engine = EngineCore(self.scheduler, config, self.metrics, clock=clock, sleep=sleep)
        self.created = int(time.time())
        self._clock = clock
        self._sleep = sleep

    @property
    def max_model_len(self) -> int:
        return self.config.max_model_len

    def plan(self, prompt_tokens: Sequence[str], max_tokens: int | None, prompt_param: str) -> GenerationPlan:
        check_context_length(len(prompt_tokens), max_tokens, self.config.max_model_len, prompt_param)
        return plan_generation(self.config, prompt_tokens, max_tokens)

    async def generate_all(self, plans: Sequence[GenerationPlan], sink: TokenSink) -> None:
        """Generate every plan concurrently, as separate sequences, handing each batch of tokens to ``sink`` with
        its choice index and the position of its first token, as soon as the engine has sampled them. If one fails
        or is cancelled, the others are cancelled, their slots and KV blocks freed at once."""

        async def generate_one(choice_index: int, plan: GenerationPlan) -> None:
            async with aclosing(self.engine.generate(plan)) as batches:
                position = 0
                async for batch in batches:
                    await sink(choice_index, position, batch)
                    position += len(batch)

        async with asyncio.TaskGroup() as group:
            for choice_index, plan in enumerate(plans):
                group.create_task(generate_one(choice_index, plan))

    async def synthesize(self, request: SpeechRequest) -> bytes:
        """The audio for ``request`` after the simulated synthesis time.

        A speech request holds a batching slot while it runs, so it shows in the running/waiting gauges and
        competes with generation for ``max_num_seqs``, but no KV blocks: the simulator does not model a speech
        model's cache. It counts in the queue time, the end-to-end latency and ``request_success`` (reason
        ``stop``), not in the token counters or the time to first token: it has no tokens.
        """
        arrival = self._clock()
        async with self.engine.slot():
            await self._sleep(speech_seconds(self.config, request.characters))
            audio = encode_audio(request)
            self.metrics.e2e_request_latency.observe(self._clock() - arrival)
            self.metrics.record_success("stop")
        return audio


def build_app(worker: SimWorker) -> web.Application:
    """The worker's HTTP API. Serve it with ``handler_cancellation=True`` (as the runner does) so a client that
    goes away while waiting or generating frees its slot at once."""
    api = _OpenAiApi(worker)
    app = api.application()
    app.router.add_post("/v1/chat/completions", api.chat_completions)
    app.router.add_post("/v1/completions", api.completions)
    app.router.add_post("/v1/audio/speech", api.speech)
    return app


class _OpenAiApi(WorkerRoutes):
    def __init__(self, worker: SimWorker) -> None:
        super().__init__(worker)
        self._worker = worker

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        try:
            chat = parse_chat_completion(await read_json_object(request))
            self.require_served(chat.options.model)
            prompt_tokens = chat_prompt_tokens(chat.messages)
            plan = self._worker.plan(prompt_tokens, chat.options.max_tokens, prompt_param="messages")
        except ApiError as error:
            return error_response(error)
        header = new_header("chatcmpl", chat.options.model)
        if chat.options.stream:
            return await self._stream(request, [plan], ChatEventStream(header, plan, chat.options.include_usage))
        (choice,) = await self._finish([plan])
        return json_response(chat_completion(header, choice, usage_of([plan])))

    async def completions(self, request: web.Request) -> web.StreamResponse:
        try:
            completion = parse_completion(await read_json_object(request))
            self.require_served(completion.options.model)
            max_tokens = completion.options.max_tokens
            plans = tuple(
                self._worker.plan(tokenize(prompt), max_tokens, prompt_param="prompt") for prompt in completion.prompts
            )
        except ApiError as error:
            return error_response(error)
        header = new_header("cmpl", completion.options.model)
        if completion.options.stream:
            events = CompletionEventStream(header, plans, completion.options.include_usage)
            return await self._stream(request, plans, events)
        choices = await self._finish(plans)
        return json_response(text_completion(header, choices, usage_of(plans)))

    async def speech(self, request: web.Request) -> web.Response:
        try:
            speech = parse_speech(await read_json_object(request))
            self.require_served(speech.model)
        except ApiError as error:
            return error_response(error)
        audio = await self._worker.synthesize(speech)
        return web.Response(body=audio, content_type=CONTENT_TYPES[speech.response_format])

    async def _finish(self, plans: Sequence[GenerationPlan]) -> list[FinishedChoice]:
        texts: list[list[str]] = [[] for _ in plans]

        async def collect(choice_index: int, position: int, tokens: tuple[str, ...]) -> None:
            texts[choice_index].extend(tokens)

        await self._worker.generate_all(plans, collect)
        return [FinishedChoice("".join(tokens), plan.finish_reason) for tokens, plan in zip(texts, plans, strict=True)]

    async def _stream(
        self, request: web.Request, plans: Sequence[GenerationPlan], events: EventStream
    ) -> web.StreamResponse:
        response = event_stream_response()
        await response.prepare(request)

        async def send(choice_index: int, position: int, tokens: tuple[str, ...]) -> None:
            if len(tokens) == 1:  # the common case, and the one that runs for every token: no joining
                await response.write(events.token_frames(choice_index, position, tokens[0]))
                return
            frames = [
                events.token_frames(choice_index, position + offset, token) for offset, token in enumerate(tokens)
            ]
            await response.write(b"".join(frames))

        try:
            await self._worker.generate_all(plans, send)
            await response.write(events.closing_frames())
        except* ConnectionResetError:
            # The client went away; generate_all has already freed its sequences.
            _logger.debug("client left %s mid-stream", request.path)
        return response
