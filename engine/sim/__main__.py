"""``python -m engine.sim``: the same as ``tokenlabs engine sim``, without the rest of the CLI."""

import argparse
import sys

from engine.sim.cli import add_arguments, run


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.sim", description="Run simulated vLLM workers.")
    add_arguments(parser)
    return run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
