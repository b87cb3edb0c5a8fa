"""What the command-line tools in scripts/ share: their progress and refusal lines on stderr, their
argument parser and its common flags, a quiet transformers, and output written atomically.

Progress goes to stderr as ``[tool] message``; a refusal is one last line ``tool: message`` and an
exit status (2: bad input or arguments, 1: the tool itself failed). Nothing here imports torch or
transformers at import time, so ``--help`` and argument errors stay fast.
"""
from __future__ import annotations

import argparse
import json
import os
import sys


class Tool:
    """One command-line tool: its name (in every stderr line) and its argument parser."""

    def __init__(self, name: str, description: str | None = None):
        self.name = name
        self.parser = argparse.ArgumentParser(description=description)

    def add(self, *flags, **kwargs) -> Tool:
        self.parser.add_argument(*flags, **kwargs)
        return self

    def checkpoint(self, help: str) -> Tool:
        return self.add("--checkpoint", required=True, help=help)

    def dtype(self, choices: list[str], help: str | None = None) -> Tool:
        return self.add("--dtype", default="float32", choices=choices, help=help)

    def cases_and_out(self) -> Tool:
        """--cases and --out of a reference tool: the cases JSON in, the reference JSON out."""
        return self.add("--cases", required=True, help="cases JSON file").add("--out", required=True, help="output JSON file")

    def parse(self, argv: list[str] | None) -> argparse.Namespace:
        return self.parser.parse_args(argv)

    def log(self, msg: str) -> None:
        print(f"[{self.name}] {msg}", file=sys.stderr, flush=True)

    def refuse(self, err, code: int = 2, type_name: bool = False) -> int:
        """Prints ``tool: err`` (``tool: TypeName: err`` with type_name) on stderr; returns ``code``."""
        prefix = f"{type(err).__name__}: " if type_name else ""
        print(f"{self.name}: {prefix}{err}", file=sys.stderr)
        return code


def quiet_torch() -> None:
    """NNPACK off. Every CPU convolution asks whether NNPACK is available before checking the batch
    size (NNPACK serves only batches of 16 and more), and where it cannot initialise ("Unsupported
    hardware") libtorch prints "Could not initialize NNPACK!" on each of those calls: hundreds of
    lines per export. The default CPU convolution gives the same results. The server's addon turns it
    off the same way, so references and exports compute as it does."""
    import torch

    torch.backends.nnpack.set_flags(False)


def quiet_transformers(progress_bar: bool = True) -> None:
    """transformers' own warnings off (the tools report what matters themselves), and NNPACK's
    (quiet_torch)."""
    quiet_torch()
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    if not progress_bar:
        hf_logging.disable_progress_bar()


def write_json(path: str, doc) -> None:
    """Writes ``doc`` as JSON through a temporary file, so ``path`` is never half written."""
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(doc, fh)
    os.replace(tmp, path)
