"""What has been paid for: answers and judgments in one SQLite file, keyed by a hash of the request.

Each reply is committed as it arrives, in its own transaction, so a comparison killed at any moment
(Ctrl-C, SIGTERM, SIGKILL, a crash) leaves every finished reply in the cache and none half-written;
the rerun asks only for the rest. SQLite's write-ahead log lets another process read it meanwhile.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

from qlorafx.errors import UserError

TABLES = ("answers", "judgments")


def request_key(request: dict[str, Any]) -> str:
    """The same request (endpoint, model, messages, sampling) always gives the same key; any change, another."""
    return hashlib.sha256(json.dumps(request, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


class Cache:
    def __init__(self, path: Path, create: bool = True):
        """``create=False`` (a dry run) writes nothing: a cache that is not there yet reads as empty."""
        self.path = path
        if not create and not path.exists():
            path = Path(":memory:")
        elif create:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as err:  # a file where a folder of the path must go, no space, no permission
                raise UserError(f"cannot create {path.parent} for the comparison's cache ({err.strerror}); set cache: to "
                                f"another file, or output_dir: to a folder that can be written") from None
        try:
            self.db = sqlite3.connect(path, timeout=30)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")  # with WAL: safe against a killed process
            for table in TABLES:
                self.db.execute(f"CREATE TABLE IF NOT EXISTS {table} (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            self.db.commit()
        except sqlite3.DatabaseError as err:
            raise UserError(f"{path}: cannot be used as the comparison's cache ({err}); move it away, or set "
                            f"cache: to another file") from None

    def get(self, table: str, key: str) -> dict[str, Any] | None:
        row = self.db.execute(f"SELECT value FROM {table} WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, table: str, key: str, value: dict[str, Any]) -> None:
        with self.db:  # one transaction: committed whole or not at all
            self.db.execute(f"INSERT OR REPLACE INTO {table} (key, value) VALUES (?, ?)", (key, json.dumps(value)))

    def count(self, table: str) -> int:
        return self.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]

    def close(self) -> None:
        self.db.close()
