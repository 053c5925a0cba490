"""A simulated vLLM worker: the OpenAI-compatible HTTP API and vLLM's metrics, driven by a latency model.

It stands in for vLLM in load tests and the local dev stack, so the gateway, the endpoint picker and the
benchmarks can run without a GPU.
"""
