"""Make the tiny model the real-vLLM tests serve: ``python make_model.py DIR``, run with the vLLM venv's Python.

Nothing can be downloaded from a model hub here, so the model is made locally and deterministically: a randomly
initialised ``LlamaForCausalLM`` (its answers are noise, which is all the gateway and the picker need) and a
byte-level BPE tokenizer trained on this Python's own standard library sources. Sizes are picked to start fast and
still fit the CPU attention kernels, which accept head sizes 32, 64, 80, ... only (here 128 / 4 heads = 32).
"""

from __future__ import annotations

import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import torch  # type: ignore[import-not-found]
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # type: ignore[import-not-found]
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast  # type: ignore[import-not-found]

SEED = 20261123
VOCAB_SIZE = 2048
# Enough text for 2,048 merges; sorted, so the same Python makes the same tokenizer every time.
TRAINING_FILES = 200
BOS, EOS, PAD = "<|begin_of_text|>", "<|end_of_text|>", "<|pad|>"
# Plain role markers: vLLM applies this to every chat request, and the prompt token counts follow from it.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def stdlib_texts() -> Iterator[str]:
    sources = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))[:TRAINING_FILES]
    for path in sources:
        yield path.read_text(encoding="utf-8", errors="replace")


def make_tokenizer() -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=[BOS, EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(stdlib_texts(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=BOS, eos_token=EOS, pad_token=PAD, chat_template=CHAT_TEMPLATE
    )


def make_model(tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        dtype="float32",
    )
    torch.manual_seed(SEED)
    return LlamaForCausalLM(config)


def main(directory: Path) -> None:
    tokenizer = make_tokenizer()
    model = make_model(tokenizer)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(directory)
    model.save_pretrained(directory, safe_serialization=True)
    parameters = sum(parameter.numel() for parameter in model.parameters())
    print(f"tiny model in {directory}: {parameters:,} parameters, vocabulary {len(tokenizer)}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
