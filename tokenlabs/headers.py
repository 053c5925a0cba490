"""The header names the gateway speaks, in one place (CONTRACT: "Headers inside the mesh")."""

from __future__ import annotations

TENANT_ID = "x-tenant-id"
TENANT_TIER = "x-tenant-tier"
# Envoy AI Gateway's name for the routed model; the route table matches on it.
MODEL = "x-ai-eg-model"
# Gateway API Inference Extension: the picked endpoint, read by the ORIGINAL_DST cluster.
DESTINATION_ENDPOINT = "x-gateway-destination-endpoint"

CREDENTIALS = ("authorization", "x-api-key")
# Set only by the gateway itself; a client-sent copy is an attempt to forge identity or routing.
GATEWAY_OWNED = (TENANT_ID, TENANT_TIER, MODEL, DESTINATION_ENDPOINT)
