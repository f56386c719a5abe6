"""What a base model is, by content rather than by where it was: a copied or moved run still finds its
base, and a base swapped for another is refused.

A local folder (a from_config run's ``base_model/``, or a ``model.path`` folder) is its model files:
``config.json`` and the weights (``*.safetensors``, ``*.bin`` and their indexes), each by name, size
and a SHA-256 of its bytes. A file up to WHOLE_HASH_BYTES is hashed whole; a larger one (the shards
of a 7B-65B checkpoint) by its first and last MiB and SAMPLES evenly spaced MiB blocks between, with
its size: two different checkpoints differ in every block (and a safetensors file's first MiB holds
its header, every tensor's name, shape and offset), while reading a 130 GB base whole at the end of
each run and at each `generate` would take minutes. A hub id is the id and the commit its files came
from, which the commands that use the run then load again.

Only files are read (no torch): the identity is recorded in run.json by `train` and checked by
report/run.py's trained_run before any weight loads.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

WHOLE_HASH_BYTES = 64 << 20
BLOCK = 1 << 20
SAMPLES = 14  # blocks between the first and the last: 16 MiB read per large file
MODEL_FILES = ("config.json", "*.safetensors", "*.bin", "*.safetensors.index.json", "*.bin.index.json")


def _file_digest(path: Path) -> str:
    size, digest = path.stat().st_size, hashlib.sha256()
    with path.open("rb") as f:
        if size <= WHOLE_HASH_BYTES:
            for block in iter(lambda: f.read(BLOCK), b""):
                digest.update(block)
            return digest.hexdigest()
        step = (size - BLOCK) // (SAMPLES + 1)
        for offset in [0, *(step * i for i in range(1, SAMPLES + 1)), size - BLOCK]:
            f.seek(offset)
            digest.update(f.read(BLOCK))
    return f"sampled:{digest.hexdigest()}"


def model_files(folder: Path) -> list[Path]:
    return sorted({p for pattern in MODEL_FILES for p in folder.glob(pattern) if p.is_file()})


def folder_identity(folder: str | Path) -> dict:
    """{"files": {name: {"bytes": size, "sha256": digest}}} of the folder's model files."""
    return {"files": {p.name: {"bytes": p.stat().st_size, "sha256": _file_digest(p)} for p in model_files(Path(folder))}}


def hub_commit(repo_id: str, revision: str | None) -> str | None:
    """The commit of ``repo_id`` at ``revision`` that the local cache holds (what was just loaded), or None."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    if not isinstance(found, str):
        return None
    parts = Path(found).parts
    return parts[parts.index("snapshots") + 1] if "snapshots" in parts else None


def identity(base: str, revision: str | None = None) -> dict:
    """A local folder's model files, or a hub id with the commit it was loaded at."""
    if Path(base).is_dir():
        return folder_identity(base)
    return {"hub": base, "revision": hub_commit(base, revision) or revision}


def differences(recorded: dict, found: dict) -> list[str]:
    """How the base found now differs from the one recorded, in words; [] when it is the same."""
    if ("hub" in recorded) != ("hub" in found):
        then = (f"the hub model {recorded['hub']} (commit {recorded.get('revision')})" if "hub" in recorded
                else "a local folder")
        now = "a local folder" if "hub" in recorded else f"the hub model {found['hub']}"
        return [f"it trained on {then}, and this base is {now}"]
    if "hub" in recorded:
        return [f"{key} {recorded.get(key)} then, {found.get(key)} now" for key in ("hub", "revision")
                if recorded.get(key) != found.get(key) and found.get(key) is not None]
    then, now = recorded.get("files", {}), found.get("files", {})
    out = [f"{name} is missing" for name in sorted(set(then) - set(now))]
    out += [f"{name} was not there" for name in sorted(set(now) - set(then))]
    out += [f"{name} differs ({then[name]['bytes']:,} bytes then, {now[name]['bytes']:,} now)"
            for name in sorted(set(then) & set(now)) if then[name] != now[name]]
    return out
