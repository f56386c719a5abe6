"""The real `qlorafx` command, run as a subprocess: exit codes, messages, and no torch for light commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from qlorafx.recipe.load import load_recipe

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "recipes" / "quickstart.yaml"
HEAVY = ("torch", "transformers", "bitsandbytes", "peft", "accelerate")
# validate builds the model's config with transformers' own config class, in transformers' torch-free mode
TORCH = ("torch", "bitsandbytes", "peft", "accelerate")


def qlorafx(*args: str, cwd: Path | None = None, timeout: int = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    """The command in a fresh interpreter; ``env`` adds to (or overrides) this process's environment."""
    return subprocess.run([sys.executable, "-m", "qlorafx.cli.main", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=timeout,
                          env={**os.environ, **env} if env else None)


def heavy_modules_after(argv: list[str], cwd: Path | None = None, heavy: tuple[str, ...] = HEAVY,
                        setup: str = "") -> list:
    """Run the program (main() with argv as its command line) in a fresh interpreter; its exit code and the
    heavy modules it imported or TRIED to import. A torch-free command (validate) blocks torch
    (sys.modules["torch"] = None), so a guarded `try: import torch / except ImportError` in its path would
    never show in sys.modules: every import that reaches importlib's loader is recorded, blocked or not
    (an import of a module already loaded never does, and is in sys.modules). ``setup`` runs first."""
    code = textwrap.dedent(f"""
        import json, sys
        import _frozen_importlib as bootstrap
        tried = set()
        find_and_load = bootstrap._find_and_load  # what every import of a module not loaded (or blocked) calls
        def recording(name, *args):
            if name.split('.')[0] in {heavy!r}:
                tried.add(name)
            return find_and_load(name, *args)
        bootstrap._find_and_load = recording
    """) + textwrap.dedent(setup) + textwrap.dedent(f"""
        from qlorafx.cli.main import main
        sys.argv = ["qlorafx", *{argv!r}]
        try:
            rc = main()
        except SystemExit as exit:
            rc = exit.code
        loaded = {{m for m, module in sys.modules.items() if m.split('.')[0] in {heavy!r} and module is not None}}
        print(json.dumps([rc, sorted(loaded | tried)]), file=sys.__stderr__)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=60)
    return json.loads(done.stderr.strip().splitlines()[-1])  # [exit code, heavy modules imported or tried]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    write(tmp_path / "data" / "train.jsonl", """
        {"instruction": "Say hi.", "input": "", "output": "Hi."}
        {"instruction": "Add.", "input": "1 + 1", "output": "2"}
    """)
    return write(tmp_path / "recipe.yaml", """
        description: a test recipe
        model:
          loader: from_config
          config:
            model_type: llama
        lora:
          r: 8
        data:
          datasets:
            - path: data/train.jsonl
              format: alpaca
        output_dir: runs/test
    """)


def test_help_works_without_importing_torch():
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "qlorafx.cli.main", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for command in ("train", "validate", "show", "recipes", "report", "schema", "env"):
        assert command in done.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "qlorafx.cli.validate" in imported  # the import log is really there
    assert not {m for m in imported if m.split(".")[0] in HEAVY}


@pytest.mark.parametrize("command", ["validate", "show", "train"])
def test_subcommand_help(command):
    done = qlorafx(command, "--help")
    assert done.returncode == 0
    assert "key.path=value" in done.stdout


def test_console_script_next_to_the_interpreter():
    script = Path(sys.executable).parent / "qlorafx"
    if not script.exists():
        pytest.skip("no qlorafx console script beside this interpreter")
    done = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert done.stdout.startswith("qlorafx ")


def test_no_command_is_a_usage_error():
    done = qlorafx()
    assert done.returncode == 2
    assert "usage: qlorafx" in done.stderr and "Traceback" not in done.stderr


def test_validate_quickstart(tmp_path):
    done = qlorafx("validate", QUICKSTART, f"output_dir={tmp_path / 'run'}")
    assert done.returncode == 0, done.stderr
    data = ROOT / "recipes" / "data" / "quickstart.jsonl"
    assert done.stdout.splitlines() == [
        f"ok: {QUICKSTART}: 4-bit llama, LoRA r=16, data alpaca:{data}",
        "  not checked: examples longer than data.max_length: that needs the tokenizer (qlorafx preprocess counts them)",
    ]
    assert done.stderr == ""


def test_validate_quickstart_does_not_import_torch(tmp_path):
    assert heavy_modules_after(["validate", str(QUICKSTART), f"output_dir={tmp_path / 'run'}"], heavy=TORCH) == [0, []]


def test_the_torch_check_sees_an_import_that_validate_blocked(tmp_path):
    """The check above can fail: a guarded import of torch in validate's path (which the program blocks, so
    that it raises ImportError and nothing lands in sys.modules) is reported all the same."""
    guarded = """
        import qlorafx.preflight as preflight
        checks = preflight.preflight
        def preflight_that_peeks(*args, **kwargs):
            try:
                import torch  # noqa: F401  (what a torch-free command must never even try)
            except ImportError:
                pass
            return checks(*args, **kwargs)
        preflight.preflight = preflight_that_peeks
    """
    argv = ["validate", str(QUICKSTART), f"output_dir={tmp_path / 'run'}"]
    assert heavy_modules_after(argv, heavy=TORCH, setup=guarded) == [0, ["torch"]]


def test_validate_with_a_typo_does_not_import_torch(tmp_path, recipe):
    assert heavy_modules_after(["validate", str(recipe), "lora.rr=1"]) == [2, []]


def test_validate_checks_the_model_config_without_importing_torch(tmp_path, recipe):
    """transformers' config class refuses the values, and nothing of torch is loaded for it."""
    argv = ["validate", str(recipe), "model.config.hidden_size=65", "model.config.num_attention_heads=4"]
    assert heavy_modules_after(argv, heavy=TORCH) == [2, []]


def test_validate_ok_with_overrides(recipe):
    done = qlorafx("validate", recipe, "lora.r=32", "quantization.bits=8")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"ok: {recipe}: 8-bit llama, LoRA r=32, data alpaca:")


def test_validate_a_typo_exits_2_with_did_you_mean(recipe, tmp_path):
    bad = write(tmp_path / "typo.yaml", recipe.read_text().replace("  r: 8", "  rr: 8"))
    done = qlorafx("validate", bad)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        f"error: {bad}: 1 problem:",
        f"  lora.rr ({bad}:7): unknown key; did you mean 'r'? (known keys here: r, alpha, dropout, target_modules, bias, modules_to_save, layers_to_transform, use_dora, use_rslora, init_lora_weights, init_from, dtype)",
    ]
    assert "Traceback" not in done.stderr


def test_validate_reports_every_problem_at_once(recipe):
    done = qlorafx("validate", recipe, "optimizer.name=adamx", "lora.alpha=0", "data.datasets.2.path=x")
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert lines[0] == f"error: {recipe}: 3 problems:"
    assert len(lines) == 4
    assert "did you mean 'adamw'?" in done.stderr
    assert "Traceback" not in done.stderr


def test_validate_a_broken_yaml_file_exits_2(tmp_path):
    bad = write(tmp_path / "bad.yaml", "model:\n  loader: [from_config\n")
    done = qlorafx("validate", bad)
    assert done.returncode == 2
    assert f"({bad}:3): not valid YAML" in done.stderr
    assert "Traceback" not in done.stderr


def test_validate_a_missing_recipe_exits_2(tmp_path):
    done = qlorafx("validate", tmp_path / "nope.yaml")
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == f"  <recipe> ({tmp_path / 'nope.yaml'}): file not found"


def test_validate_a_missing_data_file_exits_2_naming_it(recipe, tmp_path):
    missing = tmp_path / "data" / "gone.jsonl"
    done = qlorafx("validate", recipe, f"data.datasets.0.path={missing}")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"error: {recipe}: 1 problem:",
        f"  data.datasets.0.path (command line): {missing}: data file not found",
    ]


def test_validate_a_missing_data_file_named_in_the_recipe(recipe, tmp_path):
    (tmp_path / "data" / "train.jsonl").unlink()
    done = qlorafx("validate", recipe)
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        f"  data.datasets.0.path ({recipe}:10): {tmp_path / 'data' / 'train.jsonl'}: data file not found"
    )


@pytest.mark.parametrize("field", ["instruction", "output"])
def test_validate_a_record_missing_a_field_its_format_needs(recipe, tmp_path, field):
    record = {"instruction": "Say hi.", "input": "", "output": "Hi."}
    del record[field]
    data = tmp_path / "data" / "train.jsonl"
    data.write_text(json.dumps({"instruction": "ok", "output": "fine"}) + "\n" + json.dumps(record) + "\n")
    done = qlorafx("validate", recipe)
    assert done.returncode == 2
    rest = ", ".join(sorted(record))
    assert done.stderr.splitlines()[-1] == (
        f"  data.datasets.0.path ({recipe}:10): {data}:2: format 'alpaca' needs field {field!r}; the record has {rest}"
    )
    assert "Traceback" not in done.stderr


def test_validate_malformed_json_data_names_the_line(recipe, tmp_path):
    data = tmp_path / "data" / "train.jsonl"
    data.write_text('{"instruction": "a", "output": "b"}\n{"instruction": oops}\n')
    done = qlorafx("validate", recipe)
    assert done.returncode == 2
    assert f"{data}:2: malformed JSON" in done.stderr


def test_show_prints_yaml_that_reloads_to_the_same_recipe(recipe, tmp_path, monkeypatch):
    done = qlorafx("show", recipe, "lora.r=32", "training.max_steps=7", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    shown = yaml.safe_load(done.stdout)
    assert shown["lora"]["r"] == 32 and shown["training"]["max_steps"] == 7
    assert shown["data"]["datasets"] == [{"path": str(tmp_path / "data" / "train.jsonl"), "format": "alpaca",
                                          "weight": 1.0, "max_examples": None, "split": "train", "columns": {}}]
    assert shown["output_dir"] == str(tmp_path / "runs" / "test")
    assert list(shown) == ["description", "model", "quantization", "lora", "data", "optimizer", "scheduler",
                           "training", "logging", "output_dir"]  # every section, defaults filled

    again = write(tmp_path / "elsewhere" / "shown.yaml", done.stdout)
    monkeypatch.chdir(tmp_path / "elsewhere")  # paths in the shown YAML are absolute: they reload from anywhere
    reloaded = load_recipe(again).recipe
    monkeypatch.chdir(tmp_path)  # where `show` ran
    assert reloaded == load_recipe(recipe, ["lora.r=32", "training.max_steps=7"]).recipe
    assert reloaded.lora.r == 32


@pytest.mark.parametrize("bits", ["8", "16"])
def test_show_output_for_8_and_16_bits_reloads(recipe, tmp_path, bits):
    done = qlorafx("show", recipe, f"quantization.bits={bits}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    again = write(tmp_path / "shown.yaml", done.stdout)
    assert load_recipe(again).recipe.quantization.bits == int(bits)


def test_show_quickstart_does_not_import_torch(tmp_path):
    assert heavy_modules_after(["show", str(QUICKSTART)], cwd=tmp_path) == [0, []]


def test_show_a_bad_recipe_exits_2(recipe):
    done = qlorafx("show", recipe, "lora.r=-1")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines()[-1] == "  lora.r (command line): input should be greater than 0; found -1"


def test_recipes_lists_quickstart():
    done = qlorafx("recipes")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    description = yaml.safe_load(QUICKSTART.read_text())["description"]
    assert any(line.startswith("quickstart ") and line.endswith(f"  {description}") for line in lines)
    count = len(list((ROOT / "recipes").rglob("*.yaml")))
    assert lines[-1].startswith(f"({count} recipes in {ROOT / 'recipes'}")


def test_recipes_does_not_import_torch():
    assert heavy_modules_after(["recipes"]) == [0, []]


def test_train_with_a_bad_recipe_fails_before_importing_torch(recipe):
    assert heavy_modules_after(["train", str(recipe), "lora.rr=1"]) == [2, []]
