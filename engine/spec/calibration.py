"""Calibration data for exit heads: chat prompts made locally, the model's own greedy continuations of them, and
the hidden states at the exit layer and the last layer along those continuations.

Prompts come from templates (task type, topic and phrasing). The whole set of combinations is shuffled once with a
fixed seed; the first ``heldout`` of the shuffled list are the held-out prompts and the training prompts come after
them, so the two never overlap and asking for more training prompts never changes the held-out set.

Generating continuations is the slow part (a full greedy decode per prompt), so each one is appended to a JSONL
cache as soon as it is made, keyed by the prompt text; a later run (more prompts, or after an interruption) reuses
what is there.
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import torch

from engine.spec.greedy import greedy_generate
from engine.spec.heads import Readout, States
from engine.spec.runner import Runner
from engine.spec.weights import ModelWeights

SEED = 20261123

TOPICS = (
    "Kubernetes", "photosynthesis", "the French Revolution", "black holes", "compound interest", "vaccines",
    "the water cycle", "TCP handshakes", "sourdough bread", "climate change", "the stock market", "volcanoes",
    "machine learning", "the Roman Empire", "electric cars", "sleep", "coffee", "the immune system", "recycling",
    "public speaking", "chess openings", "solar panels", "time management", "the Internet", "honeybees",
    "earthquakes", "meditation", "supply and demand", "DNA", "the Moon landing", "rainforests", "password security",
    "jazz music", "marathon training", "inflation", "the printing press", "ocean tides", "remote work",
    "gardening", "the human heart",
)  # fmt: skip

CODE_TASKS = (
    "reverses a string", "checks whether a number is prime", "counts the words in a text", "merges two sorted lists",
    "computes a factorial", "finds the largest item in a list", "removes duplicates from a list",
    "converts Celsius to Fahrenheit", "reads a CSV file and prints each row", "computes the average of a list",
)  # fmt: skip

TEMPLATES: dict[str, tuple[str, ...]] = {
    "explain": ("Explain {topic} in simple terms.", "What is {topic}? Answer in a short paragraph.",
                "Explain {topic} to a ten-year-old."),
    "list": ("List five facts about {topic}.", "Give me three tips related to {topic}.",
             "List the main advantages and disadvantages of {topic}."),
    "question": ("Why does {topic} matter?", "How does {topic} work?", "What are common misconceptions about {topic}?"),
    "write": ("Write a short poem about {topic}.", "Write a tweet about {topic}.",
              "Write a short story that involves {topic}."),
    "summarize": ("Summarize this paragraph in one sentence: {paragraph}",
                  "Give the key point of the following text: {paragraph}"),
    "rewrite": ("Rewrite this paragraph in a more formal tone: {paragraph}",
                "Fix the grammar and keep the meaning: {paragraph}", "Rewrite this as a bulleted list: {paragraph}"),
}  # fmt: skip
CODE_TEMPLATES = ("Write a Python function that {task}.", "Write a JavaScript function that {task}.")

PARAGRAPH = (
    "{topic} is a subject that many people find interesting. It has a long history and it affects daily life in "
    "ways that are easy to miss. Experts still disagree about some details of {topic}, but most agree that learning "
    "the basics is useful for everyone."
)


def all_prompts() -> list[str]:
    """Every templated prompt, in the fixed shuffled order that :func:`split_prompts` cuts."""
    prompts = []
    for templates in TEMPLATES.values():
        for template in templates:
            for topic in TOPICS:
                prompts.append(template.format(topic=topic, paragraph=PARAGRAPH.format(topic=topic)))
    prompts += [template.format(task=task) for template in CODE_TEMPLATES for task in CODE_TASKS]
    random.Random(SEED).shuffle(prompts)
    return prompts


def split_prompts(train: int, heldout: int) -> tuple[list[str], list[str]]:
    """``(train prompts, held-out prompts)``, disjoint. Raises ``ValueError`` when there are not that many."""
    prompts = all_prompts()
    if train < 0 or heldout < 0 or train + heldout > len(prompts):
        raise ValueError(f"{train} + {heldout} prompts asked for, {len(prompts)} templated prompts exist")
    return prompts[heldout : heldout + train], prompts[:heldout]


@dataclass(frozen=True)
class CalibrationSequence:
    """One calibration sequence: the chat-templated prompt's token ids and the model's greedy continuation."""

    prompt_ids: list[int]
    output_ids: list[int]


def cache_file(directory: Path, model_hash: str, dtype: torch.dtype, max_new_tokens: int) -> Path:
    """Where the generations of one model, dtype and length are cached under ``directory``."""
    return directory / f"{model_hash[:16]}-{str(dtype).removeprefix('torch.')}-{max_new_tokens}.jsonl"


def generate_cached(
    runner: Runner,
    encode: Callable[[str], list[int]],
    prompts: Sequence[str],
    max_new_tokens: int,
    cache: Path,
    progress: TextIO | None = sys.stderr,
) -> list[CalibrationSequence]:
    """The greedy continuation of every prompt (stopping at the model's EOS), from ``cache`` (JSONL, appended to)
    where present. The cache must belong to one model and one ``max_new_tokens``; the caller keys its path so.
    Writes one progress line per generated prompt to ``progress`` (None: silent)."""
    done: dict[str, CalibrationSequence] = {}
    if cache.is_file():
        for line in cache.read_text(encoding="utf-8").splitlines():
            if line.strip():
                record = json.loads(line)
                done[record["prompt"]] = CalibrationSequence(record["prompt_ids"], record["output_ids"])
    missing = [prompt for prompt in prompts if prompt not in done]
    cache.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with cache.open("a", encoding="utf-8") as file:
        for count, prompt in enumerate(missing, 1):
            prompt_ids = encode(prompt)
            output = greedy_generate(runner, prompt_ids, max_new_tokens, runner.config.eos_token_ids)
            done[prompt] = CalibrationSequence(prompt_ids, output)
            file.write(json.dumps({"prompt": prompt, "prompt_ids": prompt_ids, "output_ids": output}) + "\n")
            file.flush()
            if progress is not None:
                elapsed = time.monotonic() - started
                eta = elapsed / count * (len(missing) - count)
                print(
                    f"\rcalibration: {count}/{len(missing)} generated ({len(prompts) - len(missing)} cached), "
                    f"{elapsed:.0f} s, eta {eta:.0f} s",
                    end="" if count < len(missing) else "\n",
                    file=progress,
                    flush=True,
                )
    return [done[prompt] for prompt in prompts]


def collect_states(runner: Runner, sequences: Sequence[CalibrationSequence], exit_layer: int) -> States:
    """Hidden states at the positions that predict each continuation token (from the prompt's last token to the
    output's second to last), in one prefill pass per sequence; converted to fp32. Raises ``ValueError`` for an
    exit layer outside ``[1, layers)``."""
    if not 1 <= exit_layer < runner.num_layers:
        raise ValueError(f"exit layer {exit_layer} is not in [1, {runner.num_layers})")
    h_ks, h_ls, targets = [], [], []
    readout = readout_of(runner.weights)
    with torch.inference_mode():
        for sequence in sequences:
            if not sequence.output_ids:
                continue
            ids = sequence.prompt_ids + sequence.output_ids[:-1]
            runner.cache.reset()
            h_k = runner.run_layers(runner.embed(ids), 0, 0, exit_layer)
            h_l = runner.run_layers(h_k, 0, exit_layer)
            first = len(sequence.prompt_ids) - 1
            h_ks.append(h_k[first:].to(torch.float32))
            h_ls.append(h_l[first:].to(torch.float32))
    h_k_all, h_l_all = torch.cat(h_ks), torch.cat(h_ls)
    # The target is the full model's argmax at h_l, not the recorded greedy token: in bf16 a prefill pass can
    # round a near-tie differently from the one-token steps that generated the text.
    for begin in range(0, h_l_all.shape[0], 1024):
        targets.append(readout.logits(h_l_all[begin : begin + 1024]).argmax(-1))
    return States(h_k_all, h_l_all, torch.cat(targets))


def readout_of(weights: ModelWeights) -> Readout:
    """The fp32 final norm and LM head of ``weights``."""
    return Readout(weights.final_norm.to(torch.float32), weights.config.rms_norm_eps, weights.lm_head.to(torch.float32))


def chat_encoder(directory: Path) -> Callable[[str], list[int]]:
    """Token ids of a one-message user chat, templated with the checkpoint's own chat template and generation
    prompt, as a server would feed it."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(directory)

    def encode(prompt: str) -> list[int]:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
        ids: list[int] = tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids

    return encode
