"""Prompts for ``tokenlabs engine bench``: a built-in set of ordinary chat prompts and copy-heavy prompts, and the
JSONL file format for bringing one's own.

Copy-heavy prompts (rewrite, fix, extract, reformat a given paragraph or piece of code) are where prompt lookup
shines, since much of the answer is already in the prompt; ordinary chat prompts are where it has least to copy.
Both sets were written for this benchmark; none of them is used to fit an exit head.

File format: one JSON object per line, with either ``messages`` (OpenAI chat format: a non-empty list of
``{"role": str, "content": str}``, rendered with the tokenizer's chat template and a generation prompt) or
``prompt`` (a string, tokenized as is). An optional string ``set`` names the prompt set the line is reported under
(default ``"file"``); any other key is ignored. Blank lines are skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHAT = "chat"
COPY = "copy"
FILE = "file"


@dataclass(frozen=True)
class BenchPrompt:
    """One prompt: exactly one of ``messages`` (chat format) and ``text`` (a raw prompt) is set."""

    set_name: str
    messages: tuple[dict[str, str], ...] | None = None
    text: str | None = None


class PromptFileError(ValueError):
    """A prompts file that cannot be read; the message names the file and line."""


def _user(set_name: str, content: str) -> BenchPrompt:
    return BenchPrompt(set_name, messages=({"role": "user", "content": content},))


CHAT_QUESTIONS = (
    "What is Kubernetes? Explain it to a new developer.",
    "Give me three tips for sleeping better.",
    "Why is the sky blue?",
    "Write a short poem about autumn leaves.",
    "How do I make a good cup of tea?",
    "What are the main differences between Python and JavaScript?",
    "Suggest a name for a small bakery and explain why you chose it.",
    "What should I pack for a weekend hiking trip?",
    "Explain what a hash table is and when to use one.",
    "Write a friendly email inviting my team to a lunch on Friday.",
    "What causes the seasons on Earth?",
    "How can I stay focused while working from home?",
)

_PARAGRAPH_TYPOS = (
    "Our compnay was founded in 2009 by two freinds who wanted to make cofee better. We started with one small "
    "shop in Portland and now we have twelve stores acros the west coast. Every bean we sell is roasted in our "
    "own facilty, and we beleive that good cofee should be affordable for everyone."
)
_PARAGRAPH_MEETING = (
    "The quarterly planning meeting will take place on March 14 at 10:00 in room 4B. Maria Lopez will present the "
    "sales figures, Tom Becker will cover the hiring plan, and Aisha Khan will discuss the new office lease. "
    "Please send questions to planning@example.com before March 12."
)
_CODE_BUG = (
    "def average(values):\n    total = 0\n    for v in values:\n        total += v\n    return total / len(value)\n"
)
_CODE_JS = (
    "function greet(name) {\n  var message = 'Hello, ' + name + '!';\n  console.log(message);\n  return message;\n}\n"
)
_INVENTORY = "apples: 12, bananas: 7, cherries: 30, dates: 5, elderberries: 18"
_ADDRESSES = (
    "John Smith lives at 12 Oak Street, Springfield. Mary Jones lives at 48 Pine Avenue, Riverton. "
    "Ahmed Ali lives at 7 Elm Road, Lakeside."
)

COPY_TASKS = (
    f"Fix the spelling mistakes in this paragraph and return the corrected paragraph:\n\n{_PARAGRAPH_TYPOS}",
    f"Rewrite this paragraph in a more formal tone:\n\n{_PARAGRAPH_MEETING}",
    f"Extract every person's name and their topic from this text as a bulleted list:\n\n{_PARAGRAPH_MEETING}",
    f"Fix the bug in this Python function and return the whole corrected function:\n\n{_CODE_BUG}",
    f"Add a docstring to this Python function and return the whole function:\n\n{_CODE_BUG}",
    f"Rewrite this JavaScript function using const and a template string:\n\n{_CODE_JS}",
    f"Reformat this inventory as a Markdown table with columns Fruit and Count:\n\n{_INVENTORY}",
    f"Convert this inventory to a JSON object:\n\n{_INVENTORY}",
    f"Extract the names and addresses from this text as a list, one per line:\n\n{_ADDRESSES}",
    f"Repeat this paragraph, replacing 'cofee' with 'tea':\n\n{_PARAGRAPH_TYPOS}",
    f"Split this paragraph into one sentence per line:\n\n{_PARAGRAPH_MEETING}",
    f"Rename the function to compute_mean and the variable total to running_sum:\n\n{_CODE_BUG}",
)


def builtin_prompts() -> list[BenchPrompt]:
    """The built-in prompts: the chat set, then the copy-heavy set (12 each), as single user messages."""
    return [_user(CHAT, q) for q in CHAT_QUESTIONS] + [_user(COPY, t) for t in COPY_TASKS]


def load_prompts(path: Path) -> list[BenchPrompt]:
    """Reads a JSONL prompts file (see the module docstring). Raises :class:`PromptFileError` naming the file and
    the 1-based line for a line that is not a JSON object, lacks both ``messages`` and ``prompt`` or has both, or
    holds a malformed value; and for a file with no prompts at all."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise PromptFileError(f"{path}: cannot read: {error}") from error
    prompts = parse_lines(lines, str(path))
    if not prompts:
        raise PromptFileError(f"{path}: no prompts")
    return prompts


def parse_lines(lines: Iterable[str], source: str = "<prompts>") -> list[BenchPrompt]:
    """The prompts of JSONL ``lines`` (blank lines skipped); errors as :func:`load_prompts`."""
    prompts = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            prompts.append(_parse_object(line))
        except ValueError as error:
            raise PromptFileError(f"{source}:{number}: {error}") from error
    return prompts


def _parse_object(line: str) -> BenchPrompt:
    try:
        value: Any = json.loads(line)
    except json.JSONDecodeError as error:
        raise ValueError(f"not valid JSON ({error.msg})") from None
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    set_name = value.get("set", FILE)
    if not isinstance(set_name, str) or not set_name:
        raise ValueError("'set' must be a non-empty string")
    has_messages, has_prompt = "messages" in value, "prompt" in value
    if has_messages == has_prompt:
        raise ValueError("expected exactly one of 'messages' and 'prompt'")
    if has_prompt:
        text = value["prompt"]
        if not isinstance(text, str) or not text:
            raise ValueError("'prompt' must be a non-empty string")
        return BenchPrompt(set_name, text=text)
    return BenchPrompt(set_name, messages=_messages(value["messages"]))


def _messages(value: Any) -> tuple[dict[str, str], ...]:
    if not isinstance(value, list) or not value:
        raise ValueError("'messages' must be a non-empty list")
    messages = []
    for index, message in enumerate(value):
        if not isinstance(message, dict):
            raise ValueError(f"messages[{index}] must be an object")
        role, content = message.get("role"), message.get("content")
        if not isinstance(role, str) or not isinstance(content, str):
            raise ValueError(f"messages[{index}] needs string 'role' and 'content'")
        messages.append({"role": role, "content": content})
    return tuple(messages)
