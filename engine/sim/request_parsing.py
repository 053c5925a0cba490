"""Validation of completion requests into typed values; every client mistake becomes a 400 ``ApiError``.

Fields the simulator has no use for (temperature, top_p, stop, ...) are accepted and ignored, as a real model
server would accept them; fields that would change the shape of the answer (``n``) are checked.
"""

from collections.abc import Mapping
from dataclasses import dataclass

import orjson

from engine.sim.errors import ApiError, invalid_request
from engine.sim.tokens import ChatMessage, ContentPart, ImagePart, TextPart


@dataclass(frozen=True)
class GenerationOptions:
    model: str
    max_tokens: int | None
    stream: bool
    include_usage: bool


@dataclass(frozen=True)
class ChatCompletionRequest:
    options: GenerationOptions
    messages: tuple[ChatMessage, ...]


@dataclass(frozen=True)
class CompletionRequest:
    options: GenerationOptions
    prompts: tuple[str, ...]


def parse_json_object(raw: bytes) -> Mapping[str, object]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise invalid_request(f"The request body is not valid JSON: {error}", code="invalid_json") from error
    if not isinstance(body, dict):
        raise invalid_request("The request body must be a JSON object.", code="invalid_json")
    return body


def parse_chat_completion(body: Mapping[str, object]) -> ChatCompletionRequest:
    options = _generation_options(body, max_tokens_params=("max_completion_tokens", "max_tokens"))
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise wrong_type("messages", "a non-empty array of messages", messages)
    return ChatCompletionRequest(
        options=options,
        messages=tuple(_chat_message(message, f"messages[{index}]") for index, message in enumerate(messages)),
    )


def parse_completion(body: Mapping[str, object]) -> CompletionRequest:
    options = _generation_options(body, max_tokens_params=("max_tokens",))
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        prompts: tuple[str, ...] = (prompt,)
    elif isinstance(prompt, list) and prompt and all(isinstance(item, str) for item in prompt):
        prompts = tuple(prompt)
    else:
        raise wrong_type("prompt", "a string or a non-empty array of strings", prompt)
    return CompletionRequest(options=options, prompts=prompts)


def check_context_length(prompt_length: int, max_tokens: int | None, max_model_len: int, param: str) -> None:
    """Reject what vLLM rejects: a prompt that leaves no room, or a max_tokens that would overflow the context."""
    requested = prompt_length + (max_tokens if max_tokens is not None else 1)
    if requested > max_model_len:
        raise invalid_request(
            f"This model's maximum context length is {max_model_len} tokens. However, you requested "
            f"{requested} tokens ({prompt_length} in the prompt, {requested - prompt_length} for the "
            "completion). Please reduce the prompt or the completion length.",
            param=param,
            code="context_length_exceeded",
        )


def _generation_options(body: Mapping[str, object], max_tokens_params: tuple[str, ...]) -> GenerationOptions:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise wrong_type("model", "a non-empty string", model)
    n = body.get("n")
    if n is not None and n != 1:
        # Several choices per prompt would need several sequences each; no client of the simulator asks.
        raise invalid_request(f"n must be 1, got {n!r}.", param="n", code="unsupported_value")
    stream = _optional_bool(body, "stream")
    stream_options = body.get("stream_options")
    if stream_options is not None and not stream:
        raise invalid_request("stream_options is only allowed when stream is true.", param="stream_options")
    if stream_options is not None and not isinstance(stream_options, dict):
        raise wrong_type("stream_options", "an object", stream_options)
    max_tokens = None
    for name in max_tokens_params:
        max_tokens = _optional_positive_int(body, name)
        if max_tokens is not None:
            break
    return GenerationOptions(
        model=model,
        max_tokens=max_tokens,
        stream=stream,
        include_usage=_optional_bool(stream_options or {}, "include_usage", "stream_options.include_usage"),
    )


def _chat_message(message: object, where: str) -> ChatMessage:
    if not isinstance(message, dict):
        raise wrong_type(where, "an object", message)
    role = message.get("role")
    if not isinstance(role, str) or not role:
        raise wrong_type(f"{where}.role", "a non-empty string", role)
    content = message.get("content")
    if content is None:
        # An assistant turn that only called tools has no content.
        parts: tuple[ContentPart, ...] = ()
    elif isinstance(content, str):
        parts = (TextPart(content),)
    elif isinstance(content, list):
        parts = tuple(_content_part(part, f"{where}.content[{index}]") for index, part in enumerate(content))
    else:
        raise wrong_type(f"{where}.content", "a string or an array of content parts", content)
    return ChatMessage(role=role, content=parts)


def _content_part(part: object, where: str) -> ContentPart:
    if not isinstance(part, dict):
        raise wrong_type(where, "an object", part)
    kind = part.get("type")
    if kind == "text":
        text = part.get("text")
        if not isinstance(text, str):
            raise wrong_type(f"{where}.text", "a string", text)
        return TextPart(text)
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else None
        if not isinstance(url, str):
            raise wrong_type(f"{where}.image_url.url", "a string", url)
        return ImagePart(url)
    raise invalid_request(f"{where}.type must be 'text' or 'image_url', got {kind!r}.", param=f"{where}.type")


def _optional_bool(body: Mapping[str, object], name: str, param: str | None = None) -> bool:
    value = body.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise wrong_type(param or name, "a boolean", value)
    return value


def _optional_positive_int(body: Mapping[str, object], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    # bool is an int subclass; a JSON true is still not a token count.
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise wrong_type(name, "an integer >= 1", value)
    return value


def wrong_type(param: str, expected: str, value: object) -> ApiError:
    """The 400 for a field that is missing (JSON ``null`` counts as missing) or not of the expected type."""
    if value is None:
        return invalid_request(
            f"{param} is required and must be {expected}.", param=param, code="missing_required_parameter"
        )
    return invalid_request(f"{param} must be {expected}, got {_describe(value)}.", param=param, code="invalid_type")


def _describe(value: object) -> str:
    text = orjson.dumps(value).decode()
    return text if len(text) <= 40 else f"{text[:37]}..."
