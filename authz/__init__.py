"""authz: the Envoy ext_authz server — API keys from Authorino-format Secrets, tier policy, identity headers."""
