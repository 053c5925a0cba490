"""Tiny Llama models made locally and deterministically, since nothing can come from a model hub.

A randomly initialised ``LlamaForCausalLM`` (its text is noise: good for golden-token tests and plumbing, useless
for acceptance rates) and a byte-level BPE tokenizer trained on this Python's own standard library sources. The
same spec and the same Python give the same files every time. The real-vLLM tests serve one of these too
(``tests/vllm/make_model.py``), so this module imports nothing of the project beyond itself.
"""

from __future__ import annotations

import json
import sysconfig
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

BOS, EOS, PAD = "<|begin_of_text|>", "<|end_of_text|>", "<|pad|>"
# Plain role markers: vLLM applies this to every chat request, and the prompt token counts follow from it.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
MARKER = ".tiny-spec.json"


@dataclass(frozen=True)
class TinySpec:
    """Sizes of a tiny model. The defaults are the real-vLLM tests' model: vLLM's CPU attention accepts head sizes
    32, 64, 80, ... only (here 128 / 4 heads = 32). ``training_files`` stdlib sources are enough text for 2,048
    merges; they are taken in sorted order so the tokenizer is reproducible. With HF's default initialisation
    (``initializer_range`` 0.02) and tied embeddings, greedy decoding mostly repeats the last token; golden tests
    want varied continuations and raise the range (0.1 is enough)."""

    vocab_size: int = 2048
    hidden_size: int = 128
    intermediate_size: int = 256
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    max_positions: int = 2048
    training_files: int = 200
    seed: int = 20261123
    initializer_range: float = 0.02


def stdlib_texts(count: int) -> Iterator[str]:
    sources = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))[:count]
    for path in sources:
        yield path.read_text(encoding="utf-8", errors="replace")


def make_tokenizer(spec: TinySpec) -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=spec.vocab_size,
        special_tokens=[BOS, EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(stdlib_texts(spec.training_files), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=BOS, eos_token=EOS, pad_token=PAD, chat_template=CHAT_TEMPLATE
    )


def make_model(spec: TinySpec, tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    """The randomly initialised model, seeded by ``spec.seed``, in fp32."""
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads,
        max_position_embeddings=spec.max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        initializer_range=spec.initializer_range,
        dtype="float32",
    )
    torch.manual_seed(spec.seed)
    return LlamaForCausalLM(config)


def save_tiny(directory: Path, spec: TinySpec) -> None:
    """Makes the tokenizer and the model and saves both (safetensors) into ``directory``, then a marker with the
    spec, written last, so that a half-written directory is never taken for a made one."""
    tokenizer = make_tokenizer(spec)
    model = make_model(spec, tokenizer)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(directory)
    model.save_pretrained(directory, safe_serialization=True)
    (directory / MARKER).write_text(json.dumps(asdict(spec), sort_keys=True), encoding="utf-8")


def ensure_tiny(directory: Path, spec: TinySpec) -> Path:
    """``directory`` holding the model of ``spec``: reused when it was made from the same spec, made otherwise."""
    marker = directory / MARKER
    if not (marker.exists() and json.loads(marker.read_text(encoding="utf-8")) == asdict(spec)):
        save_tiny(directory, spec)
    return directory
