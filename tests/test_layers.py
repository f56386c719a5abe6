"""No module imports a layer above its own: every import statement in src/qlorafx (those inside
functions and TYPE_CHECKING blocks included), parsed with ast, against the layers that
docs/architecture.md draws.

Run as a script to list the imports that run back up (``python -m tests.test_layers [SRC]``).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from tests.conftest import REPO

# Bottom first. A module may import its own layer and those below it, never one above.
LAYERS = (
    # leaf modules: shared types and helpers, no other layer
    ("qlorafx", "errors", "section", "registry", "run_files", "hub", "interrupts", "processes", "bundled"),
    ("data",),  # records -> conversations -> token ids; formats own their training and inference side
    ("model",),  # loaders, quantization, LoRA
    ("train",),  # the Trainer, optimizers, schedules, callbacks, backends, checkpoints
    ("recipe",),  # the typed recipe, assembled from the sections and registries below it
    ("report",),  # a run directory read back; its card and plot
    ("infer", "evaluate", "estimate", "environment"),  # what uses a finished run or a recipe
    ("finetune", "preflight", "judge", "serve"),  # orchestration (and its checks without torch), services on top
    ("cli",),  # one module per command
)
LAYER = {name: rank for rank, names in enumerate(LAYERS) for name in names}
SRC = REPO / "src" / "qlorafx"


def part(module: str) -> str:
    """The layer name of a qlorafx module: its top-level package or module below qlorafx."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def module_name(path: Path, src: Path) -> str:
    parts = ("qlorafx", *path.relative_to(src).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def absolute(node: ast.ImportFrom, package: str) -> str:
    """The module a ``from`` import names: a relative one (``from ..infer import x``) resolved
    against the importing module's package, so it cannot slip past the check."""
    if node.level == 0:
        return node.module or ""
    base = package.split(".")[: len(package.split(".")) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def imported(tree: ast.AST, src: Path, package: str = "qlorafx"):
    """(line, qlorafx module) for each import; ``from qlorafx import x`` names the module qlorafx.x.
    ``package`` is the importing module's package, for relative imports."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "qlorafx")
        elif isinstance(node, ast.ImportFrom) and absolute(node, package).split(".")[0] == "qlorafx":
            node = ast.ImportFrom(module=absolute(node, package), names=node.names, level=0, lineno=node.lineno)
            if node.module == "qlorafx":
                for alias in node.names:
                    submodule = (src / alias.name).is_dir() or (src / f"{alias.name}.py").is_file()
                    yield node.lineno, f"qlorafx.{alias.name}" if submodule else "qlorafx"
            else:
                yield node.lineno, node.module


def back_up_imports(src: Path = SRC) -> list[str]:
    """'module:line imports target (layer a above b)' for every import of a higher layer."""
    found = []
    for path in sorted(src.rglob("*.py")):
        module = module_name(path, src)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for line, target in imported(ast.parse(path.read_text(encoding="utf-8")), src, package):
            if LAYER[part(target)] > LAYER[part(module)]:
                found.append(f"{module}:{line} imports {target} ({part(target)} is above {part(module)})")
    return found


def test_every_module_has_a_layer():
    names = {part(module_name(path, SRC)) for path in SRC.rglob("*.py")}
    assert names - set(LAYER) == set(), "add each new package or top-level module to LAYERS (and the architecture doc)"


def test_no_import_runs_back_up_a_layer():
    assert back_up_imports() == []


def test_the_check_sees_an_import_that_runs_back_up(tmp_path):
    """A data module importing infer (in a function, as a lazy import would) is caught; one
    importing a leaf module is not."""
    (tmp_path / "data").mkdir()
    (tmp_path / "cli").mkdir()
    (tmp_path / "errors.py").write_text("")
    (tmp_path / "data" / "build.py").write_text(
        "from qlorafx.errors import UserError\nfrom qlorafx import errors\n\n"
        "def f():\n    from qlorafx.infer.generate import Generator\n    import qlorafx.cli.main\n"
        "from ..infer.prompt import Prompter\nfrom .. import cli\nfrom . import formats\n")
    assert sorted(back_up_imports(tmp_path)) == [
        "qlorafx.data.build:5 imports qlorafx.infer.generate (infer is above data)",
        "qlorafx.data.build:6 imports qlorafx.cli.main (cli is above data)",
        "qlorafx.data.build:7 imports qlorafx.infer.prompt (infer is above data)",
        "qlorafx.data.build:8 imports qlorafx.cli (cli is above data)"]


if __name__ == "__main__":
    found = back_up_imports(Path(sys.argv[1]) if len(sys.argv) > 1 else SRC)
    print("\n".join(found + [f"{len(found)} imports run back up a layer"]))
