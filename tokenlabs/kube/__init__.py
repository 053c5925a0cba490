"""Reaching the Kubernetes API and following a set of objects there (``client``: the configured client;
``watch``: raw list/watch calls; ``reflector``: list + watch kept in sync on background threads)."""
