"""POST /v1/audio/speech over real HTTP: OpenAI's validation, deterministic audio, latency and vLLM metrics."""

import asyncio
import io
import time
import wave
from collections.abc import Mapping

import aiohttp
import openai
import pytest

from engine.sim.config import SimConfig
from engine.sim.engine_core import Clock, Sleep
from engine.sim.speech import MAX_INPUT_CHARACTERS, MIN_SPEED, SAMPLE_RATE, parse_speech
from engine.sim.worker import SimWorker
from tests.engine.sim.support import FAST_CONFIG, HeldSleep, instant_sleep, served, wait_until
from tests.helpers import metric_samples

SPEECH = "/v1/audio/speech"
MODEL = frozenset({("model_name", "tts")})
# 60 ms of 24 kHz audio per character at speed 1.
SAMPLES_PER_CHARACTER = SAMPLE_RATE * 60 // 1000


def make_worker(
    config: SimConfig = FAST_CONFIG, *, clock: Clock = time.monotonic, sleep: Sleep = instant_sleep
) -> SimWorker:
    return SimWorker(("tts", "tts-alias"), config, clock=clock, sleep=sleep)


def speech(text: object = "Hello world", **fields: object) -> dict[str, object]:
    return {"model": "tts", "input": text, "voice": "alloy", **fields}


async def post_speech(http: aiohttp.ClientSession, base: str, body: Mapping[str, object]) -> tuple[int, str, bytes]:
    async with http.post(base + SPEECH, json=body) as response:
        return response.status, response.headers["Content-Type"], await response.read()


def read_wav(audio: bytes) -> tuple[tuple[int, int, int], bytes]:
    """((channels, bytes per sample, frame rate), the frames) of a WAV file; fails on anything else."""
    with wave.open(io.BytesIO(audio)) as reader:
        return (reader.getnchannels(), reader.getsampwidth(), reader.getframerate()), reader.readframes(-1)


def wav_frames(audio: bytes) -> int:
    return len(read_wav(audio)[1]) // 2


async def test_wav_is_a_valid_file_of_silence_60_ms_per_character(http: aiohttp.ClientSession) -> None:
    async with served(make_worker()) as base:
        status, content_type, audio = await post_speech(http, base, speech("Hello world", response_format="wav"))

    assert (status, content_type) == (200, "audio/wav")
    shape, frames = read_wav(audio)
    assert shape == (1, 2, SAMPLE_RATE)
    assert len(frames) == 2 * 11 * SAMPLES_PER_CHARACTER  # 0.66 s
    assert frames == bytes(len(frames))


@pytest.mark.parametrize(("speed", "expected_frames"), [(1, 1440 * 4), (2.0, 720 * 4), (0.25, 5760 * 4), (4, 360 * 4)])
async def test_speed_scales_the_duration(http: aiohttp.ClientSession, speed: float, expected_frames: int) -> None:
    async with served(make_worker()) as base:
        _, _, audio = await post_speech(http, base, speech("abcd", response_format="wav", speed=speed))

    assert wav_frames(audio) == expected_frames


async def test_characters_are_unicode_code_points(http: aiohttp.ClientSession) -> None:
    # Six code points, ten bytes of UTF-8 and seven UTF-16 units.
    async with served(make_worker()) as base:
        _, _, audio = await post_speech(http, base, speech("héllo👋", response_format="wav"))

    assert wav_frames(audio) == 6 * SAMPLES_PER_CHARACTER


async def test_pcm_is_the_wav_samples_without_a_header(http: aiohttp.ClientSession) -> None:
    async with served(make_worker()) as base:
        _, _, wav_audio = await post_speech(http, base, speech(response_format="wav"))
        status, content_type, pcm_audio = await post_speech(http, base, speech(response_format="pcm"))

    assert (status, content_type) == (200, "audio/pcm")
    assert pcm_audio == read_wav(wav_audio)[1]


@pytest.mark.parametrize(
    ("response_format", "content_type"),
    [(None, "audio/mpeg"), ("mp3", "audio/mpeg"), ("opus", "audio/opus"), ("aac", "audio/aac"), ("flac", "audio/flac")],
)
async def test_compressed_formats_are_deterministic_placeholders_sized_by_duration(
    http: aiohttp.ClientSession, response_format: str | None, content_type: str
) -> None:
    body = speech("x" * 100) if response_format is None else speech("x" * 100, response_format=response_format)
    async with served(make_worker()) as base:
        first = await post_speech(http, base, body)
        second = await post_speech(http, base, body)

    assert first == second  # status, content type and bytes
    status, received_type, audio = first
    assert (status, received_type) == (200, content_type)
    assert audio.startswith(b"tokenlabs sim placeholder, not real ")
    assert len(audio) == 6 * 8000  # 6 s of audio at a nominal 64 kbit/s


async def test_aliases_are_served_and_the_longest_input_is_accepted(http: aiohttp.ClientSession) -> None:
    async with served(make_worker()) as base:
        status, _, _ = await post_speech(http, base, {**speech("a" * MAX_INPUT_CHARACTERS), "model": "tts-alias"})

    assert status == 200


# (body, expected param, expected code)
BAD_SPEECH = [
    ({"input": "hi", "voice": "alloy"}, "model", "missing_required_parameter"),
    (speech(model=7), "model", "invalid_type"),
    (speech(model=""), "model", "invalid_type"),
    ({"model": "tts", "voice": "alloy"}, "input", "missing_required_parameter"),
    (speech(None), "input", "missing_required_parameter"),
    (speech(["hi"]), "input", "invalid_type"),
    (speech(""), "input", "invalid_value"),
    (speech("a" * (MAX_INPUT_CHARACTERS + 1)), "input", "string_above_max_length"),
    ({"model": "tts", "input": "hi"}, "voice", "missing_required_parameter"),
    (speech(voice=3), "voice", "invalid_type"),
    (speech(response_format="ogg"), "response_format", "invalid_value"),
    (speech(response_format="MP3"), "response_format", "invalid_value"),
    (speech(response_format=["wav"]), "response_format", "invalid_value"),
    (speech(speed=0.2), "speed", "invalid_value"),
    (speech(speed=4.01), "speed", "invalid_value"),
    (speech(speed=0), "speed", "invalid_value"),
    (speech(speed="1"), "speed", "invalid_type"),
    (speech(speed=True), "speed", "invalid_type"),
    (speech(stream_format="sse"), "stream_format", "unsupported_value"),
]


@pytest.mark.parametrize(("body", "param", "code"), BAD_SPEECH)
async def test_bad_requests_are_400_with_an_openai_error(
    http: aiohttp.ClientSession, body: dict[str, object], param: str, code: str
) -> None:
    async with served(make_worker()) as base, http.post(base + SPEECH, json=body) as response:
        error = (await response.json())["error"]

    assert response.status == 400
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code)
    assert error["message"]


@pytest.mark.parametrize("raw", [b"{not json", b"[1]", b"", b'{"model": "tts", "input": "\xff", "voice": "a"}'])
async def test_undecodable_bodies_are_400_invalid_json(http: aiohttp.ClientSession, raw: bytes) -> None:
    async with served(make_worker()) as base, http.post(base + SPEECH, data=raw) as response:
        error = (await response.json())["error"]

    assert (response.status, error["code"]) == (400, "invalid_json")


async def test_unknown_model_is_404_model_not_found(http: aiohttp.ClientSession) -> None:
    async with served(make_worker()) as base, http.post(base + SPEECH, json=speech(model="tts-1")) as response:
        error = (await response.json())["error"]

    assert response.status == 404
    assert (error["code"], error["param"]) == ("model_not_found", "model")


async def test_latency_is_a_base_plus_a_cost_per_character(http: aiohttp.ClientSession) -> None:
    now = [50.0]
    slept: list[float] = []

    async def sleep_on_fake_clock(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    config = SimConfig(speech_base_ms=20, speech_per_character_ms=0.5)
    worker = make_worker(config, clock=lambda: now[0], sleep=sleep_on_fake_clock)
    async with served(worker) as base:
        await post_speech(http, base, speech("a" * 100))
        async with http.get(base + "/metrics") as response:
            samples = metric_samples(await response.text())

    assert slept == [pytest.approx(0.070)]  # 20 ms + 100 * 0.5 ms
    assert samples[("vllm:e2e_request_latency_seconds_sum", MODEL)] == pytest.approx(0.070)


async def test_zero_latency_config_answers_the_longest_input_at_once() -> None:
    worker = make_worker(SimConfig(speech_base_ms=0, speech_per_character_ms=0), sleep=asyncio.sleep)
    request = parse_speech(speech("a" * MAX_INPUT_CHARACTERS, response_format="wav", speed=MIN_SPEED))
    started = time.perf_counter()

    audio = await worker.synthesize(request)

    assert time.perf_counter() - started < 0.5
    assert wav_frames(audio) == MAX_INPUT_CHARACTERS * SAMPLES_PER_CHARACTER * 4  # 16 min 22 s of silence


async def test_speech_requests_hold_a_batching_slot_and_count_as_successes(http: aiohttp.ClientSession) -> None:
    sleep = HeldSleep()
    worker = make_worker(SimConfig(max_num_seqs=1), sleep=sleep)
    async with served(worker) as base:
        requests = [asyncio.create_task(post_speech(http, base, speech())) for _ in range(2)]
        await wait_until(lambda: worker.scheduler.num_waiting == 1)
        async with http.get(base + "/metrics") as response:
            in_flight = metric_samples(await response.text())
        sleep.release()
        results = await asyncio.gather(*requests)
        async with http.get(base + "/metrics") as response:
            after = metric_samples(await response.text())

    assert (in_flight[("vllm:num_requests_running", MODEL)], in_flight[("vllm:num_requests_waiting", MODEL)]) == (1, 1)
    assert in_flight[("vllm:kv_cache_usage_perc", MODEL)] == 0.0  # no KV blocks for speech
    assert [status for status, _, _ in results] == [200, 200]
    assert after[("vllm:request_success_total", MODEL | {("finished_reason", "stop")})] == 2.0
    assert after[("vllm:e2e_request_latency_seconds_count", MODEL)] == 2.0
    assert after[("vllm:request_queue_time_seconds_count", MODEL)] == 2.0
    # Speech has no tokens: the token counters and the time to first token stay untouched.
    assert after[("vllm:prompt_tokens_total", MODEL)] == 0.0
    assert after[("vllm:generation_tokens_total", MODEL)] == 0.0
    assert after[("vllm:time_to_first_token_seconds_count", MODEL)] == 0.0
    assert after[("vllm:num_requests_running", MODEL)] == 0.0


async def test_openai_sdk_reads_the_audio() -> None:
    async with (
        served(make_worker()) as base,
        openai.AsyncOpenAI(base_url=base + "/v1", api_key="x", max_retries=0) as client,
    ):
        response = await client.audio.speech.create(model="tts", voice="alloy", input="Hi there", response_format="wav")

    assert response.response.headers["content-type"] == "audio/wav"
    assert wav_frames(response.content) == 8 * SAMPLES_PER_CHARACTER
