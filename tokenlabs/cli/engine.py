"""``tokenlabs engine``: the inference engines that sit behind the gateway.

``tokenlabs engine sim`` runs simulated vLLM workers, several in one process, for load tests and the dev stack.
"""

import argparse

from engine.sim.cli import add_arguments, run


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
