"""On-disk cache of tokenized datasets.

The key hashes everything the tokens depend on: the data's content, the tokenizer (its
vocabulary, merges, special tokens and chat template), the dataset's section (format and
options, the rendered template with them), the format's version and the length settings. Change
any of them and the dataset is tokenized again. Entries are written to a temporary name and
renamed, so a crash never leaves a half-written entry behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

CACHE_VERSION = "3"  # 3: T5 inputs keep their end; bump when the stored layout or the tokenization code changes meaning


def cache_root(configured: str | None) -> Path:
    if configured:
        return Path(configured).expanduser()
    if os.environ.get("QLORAFX_CACHE"):
        return Path(os.environ["QLORAFX_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "qlorafx"


def tokenizer_fingerprint(tokenizer) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    vocabulary = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    parts = [type(tokenizer).__name__, vocabulary, json.dumps(tokenizer.special_tokens_map, sort_keys=True),
             str(getattr(tokenizer, "chat_template", None)), str(getattr(tokenizer, "add_bos_token", None))]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def cache_key(**parts: Any) -> str:
    return hashlib.sha256(json.dumps({"v": CACHE_VERSION, **parts}, sort_keys=True, default=str).encode()).hexdigest()[:32]


def save(path: Path, ids: list[list[int]], labels: list[list[int]], truncated: list[bool], counts: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lengths = np.array([len(x) for x in ids], dtype=np.int64)
    # an encoder-decoder example's labels (the decoder target) are not as long as its input
    label_lengths = np.array([len(x) for x in labels], dtype=np.int64)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with tmp.open("wb") as f:
        np.savez(f, lengths=lengths, truncated=np.array(truncated, dtype=bool),
                 ids=np.fromiter((t for x in ids for t in x), dtype=np.int64, count=int(lengths.sum())),
                 label_lengths=label_lengths,
                 labels=np.fromiter((t for x in labels for t in x), dtype=np.int64, count=int(label_lengths.sum())),
                 counts=np.array(json.dumps(counts)))
    os.replace(tmp, path)


def _spans(lengths) -> list[tuple[int, int]]:
    bounds = np.concatenate([[0], np.cumsum(lengths)]).tolist()
    return list(zip(bounds[:-1], bounds[1:]))


def load(path: Path) -> tuple[list[list[int]], list[list[int]], list[bool], dict] | None:
    """The cached dataset, or None when absent or unreadable (then it is simply rebuilt)."""
    if not path.is_file():
        return None
    try:
        with np.load(path) as stored:
            ids, labels = stored["ids"].tolist(), stored["labels"].tolist()
            return ([ids[a:b] for a, b in _spans(stored["lengths"])], [labels[a:b] for a, b in _spans(stored["label_lengths"])],
                    stored["truncated"].tolist(), json.loads(str(stored["counts"])))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # missing, truncated or damaged
        return None
