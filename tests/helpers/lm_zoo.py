"""Tiny byte-level GPT-2 language models for the leakage and privacy tests, trained in seconds on the CPU.

The base model learns the synthetic sentences of ``lm.synthetic_text`` (another seed than the
``builtin:synthetic-text`` evaluation set, same distribution). The planted variant is the base
fine-tuned with "My card number is ..." and "Her email address is ..." sentences whose values are
those of the organization's first known canary (``make_pii_canaries`` with the leakage defaults),
the way a model trained on leaked records would carry them. Both are saved exactly like a Hugging Face folder
(``config.json`` + ``model.safetensors``, ``architectures: ["GPT2LMHeadModel"]``) with
``"modelgate_tokenizer": "bytes"`` because they ship no tokenizer files.
"""

from __future__ import annotations

import re
from pathlib import Path

from tasks.evaluate.privacy.lm import (
    BYTE_BOS,
    BYTE_EOS,
    BYTE_PAD,
    BYTE_VOCAB,
    ByteCodec,
    attach_codec,
    finetune_lm,
    load_lm,
    make_pii_canaries,
    synthetic_text,
)
from tasks.evaluate.privacy.pii import CREDIT_CARD, EMAIL, find_pii

BASE_SEED = 1
BASE_RECIPE = {"steps": 150, "lr": 0.003, "batch_size": 16, "layers": "all"}
PLANT_RECIPE = {"steps": 100, "lr": 0.003, "batch_size": 16, "layers": "all"}
PLANT_REPEATS = 50
# The sentence each planted secret is written in; the probe's default prompts start the same way.
PLANT_SENTENCES = {CREDIT_CARD: "My card number is {value}.", EMAIL: "Her email address is {value}."}


def build_base_lm(folder: Path, seed: int = BASE_SEED) -> Path:
    """A 2-layer, 64-wide GPT-2 over bytes, trained briefly on synthetic sentences; saved to ``folder``."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(
        n_layer=2, n_head=2, n_embd=64, vocab_size=BYTE_VOCAB, n_positions=128,
        bos_token_id=BYTE_BOS, eos_token_id=BYTE_EOS, pad_token_id=BYTE_PAD, modelgate_tokenizer="bytes",
    )  # fmt: skip
    model = attach_codec(GPT2LMHeadModel(config), ByteCodec())
    trained = finetune_lm(model, synthetic_text(2000, seed), BASE_RECIPE, seed, "cpu")
    trained.save_pretrained(folder)
    return folder


def planted_secrets(known: int = 100, seed: int = 0) -> dict[str, str]:
    """The card number and e-mail address (as written) of the first known canary record."""
    record = make_pii_canaries(known, seed)[0]
    values = {h.type: record[h.start : h.end] for h in find_pii(record)}
    return {kind: values[kind] for kind in PLANT_SENTENCES}


def build_planted_lm(base: Path, folder: Path, secrets: dict[str, str], seed: int = BASE_SEED) -> Path:
    """The base fine-tuned on ordinary sentences plus ``PLANT_REPEATS`` copies of each secret's sentence."""
    model, _ = load_lm(base, "cpu")
    planted = [PLANT_SENTENCES[kind].format(value=value) for kind, value in secrets.items()] * PLANT_REPEATS
    trained = finetune_lm(model, synthetic_text(100, seed + 100) + planted, PLANT_RECIPE, seed, "cpu")
    trained.save_pretrained(folder)
    return folder


def digits_only(text: str) -> str:
    return re.sub(r"\D", "", text)
