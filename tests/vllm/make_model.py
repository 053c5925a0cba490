"""Make the tiny model the real-vLLM tests serve: ``python -m tests.vllm.make_model DIR`` from the repository root,
run with the vLLM venv's Python (the project itself is not installed there; ``-m`` puts the root on the path).

Nothing can be downloaded from a model hub here, so the model is made locally and deterministically by
:mod:`engine.spec.models.tiny`: a randomly initialised Llama (its answers are noise, which is all the gateway and the
picker need) and a byte-level BPE tokenizer trained on this Python's standard library sources.
"""

from __future__ import annotations

import sys
from pathlib import Path

from engine.spec.models.tiny import TinySpec, save_tiny


def main(directory: Path) -> None:
    save_tiny(directory, TinySpec())
    print(f"tiny model in {directory}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
