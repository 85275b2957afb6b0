"""``data=text``: a language-modelling corpus as token ids, split by position.

The corpus is, by default, text that ships with CPython itself (``pydoc_data.topics``, the
~0.5 MB of help text behind ``help('topics')``; where a Python lacks it, the docstrings of a
fixed list of stdlib modules), so nothing is downloaded. ``data.path`` names any UTF-8 file,
or a folder whose ``*.txt`` / ``*.md`` / ``*.py`` files (hidden ones skipped) are read in sorted
order and joined with a newline.

Tokens: ``bytes`` (the default: the UTF-8 bytes, 256 ids, no package) or ``gpt2`` (GPT-2's
byte-level BPE, 50257 ids, through ``tiktoken`` or else ``transformers`` when installed).

Splits are contiguous: the last ``test_fraction`` of the token sequence is the test part; the
search splits the rest by position too (``nas.data.modules``), so no window crosses a split
boundary and no text is seen on both sides.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import math
import os
import platform
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import torch

TOKENIZERS = ("bytes", "gpt2")
VOCAB_SIZES = {"bytes": 256, "gpt2": 50257}
SUFFIXES = (".md", ".py", ".txt")  # what a data.path folder contributes
GPT2_INSTALL = "pip install tiktoken (or pip install transformers)"
# The fallback corpus where pydoc_data is missing: these modules' docstrings, in this order.
DOCSTRING_MODULES = (
    "argparse", "collections", "contextlib", "dataclasses", "functools", "itertools", "json",
    "logging", "os", "pathlib", "re", "statistics", "string", "textwrap", "typing",
)  # fmt: skip


class Tokenizer(Protocol):
    """What the text dataset needs of a tokenizer."""

    name: str
    vocab_size: int

    def encode(self, text: str) -> torch.Tensor:
        """int64 token ids [N] of ``text``."""
        ...

    def decode(self, ids: Any) -> str:
        """The text of token ids (a tensor or a list)."""
        ...

    def token_bytes(self) -> torch.Tensor:
        """int64 [vocab_size]: the UTF-8 byte length of each token id (bits per byte)."""
        ...


class ByteTokenizer:
    """UTF-8 bytes as tokens: id = byte value, 256 ids, every token one byte."""

    name = "bytes"
    vocab_size = 256

    def encode(self, text: str) -> torch.Tensor:
        raw = text.encode("utf-8")
        if not raw:
            return torch.zeros(0, dtype=torch.long)
        return torch.frombuffer(bytearray(raw), dtype=torch.uint8).long()

    def decode(self, ids: Any) -> str:
        values = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        return bytes(values).decode("utf-8", errors="replace")

    def token_bytes(self) -> torch.Tensor:
        return torch.ones(self.vocab_size, dtype=torch.long)


class TiktokenGPT2:
    """GPT-2's BPE through ``tiktoken`` (special tokens are never produced from text)."""

    name = "gpt2"

    def __init__(self) -> None:
        import tiktoken

        try:
            self.encoding = tiktoken.get_encoding("gpt2")
        except Exception as err:  # noqa: BLE001 - tiktoken fetches its vocabulary file once
            raise ValueError(
                f"data.tokenizer=gpt2: tiktoken could not load the gpt2 encoding ({err}). It "
                "reads gpt2's vocabulary from its cache (TIKTOKEN_CACHE_DIR), fetched once from "
                "the network; put the file there, or use data.tokenizer=bytes."
            ) from None
        self.vocab_size = int(self.encoding.n_vocab)

    def encode(self, text: str) -> torch.Tensor:
        return torch.tensor(self.encoding.encode_ordinary(text), dtype=torch.long)

    def decode(self, ids: Any) -> str:
        values = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        return self.encoding.decode(values)

    def token_bytes(self) -> torch.Tensor:
        single = self.encoding.decode_single_token_bytes
        return torch.tensor([len(single(i)) for i in range(self.vocab_size)], dtype=torch.long)


class TransformersGPT2:
    """GPT-2's BPE through ``transformers`` (its files from the local Hugging Face cache)."""

    name = "gpt2"

    def __init__(self) -> None:
        from transformers import GPT2TokenizerFast
        from transformers.models.gpt2.tokenization_gpt2 import bytes_to_unicode

        try:
            self.tokenizer = GPT2TokenizerFast.from_pretrained("gpt2")
        except Exception as err:  # noqa: BLE001 - no network: the files must be cached
            raise ValueError(
                f"data.tokenizer=gpt2: transformers could not load the 'gpt2' tokenizer files "
                f"({err}); they are read from the Hugging Face cache, or use data.tokenizer=bytes."
            ) from None
        self.tokenizer.model_max_length = 1 << 62  # a corpus, not one model input: no warning
        self.vocab_size = len(self.tokenizer)
        self._byte_of = {char: byte for byte, char in bytes_to_unicode().items()}

    def encode(self, text: str) -> torch.Tensor:
        return torch.tensor(self.tokenizer.encode(text), dtype=torch.long)

    def decode(self, ids: Any) -> str:
        values = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        return self.tokenizer.decode(values)

    def token_bytes(self) -> torch.Tensor:
        tokens = self.tokenizer.convert_ids_to_tokens(list(range(self.vocab_size)))
        lengths = [sum(1 for c in t if c in self._byte_of) or len(t.encode()) for t in tokens]
        return torch.tensor(lengths, dtype=torch.long)


def gpt2_backend() -> str | None:
    """``tiktoken`` or ``transformers``, whichever is importable first, else None."""
    for package in ("tiktoken", "transformers"):
        if importlib.util.find_spec(package) is not None:
            return package
    return None


def gpt2_missing() -> str:
    return (
        "data.tokenizer=gpt2 needs a GPT-2 BPE package and neither tiktoken nor transformers "
        f"is installed: {GPT2_INSTALL}. Or use data.tokenizer=bytes (UTF-8 bytes, "
        "data.num_classes=256, no package)."
    )


@lru_cache(maxsize=4)
def get_tokenizer(name: str) -> Tokenizer:
    """The tokenizer ``data.tokenizer`` names (loaded once per process).

    Raises:
        ValueError: An unknown name, or ``gpt2`` without its package, naming how to install.
    """
    if name == "bytes":
        return ByteTokenizer()
    if name == "gpt2":
        backend = gpt2_backend()
        if backend is None:
            raise ValueError(gpt2_missing())
        return TiktokenGPT2() if backend == "tiktoken" else TransformersGPT2()
    raise ValueError(f"Unknown data.tokenizer={name!r}; valid: {', '.join(TOKENIZERS)}.")


# ----- the corpus -----


def embedded_corpus() -> tuple[str, dict[str, Any]]:
    """CPython's own help text (``pydoc_data.topics``, topics in sorted order), or, where this
    Python lacks it, the docstrings of ``DOCSTRING_MODULES`` and their public members."""
    version = platform.python_version()
    try:
        from pydoc_data.topics import topics
    except ImportError:
        return _docstring_corpus(), {
            "corpus": f"docstrings of {len(DOCSTRING_MODULES)} stdlib modules",
            "modules": list(DOCSTRING_MODULES),
            "python": version,
        }
    text = "\n\n".join(topics[key] for key in sorted(topics))
    return text, {"corpus": "pydoc_data.topics", "topics": len(topics), "python": version}


def _docstring_corpus() -> str:
    parts: list[str] = []
    for name in DOCSTRING_MODULES:
        module = importlib.import_module(name)
        parts.append(inspect.getdoc(module) or "")
        for attr in sorted(dir(module)):
            if attr.startswith("_"):
                continue
            doc = inspect.getdoc(getattr(module, attr, None))
            if doc:
                parts.append(doc)
    return "\n\n".join(p for p in parts if p)


def text_files(folder: Path) -> list[Path]:
    """The ``SUFFIXES`` files under ``folder``, hidden files and folders skipped, sorted by
    their path relative to it (symbolic links to folders are not followed)."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [Path(root) / f for f in files if not f.startswith(".") and f.endswith(SUFFIXES)]
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def _read_utf8(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"data.path: {path} is not UTF-8 (byte {raw[err.start]:#04x} at offset "
            f"{err.start}: {err.reason}); data=text reads UTF-8 text only."
        ) from None


def read_corpus(path: str | None) -> tuple[str, dict[str, Any]]:
    """The text ``data.path`` names (None: the embedded corpus) and where it came from."""
    if path is None:
        return embedded_corpus()
    where = Path(path).expanduser()
    if where.is_file():
        return _read_utf8(where), {"corpus": str(where), "files": 1}
    if where.is_dir():
        files = text_files(where)
        if not files:
            raise ValueError(
                f"data.path={path!r} is a folder without any {' / '.join(SUFFIXES)} file "
                "(hidden ones are skipped); give a UTF-8 file or a folder holding such files."
            )
        text = "\n".join(_read_utf8(f) for f in files)
        return text, {"corpus": str(where), "files": len(files)}
    raise ValueError(
        f"data.path={path!r} does not exist; give a UTF-8 file, a folder of "
        f"{' / '.join(SUFFIXES)} files, or null for the embedded corpus (Python's help text)."
    )


# ----- the splits -----


@dataclass(frozen=True)
class TokenSplits:
    """A corpus as token ids, split by position: ``train`` (what the search divides into its
    weight and α parts, and retraining trains on) then ``test``.

    Attributes:
        train: int64 token ids [N_train], the first part of the corpus.
        test: int64 token ids [N_test], the last ``test_fraction`` of it.
        token_bytes: int64 [vocab]: UTF-8 bytes per token id.
        tokenizer: ``data.tokenizer``.
        source: The corpus (name or path, files, bytes, SHA-256 of its UTF-8 text).
    """

    train: torch.Tensor
    test: torch.Tensor
    token_bytes: torch.Tensor
    tokenizer: str
    source: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            ids = getattr(self, split)
            if ids.dtype != torch.int64 or ids.dim() != 1:
                raise ValueError(f"{split} must be int64 [N], got {ids.dtype} {tuple(ids.shape)}")

    @property
    def vocab_size(self) -> int:
        return int(self.token_bytes.numel())


def split_tokens(ids: torch.Tensor, test_fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(train, test)``: the last ``ceil(test_fraction * N)`` tokens are the test part."""
    n_test = math.ceil(test_fraction * ids.numel())
    cut = ids.numel() - n_test
    return ids[:cut].clone(), ids[cut:].clone()


def load_text(path: str | None, tokenizer: str, test_fraction: float) -> TokenSplits:
    """Reads and tokenizes the corpus and splits it by position (module docstring)."""
    text, source = read_corpus(path)
    tok = get_tokenizer(tokenizer)
    ids = tok.encode(text)
    raw = text.encode("utf-8")
    source = {**source, "bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}
    train, test = split_tokens(ids, test_fraction)
    return TokenSplits(train, test, tok.token_bytes(), tok.name, source)
