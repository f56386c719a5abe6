"""Generation feeds the model the training prompt ids, batches with left padding without changing
greedy outputs, reproduces the run's own sample, is seeded, and refuses bad options before any weight
loads. (How prompts render: test_prompt.py.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from qlorafx.infer import generate as g
from qlorafx.infer.prompt import GenerateError, Prompter, conversation
from qlorafx.report.run import trained_run
from tests.infer.finished import finished_run
from tests.infer.test_prompt import ALPACA, _training_examples, without


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return finished_run(tmp_path_factory)


@pytest.fixture(scope="module")
def generator(run_dir):
    from qlorafx.train.quiet import quiet_libraries

    quiet_libraries()
    return g.Generator(trained_run(run_dir), g.Sampling(max_new_tokens=8))


# ---------------------------------------------------------------------------------------------
# Options that are refused before anything loads.


def test_sampling_options_are_checked():
    assert g.Sampling().check().greedy
    assert g.Sampling().generate_kwargs() == {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    assert g.Sampling(temperature=0.7, top_p=0.9, top_k=40).generate_kwargs() == {
        "do_sample": True, "temperature": 0.7, "top_p": 0.9, "top_k": 40}
    bad = g.Sampling(max_new_tokens=0, temperature=-0.1, top_p=1.5, top_k=-1)
    assert len(bad.problems()) == 4
    for sampling, message in ((g.Sampling(top_p=0), "--top-p must be in (0, 1]"),
                              (g.Sampling(temperature=float("nan")), "--temperature must be 0 (greedy)"),
                              (g.Sampling(max_new_tokens=0), "--max-new-tokens must be at least 1")):
        with pytest.raises(GenerateError, match=re.escape(message)):
            sampling.check()


# ---------------------------------------------------------------------------------------------
# With the run's model: what is fed, batching, and the run's own sample.


def test_the_model_is_fed_the_training_prompt_ids_left_padded(generator, monkeypatch, byte_tokenizer):
    model = generator.model
    calls = []
    original = model.generate

    def spy(**kwargs):
        calls.append(kwargs)
        return original(**kwargs)

    monkeypatch.setattr(model, "generate", spy)
    run = generator.run
    examples = _training_examples(run, generator.tokenizer)[:6]
    encoded = [generator.encode(without(r, "output")) for r in ALPACA[:6]]
    generator.answer(encoded, batch_size=4)
    assert [len(c["input_ids"]) for c in calls] == [4, 2]
    fed = [row[mask.bool()].tolist() for c in calls for row, mask in zip(c["input_ids"], c["attention_mask"])]
    assert fed == [e.prompt_ids for e in examples]
    first = calls[0]
    lengths = first["attention_mask"].sum(1)
    assert len(set(lengths.tolist())) > 1  # prompts of different lengths, so there was padding
    for row, mask in zip(first["input_ids"], first["attention_mask"]):  # on the left
        assert mask.tolist() == sorted(mask.tolist()) and set(row[mask == 0].tolist()) <= {byte_tokenizer.pad_token_id}


def test_batched_greedy_generation_equals_one_at_a_time(generator):
    prompts = ["Hi", "What sound does a cow make?", "Name the color of the sky on a clear summer day, please.",
               "x" * 5, "Count: 1, 2, 3", ALPACA[1]["instruction"]]
    ids = [generator.encode(p).ids for p in prompts]
    assert len({len(i) for i in ids}) == len(ids)
    model, sampling = generator.model, g.Sampling(max_new_tokens=10)
    pad, stop = generator.tokenizer.pad_token_id, generator.prompter.stop_ids

    def both():
        batched = g.generate_ids(model, ids, pad, stop, sampling)
        single = [g.generate_ids(model, [one], pad, stop, sampling)[0] for one in ids]
        return batched, single

    batched, single = both()
    assert batched == single
    with model.disable_adapter():  # the random base: outputs that differ from prompt to prompt
        batched, single = both()
    assert batched == single and len({tuple(b) for b in batched}) >= 4


def test_generation_reproduces_the_runs_own_sample(generator):
    """run.json's sample came from the trained model in memory; generate reloads base + adapter from disk."""
    status = generator.run.status
    run = generator.run
    [record] = [r for r in ALPACA if Prompter(run, generator.tokenizer).encode(
        conversation(run.dataset, without(r, "output"))).text == status["sample_prompt"]]
    answer = generator.answer([generator.encode(without(record, "output"))])[0]
    assert answer == status["sample_output"] and answer


def test_sampling_is_seeded(run_dir, generator):
    encoded = [generator.encode("Hi")] * 3
    runs = []
    for _ in range(2):
        sampler = g.Generator(generator.run, g.Sampling(max_new_tokens=8, temperature=1.5, seed=3),
                              generator.tokenizer, generator.model)
        runs.append(sampler.answer(encoded))
    assert runs[0] == runs[1] and len(set(runs[0])) > 1  # the same seed repeats; rows draw differently
