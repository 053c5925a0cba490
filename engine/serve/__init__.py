"""``tokenlabs engine serve``: the torch engine (``engine.spec``) behind the simulator's OpenAI API and vLLM metrics.

One model, one KV cache, one sequence decoded at a time with lossless self-speculative decoding; the other requests
wait in a first-come-first-served queue, which is what ``vllm:num_requests_waiting`` reports.
"""
