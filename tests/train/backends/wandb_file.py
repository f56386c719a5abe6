"""Read back what an offline wandb run wrote, from its run-<id>.wandb file.

wandb 0.31 dropped its Python reader for these files (wandb.sdk.internal.datastore), so this
reads the format itself: a 7-byte header (':W&B', magic 0xBEE1, version 0), then LevelDB-log
style 32 KiB blocks of records (crc32 u32, length u16, type u8: 1 full, 2 first, 3 middle,
4 last), each record a wandb_internal Record protobuf.
"""

from __future__ import annotations

import json
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BLOCK = 32 * 1024
HEADER = struct.Struct("<4sHB")
RECORD = struct.Struct("<IHB")


@dataclass
class OfflineRun:
    run: Any = None  # the RunRecord: project, display_name, tags, config
    history: list[dict[str, Any]] = field(default_factory=list)  # one dict per logged step
    exit_code: int | None = None

    @property
    def config(self) -> dict[str, Any]:
        return {item.key: json.loads(item.value_json) for item in self.run.config.update}


def _payloads(raw: bytes):
    ident, magic, version = HEADER.unpack_from(raw)
    assert (ident, magic, version) == (b":W&B", 0xBEE1, 0), "not a .wandb file"
    pos, pieces = HEADER.size, b""
    while pos + RECORD.size <= len(raw):
        left = BLOCK - pos % BLOCK
        if left < RECORD.size:  # too little room for a record header: the block is padded
            pos += left
            continue
        _, length, kind = RECORD.unpack_from(raw, pos)
        if kind == 0 and length == 0:
            pos += left
            continue
        if pos + RECORD.size + length > len(raw):  # still being written
            return
        pieces += raw[pos + RECORD.size:pos + RECORD.size + length]
        pos += RECORD.size + length
        if kind in (1, 4):
            yield pieces
            pieces = b""


def read_offline_run(run_dir: Path, timeout: float = 60.0) -> OfflineRun:
    """The run as logged, once wandb-core (a separate process, which may still be flushing after
    ``finish()`` returns when several runs share this machine) has written its exit record."""
    deadline = time.monotonic() + timeout
    while True:
        found = _read(run_dir)
        if found.exit_code is not None or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def _read(run_dir: Path) -> OfflineRun:
    from wandb.proto import wandb_internal_pb2 as pb

    [path] = Path(run_dir).glob("run-*.wandb")
    found = OfflineRun()
    for payload in _payloads(path.read_bytes()):
        record = pb.Record()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            found.run = record.run
        elif kind == "history":
            found.history.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                                  for item in record.history.item})
        elif kind == "exit":
            found.exit_code = record.exit.exit_code
    return found
