import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.sim.planning import GenerationPlan
from engine.sim.response_payloads import ResponseHeader
from engine.sim.sse_streams import ChatEventStream, CompletionEventStream, EventStream
from extproc.routing import parse_body
from extproc.stream_options import UsageRewrite, force_include_usage
from extproc.usage import JsonUsageReader, SseUsageReader, Usage, usage_from

USAGE = {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}


def sse_stream(tokens: int, usage: bool = True) -> bytes:
    events: list[dict[str, object]] = [{"choices": [{"delta": {"content": f"t{i}"}}]} for i in range(tokens)]
    if usage:
        events.append({"choices": [], "usage": USAGE})
    return b"".join(b"data: " + orjson.dumps(event) + b"\n\n" for event in events) + b"data: [DONE]\n\n"


def pieces(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    """``data`` cut at ``cuts`` (clamped, sorted, repeats kept: a repeated cut is an empty chunk)."""
    points = [0, *sorted(min(cut, len(data)) for cut in cuts), len(data)]
    return [data[begin:end] for begin, end in itertools.pairwise(points)]


def feed_all(reader: SseUsageReader, chunks: Sequence[bytes]) -> list[bytes]:
    return [reader.feed(chunk, end_of_stream=index == len(chunks) - 1) for index, chunk in enumerate(chunks)]


def test_usage_from_rejects_wrong_types() -> None:
    assert usage_from({"usage": USAGE}) == Usage(12, 5, 17)
    assert usage_from({"usage": None}) is None
    assert usage_from({"usage": {"prompt_tokens": "12"}}) is None
    assert usage_from({"usage": {"prompt_tokens": -1}}) is None
    # A missing or bogus total is recomputed from its parts.
    assert usage_from({"usage": {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": "x"}}) == Usage(2, 3, 5)


def test_json_reader_reads_usage_and_gives_up_past_its_limit() -> None:
    body = orjson.dumps({"id": "x", "usage": USAGE})
    reader = JsonUsageReader(limit=1024)
    reader.feed(body[:5])
    reader.feed(body[5:])
    assert reader.usage() == Usage(12, 5, 17)
    small = JsonUsageReader(limit=4)
    small.feed(body)
    assert small.usage() is None and small.overflowed


# ---- generated streams --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stream:
    """A stream as rendered events (bytes, usage-only?) and a partial last one, and what a reader makes of it."""

    events: tuple[tuple[bytes, bool], ...]
    partial: bytes
    usage: Usage | None
    completion_chunks: int
    text_chars: int
    done: bool

    @property
    def raw(self) -> bytes:
        return b"".join(event for event, _ in self.events) + self.partial

    @property
    def without_usage_only(self) -> bytes:
        return b"".join(event for event, usage_only in self.events if not usage_only) + self.partial

    def forwarded_once_received(self, received: int) -> bytes:
        """What must have been forwarded once ``received`` bytes arrived: every complete event that stays."""
        kept, end = [], 0
        for event, usage_only in self.events:
            end += len(event)
            if end > received:
                break
            if not usage_only:
                kept.append(event)
        return b"".join(kept)


# Data that a filtering reader must never remove: not JSON objects, or objects that are not usage-only.
OTHER_DATA = (
    b"{broken",
    b"\xff\xfe{not utf-8}",
    b"[1, 2]",
    b'"text"',
    b'{"choices": [], "usage": null}',
    b'{"choices": [], "usage": 7}',
    b'{"choices": {}, "usage": {"prompt_tokens": -1}}',
    b'{"error": {"message": "worker failed", "code": 500}}',
    b'{"error": {"message": "worker failed"}, "usage": {"prompt_tokens": -1}}',
)


@st.composite
def streams(draw: st.DrawFn) -> Stream:
    chat = draw(st.booleans())
    tokens = draw(st.lists(st.text(max_size=3), max_size=6))
    include_usage = draw(st.booleans())
    # OpenAI and vLLM put ``"usage": null`` in every other chunk of a stream that asked for usage.
    usage_null = include_usage and draw(st.booleans())
    # A lone CR may not be followed by a line that starts with LF (that would make a CRLF), so CR streams use
    # CR throughout; LF and CRLF mix freely.
    line_end = st.just(b"\r") if draw(st.booleans()) and draw(st.booleans()) else st.sampled_from([b"\n", b"\r\n"])
    header = {"id": "cmpl-1", "object": "chat.completion.chunk" if chat else "text_completion", "model": "m"}

    def choice(text: str | None, finish: str | None = None) -> dict[str, Any]:
        if not chat:
            return {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}
        delta = {} if text is None else {"content": text}
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}

    payloads: list[tuple[dict[str, Any], bool]] = []
    if chat:
        payloads.append(({**header, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}, False))
    payloads += [({**header, "choices": [choice(token)]}, False) for token in tokens]
    if chat:
        payloads.append(({**header, "choices": [choice(None, "stop")]}, False))
    if usage_null:
        payloads = [({**payload, "usage": None}, usage_only) for payload, usage_only in payloads]
    usage = draw(st.fixed_dictionaries({"prompt_tokens": st.integers(0, 99), "completion_tokens": st.integers(0, 99)}))
    if include_usage:
        payloads.append(({**header, "choices": [], "usage": usage}, True))

    def render(lines: Sequence[bytes]) -> bytes:
        return b"".join(line + draw(line_end) for line in lines) + draw(line_end)

    def data_lines(data: bytes) -> list[bytes]:
        prefix = draw(st.sampled_from([b"data: ", b"data:"]))
        return [prefix + line for line in data.split(b"\n")]

    def event(payload: dict[str, Any]) -> bytes:
        # Pretty-printed JSON becomes several ``data:`` lines, which the reader must join with LF again.
        data = orjson.dumps(payload, option=orjson.OPT_INDENT_2 if draw(st.booleans()) else 0)
        fields = draw(st.lists(st.sampled_from([b"event: message", b"id: 7", b": note", b"retry: 100"]), max_size=2))
        return render([*fields, *data_lines(data)])

    events = [(event(payload), usage_only) for payload, usage_only in payloads]
    extras = draw(
        st.lists(
            st.tuples(
                st.integers(0, len(events)),
                st.one_of(
                    st.just([b": keep-alive"]),
                    st.just([]),  # a stray empty line
                    st.sampled_from(OTHER_DATA).map(lambda data: [b"data: " + data]),
                ),
            ),
            max_size=3,
        )
    )
    for position, lines in sorted(extras, key=lambda extra: -extra[0]):
        events.insert(position, (render(lines), False))
    done = draw(st.booleans())
    if done:
        events.append((render([b"data: [DONE]"]), False))
    # Cut off mid-event: clients discard a partial last event, so it is forwarded but not read.
    partial = draw(st.sampled_from([b"", b'data: {"choices": [], "usage": {"prompt_tokens": 1}}', b"data: [DONE]\n"]))
    return Stream(
        events=tuple(events),
        partial=partial,
        usage=Usage(usage["prompt_tokens"], usage["completion_tokens"], sum(usage.values())) if include_usage else None,
        completion_chunks=sum(1 for token in tokens if token),
        text_chars=sum(len(token) for token in tokens),
        done=done,
    )


def assert_read(reader: SseUsageReader, stream: Stream) -> None:
    assert reader.last_usage == stream.usage
    assert reader.completion_chunks == stream.completion_chunks
    assert reader.streamed_text_chars == stream.text_chars
    assert reader.done == stream.done


@settings(max_examples=250)
@given(stream=streams(), cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=12))
def test_filtering_removes_exactly_the_usage_only_events_however_the_stream_is_cut(
    stream: Stream, cuts: list[int]
) -> None:
    reader = SseUsageReader(drop_usage_only=True)
    received, forwarded = 0, b""
    for index, chunk in enumerate(chunks := pieces(stream.raw, cuts)):
        forwarded += reader.feed(chunk, end_of_stream=index == len(chunks) - 1)
        received += len(chunk)
        # Nothing complete is held back: only the partial event at the end may wait.
        assert len(forwarded) >= len(stream.forwarded_once_received(received))
    assert forwarded == stream.without_usage_only
    assert_read(reader, stream)


@settings(max_examples=100)
@given(stream=streams(), cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=12))
def test_reading_forwards_every_chunk_itself(stream: Stream, cuts: list[int]) -> None:
    reader = SseUsageReader()
    chunks = pieces(stream.raw, cuts)
    assert all(out is chunk for out, chunk in zip(feed_all(reader, chunks), chunks, strict=True))
    assert_read(reader, stream)


def simulated(stream_of: type[EventStream], include_usage: bool) -> bytes:
    header = ResponseHeader(id="cmpl-7", created=1700000000, model="tiny")
    plans = (GenerationPlan(("a", "b"), ("Hello", ",", " world", "!"), "stop"),)
    stream: EventStream = (
        ChatEventStream(header, plans[0], include_usage)
        if stream_of is ChatEventStream
        else CompletionEventStream(header, plans, include_usage)
    )
    tokens = b"".join(stream.token_frames(0, position, token) for position, token in enumerate(plans[0].output_tokens))
    return tokens + stream.closing_frames()


@pytest.mark.parametrize("stream_of", [ChatEventStream, CompletionEventStream])
@settings(max_examples=100)
@given(cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=20))
def test_simulated_stream_filtered_is_the_stream_without_usage(stream_of: type[EventStream], cuts: list[int]) -> None:
    reader = SseUsageReader(drop_usage_only=True)
    assert b"".join(feed_all(reader, pieces(simulated(stream_of, True), cuts))) == simulated(stream_of, False)
    assert reader.last_usage == Usage(2, 4, 6)
    assert reader.completion_chunks == 4 and reader.streamed_text_chars == 13 and reader.done


# ---- edge cases ---------------------------------------------------------------------------------------------


def test_complete_events_are_forwarded_at_once_and_a_partial_one_waits() -> None:
    reader = SseUsageReader(drop_usage_only=True)
    first, usage_only = b'data: {"choices": [{"text": "a"}]}\n\n', b'data: {"choices": [], "usage": {}}\n\n'
    chunk = first + usage_only[:10]
    assert reader.feed(chunk) == first
    assert reader.feed(usage_only[10:]) == b""
    assert reader.feed(b"data: [DONE]\n\n", end_of_stream=True) == b"data: [DONE]\n\n"
    # The common case forwards the very chunk it was given.
    assert reader.feed(first) is first


def test_an_event_ended_by_a_cr_is_forwarded_before_the_lf_that_may_follow() -> None:
    usage_only = b'data: {"choices": [], "usage": {}}\r\n\r'
    for drop, forwarded in ((True, b""), (False, usage_only)):
        reader = SseUsageReader(drop_usage_only=drop)
        assert reader.feed(usage_only) == forwarded
        # The LF completes the CRLF of the dropped event, so it goes too; the empty chunk changes nothing.
        assert reader.feed(b"") == b""
        assert reader.feed(b"\ndata: [DONE]\r\n\r\n", end_of_stream=True) == (b"" if drop else b"\n") + (
            b"data: [DONE]\r\n\r\n"
        )
        assert reader.done


def test_end_of_stream_flushes_a_partial_event_without_reading_it() -> None:
    reader = SseUsageReader(drop_usage_only=True)
    partial = b'data: {"choices": [], "usage": {"prompt_tokens": 1}}\n'
    assert reader.feed(partial) == b""
    assert reader.feed(b"", end_of_stream=True) == partial
    assert reader.last_usage is None


def usage_event(prompt_tokens: int, padding: int = 0) -> bytes:
    payload = {"choices": [], "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 1}, "pad": "x" * padding}
    return b"data: " + orjson.dumps(payload) + b"\r\n\r\n"


@pytest.mark.parametrize("size", [1, 7, 100])
def test_an_oversized_partial_event_is_forwarded_as_it_comes_and_not_read(size: int) -> None:
    big, after = usage_event(1, padding=200), usage_event(2) + b'data: {"choices": [{"text": "z"}]}\r\n\r\n'
    reader = SseUsageReader(drop_usage_only=True, max_event_bytes=100)
    outputs = [reader.feed(chunk) for chunk in pieces(big + after, range(0, len(big + after), size))]
    received = 0
    for output, chunk in zip(outputs, pieces(big + after, range(0, len(big + after), size)), strict=True):
        received += len(chunk)
        if 100 + size < received <= len(big):
            # Past the bound, each chunk of the big event leaves as it came: nothing more is held.
            assert output == chunk
    # The big event was too long to hold, so it stays; the small usage-only event after it is removed again.
    assert b"".join(outputs) == big + b'data: {"choices": [{"text": "z"}]}\r\n\r\n'
    assert reader.last_usage == Usage(2, 1, 3) and reader.completion_chunks == 1


def test_the_end_of_an_oversized_event_is_found_however_it_is_cut() -> None:
    # Two data lines that are no JSON together; the second alone would be a usage-only event.
    big = b"data: " + b"x" * 200 + b"\n" + usage_event(1)
    stream = big + usage_event(2)
    for cut in range(len(big)):
        reader = SseUsageReader(drop_usage_only=True, max_event_bytes=100)
        assert reader.feed(stream[:cut]) + reader.feed(stream[cut:], end_of_stream=True) == big
        assert reader.last_usage == Usage(2, 1, 3)


def test_a_complete_event_is_read_whatever_its_size() -> None:
    reader = SseUsageReader(drop_usage_only=True, max_event_bytes=64)
    assert reader.feed(usage_event(1, padding=200)) == b""
    assert reader.last_usage == Usage(1, 1, 2)


def test_reading_only_forgets_an_oversized_event_and_goes_on() -> None:
    reader = SseUsageReader(max_event_bytes=100)
    stream = usage_event(1, padding=200) + usage_event(2)
    for chunk in pieces(stream, range(0, len(stream), 5)):
        assert reader.feed(chunk) is chunk
    assert reader.last_usage == Usage(2, 1, 3)


def test_chat_deltas_that_count_as_generated_text() -> None:
    reader = SseUsageReader()
    deltas: list[dict[str, Any]] = [
        {"role": "assistant", "content": ""},
        {"reasoning_content": "hm"},
        {"reasoning": "so"},
        {"tool_calls": [{"index": 0, "function": {"name": "f", "arguments": ""}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"a"'}}]},
        {"content": None},
        {},
    ]
    for delta in deltas:
        reader.feed(b"data: " + orjson.dumps({"choices": [{"index": 0, "delta": delta}]}) + b"\n\n")
    assert reader.completion_chunks == 4 and reader.streamed_text_chars == 2 + 2 + 1 + 4


def test_old_style_stream_reads_usage_and_content() -> None:
    reader = SseUsageReader()
    reader.feed(sse_stream(3))
    assert reader.last_usage == Usage(12, 5, 17) and reader.completion_chunks == 3 and reader.done


# ---- force_include_usage ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_body",
    [
        {"model": "m"},
        {"model": "m", "stream": False, "stream_options": {"include_usage": False}},
        {"model": "m", "stream": None},
        {"model": "m", "stream": True, "stream_options": {"include_usage": True}},
        # Wrong types are validation's to refuse, not ours to repair.
        {"model": "m", "stream": "true"},
        {"model": "m", "stream": True, "stream_options": "include_usage"},
        {"model": "m", "stream": True, "stream_options": [True]},
        {"model": "m", "stream": True, "stream_options": {"include_usage": 0}},
        {"model": "m", "stream": True, "stream_options": {"include_usage": "yes"}},
    ],
)
def test_force_include_usage_leaves_alone(request_body: dict[str, Any]) -> None:
    assert force_include_usage(request_body) == UsageRewrite(None, False)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (None, {"include_usage": True}),
        ({}, {"include_usage": True}),
        ({"include_usage": None}, {"include_usage": True}),
        ({"include_usage": False}, {"include_usage": True}),
        ({"continuous_usage_stats": True}, {"continuous_usage_stats": True, "include_usage": True}),
    ],
)
def test_force_include_usage_asks_for_usage_on_streams(options: dict[str, Any] | None, expected: object) -> None:
    request_body: dict[str, Any] = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "é"}]}
    if options is not None:
        request_body["stream_options"] = options
    body, drop_usage_only = force_include_usage(request_body)
    assert drop_usage_only and body is not None
    assert orjson.loads(body) == {**request_body, "stream_options": expected}
    assert list(orjson.loads(body)) == [*request_body, *([] if options is not None else ["stream_options"])]
    assert parse_body(body).include_usage
