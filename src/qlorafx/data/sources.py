"""Reading records: local .json/.jsonl/.csv/.parquet files, folders of them, or hub datasets.

Errors name the file and line (and show the start of the offending text); a hub dataset
id with the hub offline fails at once with what to do instead.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
from pathlib import Path
from typing import Any, Iterator

from qlorafx.errors import UserError

SUFFIXES = (".json", ".jsonl", ".csv", ".parquet")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def looks_like_hub_id(value: str) -> bool:
    """'org/name' with no file suffix: what a hub dataset id looks like (a path that exists wins)."""
    return bool(_HUB_ID.match(value)) and not value.endswith(SUFFIXES) and not value.startswith(".")


class DataFileError(UserError):
    """A data file is missing, unreadable or malformed; the message says where and how."""


def _excerpt(text: str, limit: int = 60) -> str:
    text = text.strip()
    return text[:limit] + ("..." if len(text) > limit else "")


def data_files(path: Path) -> list[Path]:
    """The file itself, or a folder's data files (sorted, so the order never depends on the disk)."""
    if not path.exists():
        raise DataFileError(f"{path}: data file not found")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in SUFFIXES)
        if not files:
            raise DataFileError(f"{path}: folder holds no data files ({', '.join(SUFFIXES)})")
        return files
    if path.suffix not in SUFFIXES:
        raise DataFileError(f"{path}: unsupported file type {path.suffix or '(none)'}; expected one of {', '.join(SUFFIXES)}")
    if not path.is_file():  # a FIFO or device would block or never end
        raise DataFileError(f"{path}: not a regular file; give a data file or a folder of them")
    return [path]


def fingerprint(path: Path) -> str:
    """A hash of the data's content (names and bytes of every file), for the tokenized-data cache."""
    digest = hashlib.sha256()
    for file in data_files(path):
        digest.update(file.name.encode() + b"\0")
        with file.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")  # -sig: a leading byte-order mark (Excel, Notepad) is no text
    except UnicodeDecodeError as err:
        raise DataFileError(f"{path}: not UTF-8 text (byte {err.start}); save it as UTF-8") from None


def _unreadable(err: Exception) -> str:
    """Valid JSON that Python's reader refuses: nesting past the recursion limit, an integer past 4,300 digits."""
    return "nested too deeply" if isinstance(err, RecursionError) else str(err).split(":")[0]


def _jsonl_records(path: Path, text: str) -> Iterator[dict[str, Any]]:
    # only '\n' ends a record: str.splitlines would also split at U+2028 and the like, which JSON strings may hold
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataFileError(f"{path}:{number}: malformed JSON ({err.msg}) in line starting {_excerpt(line)!r}") from None
        except (RecursionError, ValueError) as err:
            raise DataFileError(f"{path}:{number}: unreadable JSON ({_unreadable(err)}) in line starting "
                                f"{_excerpt(line)!r}") from None
        yield record


def _json_records(path: Path, text: str) -> list[dict[str, Any]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        line_text = text.split("\n")[err.lineno - 1]  # json counts lines by '\n' alone
        raise DataFileError(
            f"{path}:{err.lineno}: malformed JSON ({err.msg}) in line starting {_excerpt(line_text)!r}"
        ) from None
    except (RecursionError, ValueError) as err:
        raise DataFileError(f"{path}: unreadable JSON ({_unreadable(err)})") from None
    if not isinstance(data, list):
        raise DataFileError(f"{path}: expected a JSON list of records, found a {type(data).__name__}; use a list or .jsonl")
    return data


def _csv_records(path: Path, text: str) -> list[dict[str, Any]]:
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)  # strict: a stray quote is an error
    records = []
    try:
        for row in reader:
            if None in row or None in row.values():  # more or fewer fields than the header: text would be lost
                fields = len(reader.fieldnames) + len(row.get(None, [])) - sum(v is None for v in row.values())
                raise DataFileError(f"{path}:{reader.line_num}: malformed CSV (a row of {fields} fields under a header "
                                    f"of {len(reader.fieldnames)}: {_excerpt(', '.join(reader.fieldnames))}); quote fields "
                                    "that hold commas")
            records.append(dict(row))
    except csv.Error as err:
        raise DataFileError(f"{path}:{reader.reader.line_num}: malformed CSV ({err})") from None
    return records


def _parquet_records(path: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet

    try:
        return pyarrow.parquet.read_table(path).to_pylist()
    except Exception as err:  # pyarrow raises several types for a damaged file
        raise DataFileError(f"{path}: not a readable parquet file ({str(err).splitlines()[0]})") from None


def _file_records(path: Path, limit: int | None) -> list[dict[str, Any]]:
    if path.suffix == ".parquet":
        return _parquet_records(path)[:limit]
    text = _read_text(path)
    if path.suffix == ".jsonl":
        records = []
        for record in _jsonl_records(path, text):
            records.append(record)
            if limit is not None and len(records) >= limit:
                break
        return records
    if path.suffix == ".csv":
        return _csv_records(path, text)[:limit]
    return _json_records(path, text)[:limit]


def hub_dataset(dataset_id: str, split: str):
    """The hub dataset's split as a datasets.Dataset, at the revision the hub resolves to now."""
    from qlorafx.hub import offline_reason

    offline = ("offline (HF_DATASETS_OFFLINE=1)" if os.environ.get("HF_DATASETS_OFFLINE", "").upper()
               in {"1", "ON", "YES", "TRUE"} else offline_reason())  # as the datasets library reads it
    if offline:
        raise DataFileError(
            f"{dataset_id}: is a hub dataset id and the hub is {offline}; "
            "fetch it once with the hub reachable, or give a local .json/.jsonl/.csv/.parquet file"
        )
    import datasets

    try:
        return datasets.load_dataset(dataset_id, split=split)
    except Exception as err:  # network, missing dataset, missing split: all say the same to the user
        raise DataFileError(f"{dataset_id}: could not load this hub dataset ({str(err).splitlines()[0][:200]}); "
                            "check the id and split, or give a local file") from None


def hub_records(dataset_id: str, split: str) -> list[dict[str, Any]]:
    return hub_dataset(dataset_id, split).to_list()


def hub_fingerprint(dataset) -> str:
    """What a hub dataset's content is known by, for the tokenized-data cache: the fingerprint datasets
    gives the split it loaded, which derives from the files of the revision it resolved (a new
    revision, new files, a new fingerprint), as its own caches key on it."""
    return dataset._fingerprint


def is_hub(path: str) -> bool:
    return not Path(path).exists() and looks_like_hub_id(path)


def record_place(path: Path | str, index: int) -> str:
    """Where the index-th record ``read_records(path)`` returns is, for a message: ``FILE:LINE`` in a .jsonl
    file (as a malformed line is named), else ``FILE: record I`` (I counted from 0 in that file), or
    ``ID: record I`` for a hub dataset. Found again only when a record is refused: reading never pays for it."""
    try:
        return _place(path, index)
    except DataFileError:  # not readable again (records handed over by a caller): the index alone
        return f"{path}: record {index}"


def _place(path: Path | str, index: int) -> str:
    if is_hub(str(path)):
        return f"{path}: record {index}"
    for file in data_files(Path(path)):
        if file.suffix == ".jsonl":  # the lines _jsonl_records reads a record from
            lines = [n for n, line in enumerate(_read_text(file).split("\n"), start=1) if line.strip()]
            if index < len(lines):
                return f"{file}:{lines[index]}"
            index -= len(lines)
            continue
        count = len(_file_records(file, None))
        if index < count:
            return f"{file}: record {index}"
        index -= count
    return f"{path}: record {index}"


def read_records(path: Path | str, limit: int | None = None, split: str = "train") -> list[dict[str, Any]]:
    """The records of a file, a folder of files, or a hub dataset; with ``limit``, only the first ones."""
    if is_hub(str(path)):
        records = hub_records(str(path), split)[:limit]
    else:
        records = []
        for file in data_files(Path(path)):
            records += _file_records(file, None if limit is None else limit - len(records))
            if limit is not None and len(records) >= limit:
                break
    if not records:
        raise DataFileError(f"{path}: holds no records")
    return records
