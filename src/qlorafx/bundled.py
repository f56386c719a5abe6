"""Where the bundled recipes and config fragments are: inside an installed wheel, or the source tree."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def bundled_dir(name: str) -> Path:
    """``recipes`` or ``configs``: the wheel ships them under qlorafx/bundled, a checkout at its root."""
    installed = _PACKAGE / "bundled" / name
    return installed if installed.is_dir() else _PACKAGE.parents[1] / name
