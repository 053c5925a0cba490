"""``tokenlabs usage``: what tenants have used and what remains of their limits, from extproc's UsageService.

  tokenlabs usage [--tenant TENANT] [--address HOST:PORT] [-o table|json] [--config PATH]

Without --tenant: every tenant the answering extproc replica has served. The totals (requests, prompt and
completion tokens, cost) are that replica's since it started; behind a Service, the replica the connection lands
on. The windows are read from the quota store: requests and tokens used of the tier's limit in the current minute
and day, and the time until each resets. In the table "-" means no limit (its count is not shown).
-o json prints the response message in protobuf's JSON mapping.

The address defaults to the config's extproc.host and extproc.grpc_port; with --address the config is not read.

Exit status: 0 done; 1 the server is unreachable, the tenant not found, or the server failed (the message says
which); 2 usage or configuration errors.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from collections.abc import Sequence
from typing import Any

import grpc
from google.protobuf import json_format

from extproc.usage_service import SERVICE_NAME
from tokenlabs.cli.common import add_config_option, aligned, load_settings
from tokenlabs.errors import ConfigError
from tokenlabs.picker_settings import Endpoint
from tokenlabs.quota.headers import format_reset
from tokenlabs.v1 import usage_pb2, usage_pb2_grpc

RPC_TIMEOUT_S = 10.0
# A listing grows with the tenants served; gRPC's default 4 MiB would cut it off early.
MAX_RESPONSE_BYTES = 64 * 1024 * 1024
HEADER = (
    "TENANT",
    "TIER",
    "REQUESTS",
    "PROMPT",
    "COMPLETION",
    "COST_USD",
    "REQ/MIN",
    "TOK/MIN",
    "RESET/MIN",
    "REQ/DAY",
    "TOK/DAY",
    "RESET/DAY",
)

Response = usage_pb2.GetTenantUsageResponse | usage_pb2.ListTenantUsageResponse


class Failed(Exception):
    """The server could not be asked or refused the question: exit status 1."""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "usage",
        help="show tenants' usage, limits and what remains (from extproc)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_option(parser)
    parser.add_argument("--tenant", metavar="TENANT", default=None, help="one tenant id (default: every tenant)")
    parser.add_argument(
        "--address",
        metavar="HOST:PORT",
        type=_address,
        default=None,
        help="extproc's gRPC address (default: extproc.host:extproc.grpc_port from the config)",
    )
    parser.add_argument("-o", "--output", choices=("table", "json"), default="table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    address: str = args.address or load_settings(args).extproc.grpc_address
    try:
        response = asyncio.run(fetch(address, args.tenant))
    except Failed as error:
        print(f"tokenlabs usage: {error}", file=sys.stderr)
        return 1
    if args.output == "json":
        print(json_format.MessageToJson(response, always_print_fields_with_no_presence=True))
        return 0
    usages = [response.usage] if isinstance(response, usage_pb2.GetTenantUsageResponse) else list(response.tenants)
    if not usages:
        print(f"tokenlabs usage: extproc at {address} has served no tenant since it started", file=sys.stderr)
        return 0
    print(table(usages, time.time()))
    return 0


async def fetch(address: str, tenant: str | None) -> Response:
    """One tenant's usage, or every tenant's when ``tenant`` is None; ``Failed`` says why there is none."""
    options = [("grpc.max_receive_message_length", MAX_RESPONSE_BYTES)]
    async with grpc.aio.insecure_channel(address, options=options) as channel:
        # grpc_tools generates the stub without annotations.
        stub = usage_pb2_grpc.UsageServiceStub(channel)  # type: ignore[no-untyped-call]
        try:
            if tenant is None:
                listing: usage_pb2.ListTenantUsageResponse = await stub.ListTenantUsage(
                    usage_pb2.ListTenantUsageRequest(), timeout=RPC_TIMEOUT_S
                )
                return listing
            one: usage_pb2.GetTenantUsageResponse = await stub.GetTenantUsage(
                usage_pb2.GetTenantUsageRequest(tenant_id=tenant), timeout=RPC_TIMEOUT_S
            )
            return one
        except grpc.aio.AioRpcError as error:
            connected = channel.get_state() is grpc.ChannelConnectivity.READY
            raise Failed(_explain(error, address, connected)) from None


def _explain(error: Any, address: str, connected: bool) -> str:
    code = error.code()
    # UNAVAILABLE is also how the server reports a quota store it can not read: only a channel that never
    # connected means the server itself is out of reach.
    if code is grpc.StatusCode.UNAVAILABLE and not connected:
        return f"cannot reach extproc at {address}: {error.details()}"
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"extproc at {address} did not answer within {RPC_TIMEOUT_S:g}s"
    if code is grpc.StatusCode.UNIMPLEMENTED:
        return f"{address} does not serve {SERVICE_NAME}; is it a tokenlabs extproc of this version?"
    return f"extproc at {address}: {error.details()}"


def table(usages: Sequence[usage_pb2.TenantUsage], now: float) -> str:
    """One row per tenant, columns aligned; ``now`` (epoch seconds) turns each window's reset into a countdown."""
    rows = [HEADER]
    for usage in usages:
        windows = {window.window: window for window in usage.windows}
        rows.append(
            (
                usage.tenant_id,
                usage.tier or "-",
                str(usage.requests),
                str(usage.prompt_tokens),
                str(usage.completion_tokens),
                f"{usage.cost_usd:.6f}",
                *_window_cells(windows.get(usage_pb2.WINDOW_MINUTE), now),
                *_window_cells(windows.get(usage_pb2.WINDOW_DAY), now),
            )
        )
    return aligned(rows)


def _window_cells(window: usage_pb2.WindowUsage | None, now: float) -> tuple[str, str, str]:
    """Requests used/limit, tokens used/limit, time until reset; "-" where there is no limit."""
    if window is None:
        return ("-", "-", "-")
    requests = f"{window.requests}/{window.request_limit}" if window.HasField("request_limit") else "-"
    tokens = f"{window.tokens}/{window.token_limit}" if window.HasField("token_limit") else "-"
    return (requests, tokens, format_reset(max(math.ceil(window.resets_at.ToSeconds() - now), 0)))


def _address(text: str) -> str:
    try:
        Endpoint.parse(text, "--address")
    except ConfigError:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT") from None
    return text
