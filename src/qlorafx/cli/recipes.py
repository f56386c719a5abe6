"""qlorafx recipes [show NAME | copy NAME PATH]: the bundled recipe library.

`recipes` lists them (name and description), `show` prints one as written, `copy` writes a
self-contained copy to edit: fragments merged in, paths made absolute, the header comment kept.
"""

from __future__ import annotations

from pathlib import Path

from qlorafx.bundled import bundled_dir
from qlorafx.errors import UserError


def add_parser(commands) -> None:
    parser = commands.add_parser("recipes", help="list, show or copy the bundled recipes")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    show = actions.add_parser("show", help="print a bundled recipe")
    show.add_argument("name", help="a name from `qlorafx recipes`, e.g. guanaco/guanaco-7b")
    copy = actions.add_parser("copy", help="copy a bundled recipe, fragments merged in, to edit")
    copy.add_argument("name")
    copy.add_argument("path", help="the new recipe file (never overwritten)")
    parser.set_defaults(run=run)


def describe(path: Path) -> str:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError:
        return "(unreadable)"
    return str(data.get("description", "")) if isinstance(data, dict) else ""


def _names(root: Path) -> dict[str, Path]:
    return {str(p.relative_to(root).with_suffix("")): p for p in sorted(root.rglob("*.yaml"))}


def find(name: str) -> Path:
    import difflib

    names = _names(bundled_dir("recipes"))
    if name.removesuffix(".yaml") in names:
        return names[name.removesuffix(".yaml")]
    close = difflib.get_close_matches(name, list(names), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise UserError(f"no bundled recipe {name!r}{hint} (`qlorafx recipes` lists them)")


def header(text: str) -> str:
    """The leading comment block: the command, the memory it needs, where its settings come from."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line)
    return "\n".join(lines) + "\n" if lines else ""


def copy(name: str, target: Path) -> Path:
    import yaml

    from qlorafx.recipe.load import load_recipe, merged

    source = find(name)
    if target.exists():
        raise UserError(f"{target} already exists; choose a new path (a copy never overwrites)")
    data, _, _ = merged(source, resolve_output_dir=False)  # runs/NAME stays relative to where one trains
    text = header(source.read_text(encoding="utf-8")).replace(
        f"recipes/{name.removesuffix('.yaml')}.yaml", str(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(f"{text}# Copied from the bundled recipe {name}, its fragments merged in.\n"
                      + yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    load_recipe(target)  # the copy must validate as the original does
    return target


def run(args) -> int:
    if args.action == "show":
        print(find(args.name).read_text(encoding="utf-8"), end="")
        return 0
    if args.action == "copy":
        print(f"wrote {copy(args.name, Path(args.path))}; edit it, then: qlorafx train {args.path}")
        return 0
    root = bundled_dir("recipes")
    names = _names(root)
    width = max(map(len, names), default=0)
    for name, path in names.items():
        print(f"{name:<{width}}  {describe(path)}")
    print(f"({len(names)} recipes in {root}; `qlorafx recipes show NAME`, `qlorafx recipes copy NAME PATH`)")
    return 0
