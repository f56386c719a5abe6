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


def test_the_readme_example_report_is_what_validate_prints(tmp_path, monkeypatch, capsys):
    """The README shows a report for `lora.rank` on line 14 and a misspelt optimizer: run exactly that."""
    from qlorafx.cli.main import main

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = readme.split("there is no traceback:\n\n```\n", 1)[1].split("\n```", 1)[0].splitlines()
    command = block[0].removeprefix("$ qlorafx ").split()
    expected = [line.replace("/home/me/project", str(tmp_path)) for line in block[1:]]  # where the README ran it
    (tmp_path / "recipes" / "data").mkdir(parents=True)
    (tmp_path / "recipes" / "data" / "train.jsonl").write_text('{"instruction": "Say hi.", "output": "Hi."}\n')
    lines = ["description: my first recipe", "model:", "  loader: from_config", "  config:", "    model_type: llama",
             "    hidden_size: 64", "    intermediate_size: 128", "    num_hidden_layers: 2", "    num_attention_heads: 2",
             "data:", "  datasets:", "    - {path: data/train.jsonl, format: alpaca}", "lora:", "  rank: 8",
             "output_dir: runs/mine"]
    assert lines[13] == "  rank: 8"  # line 14, as the README says
    (tmp_path / "recipes" / "mine.yaml").write_text("\n".join(lines) + "\n")
    monkeypatch.chdir(tmp_path)
    assert main(command) == 2
    assert capsys.readouterr().err.splitlines() == expected
