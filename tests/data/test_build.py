"""From a recipe to train and validation features: split, caps, weights, length policy, and the errors."""

from __future__ import annotations

import json

import pytest

from qlorafx.data.build import DataError, prepare
from tests.data.helpers import recipe


def _write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


@pytest.fixture
def files(tmp_path):
    """Two alpaca files whose every example is distinct: a (20 records) and b (10 records)."""
    a = _write(tmp_path / "a.jsonl", [{"instruction": f"A{i}", "input": "", "output": f"a{i}"} for i in range(20)])
    b = _write(tmp_path / "b.jsonl", [{"instruction": f"B{i}", "input": "", "output": f"b{i}"} for i in range(10)])
    return a, b


def _prepare(datasets, byte_tokenizer, **settings):
    return prepare(recipe(datasets, **{"max_length": 256, "packing": False, **settings}), byte_tokenizer, log=lambda line: None)


def _names(examples, tokenizer):
    """Each example's instruction (A3, B7, ...), read back from its tokens."""
    return [tokenizer.decode(e.input_ids).split("### Instruction:\n")[1].split("\n")[0] for e in examples]


def test_the_val_split_is_deterministic_per_seed(files, byte_tokenizer):
    a, _ = files
    split = lambda seed: _names(_prepare([{"path": a}], byte_tokenizer, val_size=5, seed=seed).val_examples, byte_tokenizer)
    assert split(0) == split(0)
    assert len(set(split(0))) == 5 and set(split(0)) != set(split(1))


@pytest.mark.parametrize("val_size, n_val", [(0.25, 5), (0.1, 2), (5, 5), (1, 1), (0, 0)])
def test_val_size_as_fraction_or_count(files, byte_tokenizer, val_size, n_val):
    a, _ = files
    prepared = _prepare([{"path": a}], byte_tokenizer, val_size=val_size)
    assert (len(prepared.val_examples), len(prepared.train_examples)) == (n_val, 20 - n_val)
    assert sorted(_names(prepared.val_examples + prepared.train_examples, byte_tokenizer)) == sorted(f"A{i}" for i in range(20))
    assert len(prepared.val) == n_val and len(prepared.train) == 20 - n_val  # unpacked: one feature row per example


@pytest.mark.parametrize("val_size", [20, 30, 0.999])
def test_a_val_split_that_leaves_no_training_example_is_an_error(files, byte_tokenizer, val_size):
    with pytest.raises(DataError, match=f"data.val_size {val_size:g} leaves no training examples: the data gives 20 examples"):
        _prepare([{"path": files[0]}], byte_tokenizer, val_size=val_size)


def test_max_examples_caps_each_dataset(files, byte_tokenizer):
    a, b = files
    prepared = _prepare([{"path": a, "max_examples": 7}, {"path": b, "max_examples": 50}], byte_tokenizer, val_size=3)
    names = _names(prepared.train_examples + prepared.val_examples, byte_tokenizer)
    assert len(names) == 17 and len(set(names)) == 17
    assert sum(n.startswith("A") for n in names) == 7 and sum(n.startswith("B") for n in names) == 10


@pytest.mark.parametrize("weight, n_a", [(2, 40), (3, 60), (0.5, 10), (1.5, 30), (0.25, 5)])
def test_weight_scales_the_training_part(files, byte_tokenizer, weight, n_a):
    a, b = files
    prepared = _prepare([{"path": a, "weight": weight}, {"path": b}], byte_tokenizer)
    names = _names(prepared.train_examples, byte_tokenizer)
    assert sum(n.startswith("A") for n in names) == n_a and sum(n.startswith("B") for n in names) == 10
    if weight >= 1:  # whole repeats: every example of a appears int(weight) or int(weight) + 1 times
        assert {names.count(f"A{i}") for i in range(20)} <= {int(weight), int(weight) + 1}
    else:  # a share: distinct examples
        assert len({n for n in names if n.startswith("A")}) == n_a


def test_the_val_split_is_taken_before_weights_so_no_repeat_lands_on_both_sides(files, byte_tokenizer):
    a, b = files
    prepared = _prepare([{"path": a, "weight": 2}, {"path": b, "weight": 0.5}], byte_tokenizer, val_size=6)
    val, train = _names(prepared.val_examples, byte_tokenizer), _names(prepared.train_examples, byte_tokenizer)
    assert len(val) == len(set(val)) == 6
    assert not set(val) & set(train)
    n_a_val = sum(n.startswith("A") for n in val)
    assert sum(n.startswith("A") for n in train) == 2 * (20 - n_a_val)
    assert sum(n.startswith("B") for n in train) == round((10 - (6 - n_a_val)) * 0.5)


def test_the_training_order_is_shuffled_and_seeded(files, byte_tokenizer):
    a, b = files
    order = lambda seed: _names(_prepare([{"path": a}, {"path": b}], byte_tokenizer, seed=seed).train_examples, byte_tokenizer)
    assert order(3) == order(3) != order(4)
    assert order(3)[:20] != [f"A{i}" for i in range(20)]


def test_length_policy_drop_drops_and_counts_truncate_truncates_and_counts(tmp_path, byte_tokenizer):
    records = [{"instruction": "x", "output": "y" * n} for n in (1, 100, 2, 200)]
    path = _write(tmp_path / "d.jsonl", records)
    prompt = ("Below is an instruction that describes a task. Write a response that appropriately completes the "
              "request.\n\n### Instruction:\nx\n\n### Response: ")
    short = 1 + len(prompt) + 1  # BOS, a token per byte of the prompt, EOS: the example length less its output
    max_length = short + 50  # room for the two short outputs (and EOS), not the long ones
    dropped = _prepare([{"path": path}], byte_tokenizer, max_length=max_length, length_policy="drop")
    assert [r.dropped for r in dropped.datasets] == [2] and [r.truncated for r in dropped.datasets] == [0]
    assert sorted(len(e.input_ids) for e in dropped.train_examples) == [short + 1, short + 2]
    truncated = _prepare([{"path": path}], byte_tokenizer, max_length=max_length, length_policy="truncate")
    assert [r.dropped for r in truncated.datasets] == [0] and [r.truncated for r in truncated.datasets] == [2]
    assert sorted(len(e.input_ids) for e in truncated.train_examples) == [short + 1, short + 2, max_length, max_length]
    assert all(e.truncated == (len(e.input_ids) == max_length) for e in truncated.train_examples)


def test_a_dataset_emptied_by_filters_is_a_clear_error(tmp_path, byte_tokenizer):
    tree = {"message_tree_id": "t", "tree_state": "ready_for_export", "prompt": {
        "role": "prompter", "text": "Hola", "lang": "es", "replies": [{"role": "assistant", "text": "Hola!", "rank": 0, "lang": "es"}]}}
    path = _write(tmp_path / "o.jsonl", [tree, {**tree, "tree_state": "growing"}])
    with pytest.raises(DataError) as info:
        _prepare([{"path": path, "format": "oasst", "lang": ["en"]}], byte_tokenizer)
    assert str(info.value) == (
        f"{path}: no examples left after filtering ({{'messages not in lang en': 1, 'trees with no usable conversation': 1, "
        "'trees not ready_for_export': 1}) and length policy (dropped 0); check the filters and max_length")


def test_a_dataset_emptied_by_the_length_policy_is_a_clear_error(files, byte_tokenizer):
    with pytest.raises(DataError, match=r"a.jsonl: no examples left after filtering \(nothing filtered\) and length "
                                        r"policy \(dropped 20\); check the filters and max_length"):
        _prepare([{"path": files[0]}], byte_tokenizer, max_length=10, length_policy="drop")


def test_no_trained_token_at_all_is_an_error(files, byte_tokenizer):
    # 100 tokens hold the alpaca prompt's start only: every response is truncated away
    with pytest.raises(DataError, match="no training example has a token that carries loss: every response was masked or "
                                        "truncated away; raise data.max_length or check the format"):
        _prepare([{"path": files[0]}], byte_tokenizer, max_length=100)


def test_a_missing_data_file_and_a_bad_record_are_user_errors(files, tmp_path, byte_tokenizer):
    from qlorafx.errors import UserError

    with pytest.raises(UserError, match=r"nope.jsonl: data file not found"):  # the CLI prints it and exits 2
        _prepare([{"path": str(tmp_path / "nope.jsonl")}], byte_tokenizer)
    path = _write(tmp_path / "bad.jsonl", [{"instruction": "a", "output": "b"}, {"instruction": "c"}])
    with pytest.raises(DataError, match=r"bad.jsonl:2: format 'alpaca' needs field 'output'; the record has instruction"):
        _prepare([{"path": path}], byte_tokenizer)


def test_packing_keeps_every_token_in_rows_of_at_most_max_length(files, byte_tokenizer):
    a, b = files
    prepared = _prepare([{"path": a}, {"path": b}], byte_tokenizer, packing=True, max_length=512, val_size=4)
    assert all(len(row["input_ids"]) <= 512 and sum(row["lengths"]) == len(row["input_ids"]) for row in prepared.train)
    assert sum(len(r["input_ids"]) for r in prepared.train) == sum(len(e.input_ids) for e in prepared.train_examples)
    assert sum(len(r["input_ids"]) for r in prepared.val) == sum(len(e.input_ids) for e in prepared.val_examples)
    assert len(prepared.train) < len(prepared.train_examples)  # rows really hold several examples


def test_validate_sees_a_bad_leading_record_without_a_tokenizer(tmp_path):
    from qlorafx.data.build import check_datasets
    from qlorafx.recipe.load import load_recipe

    _write(tmp_path / "bad.jsonl", [{"instruction": "a", "output": "b"}, {"question": "c"}])
    (tmp_path / "r.yaml").write_text("model: {loader: from_config, config: {model_type: llama}}\n"
                                     "data:\n  datasets:\n    - {path: bad.jsonl}\n    - {path: org/hub-only}\noutput_dir: out\n")
    loaded = load_recipe(tmp_path / "r.yaml")
    [problem] = check_datasets(loaded.recipe, loaded.sources)
    assert problem.path == "data.datasets.0.path" and problem.source == f"{tmp_path / 'r.yaml'}:4"
    assert problem.message == (f"{tmp_path / 'bad.jsonl'}:2: format 'alpaca' needs field 'instruction'; "
                               "the record has question")


def test_a_weight_that_leaves_a_dataset_nothing_is_an_error(files, byte_tokenizer):
    a, b = files
    with pytest.raises(DataError, match=r"data.datasets.1 \(.*b.jsonl\): weight 0.01 and the validation split leave it "
                                        r"no training examples"):
        _prepare([{"path": a}, {"path": b, "weight": 0.01}], byte_tokenizer)


@pytest.mark.parametrize("setting, message", [
    ({"packing": True}, "data.packing: true, but the model is an encoder-decoder (T5 family)"),
    ({"train_on_inputs": True}, "data.train_on_inputs: true, but the model is an encoder-decoder (T5 family)"),
])
def test_encoder_decoder_refuses_what_it_cannot_honour(files, byte_tokenizer, setting, message):
    r = recipe([{"path": files[0]}], **{"max_length": 256, "packing": False, **setting})
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        prepare(r, byte_tokenizer, lambda line: None, encoder_decoder=True)


def test_encoder_decoder_split_examples_are_prompt_and_target(files, byte_tokenizer):
    r = recipe([{"path": files[0]}], max_length=256, packing=False, val_size=4)
    prepared = prepare(r, byte_tokenizer, lambda line: None, encoder_decoder=True)
    assert (len(prepared.train_examples), len(prepared.val_examples)) == (16, 4)
    for example, features in zip(prepared.train_examples, prepared.train):
        assert example.encoder_decoder and features == example.as_features()
        assert byte_tokenizer.decode(example.input_ids).endswith("### Response: ")
        assert byte_tokenizer.decode(example.labels, skip_special_tokens=False).endswith("</s>")
