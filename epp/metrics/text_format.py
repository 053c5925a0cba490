"""A reader of the Prometheus text exposition format (version 0.0.4) for the few samples the picker needs.

vLLM's ``/metrics`` is tens of kilobytes, most of it histogram buckets the picker never reads, and it is fetched
20 times a second per endpoint; ``prometheus_client``'s parser builds every family and costs milliseconds per body.
This reader follows the same grammar (comments, escaped label values, ``NaN``/``+Inf``, optional timestamps) but
decodes only lines whose metric name is wanted and skips the rest after looking at their name.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass

from tokenlabs.errors import TokenlabsError


class MetricsFormatError(TokenlabsError):
    """A wanted line that does not follow the text format."""


@dataclass(frozen=True, slots=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


_NAME_END = re.compile(r"[{ \t]")
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}


def samples(text: str, wanted: Collection[str]) -> Iterator[Sample]:
    """The samples of ``text`` whose metric name is in ``wanted``, in order."""
    # Most lines are unwanted: one C-level prefix test rejects them before any per-character work.
    prefixes = tuple(wanted)
    # Lines end at "\n" only: str.splitlines() would also cut at "\r", "\x85", "\u2028"... inside label values.
    for line in text.split("\n"):
        if not line.startswith(prefixes):
            # Leading blanks are allowed (vLLM writes none: keep the common path cheap).
            if not line or line[0] not in " \t\r":
                continue
            line = line.strip()
            if not line.startswith(prefixes):
                continue
        end = _name_end(line)
        name = line[:end]
        if name not in wanted:
            continue
        yield _sample(line, name, end)


def _name_end(line: str) -> int:
    found = _NAME_END.search(line)
    return found.start() if found else len(line)


def _sample(line: str, name: str, position: int) -> Sample:
    labels: dict[str, str] = {}
    while position < len(line) and line[position] in " \t":  # blanks may separate the name from its labels
        position += 1
    if position < len(line) and line[position] == "{":
        position = _labels(line, position + 1, labels)
    parts = line[position:].split()
    if not parts or len(parts) > 2:
        raise MetricsFormatError(f"sample {name!r} has no value: {line[:200]!r}")
    try:
        value = float(parts[0])
    except ValueError:
        raise MetricsFormatError(f"sample {name!r} has a bad value {parts[0][:50]!r}") from None
    if len(parts) == 2:
        try:
            float(parts[1])  # a timestamp: checked, not used
        except ValueError:
            raise MetricsFormatError(f"sample {name!r} has a bad timestamp {parts[1][:50]!r}") from None
    return Sample(name, labels, value)


def _labels(line: str, position: int, labels: dict[str, str]) -> int:
    """Reads ``a="x",b="y"}`` from ``position``; returns the index after ``}``."""
    length = len(line)
    while True:
        while position < length and line[position] in " \t,":
            position += 1
        if position < length and line[position] == "}":
            return position + 1
        equals = line.find("=", position)
        if equals < 0 or equals + 1 >= length or line[equals + 1] != '"':
            raise MetricsFormatError(f"malformed labels: {line[:200]!r}")
        key = line[position:equals].strip()
        position, value = _quoted(line, equals + 2)
        labels[key] = value


def _quoted(line: str, position: int) -> tuple[int, str]:
    """Reads a label value up to its closing quote; returns the index after the quote and the unescaped value."""
    chars: list[str] = []
    length = len(line)
    while position < length:
        char = line[position]
        if char == '"':
            return position + 1, "".join(chars)
        if char == "\\" and position + 1 < length:
            position += 1
            chars.append(_ESCAPES.get(line[position], "\\" + line[position]))
        else:
            chars.append(char)
        position += 1
    raise MetricsFormatError(f"unterminated label value: {line[:200]!r}")
