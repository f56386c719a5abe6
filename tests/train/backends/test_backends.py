"""The backend registry: names checked in the recipe, packages checked before weights load, and
wandb/tensorboard never imported unless a recipe lists them."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from qlorafx.errors import UserError
from qlorafx.recipe.errors import RecipeError
from qlorafx.recipe.load import load_recipe
from qlorafx.train import backends
from qlorafx.train.backends import BACKENDS, missing_packages, require_packages
from tests.train.tiny import tiny_recipe


def test_registered_backends():
    assert BACKENDS.keys() == ["console", "jsonl", "tensorboard", "wandb"]


def test_an_unknown_backend_is_refused_with_a_suggestion(tmp_path):
    with pytest.raises(RecipeError) as err:
        load_recipe(tiny_recipe(tmp_path), ["logging.backends=[jsonl, wandbb]"])
    assert err.value.problems[0].path == "logging.backends.1"
    assert err.value.problems[0].message == ("unknown metrics backend 'wandbb': expected one of console, jsonl, "
                                             "tensorboard, wandb; did you mean 'wandb'?")


def test_a_backend_listed_twice_is_refused(tmp_path):
    with pytest.raises(RecipeError, match="lists 'jsonl' more than once; list each backend once"):
        load_recipe(tiny_recipe(tmp_path), ["logging.backends=[jsonl, console, jsonl]"])


def test_wandb_section_forbids_unknown_keys_and_modes(tmp_path):
    with pytest.raises(RecipeError) as err:
        load_recipe(tiny_recipe(tmp_path), ["logging.wandb.projekt=x", "logging.wandb.mode=cloud"])
    found = {p.path: p.message for p in err.value.problems}
    assert found["logging.wandb.projekt"].startswith("unknown key; did you mean 'project'?")
    assert found["logging.wandb.mode"].startswith("input should be 'online', 'offline' or 'disabled'")


def test_a_missing_package_is_named_with_the_install_command(monkeypatch):
    real = backends.find_spec
    monkeypatch.setattr(backends, "find_spec", lambda name: None if name == "wandb" else real(name))
    assert missing_packages(["console", "wandb", "tensorboard"]) == {
        1: "backend 'wandb' needs the wandb package, which is not installed; "
           "pip install 'qlorafx[wandb]', or remove 'wandb' from logging.backends"}
    with pytest.raises(UserError, match=r"^logging.backends.0: backend 'wandb' needs the wandb package"):
        require_packages(["wandb"])
    require_packages(["console", "jsonl", "tensorboard"])  # all there: no error


def test_training_without_wandb_or_tensorboard_never_imports_them(tmp_path):
    recipe = tiny_recipe(tmp_path)
    code = textwrap.dedent(f"""
        import json, sys
        from qlorafx.cli.main import main
        rc = main(["train", {str(recipe)!r}, "training.max_steps=2", "logging.backends=[console, jsonl]",
                   "logging.sample_max_new_tokens=0", "data.val_size=0"])
        loaded = sorted({{m.split('.')[0] for m in sys.modules}} & {{"wandb", "tensorboard", "tensorboardX"}})
        print(json.dumps([rc, loaded]), file=sys.__stderr__)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert json.loads(done.stderr.strip().splitlines()[-1]) == [0, []], done.stderr[-2000:]
    assert (tmp_path / "run" / "metrics.jsonl").is_file()


def test_validate_reports_a_missing_backend_package_at_its_line(tmp_path, monkeypatch, capsys):
    from qlorafx.cli.main import main

    real = backends.find_spec
    monkeypatch.setattr(backends, "find_spec", lambda name: None if name == "tensorboard" else real(name))
    recipe = tiny_recipe(tmp_path)
    recipe.write_text(recipe.read_text().replace("logging: {every: 4,", "logging: {backends: [console, tensorboard], every: 4,"))
    line = next(n for n, text in enumerate(recipe.read_text().splitlines(), 1) if text.startswith("logging:"))
    assert main(["validate", str(recipe)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: {recipe}: 1 problem:",
        f"  logging.backends.1 ({recipe}:{line}): backend 'tensorboard' needs the tensorboard package, which is not "
        "installed; pip install 'qlorafx[tensorboard]', or remove 'tensorboard' from logging.backends",
    ]
