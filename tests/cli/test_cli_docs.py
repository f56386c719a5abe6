"""docs/cli.md covers every command the parser has, and every option of each."""

from __future__ import annotations

import argparse

from qlorafx.cli.main import build_parser
from tests.conftest import REPO

CLI_DOC = REPO / "docs" / "cli.md"


def subcommands() -> dict[str, argparse.ArgumentParser]:
    [action] = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_every_command_has_a_section():
    text = CLI_DOC.read_text(encoding="utf-8")
    missing = [name for name in subcommands() if f"\n## qlorafx {name}\n" not in text]
    assert not missing, f"docs/cli.md has no '## qlorafx NAME' section for: {', '.join(missing)}"


def test_every_option_is_documented():
    text = CLI_DOC.read_text(encoding="utf-8")
    for name, parser in subcommands().items():
        section = text.split(f"\n## qlorafx {name}\n", 1)[1].split("\n## ", 1)[0]
        for action in parser._actions:
            for flag in action.option_strings:
                if flag.startswith("--") and flag != "--help":
                    assert f"`{flag}" in section, f"docs/cli.md, qlorafx {name}: {flag} is not documented"
