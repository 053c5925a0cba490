"""``tokenlabs tenants``: API keys as tenant Secrets (Authorino format), in Kubernetes or in the local directory.

  tokenlabs tenants create NAME --tier TIER [--tenant-id ID] [-o yaml]
  tokenlabs tenants rotate NAME [-o yaml]
  tokenlabs tenants set-tier NAME TIER [-o yaml]
  tokenlabs tenants revoke NAME
  tokenlabs tenants list [-o table|yaml|json]

NAME is the tenant name (a lowercase DNS label); its Secret is tenant-NAME, and the tenant id defaults to NAME.
Where the Secrets live comes from the config's `tenants` section (source, directory, namespace, label_selector);
--source, --directory (implies --source directory), --namespace and --kubeconfig override it. Tiers come from the
config's `tiers`. In Kubernetes the key is stored base64 in data.api_key; in files and printed manifests it is in
stringData.api_key.

Keys: create and rotate print the new key exactly once, on stdout (a note on stderr says it will not be shown
again); nothing else prints a key. With -o yaml, create and rotate print the Secret manifest holding the new key
instead of applying it (for `kubectl apply -f -`, or to save in the tenants directory); set-tier -o yaml prints the
Secret without any key, which changes only its metadata when applied. revoke deletes the Secret: the key is dead.

Exit status: 0 done; 1 not found, already exists, or a Kubernetes API or file error (the message says which);
2 usage or configuration errors.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable, Sequence
from datetime import UTC
from pathlib import Path
from typing import Any

import yaml

from authz.admin import AdminError, TenantRecord, TenantStore
from authz.admin.directory import DirectoryStore
from authz.admin.kubernetes import KubernetesStore
from authz.admin.manifest import check_tenant_id, manifest_of, new_key, secret_name, tenant_secret
from tokenlabs.cli.common import add_config_option, aligned, load_settings
from tokenlabs.errors import ConfigError
from tokenlabs.kube.client import core_api
from tokenlabs.settings import Settings, TenantSourceSettings

Handler = Callable[[argparse.Namespace, Settings, TenantSourceSettings], int]


class UsageError(Exception):
    """A wrong argument only the config can reveal (an unknown tier, conflicting options): exit status 2."""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "tenants",
        help="create, rotate, re-tier, revoke and list API keys (tenant Secrets)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="tenants_action", metavar="ACTION", required=True)
    common = _common_options()

    create = actions.add_parser("create", parents=[common], help="create a tenant Secret and print its new key")
    create.add_argument("name", metavar="NAME", type=_tenant_name, help="tenant name; the Secret is tenant-NAME")
    create.add_argument("--tier", required=True, help="one of the config's tiers")
    create.add_argument("--tenant-id", type=_tenant_id, default=None, help="tenant id (default: NAME)")
    create.add_argument("-o", "--output", choices=("yaml",), help="print the manifest (with the key), apply nothing")
    create.set_defaults(func=run, handler=_create)

    rotate = actions.add_parser("rotate", parents=[common], help="replace a tenant's key; the old one dies at once")
    rotate.add_argument("name", metavar="NAME", type=_tenant_name)
    rotate.add_argument("-o", "--output", choices=("yaml",), help="print the manifest (with the key), apply nothing")
    rotate.set_defaults(func=run, handler=_rotate)

    set_tier = actions.add_parser("set-tier", parents=[common], help="move a tenant to another tier")
    set_tier.add_argument("name", metavar="NAME", type=_tenant_name)
    set_tier.add_argument("tier", metavar="TIER", help="one of the config's tiers")
    set_tier.add_argument("-o", "--output", choices=("yaml",), help="print the manifest (no key), apply nothing")
    set_tier.set_defaults(func=run, handler=_set_tier)

    revoke = actions.add_parser("revoke", parents=[common], help="delete a tenant Secret; its key dies at once")
    revoke.add_argument("name", metavar="NAME", type=_tenant_name)
    revoke.set_defaults(func=run, handler=_revoke)

    listing = actions.add_parser("list", parents=[common], help="list tenant Secrets, live or refused (no keys)")
    listing.add_argument("-o", "--output", choices=("table", "yaml", "json"), default="table")
    listing.set_defaults(func=run, handler=_list)


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    add_config_option(common)
    common.add_argument(
        "--source", choices=("directory", "kubernetes"), default=None, help="where the Secrets are (tenants.source)"
    )
    common.add_argument(
        "--directory", type=Path, default=None, help="tenants directory (tenants.directory; implies --source directory)"
    )
    common.add_argument(
        "--namespace", default=None, help="the Secrets' namespace, also written into files (tenants.namespace)"
    )
    common.add_argument(
        "--kubeconfig", metavar="PATH", default=None, help="default: a pod's service account, else $KUBECONFIG"
    )
    return common


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    handler: Handler = args.handler
    try:
        return handler(args, settings, _source(args, settings.tenants))
    except (UsageError, ConfigError) as error:
        _error(args, error)
        return 2
    except AdminError as error:
        _error(args, error)
        return 1


def _create(args: argparse.Namespace, settings: Settings, source: TenantSourceSettings) -> int:
    tier = _known_tier(settings, args.tier)
    tenant_id = args.tenant_id or args.name
    key = new_key()
    document = tenant_secret(args.name, tenant_id=tenant_id, tier=tier, key=key, namespace=source.namespace)
    secret = document["metadata"]["name"]
    if args.output == "yaml":
        _note(f"manifest for {secret} printed, nothing applied; its API key will not be shown again")
        _print_yaml(document)
        return 0
    store = _open(args, source)
    store.create(document)
    _note(
        f"created {secret} in {store.location} (tenant {tenant_id}, tier {tier}); "
        "its API key follows and will not be shown again"
    )
    print(key)
    return 0


def _rotate(args: argparse.Namespace, settings: Settings, source: TenantSourceSettings) -> int:
    secret = secret_name(args.name)
    store = _open(args, source)
    key = new_key()
    if args.output == "yaml":
        document = manifest_of(store.get(secret), key=key)
        _note(
            f"manifest for {secret} with a new key printed, nothing applied (the old key stays live until it "
            "is); the new key will not be shown again"
        )
        _print_yaml(document)
        return 0
    store.set_key(secret, key)
    _note(f"rotated {secret} in {store.location}: the old key is dead; the new key follows and will not be shown again")
    print(key)
    return 0


def _set_tier(args: argparse.Namespace, settings: Settings, source: TenantSourceSettings) -> int:
    tier = _known_tier(settings, args.tier)
    secret = secret_name(args.name)
    store = _open(args, source)
    if args.output == "yaml":
        _note(f"manifest for {secret} printed without its key, nothing applied")
        _print_yaml(manifest_of(store.get(secret), key=None, tier=tier))
        return 0
    store.set_tier(secret, tier)
    print(f"{secret} in {store.location}: tier set to {tier}")
    return 0


def _revoke(args: argparse.Namespace, settings: Settings, source: TenantSourceSettings) -> int:
    secret = secret_name(args.name)
    store = _open(args, source)
    store.delete(secret)
    print(f"{secret} deleted from {store.location}; its key is dead")
    return 0


def _list(args: argparse.Namespace, settings: Settings, source: TenantSourceSettings) -> int:
    store = _open(args, source)
    found = sorted(store.list_tenants(frozenset(settings.tiers)), key=lambda record: record.secret)
    if args.output == "json":
        print(json.dumps([_as_dict(record) for record in found], indent=2))
    elif args.output == "yaml":
        _print_yaml([_as_dict(record) for record in found])
    elif not found:
        _note(f"no tenant Secrets in {store.location}")
    else:
        print(_table(found))
    return 0


def _source(args: argparse.Namespace, tenants: TenantSourceSettings) -> TenantSourceSettings:
    if args.directory is not None and args.source == "kubernetes":
        raise UsageError("--directory applies to --source directory only")
    return dataclasses.replace(
        tenants,
        kind=args.source or ("directory" if args.directory is not None else tenants.kind),
        directory=args.directory or tenants.directory,
        namespace=args.namespace or tenants.namespace,
    )


def _open(args: argparse.Namespace, source: TenantSourceSettings) -> TenantStore:
    if source.kind == "kubernetes":
        return KubernetesStore(
            core_api(args.kubeconfig, config_key="tenants.source"), source.namespace, source.label_selector
        )
    return DirectoryStore(source.directory, source.namespace)


def _known_tier(settings: Settings, tier: str) -> str:
    if tier not in settings.tiers:
        where = f" in {settings.source}" if settings.source is not None else ""
        raise UsageError(f"unknown tier {tier!r}; the tiers configured{where} are: {', '.join(settings.tiers)}")
    return tier


def _tenant_name(text: str) -> str:
    try:
        secret_name(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def _tenant_id(text: str) -> str:
    try:
        return check_tenant_id(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _as_dict(record: TenantRecord) -> dict[str, Any]:
    return {
        "name": record.name,
        "secret": record.secret,
        "tenant": record.tenant_id,
        "tier": record.tier,
        "status": "live" if record.live else "refused",
        "reason": record.reason or None,
        "created": _created(record),
    }


def _table(found: Sequence[TenantRecord]) -> str:
    rows = [("NAME", "SECRET", "TENANT", "TIER", "STATUS", "CREATED", "REASON")]
    for record in found:
        rows.append(
            (
                record.name or "-",
                record.secret,
                record.tenant_id or "-",
                record.tier or "-",
                "live" if record.live else "refused",
                _created(record) or "-",
                record.reason,
            )
        )
    return aligned(rows)


def _created(record: TenantRecord) -> str | None:
    return None if record.created is None else record.created.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _print_yaml(document: Any) -> None:
    print(yaml.safe_dump(document, sort_keys=False, allow_unicode=True), end="")


def _note(message: str) -> None:
    print(f"tokenlabs tenants: {message}", file=sys.stderr)


def _error(args: argparse.Namespace, error: Exception) -> None:
    print(f"tokenlabs tenants {args.tenants_action}: {error}", file=sys.stderr)
