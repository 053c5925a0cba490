"""``tokenlabs engine``: the inference engines that sit behind the gateway.

``tokenlabs engine sim`` runs simulated vLLM workers, several in one process, for load tests and the dev stack.
``tokenlabs engine serve`` serves a model with the torch engine (self-speculative decoding) behind the same API.
``tokenlabs engine bench`` compares greedy and speculative decoding on the torch engine.
"""

import argparse

from engine.sim.cli import add_arguments, run
from tokenlabs.cli import engine_bench, engine_serve, fit_head


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    engine_parser = subparsers.add_parser(
        "engine", help="run inference engines", description="Run the inference engines behind the gateway."
    )
    engines = engine_parser.add_subparsers(dest="engine", metavar="ENGINE", required=True)
    sim_parser = engines.add_parser(
        "sim",
        help="run simulated vLLM workers",
        description="Run simulated vLLM workers: the OpenAI-compatible API and vLLM's metrics, driven by a "
        "latency model. Prints 'sim worker ready model=... url=...' per worker once it listens.",
    )
    add_arguments(sim_parser)
    sim_parser.set_defaults(func=run)
    serve_parser = engines.add_parser(
        "serve",
        help="serve a model with the torch engine",
        description="Serve a Llama-family model with the torch engine and lossless self-speculative decoding: the "
        "simulator's OpenAI-compatible API and vLLM's metrics, plus vLLM's spec-decode counters. One request "
        "decodes at a time, the others queue. Prints 'torch worker ready model=... url=...' once it listens.",
    )
    engine_serve.add_arguments(serve_parser)
    serve_parser.set_defaults(func=engine_serve.run)
    bench_parser = engines.add_parser(
        "bench",
        help="benchmark greedy vs speculative decoding",
        description="Run the greedy loop and every drafter mode of the torch engine on the same prompts, "
        "interleaved, min of repeats; write a JSON report and print a summary table.",
    )
    engine_bench.add_arguments(bench_parser)
    bench_parser.set_defaults(func=engine_bench.run)
    fit_parser = engines.add_parser(
        "fit-head",
        help="fit an exit head for early-exit drafting",
        description="Fit an exit head (lsq or distill) on the model's own greedy generations and save it as an "
        "artifact.",
    )
    fit_head.add_arguments(fit_parser)
    fit_parser.set_defaults(func=fit_head.run)
