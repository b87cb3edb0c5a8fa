"""CLIP BPE tokenizer, built offline, and the padded/truncated tokenizer.json the server reads.

SAM 3 uses OpenAI CLIP's byte-level BPE (vocabulary 49408, 32 tokens per prompt, padded with
``<|endoftext|>``). Its merges file ships inside the ``open_clip_torch`` wheel; we only read that file
(importing open_clip would fail: it needs torchvision).
"""
from __future__ import annotations

import gzip
import importlib.util
import json
import os

import torch

from .errors import ExportError

TEXT_MAX_LENGTH = 32
BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
CLIP_VOCAB_SIZE = 49408
VISUAL_PROMPT = "visual"  # Sam3Processor's text for box-only prompts


def clip_bpe_path() -> str:
    spec = importlib.util.find_spec("open_clip")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for loc in locations:
        path = os.path.join(loc, "bpe_simple_vocab_16e6.txt.gz")
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(
        "bpe_simple_vocab_16e6.txt.gz not found: install open_clip_torch with --no-deps "
        "(its CLIP vocabulary file is all we use)"
    )


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable unicode map, in CLIP's vocabulary order."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("\u00a1"), ord("\u00ac") + 1))
        + list(range(ord("\u00ae"), ord("\u00ff") + 1))
    )
    codes = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in codes)))


def clip_vocab_and_merges(bpe_path: str | None = None) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP's vocabulary exactly as OpenAI's SimpleTokenizer builds it: 256 byte symbols, the same with
    ``</w>``, one token per merge (the first 48894 merges), then the two special tokens."""
    with gzip.open(bpe_path or clip_bpe_path(), "rt", encoding="utf-8") as fh:
        lines = fh.read().split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + [BOS, EOS]
    if len(tokens) != CLIP_VOCAB_SIZE or len(set(tokens)) != CLIP_VOCAB_SIZE:
        raise ValueError(f"unexpected CLIP vocabulary: {len(tokens)} tokens ({len(set(tokens))} distinct)")
    return {tok: i for i, tok in enumerate(tokens)}, merges


def build_clip_tokenizer():
    """transformers' CLIPTokenizer (fast) over the real CLIP vocabulary, configured like facebook/sam3."""
    from transformers import CLIPTokenizer

    vocab, merges = clip_vocab_and_merges()
    return CLIPTokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=EOS,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=EOS,
        model_max_length=TEXT_MAX_LENGTH,
    )


def bundle_tokenizer_json(tokenizer, max_length: int = TEXT_MAX_LENGTH) -> str:
    """The checkpoint's fast tokenizer as tokenizer.json with truncation and fixed-length padding
    switched on in the file itself, so ``Tokenizer.fromFile(...).encode(text)`` in any ``tokenizers``
    binding gives what ``tokenizer(text, padding='max_length', max_length=32, truncation=True)`` gives
    in transformers (ids and attention mask)."""
    from tokenizers import Tokenizer

    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    pad_token = tokenizer.pad_token
    pad_id = tokenizer.pad_token_id
    if pad_token is None or pad_id is None:
        raise ValueError("the tokenizer has no pad token")
    # transformers pads on the side the tokenizer says and truncates the end ("longest_first" is the
    # same as "only_first" for one sequence); the special tokens the post-processor adds count
    # towards max_length in both.
    backend.enable_truncation(max_length=max_length, strategy="longest_first", direction=tokenizer.truncation_side)
    backend.enable_padding(
        direction=tokenizer.padding_side, pad_id=pad_id, pad_token=pad_token, pad_type_id=0, length=max_length
    )
    return json.dumps(json.loads(backend.to_str()), ensure_ascii=False, indent=2)


def tokenize(tokenizer, prompts: list[str], length: int = TEXT_MAX_LENGTH):
    """prompts -> (input_ids, attention_mask) int64 [N, length], as the server's tokenizer.json pads them."""
    enc = tokenizer(prompts, padding="max_length", max_length=length, truncation=True, return_tensors="pt")
    return enc["input_ids"].to(torch.long), enc["attention_mask"].to(torch.long)


TOKENIZER_PROBES = [
    "a cat",
    "the red car on the left",
    "Person, riding a BIKE!!",
    "ünïcödé café 日本語 🐱",
    "it's a dog's toy; isn't it?",
    "  spaces\tand\nnewlines  ",
    "",
    "visual",
    " ".join(["word"] * 60),
]


def check_bundle_tokenizer(tokenizer, tokenizer_json: str) -> None:
    """Raises ExportError unless tokenizer.json alone encodes the probes as the checkpoint's tokenizer does."""
    from tokenizers import Tokenizer

    standalone = Tokenizer.from_str(tokenizer_json)
    for prompt in TOKENIZER_PROBES:
        enc = standalone.encode(prompt)
        ref = tokenizer(prompt, padding="max_length", max_length=TEXT_MAX_LENGTH, truncation=True)
        if enc.ids != list(ref["input_ids"]) or enc.attention_mask != list(ref["attention_mask"]):
            raise ExportError(f"bundle tokenizer.json disagrees with the checkpoint's tokenizer on {prompt!r}")
