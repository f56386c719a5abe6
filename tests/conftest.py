"""Shared fixtures: the real samples in ../shared/data (skipped when absent) and tiny recipes."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Tokenized-data cache in a temporary folder: tests never read or fill the user's cache."""
    import os

    previous = os.environ.get("QLORAFX_CACHE")
    os.environ["QLORAFX_CACHE"] = str(tmp_path_factory.mktemp("qlorafx-cache"))
    yield
    if previous is None:
        os.environ.pop("QLORAFX_CACHE", None)
    else:
        os.environ["QLORAFX_CACHE"] = previous


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present (it is not part of a user's clone)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def byte_tokenizer():
    from qlorafx.model.byte_tokenizer import byte_tokenizer

    return byte_tokenizer()
