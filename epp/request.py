"""The scheduling view of a request body: its model and the prompt text whose prefix the workers may have cached.

extproc has already validated the body (it answers 400 for malformed ones before the picker runs), so a body the
picker cannot read is not an error here: it is scheduled without prefix information.
"""

from __future__ import annotations

from typing import Any

import orjson

from epp.scheduling.interfaces import SchedulingRequest


def scheduling_request(model: str, body: bytes) -> SchedulingRequest:
    try:
        document = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return SchedulingRequest(model)
    if not isinstance(document, dict):
        return SchedulingRequest(model)
    return SchedulingRequest(model, prompt_text(document))


def prompt_text(document: dict[str, Any]) -> str:
    """Chat messages as ``role\\ncontent\\n`` in order (text parts only), or a completion's prompt(s), or a speech
    request's input. Roles are included because chat templates put them in the token stream too."""
    messages = document.get("messages")
    if isinstance(messages, list):
        parts = []
        for message in messages:
            if isinstance(message, dict):
                parts.append(f"{message.get('role', '')}\n{_content_text(message.get('content'))}\n")
        return "".join(parts)
    prompt = document.get("prompt")
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and all(isinstance(item, str) for item in prompt):
        return "\n".join(prompt)
    speech = document.get("input")
    return speech if isinstance(speech, str) else ""


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text", "")) for part in content if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""
