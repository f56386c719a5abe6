"""What the serve tests share."""

from __future__ import annotations

import pytest


@pytest.fixture
def recorded(engine, monkeypatch) -> list:
    """The engine rows the test's requests submit (through the module's ``engine``), to see how they ended."""
    rows, submit = [], engine.submit

    def recording(*args, **kwargs):
        rows.append(submit(*args, **kwargs))
        return rows[-1]

    monkeypatch.setattr(engine, "submit", recording)
    return rows
