"""Reading one recipe file: safe YAML only, every problem with its line, bombs refused quickly."""

from __future__ import annotations

import time
import uuid

import pytest

from qlorafx.recipe.load import load_recipe
from qlorafx.recipe.yaml_source import MAX_BYTES, MAX_NODES, read_yaml


def test_key_lines_are_recorded(write):
    path = write("r.yaml", """
        # a comment
        model:
          loader: from_config

        data:
          datasets:
            - path: a.jsonl
              format: alpaca
            - {path: b.jsonl}
        output_dir: out
    """)
    source, problems = read_yaml(path)
    assert problems == []
    assert source.lines == {
        "model": 2, "model.loader": 3, "data": 5, "data.datasets": 6,
        "data.datasets.0": 7, "data.datasets.0.path": 7, "data.datasets.0.format": 8,
        "data.datasets.1": 9, "data.datasets.1.path": 9, "output_dir": 10,
    }
    assert source.atomic == {"model.loader", "data.datasets", "data.datasets.0.path", "data.datasets.0.format",
                             "data.datasets.1.path", "output_dir"}
    assert source.where("data.datasets.0.format") == f"{path}:8"
    assert source.where("not.there") == str(path)


@pytest.mark.parametrize(
    "tag",
    [
        "!!python/object/apply:os.system",
        "!!python/object/new:os.system",
        "!!python/name:os.system",
        "!!python/object:os.system",
    ],
)
def test_python_tags_are_refused_and_not_run(write, problems, tmp_path, tag):
    marker = tmp_path / f"pwned-{uuid.uuid4().hex}"
    path = write("evil.yaml", f"""
        description: harmless
        model: {tag} ["touch {marker}"]
        output_dir: out
    """)
    [(key, (message, source))] = problems(path).items()
    assert (key, source) == ("", f"{path}:2")
    expected_tag = "tag:yaml.org,2002:" + tag.removeprefix("!!")
    assert message == (f"YAML tag {expected_tag} is not allowed: recipes hold plain data only "
                       "(strings, numbers, booleans, lists, mappings); remove the tag")
    assert not marker.exists()


def test_a_python_tag_in_an_extended_file_is_refused(write, problems, tmp_path):
    marker = tmp_path / f"pwned-{uuid.uuid4().hex}"
    parent = write("parent.yaml", f"""
        lora:
          r: !!python/object/apply:os.system ["touch {marker}"]
    """)
    child = write("child.yaml", "extends: parent.yaml\n")
    [(message, source)] = problems(child).values()
    assert source == f"{parent}:2"
    assert "is not allowed" in message
    assert not marker.exists()


def test_unparseable_yaml_reports_the_line(write, problems):
    path = write("broken.yaml", """
        model:
          loader: from_config
          config: {model_type: llama
        data: []
    """)
    assert problems(path) == {
        "": ("not valid YAML: expected ',' or '}', but got ':'; check the indentation and quoting on this line", f"{path}:4"),
    }


def test_bad_indentation_reports_the_line(write, problems):
    path = write("broken.yaml", """
        model:
          loader: from_config
         config: x
    """)
    [(message, source)] = problems(path).values()
    assert source == f"{path}:3"
    assert message.startswith("not valid YAML: ")


def test_a_tab_reports_the_line(write, problems):
    path = write("tabs.yaml", "model:\n\tloader: from_config\n")
    [(message, source)] = problems(path).values()
    assert source == f"{path}:2"
    assert message.startswith("not valid YAML: found character '\\t' that cannot start any token")


def test_duplicate_keys_are_reported_with_the_second_line(write, problems):
    path = write("dup.yaml", """
        model:
          loader: from_config
          config: {model_type: llama}
        lora:
          r: 8
          alpha: 16
          r: 32
        data:
          datasets: [{path: a.jsonl}]
        output_dir: out
        output_dir: out2
    """)
    assert problems(path) == {
        "lora.r": ("duplicate key: it is set twice in this mapping; keep one", f"{path}:7"),
        "output_dir": ("duplicate key: it is set twice in this mapping; keep one", f"{path}:11"),
    }


def test_duplicate_keys_inside_a_list_item(write, problems):
    path = write("dup.yaml", """
        data:
          datasets:
            - path: a.jsonl
              path: b.jsonl
    """)
    assert problems(path) == {
        "data.datasets.0.path": ("duplicate key: it is set twice in this mapping; keep one", f"{path}:4"),
    }


def test_the_same_key_in_different_mappings_is_fine(write):
    path = write("r.yaml", """
        model:
          path: x
        data:
          datasets:
            - path: a.jsonl
            - path: b.jsonl
    """)
    assert read_yaml(path)[1] == []


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n", "null\n"])
def test_an_empty_file(tmp_path, problems, text):
    path = tmp_path / "empty.yaml"
    path.write_text(text)
    assert problems(path) == {
        "": ("the file is empty; a recipe is a mapping of sections (model, data, ...)", str(path)),
    }


@pytest.mark.parametrize("text, kind", [("- model\n- data\n", "list"), ("just text\n", "str"), ("42\n", "int")])
def test_the_top_level_must_be_a_mapping(tmp_path, problems, text, kind):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    assert problems(path) == {"": (f"expected a mapping of sections at the top, found a {kind}", str(path))}


def test_an_extended_file_that_is_empty_is_reported(write, problems):
    parent = write("parent.yaml", "# nothing yet\n")
    child = write("child.yaml", "extends: parent.yaml\n")
    assert problems(child) == {
        "": ("the file is empty; a recipe is a mapping of sections (model, data, ...)", str(parent)),
    }


def _laughs(levels: int = 10, width: int = 10) -> str:
    lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]")
    return "\n".join(lines) + "\n"


def test_a_billion_laughs_bomb_is_refused_quickly(tmp_path, problems):
    path = tmp_path / "bomb.yaml"
    path.write_text(_laughs())  # 10**10 strings once expanded
    start = time.perf_counter()
    found = problems(path)
    assert time.perf_counter() - start < 2
    assert found == {
        "": (f"more than {MAX_NODES:,} YAML nodes (aliases expanding?); "
             "a recipe is small: remove the anchors and aliases", str(path)),
    }


def test_a_few_anchors_and_aliases_are_fine(write):
    path = write("r.yaml", """
        model:
          loader: from_config
          config: &cfg {model_type: llama, hidden_size: 8}
        data:
          datasets:
            - &ds {path: a.jsonl, format: alpaca}
            - *ds
        description: x
        output_dir: out
    """)
    recipe = load_recipe(path).recipe
    assert len(recipe.data.datasets) == 2 and recipe.model.config["hidden_size"] == 8


def test_a_file_that_is_not_utf8(tmp_path, problems):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("description: caf\u00e9\n".encode("latin-1"))
    assert problems(path) == {"": ("not UTF-8 text (byte 16); save the recipe as UTF-8", str(path))}


def test_utf8_text_is_fine(write):
    source, problems = read_yaml(write("r.yaml", "description: caf\u00e9 \u2014 \u65e5\u672c\n"))
    assert problems == [] and source.data == {"description": "caf\u00e9 \u2014 \u65e5\u672c"}


def test_a_huge_file_is_refused_before_parsing(tmp_path, problems):
    path = tmp_path / "huge.yaml"
    path.write_text("description: " + "x" * MAX_BYTES + "\n")
    size = path.stat().st_size
    assert problems(path) == {"": (f"file is {size:,} bytes; a recipe is at most {MAX_BYTES:,}", str(path))}
