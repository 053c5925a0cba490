"""Endpoint metrics: scraping each endpoint's Prometheus ``/metrics`` and the immutable snapshots it publishes."""
