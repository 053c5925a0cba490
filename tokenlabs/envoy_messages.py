"""Builders for the Envoy messages our servers send, and readers for the ones they receive.

Envoy facts encoded here (see shared notes): ext_proc header values arrive in ``raw_value`` and must be sent in
``raw_value`` (``value`` is silently sent as an empty header); ext_authz takes plain ``value``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2
from envoy.service.auth.v3 import external_auth_pb2 as authz_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as extproc_pb2
from envoy.type.v3 import http_status_pb2
from google.protobuf import struct_pb2
from google.rpc import code_pb2, status_pb2

from tokenlabs.errors import HttpError

HeaderPairs = Iterable[tuple[str, str]]

EXT_PROC_SERVICE = "envoy.service.ext_proc.v3.ExternalProcessor"
EXT_AUTHZ_SERVICE = "envoy.service.auth.v3.Authorization"

_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD


def read_headers(header_map: base_pb2.HeaderMap) -> dict[str, str]:
    """Envoy's header map as a dict of lower-case names; ``raw_value`` wins, ``value`` is the fallback."""
    return {
        header.key: header.raw_value.decode("utf-8", "replace") if header.raw_value else header.value
        for header in header_map.headers
    }


def struct(values: Mapping[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(values)
    return message


def metadata(namespace: str, values: Mapping[str, Any]) -> struct_pb2.Struct:
    """Dynamic metadata in one filter namespace, e.g. ``envoy.lb``."""
    message = struct_pb2.Struct()
    message.update({namespace: dict(values)})
    return message


# ---- ext_proc ---------------------------------------------------------------------------------------------


def extproc_set_headers(pairs: HeaderPairs) -> list[base_pb2.HeaderValueOption]:
    return [
        base_pb2.HeaderValueOption(
            header=base_pb2.HeaderValue(key=name, raw_value=value.encode()), append_action=_OVERWRITE
        )
        for name, value in pairs
    ]


def header_mutation(set_headers: HeaderPairs = (), remove: Iterable[str] = ()) -> extproc_pb2.HeaderMutation:
    return extproc_pb2.HeaderMutation(set_headers=extproc_set_headers(set_headers), remove_headers=list(remove))


def continue_request_headers(
    set_headers: HeaderPairs = (), remove: Iterable[str] = (), clear_route_cache: bool = False
) -> extproc_pb2.ProcessingResponse:
    return extproc_pb2.ProcessingResponse(
        request_headers=extproc_pb2.HeadersResponse(
            response=_common(set_headers, remove, clear_route_cache),
        )
    )


def continue_request_body(
    set_headers: HeaderPairs = (),
    remove: Iterable[str] = (),
    clear_route_cache: bool = False,
    replace_body: bytes | None = None,
) -> extproc_pb2.ProcessingResponse:
    """``replace_body``: the new request body (BUFFERED mode); the caller also sets ``content-length`` to match."""
    common = _common(set_headers, remove, clear_route_cache)
    if replace_body is not None:
        common.body_mutation.body = replace_body
    return extproc_pb2.ProcessingResponse(request_body=extproc_pb2.BodyResponse(response=common))


def continue_response_headers(set_headers: HeaderPairs = (), skip_body: bool = False) -> extproc_pb2.ProcessingResponse:
    """``skip_body``: Envoy sends no response body for this exchange (needs ``allow_mode_override`` on the filter)."""
    response = extproc_pb2.ProcessingResponse(
        response_headers=extproc_pb2.HeadersResponse(response=_common(set_headers, (), False))
    )
    if skip_body:
        # NONE is the zero value: mark the override present explicitly, or it would not be sent at all.
        response.mode_override.SetInParent()
        response.mode_override.response_body_mode = processing_mode_pb2.ProcessingMode.NONE
    return response


def continue_response_body(replace_body: bytes | None = None) -> extproc_pb2.ProcessingResponse:
    """``replace_body``: what Envoy forwards instead of this chunk (STREAMED mode); ``None`` forwards it as is."""
    if replace_body is None:
        return _CONTINUE_RESPONSE_BODY
    return extproc_pb2.ProcessingResponse(
        response_body=extproc_pb2.BodyResponse(
            response=extproc_pb2.CommonResponse(body_mutation=extproc_pb2.BodyMutation(body=replace_body))
        )
    )


# Sent for almost every streamed chunk; immutable in practice (never modified after creation).
_CONTINUE_RESPONSE_BODY = extproc_pb2.ProcessingResponse(response_body=extproc_pb2.BodyResponse())


def _common(set_headers: HeaderPairs, remove: Iterable[str], clear_route_cache: bool) -> extproc_pb2.CommonResponse:
    set_list = list(set_headers)
    remove_list = list(remove)
    mutation = header_mutation(set_list, remove_list) if set_list or remove_list else None
    return extproc_pb2.CommonResponse(header_mutation=mutation, clear_route_cache=clear_route_cache)


def immediate_response(
    status: int, body: bytes, headers: HeaderPairs = (), details: str = ""
) -> extproc_pb2.ProcessingResponse:
    """Answer the client directly from an ext_proc stream; ``details`` lands in Envoy's access log."""
    return extproc_pb2.ProcessingResponse(
        immediate_response=extproc_pb2.ImmediateResponse(
            status=http_status_pb2.HttpStatus(code=status),
            headers=header_mutation(headers),
            body=body,
            details=details,
        )
    )


def immediate_error(error: HttpError) -> extproc_pb2.ProcessingResponse:
    return immediate_response(error.status, error.body, error.headers, details=error.code)


# ---- ext_authz --------------------------------------------------------------------------------------------


def authz_headers(pairs: HeaderPairs) -> list[base_pb2.HeaderValueOption]:
    return [
        base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key=name, value=value), append_action=_OVERWRITE)
        for name, value in pairs
    ]


def authz_allow(
    set_headers: HeaderPairs,
    remove: Iterable[str],
    response_headers: HeaderPairs,
    dynamic_metadata: Mapping[str, Any],
) -> authz_pb2.CheckResponse:
    return authz_pb2.CheckResponse(
        status=status_pb2.Status(code=code_pb2.OK),
        ok_response=authz_pb2.OkHttpResponse(
            headers=authz_headers(set_headers),
            headers_to_remove=list(remove),
            response_headers_to_add=authz_headers(response_headers),
        ),
        dynamic_metadata=struct(dynamic_metadata),
    )


_GRPC_CODE_FOR_STATUS = {
    401: code_pb2.UNAUTHENTICATED,
    429: code_pb2.RESOURCE_EXHAUSTED,
    503: code_pb2.UNAVAILABLE,
}


def authz_deny(error: HttpError) -> authz_pb2.CheckResponse:
    return authz_pb2.CheckResponse(
        status=status_pb2.Status(code=_GRPC_CODE_FOR_STATUS.get(error.status, code_pb2.PERMISSION_DENIED)),
        denied_response=authz_pb2.DeniedHttpResponse(
            status=http_status_pb2.HttpStatus(code=error.status),
            headers=authz_headers(error.headers),
            body=error.body.decode(),
        ),
    )
