"""How tokenlabs servers and CLIs reach the Kubernetes API: the official ``kubernetes`` client, configured the way
``kubectl`` is: in a pod from its service account, elsewhere from ``$KUBECONFIG`` or ``~/.kube/config``."""

from __future__ import annotations

import os

from kubernetes import client, config

from tokenlabs.errors import ConfigError


def core_api(kubeconfig: str | None = None, *, config_key: str) -> client.CoreV1Api:
    """A CoreV1Api for the current cluster. ``ConfigError`` naming ``config_key`` (the setting that asked for
    Kubernetes, e.g. ``tenants.source``) when no cluster configuration can be found."""
    try:
        if kubeconfig is None and "KUBERNETES_SERVICE_HOST" in os.environ:
            configuration = client.Configuration()
            config.load_incluster_config(client_configuration=configuration)
            return client.CoreV1Api(client.ApiClient(configuration))
        api_client = config.new_client_from_config(config_file=kubeconfig)
    except (config.ConfigException, OSError) as exc:
        where = kubeconfig or os.environ.get("KUBECONFIG") or config.KUBE_CONFIG_DEFAULT_LOCATION
        reason = f"needs the Kubernetes API, but there is no usable cluster configuration at {where}: {exc}"
        raise ConfigError(config_key, None, reason) from None
    return client.CoreV1Api(api_client)
