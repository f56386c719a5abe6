"""The comparison YAML: validated like a recipe, every problem with its key, file and line, and a fix."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from qlorafx.judge.spec import load_comparison
from qlorafx.recipe.errors import RecipeError

VALID = """\
endpoints:
  local: {base_url: "http://127.0.0.1:8000/v1"}
  hosted: {base_url: "https://api.example.com/v1", api_key_env: HOSTED_KEY}
contestants:
  - {name: mine, endpoint: local, model: guanaco}
  - {name: theirs, endpoint: hosted, model: big-model}
judge: {endpoint: hosted, model: judge-model}
output_dir: out
"""


def write(tmp_path: Path, text: str, name: str = "comparison.yaml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def problems(path: Path, overrides: list[str] = ()) -> list[str]:
    with pytest.raises(RecipeError) as caught:
        load_comparison(path, overrides)
    return [p.line().strip() for p in caught.value.problems]


def test_a_valid_comparison_has_the_papers_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    comparison, _ = load_comparison(write(tmp_path, VALID))
    assert comparison.questions is None  # the bundled set
    assert (comparison.ratings.elo.k, comparison.ratings.elo.initial, comparison.ratings.elo.orderings) == (32, 1000, 10_000)
    assert comparison.judge.mode == "pairwise" and comparison.judge.both_orders
    assert (comparison.generation.temperature, comparison.generation.top_p) == (0.7, 0.9)
    assert comparison.output_dir == str(tmp_path / "out")
    assert comparison.endpoints["hosted"].api_key_env == "HOSTED_KEY"


def test_paths_are_relative_to_the_file_that_names_them(tmp_path, monkeypatch):
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    path = write(tmp_path, VALID + "questions: q.jsonl\ncache: shared.sqlite\n", "specs/c.yaml")
    comparison, _ = load_comparison(path, ["contestants.0.run=runs/guanaco"])
    assert comparison.questions == str(tmp_path / "specs" / "q.jsonl")
    assert comparison.contestants[0].run == str(elsewhere / "runs" / "guanaco")  # an override: the current folder
    assert comparison.output_dir == str(elsewhere / "out") and comparison.cache == str(elsewhere / "shared.sqlite")


def test_a_run_names_the_served_model(tmp_path):
    comparison, _ = load_comparison(write(tmp_path, VALID), ["contestants.0.model=null", "contestants.0.run=runs/guanaco-7b"])
    assert comparison.contestants[0].served_model == "guanaco-7b"


def test_unknown_keys_get_their_line_and_a_suggestion(tmp_path):
    path = write(tmp_path, VALID.replace('local: {base_url: "http://127.0.0.1:8000/v1"}',
                                         'local: {base_url: "http://127.0.0.1:8000/v1", concurency: 2}')
                 + "ratings: {refrence: mine}\n")
    found = problems(path)
    assert f"endpoints.local.concurency ({path}:2): unknown key; did you mean 'concurrency'?" in found[0]
    assert f"ratings.refrence ({path}:9): unknown key; did you mean 'reference'?" in found[1]


def test_references_to_missing_endpoints_and_contestants(tmp_path):
    path = write(tmp_path, VALID.replace("endpoint: hosted, model: big-model", "endpoint: hostd, model: big-model")
                 + "ratings: {reference: mien}\n")
    found = problems(path)
    assert (f"contestants.1.endpoint ({path}:6): no endpoint is named 'hostd' (endpoints: local, hosted); "
            f"did you mean 'hosted'?") in found
    assert any(f.startswith(f"ratings.reference ({path}:9): no contestant is named 'mien'") and "did you mean 'mine'?" in f
               for f in found)


def test_every_problem_at_once(tmp_path):
    path = write(tmp_path, """\
        endpoints:
          local: {base_url: "ftp://host", api_key_env: "sk-abcdefghijklmnopqrstuvwxyz"}
        contestants:
          - {name: mine, endpoint: local, model: a}
          - {name: mine, endpoint: local}
        judge: {endpoint: local, model: j, mode: scores}
        matches: against_reference
        output_dir: out
        """)
    found = "\n".join(problems(path))
    assert f"endpoints.local.base_url ({path}:2): expected an http:// or https:// URL" in found
    assert "endpoints.local.api_key_env" in found and "write the variable's NAME here" in found
    assert f"contestants.1 ({path}:5): give model" in found
    assert f"judge.mode ({path}:6): input should be 'pairwise' or 'score'" in found


def test_cross_field_rules(tmp_path):
    path = write(tmp_path, VALID.replace("name: theirs", "name: mine") + "matches: against_reference\n")
    found = problems(path)
    assert any("contestants.1.name" in f and "'mine' is already the name of contestants.0" in f for f in found)
    assert any("ratings.reference" in f and "matches against_reference needs a reference" in f for f in found)


def test_a_prompt_must_hold_its_placeholders(tmp_path):
    path = write(tmp_path, VALID + "judge: {endpoint: hosted, model: j, prompt: {user: 'Which is better? {answer_a}'}}\n")
    [found] = problems(path, [])  # judge set twice is a duplicate key
    assert "duplicate key" in found
    path = write(tmp_path, VALID.replace("judge: {endpoint: hosted, model: judge-model}",
                                         "judge: {endpoint: hosted, model: j, prompt: {user: 'Which? {answer_a}'}}"))
    [found] = problems(path)
    assert found.startswith(f"judge.prompt.user ({path}:7): the judge's message must hold {{question}}, {{answer_a}}, "
                            f"{{answer_b}}; missing {{question}}, {{answer_b}}")


def test_overrides_and_their_problems_name_the_command_line(tmp_path):
    path = write(tmp_path, VALID)
    comparison, _ = load_comparison(path, ["judge.mode=score", "ratings.elo.orderings=500", "ratings.reference=theirs"])
    assert (comparison.judge.mode, comparison.ratings.elo.orderings, comparison.ratings.reference) == ("score", 500, "theirs")
    found = problems(path, ["ratings.elo.orderings=0", "contestants.5.name=x"])
    assert "contestants.5.name (command line): index 5 is past the end of the list (2 items)" in found
    assert "ratings.elo.orderings (command line): input should be greater than or equal to 1; found 0" in found


def test_yaml_is_loaded_safely(tmp_path):
    path = write(tmp_path, VALID + "description: !!python/object/apply:os.system ['echo hacked']\n")
    [found] = problems(path)
    assert "YAML tag" in found and "is not allowed" in found


def test_the_bundled_comparisons_validate():
    from tests.conftest import REPO

    found = sorted(p for p in (REPO / "comparisons").rglob("*.yaml") if not p.name.startswith("_"))  # _: fragments
    assert len(found) >= 3
    for path in found:
        comparison, _ = load_comparison(path)
        assert path.read_text().startswith(f"# qlorafx judge comparisons/{path.relative_to(REPO / 'comparisons')}\n")
        assert len(comparison.contestants) >= 2


def test_prompt_template_and_stop_are_for_completions(tmp_path):
    path = write(tmp_path, VALID)
    comparison, _ = load_comparison(path, ["contestants.0.api=completions", "contestants.0.prompt_template=Q: {question} A:",
                                           "contestants.0.stop=['Q:']"])
    assert (comparison.contestants[0].prompt_template, comparison.contestants[0].stop) == ("Q: {question} A:", ["Q:"])
    [found] = problems(path, ["contestants.0.stop=['Q:']"])
    assert found.startswith("contestants.0 (") and "prompt_template and stop are for api: completions" in found
    [found] = problems(path, ["contestants.0.api=completions", "contestants.0.prompt_template=no question"])
    assert "prompt_template must hold {question}" in found
