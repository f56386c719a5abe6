"""`qlorafx recipes`, `recipes show`, `recipes copy`: the bundled library as a user browses it."""

from __future__ import annotations

import yaml

from qlorafx.recipe.load import load_recipe
from tests.cli.test_cli import qlorafx
from tests.conftest import REPO


def test_list_names_every_bundled_recipe_with_its_description():
    done = qlorafx("recipes")
    assert done.returncode == 0
    for name in ("quickstart", "guanaco/guanaco-7b", "guanaco/guanaco-65b", "alpaca/llama-3.1-8b",
                 "alpaca/mistral-7b", "alpaca/qwen2.5-7b", "self-instruct/llama-3.1-8b", "multi-gpu/llama-3.1-8b-fsdp"):
        assert any(line.startswith(name + " ") for line in done.stdout.splitlines()), name
    assert "Guanaco 65b, QLoRA on OASST1 (the QLoRA paper's run)" in done.stdout


def test_every_recipe_starts_with_its_command_memory_and_source():
    for path in (REPO / "recipes").rglob("*.yaml"):
        head = path.read_text().splitlines()
        name = path.relative_to(REPO)
        assert head[0].startswith(f"# qlorafx train {name}"), name
        comment = " ".join(line for line in head if line.startswith("#"))
        assert "memory" in comment.lower() or "CPU" in comment, name


def test_show_prints_the_recipe_as_written():
    done = qlorafx("recipes", "show", "guanaco/guanaco-33b")
    assert done.returncode == 0
    assert done.stdout == (REPO / "recipes" / "guanaco" / "guanaco-33b.yaml").read_text()


def test_the_guanaco_recipes_carry_the_papers_hyperparameters():
    for size, lr, dropout in (("7b", 2e-4, 0.1), ("13b", 2e-4, 0.1), ("33b", 1e-4, 0.05), ("65b", 1e-4, 0.05)):
        r = load_recipe(REPO / "recipes" / "guanaco" / f"guanaco-{size}.yaml").recipe
        assert (r.optimizer.lr, r.lora.dropout, r.lora.r, r.lora.alpha) == (lr, dropout, 64, 16)
        assert (r.training.max_steps, r.training.micro_batch_size * r.training.grad_accum) == (1875, 16)
        assert (r.quantization.quant_type, r.quantization.double_quant, r.optimizer.name) == ("nf4", True, "paged_adamw_32bit")
        assert (r.scheduler.name, r.scheduler.warmup_ratio, r.training.max_grad_norm) == ("constant", 0.03, 0.3)


def test_copy_writes_a_self_contained_recipe_that_loads_the_same(tmp_path):
    target = tmp_path / "mine.yaml"
    done = qlorafx("recipes", "copy", "guanaco/guanaco-13b", target, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    text = target.read_text()
    assert text.startswith(f"# qlorafx train {target}") and "extends" not in yaml.safe_load(text)
    original = load_recipe(REPO / "recipes" / "guanaco" / "guanaco-13b.yaml").recipe
    copied = load_recipe(target).recipe
    assert copied.model_dump(exclude={"output_dir"}) == original.model_dump(exclude={"output_dir"})
    assert yaml.safe_load(text)["output_dir"] == "runs/guanaco-13b"


def test_copy_never_overwrites_and_unknown_names_get_a_suggestion(tmp_path):
    target = tmp_path / "mine.yaml"
    target.write_text("precious")
    done = qlorafx("recipes", "copy", "quickstart", target)
    assert done.returncode == 2 and "already exists" in done.stderr and target.read_text() == "precious"
    done = qlorafx("recipes", "show", "guanaco-7")
    assert done.returncode == 2 and "did you mean 'guanaco/guanaco-7b'?" in done.stderr
