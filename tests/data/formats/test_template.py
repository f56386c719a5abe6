"""Template: prompt and response written in the recipe; only plain field names, refused at validation otherwise."""

import textwrap
from collections import Counter

import pytest

from qlorafx.data.build import DataError, conversations_of
from qlorafx.data.formats import FORMATS, Turn
from qlorafx.data.formats.template import TemplateDataset, template_fields
from qlorafx.recipe.errors import RecipeError
from qlorafx.recipe.load import load_recipe
from tests.data.helpers import encode, runs

FMT = FORMATS.get("template")
QA = TemplateDataset(path="qa.jsonl", prompt="Q: {question}\nA: ", response="{answer}")


def test_the_docstring_record():
    assert FMT.conversations({"question": "What is 2+2?", "answer": "4"}, QA) == [[Turn("user", "Q: What is 2+2?\nA: "),
                                                                                  Turn("assistant", "4")]]


def test_several_fields_literal_braces_and_extra_columns():
    options = TemplateDataset(path="x", prompt="{{{topic}}} {question} ({topic})\n", response="{answer} {{done}}")
    record = {"topic": "math", "question": "2+2?", "answer": "4", "unused": 1}
    assert FMT.conversations(record, options) == [[Turn("user", "{math} 2+2? (math)\n"), Turn("assistant", "4 {done}")]]


def test_a_field_in_a_format_spec_is_a_field_too():
    options = TemplateDataset(path="x", prompt="[{q:>{width}}]", response="{a}")
    assert template_fields("[{q:>{width}}]") == ["q", "width"]
    assert FMT.conversations({"q": "hi", "width": "5", "a": "yo"}, options) == [[Turn("user", "[   hi]"), Turn("assistant", "yo")]]


def test_rendered_text_and_mask_token_by_token(byte_tokenizer):
    [example] = encode("template", {"question": "What is 2+2?", "answer": "4"}, byte_tokenizer, QA)
    assert runs(example, byte_tokenizer) == [(False, "<s>Q: What is 2+2?\nA: "), (True, "4</s>")]


def test_a_missing_field_names_the_field_format_and_record():
    with pytest.raises(DataError) as info:
        conversations_of([{"question": "q", "answer": "a"}, {"question": "q", "reply": "a"}], QA, Counter())
    assert str(info.value) == "qa.jsonl: record 1: format 'template' needs field 'answer'; the record has question, reply"


@pytest.mark.parametrize("template, message", [
    ("{x.__class__}", "field {x.__class__} is not a plain name; use {field} with letters, digits and _"),
    ("{x[0]}", "field {x[0]} is not a plain name; use {field} with letters, digits and _"),
    ("{0}", "field {0} is not a plain name; use {field} with letters, digits and _"),
    ("{}", "field {} is not a plain name; use {field} with letters, digits and _"),
    ("{x:{y.__class__}}", "field {y.__class__} is not a plain name; use {field} with letters, digits and _"),
    ("{x", "not a valid template (expected '}' before end of string); write fields as {name} and a literal brace as {{"),
])
def test_attribute_index_and_positional_fields_are_refused_at_recipe_validation(tmp_path, template, message):
    (tmp_path / "qa.jsonl").write_text('{"x": "a", "y": "b"}\n')
    (tmp_path / "recipe.yaml").write_text(textwrap.dedent(f"""\
        model: {{loader: from_config, config: {{model_type: llama}}}}
        data:
          datasets:
            - {{path: qa.jsonl, format: alpaca}}
            - path: qa.jsonl
              format: template
              prompt: 'Q: {template}'
              response: '{{y}}'
        output_dir: out
        """))
    with pytest.raises(RecipeError) as info:
        load_recipe(tmp_path / "recipe.yaml")
    [problem] = info.value.problems
    assert (problem.path, problem.message, problem.source) == ("data.datasets.1.prompt", message, f"{tmp_path / 'recipe.yaml'}:7")


def test_a_format_spec_that_does_not_suit_text_is_a_record_error():
    from qlorafx.data.formats import FORMATS, RecordError
    from qlorafx.data.formats.template import TemplateDataset

    options = TemplateDataset(path="x", prompt="Q{n:d}: ", response="{a}")
    with pytest.raises(RecordError, match=r"format 'template': template 'Q\{n:d\}: ' cannot place this record's text"):
        FORMATS.get("template").conversations({"n": "1", "a": "b"}, options)
