"""Making every streamed request report its usage, so that streamed tokens can be metered. Pure.

A worker streams ``usage`` only when asked (``stream_options.include_usage``). When the client did not ask, the
gateway asks in its place and removes the usage-only chunk from the response again (``SseUsageReader`` with
``drop_usage_only``), so the client receives exactly the stream it asked for.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import orjson


class UsageRewrite(NamedTuple):
    """What to send upstream, and what to do with the response stream."""

    # The request body to send in place of the client's, or None to send the client's unchanged.
    body: bytes | None
    # True exactly when ``body`` asks for usage on the client's behalf: the usage-only chunk is then the gateway's
    # and must not reach the client. Pass it to ``SseUsageReader(drop_usage_only=...)``.
    drop_usage_only: bool


_UNCHANGED = UsageRewrite(None, False)


def force_include_usage(request: Mapping[str, Any]) -> UsageRewrite:
    """Asks for streamed usage where a streamed request does not: ``request`` is the parsed request body object.

    A request with ``"stream": true`` whose ``stream_options.include_usage`` is absent, null or false gets
    ``stream_options.include_usage = true`` (other ``stream_options`` keys and all other fields kept, in order),
    re-serialised with orjson. Anything else is left as is: non-streamed requests, requests already asking for
    usage, and requests whose ``stream``, ``stream_options`` or ``include_usage`` have the wrong JSON type, which
    are validation's to refuse (``extproc.routing.parse_body``), not this function's to repair.
    """
    if request.get("stream") is not True:
        return _UNCHANGED
    options = request.get("stream_options")
    if options is None:
        options = {}
    elif not isinstance(options, dict):
        return _UNCHANGED
    include_usage = options.get("include_usage")
    # Identity tests: ``0`` equals ``False`` but is not a boolean, so it is validation's, not a "no".
    if include_usage is not None and include_usage is not False:
        return _UNCHANGED
    body = orjson.dumps({**request, "stream_options": {**options, "include_usage": True}})
    return UsageRewrite(body, True)
