"""Text to speech (``POST /v1/audio/speech``): OpenAI's request validation and deterministic audio bytes.

The audio is silence, ``MS_PER_CHARACTER`` long per input character at speed 1 and proportionally shorter or
longer at other speeds, so a client can check that it got as much audio as it asked for:

- ``wav``: a valid RIFF/WAVE file, 16-bit little-endian mono PCM at 24 kHz (the rate OpenAI uses);
- ``pcm``: the same samples without a header, as OpenAI sends them;
- ``mp3``, ``opus``, ``aac``, ``flac``: **not real codecs** — a text marker naming the format and the duration,
  padded with zero bytes to ``PLACEHOLDER_BYTES_PER_SECOND`` of audio. The content type is right and the size is
  plausible, but no decoder will play them; ask for ``wav`` to get a playable file.

The voice is not checked against a list: real speech servers each have their own voices.
"""

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from engine.sim.errors import invalid_request
from engine.sim.request_parsing import wrong_type

MAX_INPUT_CHARACTERS: Final = 4096
MIN_SPEED: Final = 0.25
MAX_SPEED: Final = 4.0
DEFAULT_FORMAT: Final = "mp3"
CONTENT_TYPES: Final = {
    "mp3": "audio/mpeg",
    "opus": "audio/opus",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}
MS_PER_CHARACTER: Final = 60.0
SAMPLE_RATE: Final = 24_000
PLACEHOLDER_BYTES_PER_SECOND: Final = 8_000  # a 64 kbit/s stream, about what the real codecs produce for speech

_SAMPLE_BYTES: Final = 2
_WAV_HEADER: Final = struct.Struct("<4sI4s4sIHHIIHH4sI")
_PCM_FORMAT_TAG: Final = 1


@dataclass(frozen=True)
class SpeechRequest:
    model: str
    input: str
    voice: str
    response_format: str
    speed: float

    @property
    def characters(self) -> int:
        """Unicode code points, the unit OpenAI limits and the gateway meters."""
        return len(self.input)

    @property
    def num_samples(self) -> int:
        return round(self.characters * MS_PER_CHARACTER / 1000 * SAMPLE_RATE / self.speed)


def parse_speech(body: Mapping[str, object]) -> SpeechRequest:
    """Validate a decoded request body as OpenAI does; every mistake is a 400 ``ApiError`` naming the field.
    ``instructions`` and other fields the simulator has no use for are accepted and ignored."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise wrong_type("model", "a non-empty string", model)
    text = body.get("input")
    if not isinstance(text, str):
        raise wrong_type("input", "a string", text)
    if not text:
        raise invalid_request("input must not be empty.", param="input")
    if len(text) > MAX_INPUT_CHARACTERS:
        raise invalid_request(
            f"input must be at most {MAX_INPUT_CHARACTERS} characters, got {len(text)}.",
            param="input",
            code="string_above_max_length",
        )
    voice = body.get("voice")
    if not isinstance(voice, str) or not voice:
        raise wrong_type("voice", "a non-empty string", voice)
    response_format = body.get("response_format")
    if response_format is None:
        response_format = DEFAULT_FORMAT
    if not isinstance(response_format, str) or response_format not in CONTENT_TYPES:
        raise invalid_request(
            f"response_format must be one of {', '.join(CONTENT_TYPES)}, got {response_format!r}.",
            param="response_format",
        )
    if body.get("stream_format") not in (None, "audio"):
        # Server-sent audio chunks would change the shape of the answer; no client of the simulator asks.
        raise invalid_request("stream_format must be 'audio'.", param="stream_format", code="unsupported_value")
    return SpeechRequest(
        model=model, input=text, voice=voice, response_format=response_format, speed=_speed(body.get("speed"))
    )


def encode_audio(request: SpeechRequest) -> bytes:
    """The answer body for ``request``, in its ``response_format`` (see the module docstring); deterministic."""
    samples = bytes(request.num_samples * _SAMPLE_BYTES)  # zero samples: silence
    if request.response_format == "pcm":
        return samples
    if request.response_format == "wav":
        return _wav_header(len(samples)) + samples
    duration_ms = round(request.num_samples * 1000 / SAMPLE_RATE)
    marker = f"tokenlabs sim placeholder, not real {request.response_format} audio: {duration_ms} ms\n".encode()
    size = round(duration_ms * PLACEHOLDER_BYTES_PER_SECOND / 1000)
    return marker + bytes(max(0, size - len(marker)))


def _speed(value: object) -> float:
    if value is None:
        return 1.0
    # bool is an int subclass; a JSON true is still not a speed.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise wrong_type("speed", "a number", value)
    if not MIN_SPEED <= value <= MAX_SPEED:
        raise invalid_request(f"speed must be between {MIN_SPEED} and {MAX_SPEED}, got {value!r}.", param="speed")
    return float(value)


def _wav_header(data_bytes: int) -> bytes:
    block_align = _SAMPLE_BYTES  # one channel
    return _WAV_HEADER.pack(
        b"RIFF",
        _WAV_HEADER.size - 8 + data_bytes,  # the RIFF size excludes its own tag and size field
        b"WAVE",
        b"fmt ",
        16,  # size of the PCM fmt chunk
        _PCM_FORMAT_TAG,
        1,
        SAMPLE_RATE,
        SAMPLE_RATE * block_align,
        block_align,
        8 * _SAMPLE_BYTES,
        b"data",
        data_bytes,
    )
