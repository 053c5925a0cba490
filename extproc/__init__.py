"""extproc: the Envoy ext_proc server for model routing, token accounting and metering."""
