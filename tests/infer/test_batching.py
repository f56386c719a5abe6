"""The scheduler without a trained model: which rows share a batch, the batch size limit, per-row
token limits, stop strings held back until they are certain, cancellation of waiting rows, and a
failed batch ending its rows with the error while the next batch runs. The model is a stand-in
whose generate drives the real stopping criteria with scripted tokens, as transformers' does."""

from __future__ import annotations

import threading

import torch

from qlorafx.infer.batching import BASE, Scheduler, Stream, batch_key
from qlorafx.infer.generate import Encoded, Sampling

EOS = 0


class Letters:
    """Token t is the letter chr(96 + t) ('a' = 1); 0 ends an answer."""

    stop_ids = [EOS]
    end_marker = ""

    class tokenizer:
        pad_token_id = EOS

    def decode(self, ids, encoded):
        return self.raw(ids[:ids.index(EOS)] if EOS in ids else ids)

    def raw(self, ids):
        return "".join(chr(96 + t) for t in ids if t)


class ScriptedModel:
    """generate() feeds each row its script, one token per step, through the stopping criteria,
    and records the batches (and adapter names) it was given."""

    device = torch.device("cpu")

    def __init__(self, scripts: dict[int, list[int]], fail_when=None):
        self.scripts, self.fail_when, self.batches = scripts, fail_when, []
        self.resume = threading.Event()  # the first step waits for it
        self.resume.set()

    def generate(self, input_ids, attention_mask, max_new_tokens, stopping_criteria, adapter_names=None, **kwargs):
        rows = [int(row[-1]) for row in input_ids]  # each prompt's last id picks its script
        self.batches.append((rows, adapter_names))
        if self.fail_when and self.fail_when in rows:
            raise RuntimeError("out of memory")
        ids = input_ids
        done = torch.zeros(len(rows), dtype=torch.bool)
        for step in range(max_new_tokens):
            new = torch.tensor([[self.scripts[r][step] if step < len(self.scripts[r]) else EOS] for r in rows])
            ids = torch.cat([ids, new], dim=1)
            done |= stopping_criteria[0](ids, None)
            self.resume.wait()
            if done.all():
                break
        return ids


def row(prompt_id: int, max_new_tokens: int = 10, adapter: str = BASE, stop=(), temperature=0.0, seed=None,
        alone=False) -> Stream:
    return Stream("m", adapter, Letters(), Encoded([5, prompt_id], "prompt"),
                  Sampling(max_new_tokens=max_new_tokens, temperature=temperature), tuple(stop), seed, alone)


def test_which_rows_may_share_a_batch():
    assert batch_key(row(1, adapter="a")) == batch_key(row(2, adapter="b")) == batch_key(row(3))  # mixed adapters
    assert batch_key(row(1, temperature=0.7)) == batch_key(row(2, temperature=0.7)) != batch_key(row(3))
    assert batch_key(row(1, temperature=0.7, seed=3)) != batch_key(row(1, temperature=0.7, seed=3))  # seeded: alone
    dora = row(1, adapter="d", alone=True)
    assert batch_key(dora) == batch_key(row(2, adapter="d", alone=True)) != batch_key(row(3, adapter="a"))


def test_rows_end_on_their_own_limits_stops_and_stop_strings():
    model = ScriptedModel({1: [1, 2, 3, 4, 5, 6], 2: [8, 9, EOS], 3: [1, 2, 3, 4, 5, 6], 4: [3, 1, 20, 3, 1, 20]})
    scheduler = Scheduler(model, max_batch=8, gather_s=0)
    with scheduler.model_lock:
        rows = [scheduler.submit(row(1, max_new_tokens=4, adapter="a")), scheduler.submit(row(2, adapter="b")),
                scheduler.submit(row(3)), scheduler.submit(row(4, stop=("cat",)))]
    results = [r.result() for r in rows]
    assert model.batches == [([1, 2, 3, 4], ["a", "b", BASE, BASE])]  # one generate, each row's adapter
    assert [(c.text, c.finish_reason, c.completion_tokens) for c in results] == [
        ("abcd", "length", 4), ("hi", "stop", 3), ("abcdef", "stop", 7), ("", "stop", 3)]
    assert list(rows[3]) == []  # 'ca' was held back: it could have been (and was) the start of 'cat'
    assert "".join(rows[0]) == "abcd"
    scheduler.close()


def test_max_batch_splits_and_waiting_rows_can_be_cancelled():
    model = ScriptedModel({i: [1, EOS] for i in range(1, 6)})
    scheduler = Scheduler(model, max_batch=2, gather_s=0)
    with scheduler.model_lock:
        rows = [scheduler.submit(row(i)) for i in range(1, 6)]
        rows[3].cancel()
    assert [r.result().finish_reason for r in rows] == ["stop", "stop", "stop", "cancelled", "stop"]
    assert [b[0] for b in model.batches] == [[1, 2], [3, 5]]
    scheduler.close()


def test_a_failed_batch_ends_its_rows_with_the_error_and_the_next_batch_runs():
    model = ScriptedModel({1: [1, EOS], 2: [2, EOS]}, fail_when=1)
    scheduler = Scheduler(model, gather_s=0)
    failed = scheduler.submit(row(1)).result()
    assert (failed.finish_reason, failed.error) == ("error", "RuntimeError: out of memory")
    assert scheduler.submit(row(2)).result().text == "b"
    scheduler.close()


def test_a_row_cancelled_mid_batch_stops_at_the_next_token_and_the_other_goes_on():
    model = ScriptedModel({1: [1] * 50, 2: [2] * 50})
    model.resume.clear()
    scheduler = Scheduler(model, gather_s=0)
    with scheduler.model_lock:
        cancelled, other = scheduler.submit(row(1, max_new_tokens=50)), scheduler.submit(row(2, max_new_tokens=50))
    pieces = iter(cancelled)
    assert next(pieces) == "a"  # the batch has begun, and waits after its first token
    cancelled.cancel()
    model.resume.set()
    assert other.result().text == "b" * 50
    assert cancelled.result().finish_reason == "cancelled" and cancelled.ids == [1]
    scheduler.close()
