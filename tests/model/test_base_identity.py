"""A base model's identity by content: a folder's model files, a hub id at the commit its files came from."""

from __future__ import annotations

import os

from qlorafx.model import base_identity
from qlorafx.model.base_identity import BLOCK, WHOLE_HASH_BYTES, differences, folder_identity, identity


def _folder(path, weights: bytes = b"w" * 1000):
    path.mkdir()
    (path / "config.json").write_text('{"model_type": "llama"}')
    (path / "model.safetensors").write_bytes(weights)
    (path / "tokenizer.json").write_text("{}")  # not a model file: the run keeps its own tokenizer
    return path


def test_the_same_files_anywhere_are_the_same_base(tmp_path):
    a, b = _folder(tmp_path / "a"), _folder(tmp_path / "b")
    assert folder_identity(a) == folder_identity(b)
    assert set(folder_identity(a)["files"]) == {"config.json", "model.safetensors"}
    (b / "tokenizer.json").write_text('{"changed": true}')
    assert differences(folder_identity(a), folder_identity(b)) == []


def test_a_changed_missing_or_extra_file_is_named(tmp_path):
    a = _folder(tmp_path / "a")
    b = _folder(tmp_path / "b", weights=b"w" * 999 + b"x")
    (b / "config.json").unlink()
    (b / "model-00002.safetensors").write_bytes(b"")
    assert differences(folder_identity(a), folder_identity(b)) == [
        "config.json is missing", "model-00002.safetensors was not there",
        "model.safetensors differs (1,000 bytes then, 1,000 now)"]


def _large(path, change_at: int | None = None):
    """A sparse file just past the whole-hash size, with one byte set."""
    with path.open("wb") as f:
        f.truncate(WHOLE_HASH_BYTES + 16 * BLOCK)
        if change_at is not None:
            f.seek(change_at)
            f.write(b"\x01")
    return path


def test_a_large_file_is_known_by_sampled_blocks_that_see_any_other_checkpoint(tmp_path):
    plain = base_identity._file_digest(_large(tmp_path / "plain"))
    assert plain.startswith("sampled:")
    size = WHOLE_HASH_BYTES + 16 * BLOCK
    step = (size - BLOCK) // (base_identity.SAMPLES + 1)
    for offset in (10, step * 7 + 5, size - 3):  # in the first, a middle and the last block read
        assert base_identity._file_digest(_large(tmp_path / f"at-{offset}", offset)) != plain


def test_a_hub_id_is_its_commit_in_the_local_cache(tmp_path, monkeypatch):
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--some-org--tiny"
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    assert identity("some-org/tiny") == {"hub": "some-org/tiny", "revision": commit}
    assert identity("some-org/not-cached", "v1") == {"hub": "some-org/not-cached", "revision": "v1"}
    moved = {"hub": "some-org/tiny", "revision": "f" * 40}
    assert differences(moved, identity("some-org/tiny")) == [f"revision {'f' * 40} then, {commit} now"]
    assert differences(moved, identity("some-org/tiny", moved["revision"])) == []  # loaded at its commit: fine
