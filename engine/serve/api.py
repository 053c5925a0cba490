"""The torch worker's HTTP API: the simulator's OpenAI routes, bodies and errors, with real tokens.

``POST /v1/chat/completions`` and ``POST /v1/completions`` (JSON, or SSE with ``stream: true`` and
``stream_options.include_usage``), ``GET /v1/models``, ``GET /health``, ``GET /metrics``. ``max_tokens`` (or chat's
``max_completion_tokens``) defaults, as in vLLM, to what the context leaves after the prompt; a prompt plus
``max_tokens`` beyond ``max_model_len`` is a 400 ``context_length_exceeded``. One prompt and one choice per request
(``n`` > 1 or a list of prompts is a 400). ``usage.completion_tokens`` counts every generated token, the end token
included (as vLLM does), whose text is not sent.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import aclosing
from dataclasses import dataclass

from aiohttp import web

from engine.serve.detokenizer import IncrementalDetokenizer
from engine.serve.prompts import chat_prompt_ids, completion_prompt_ids, empty_prompt
from engine.serve.sampling_params import SamplingParams, parse_sampling_params
from engine.serve.streams import ChatTextStream, CompletionTextStream, TextEventStream
from engine.serve.worker import GenerationRequest, TorchWorker
from engine.sim.errors import ApiError, invalid_request
from engine.sim.json_http import (
    WorkerRoutes,
    error_response,
    event_stream_response,
    json_response,
    new_header,
    read_json_object,
)
from engine.sim.request_parsing import check_context_length, parse_chat_completion, parse_completion
from engine.sim.response_payloads import FinishedChoice, Usage, chat_completion, text_completion

_logger = logging.getLogger(__name__)


def build_app(worker: TorchWorker) -> web.Application:
    """Serve it with ``handler_cancellation=True`` (as ``engine.serve.server`` does), so that a client that goes
    away frees its place in the queue, or the model, at once."""
    api = _OpenAiApi(worker)
    app = api.application()
    app.router.add_post("/v1/chat/completions", api.chat_completions)
    app.router.add_post("/v1/completions", api.completions)
    return app


@dataclass(frozen=True)
class _Generated:
    token_ids: list[int]
    finish_reason: str


class _OpenAiApi(WorkerRoutes):
    def __init__(self, worker: TorchWorker) -> None:
        super().__init__(worker)
        self._worker = worker
        self._tokenizer = worker.model.tokenizer

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await read_json_object(request)
            chat = parse_chat_completion(body)
            self.require_served(chat.options.model)
            prompt_ids = chat_prompt_ids(self._tokenizer, chat.messages)
            generation = self._request(prompt_ids, chat.options.max_tokens, parse_sampling_params(body), "messages")
        except ApiError as error:
            return error_response(error)
        header = new_header("chatcmpl", chat.options.model)
        if chat.options.stream:
            return await self._stream(request, generation, ChatTextStream(header, chat.options.include_usage))
        generated = await self._generate(generation)
        choice = FinishedChoice(self._worker.model.decode(generated.token_ids), generated.finish_reason)
        return json_response(chat_completion(header, choice, _usage(generation, generated.token_ids)))

    async def completions(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await read_json_object(request)
            completion = parse_completion(body)
            self.require_served(completion.options.model)
            if len(completion.prompts) != 1:
                raise invalid_request(
                    "This engine takes one prompt per request.", param="prompt", code="unsupported_value"
                )
            prompt_ids = completion_prompt_ids(self._tokenizer, completion.prompts[0])
            max_tokens = completion.options.max_tokens
            generation = self._request(prompt_ids, max_tokens, parse_sampling_params(body), "prompt")
        except ApiError as error:
            return error_response(error)
        header = new_header("cmpl", completion.options.model)
        if completion.options.stream:
            events = CompletionTextStream(header, completion.options.include_usage)
            return await self._stream(request, generation, events)
        generated = await self._generate(generation)
        choice = FinishedChoice(self._worker.model.decode(generated.token_ids), generated.finish_reason)
        return json_response(text_completion(header, [choice], _usage(generation, generated.token_ids)))

    def _request(
        self, prompt_ids: Sequence[int], max_tokens: int | None, sampling: SamplingParams, prompt_param: str
    ) -> GenerationRequest:
        if not prompt_ids:
            raise empty_prompt(prompt_param)
        max_model_len = self._worker.max_model_len
        check_context_length(len(prompt_ids), max_tokens, max_model_len, prompt_param)
        budget = max_tokens if max_tokens is not None else max_model_len - len(prompt_ids)
        return GenerationRequest(tuple(prompt_ids), budget, sampling)

    async def _generate(self, generation: GenerationRequest) -> _Generated:
        token_ids: list[int] = []
        finish_reason = "length"
        async with aclosing(self._worker.generate(generation)) as steps:
            async for step in steps:
                token_ids += step.token_ids
                finish_reason = step.finish_reason or finish_reason
        return _Generated(token_ids, finish_reason)

    async def _stream(
        self, request: web.Request, generation: GenerationRequest, events: TextEventStream
    ) -> web.StreamResponse:
        response = event_stream_response()
        await response.prepare(request)
        detokenizer = IncrementalDetokenizer(self._worker.model.decode)
        token_ids: list[int] = []
        finish_reason = "length"
        try:
            async with aclosing(self._worker.generate(generation)) as steps:
                async for step in steps:
                    token_ids += step.token_ids
                    finish_reason = step.finish_reason or finish_reason
                    text = detokenizer.push(step.token_ids)
                    if text:
                        await response.write(events.text_frames(text))
            closing = b""
            if text := detokenizer.flush():
                closing = events.text_frames(text)
            await response.write(closing + events.closing_frames(finish_reason, _usage(generation, token_ids)))
        except ConnectionResetError:
            # The client went away; leaving the loop closed the generation and freed the model.
            _logger.debug("client left %s mid-stream", request.path)
        return response


def _usage(generation: GenerationRequest, token_ids: Sequence[int]) -> Usage:
    return Usage(prompt_tokens=len(generation.prompt_ids), completion_tokens=len(token_ids))
