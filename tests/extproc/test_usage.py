import orjson
from hypothesis import given
from hypothesis import strategies as st

from extproc.usage import JsonUsageReader, SseUsageReader, Usage, usage_from

USAGE = {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}


def sse_stream(tokens: int, usage: bool = True) -> bytes:
    events: list[dict[str, object]] = [{"choices": [{"delta": {"content": f"t{i}"}}]} for i in range(tokens)]
    if usage:
        events.append({"choices": [], "usage": USAGE})
    return b"".join(b"data: " + orjson.dumps(event) + b"\n\n" for event in events) + b"data: [DONE]\n\n"


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


@given(cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=30))
def test_sse_reader_is_indifferent_to_chunk_boundaries(cuts: list[int]) -> None:
    stream = sse_stream(7)
    points = sorted({min(cut, len(stream)) for cut in cuts})
    reader = SseUsageReader()
    start = 0
    for point in [*points, len(stream)]:
        reader.feed(stream[start:point])
        start = point
    assert reader.last_usage == Usage(12, 5, 17)
    assert reader.data_events == 8
    assert reader.done


def test_sse_reader_without_usage_counts_content_events() -> None:
    reader = SseUsageReader()
    reader.feed(sse_stream(3, usage=False))
    assert reader.last_usage is None and reader.data_events == 3


def test_sse_reader_accepts_crlf_and_ignores_garbage() -> None:
    reader = SseUsageReader()
    reader.feed(b": comment\r\n\r\ndata: {broken\r\n\r\ndata: " + orjson.dumps({"usage": USAGE}) + b"\r\n\r\n")
    assert reader.last_usage == Usage(12, 5, 17)
