"""The tokenized-data cache: a miss then a hit, and every input the tokens depend on invalidates it."""

from __future__ import annotations

import json

import pytest

from qlorafx.data import cache
from qlorafx.data.build import load_dataset
from qlorafx.data.formats.alpaca import Alpaca
from qlorafx.model.byte_tokenizer import byte_tokenizer as new_byte_tokenizer
from tests.data.helpers import recipe

RECORDS = [{"instruction": f"Say {i}.", "input": "", "output": f"{i}!", "answer": f"the answer {i}"} for i in range(6)]
TREE = {"message_tree_id": "t", "tree_state": "ready_for_export", "prompt": {"role": "prompter", "text": "Hi", "lang": "en", "replies": [
    {"role": "assistant", "text": "Hallo!", "rank": 0, "lang": "de"}, {"role": "assistant", "text": "Hello there!", "rank": 1, "lang": "en"}]}}


@pytest.fixture
def setup(tmp_path):
    """(the alpaca data file, load) where load(dataset entry, tokenizer, **data settings) -> (report, log lines);
    each call builds the dataset afresh (or from the cache) with a fresh byte tokenizer unless one is given."""
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    (tmp_path / "t.jsonl").write_text(json.dumps(TREE) + "\n")
    base = {"max_length": 256, "cache_dir": str(tmp_path / "cache")}

    def load(dataset=None, tokenizer=None, **changes):
        dataset = {"path": str(data), "format": "alpaca"} if dataset is None else dataset
        r = recipe([dataset], **{**base, **changes})
        lines = []
        report = load_dataset(r.data.datasets[0], r, tokenizer or new_byte_tokenizer(), log=lines.append)
        return report, lines

    return data, load


def _examples(report):
    return [(e.input_ids, e.labels, e.truncated) for e in report.examples]


def test_first_a_miss_then_a_hit_and_the_log_says_so(setup):
    data, load = setup
    first, lines = load()
    assert (first.cache, lines) == ("miss", [f"data cache miss: {data} (6 examples)"])
    second, lines = load()
    assert (second.cache, lines) == ("hit", [f"data cache hit: {data} (6 examples)"])
    assert _examples(second) == _examples(first)  # cached and fresh examples are identical
    assert (second.records, second.conversations, second.dropped, second.truncated, second.filtered) == \
           (first.records, first.conversations, first.dropped, first.truncated, first.filtered) == (6, 6, 0, 0, {})


def test_counts_survive_the_cache(setup, tmp_path):
    _, load = setup
    oasst = {"path": str(tmp_path / "t.jsonl"), "format": "oasst", "all_paths": True}
    # 'Hallo!' and 'Hello there!' make examples of 36 and 42 tokens
    for dataset, settings, expected in [
        ({**oasst, "lang": ["en"]}, {"max_length": 20}, (1, 1, 1, 1, 0, {"messages not in lang en": 1})),
        (oasst, {"max_length": 40, "length_policy": "drop"}, (1, 2, 1, 0, 1, {})),
    ]:
        first, _ = load(dataset, **settings)
        second, _ = load(dataset, **settings)
        assert (first.cache, second.cache) == ("miss", "hit") and _examples(second) == _examples(first)
        counts = [(r.records, r.conversations, len(r.examples), r.truncated, r.dropped, r.filtered) for r in (first, second)]
        assert counts == [expected, expected]


def _chat_tokenizer(template):
    tokenizer = new_byte_tokenizer()
    tokenizer.chat_template = template
    return tokenizer


def _with_special_token():
    tokenizer = new_byte_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|sep|>"]})
    return tokenizer


CHAT = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}"


@pytest.mark.parametrize("change", [
    "data content", "chat template", "special token", "alpaca columns", "oasst lang", "format version",
    "max_length", "length_policy", "train_on_inputs",
])
def test_each_input_of_the_tokens_makes_a_miss(setup, tmp_path, monkeypatch, change):
    data, load = setup
    tokenizer, dataset = None, None
    if change in ("chat template", "special token"):
        chat = tmp_path / "c.jsonl"
        chat.write_text(json.dumps({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}) + "\n")
        dataset = {"path": str(chat), "format": "chat"}
        tokenizer = _chat_tokenizer(CHAT)
    if change == "oasst lang":
        dataset = {"path": str(tmp_path / "t.jsonl"), "format": "oasst", "lang": ["en", "de"]}
    before, _ = load(dataset, tokenizer)
    assert before.cache == "miss" and load(dataset, tokenizer)[0].cache == "hit"

    settings = {}
    if change == "data content":
        data.write_text(data.read_text().replace('"output": "5!"', '"output": "5?"'))
    elif change == "chat template":
        tokenizer = _chat_tokenizer(CHAT.replace(": ", ":: "))
    elif change == "special token":
        tokenizer = _with_special_token()
        tokenizer.chat_template = CHAT
    elif change == "alpaca columns":
        dataset = {"path": str(data), "format": "alpaca", "columns": {"output": "answer"}}
    elif change == "oasst lang":
        dataset = {**dataset, "lang": ["en"]}
    elif change == "format version":
        monkeypatch.setattr(Alpaca, "version", "1+test")
    elif change == "max_length":
        settings = {"max_length": 257}
    elif change == "length_policy":
        settings = {"length_policy": "drop"}
    elif change == "train_on_inputs":
        settings = {"train_on_inputs": True}
    after, lines = load(dataset, tokenizer, **settings)
    assert after.cache == "miss" and lines[0].startswith("data cache miss: ")
    assert load(dataset, tokenizer, **settings)[0].cache == "hit"  # and the new entry is kept
    if change in ("data content", "chat template", "alpaca columns", "oasst lang", "train_on_inputs"):
        assert _examples(after) != _examples(before)  # the rebuilt tokens really differ


@pytest.mark.parametrize("change", [{"weight": 2.0}, {"weight": 0.5}, {"max_examples": 2}])
def test_weight_and_max_examples_do_not_touch_the_cache(setup, change):
    data, load = setup
    first, _ = load()
    again, lines = load({"path": str(data), "format": "alpaca", **change})
    assert (again.cache, lines) == ("hit", [f"data cache hit: {data} (6 examples)"])
    assert _examples(again) == _examples(first)


def test_the_same_content_at_another_path_is_a_hit(setup, tmp_path):
    data, load = setup
    load()
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "d.jsonl").write_bytes(data.read_bytes())
    assert load({"path": str(tmp_path / "copy" / "d.jsonl"), "format": "alpaca"})[0].cache == "hit"


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage", "flipped byte"])
def test_a_corrupt_cache_entry_is_rebuilt(setup, tmp_path, damage):
    _, load = setup
    fresh, _ = load()
    [entry] = (tmp_path / "cache" / "tokenized").glob("*.npz")
    content = entry.read_bytes()
    entry.write_bytes({"truncated": content[: len(content) // 2], "empty": b"", "garbage": b"not a cache entry",
                       "flipped byte": content[:100] + bytes([content[100] ^ 0xFF]) + content[101:]}[damage])
    rebuilt, lines = load()
    assert rebuilt.cache == "miss" and _examples(rebuilt) == _examples(fresh)
    assert load()[0].cache == "hit"  # the entry was written again, whole


def test_no_temporary_file_is_left_behind(setup, tmp_path):
    _, load = setup
    load()
    assert [p.suffix for p in (tmp_path / "cache" / "tokenized").iterdir()] == [".npz"]


def test_cache_root(monkeypatch, tmp_path):
    monkeypatch.setenv("QLORAFX_CACHE", str(tmp_path / "env"))
    assert cache.cache_root(str(tmp_path / "configured")) == tmp_path / "configured"
    assert cache.cache_root(None) == tmp_path / "env"
    monkeypatch.delenv("QLORAFX_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_root(None) == tmp_path / "xdg" / "qlorafx"


def test_encoder_decoder_examples_have_their_own_cache_entry_and_survive_it(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    r = recipe([{"path": str(data), "format": "alpaca"}], max_length=256, cache_dir=str(tmp_path / "cache"))
    load = lambda encoder_decoder: load_dataset(r.data.datasets[0], r, new_byte_tokenizer(), lambda line: None,
                                                encoder_decoder)
    causal = load(False)
    first, second = load(True), load(True)
    assert (causal.cache, first.cache, second.cache) == ("miss", "miss", "hit")  # the layout is part of the key
    # targets shorter than their inputs come back whole: the cache keeps both lengths
    assert all(len(e.labels) < len(e.input_ids) for e in first.examples)
    assert [(e.input_ids, e.labels, e.encoder_decoder) for e in second.examples] == \
           [(e.input_ids, e.labels, True) for e in first.examples]
    assert load(False).cache == "hit" and not any(e.encoder_decoder for e in load(False).examples)


def test_a_hub_dataset_is_read_again_when_its_content_changes(setup, tmp_path, monkeypatch):
    """A hub dataset is cached by the fingerprint datasets gives the revision it resolved, not by its
    id alone (before issue 9 a dataset updated on the hub was never read again). The hub is played
    by datasets' own json builder over a local file: a new revision is a file with new content."""
    import datasets

    served = tmp_path / "hub" / "train.jsonl"
    served.parent.mkdir()
    served.write_text("".join(json.dumps(r) + "\n" for r in RECORDS[:4]))
    real_load = datasets.load_dataset

    def hub(path, split, **kwargs):
        assert path == "some-org/alpaca-updated"
        return real_load("json", data_files=str(served), split=split, cache_dir=str(tmp_path / "datasets"))

    monkeypatch.setattr(datasets, "load_dataset", hub)
    monkeypatch.setattr("qlorafx.hub.offline_reason", lambda: None)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    entry = {"path": "some-org/alpaca-updated", "format": "alpaca"}
    first, _ = setup[1](entry)
    again, _ = setup[1](entry)
    assert (first.cache, again.cache, len(again.examples)) == ("miss", "hit", 4)
    served.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))  # the dataset's next revision
    updated, lines = setup[1](entry)
    assert (updated.cache, len(updated.examples)) == ("miss", 6), lines
