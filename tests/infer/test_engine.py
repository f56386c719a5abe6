"""The serving engine: one 4-bit base with two runs' adapters. A mixed batch's rows equal the same
requests answered alone and equal `qlorafx generate`'s answers (greedy, token for token); rows
stream and cancel one by one; runs on another base are refused; adapters load and unload while
serving."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from qlorafx.infer import generate as g
from qlorafx.infer.engine import EngineError, UnknownModel, check_no_base_biases, check_runs, check_same_base
from qlorafx.report.run import FinishedRun, trained_run
from tests.infer.finished import finished_chat_run, finished_run, served_engine
from tests.infer.finished import generators as loaded_generators

QUESTION = "What color is a leaf?"
CHAT = [{"role": "user", "content": QUESTION}]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    return {"alpaca": finished_run(tmp_path_factory), "chat": finished_chat_run(tmp_path_factory)}


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return served_engine(tmp_path_factory)


@pytest.fixture(scope="module")
def generators(tmp_path_factory) -> dict[str, g.Generator]:
    return loaded_generators(tmp_path_factory)


def _alone(generator: g.Generator, prompt) -> tuple[list[int], str]:
    """What `qlorafx generate` answers (its Generator), and the token ids it generated."""
    encoded = generator.encode(prompt)
    ids = g.generate_ids(generator.model, [encoded.ids], generator.tokenizer.pad_token_id,
                         generator.prompter.stop_ids, generator.sampling)[0]
    return ids, generator.answer([encoded])[0]


def test_a_mixed_batch_answers_as_generate_does_for_each_adapter(engine, generators):
    greedy = g.Sampling(max_new_tokens=12)
    before = engine.scheduler.batches_run
    with engine.scheduler.model_lock:  # the three requests wait together, as if they arrived at once
        streams = [engine.submit("alpaca", engine.encode_prompt("alpaca", QUESTION), greedy),
                   engine.submit("chat", engine.encode_chat("chat", CHAT), greedy),
                   engine.submit("base_model", engine.encode_prompt("base_model", QUESTION), greedy)]
    done = [s.result() for s in streams]
    assert engine.scheduler.batches_run == before + 1  # the three rows went through one generate

    alpaca_ids, alpaca_text = _alone(generators["alpaca"], QUESTION)
    chat_ids, chat_text = _alone(generators["chat"], {"messages": CHAT})
    assert (streams[0].ids, done[0].text) == (alpaca_ids, alpaca_text)
    assert (streams[1].ids, done[1].text) == (chat_ids, chat_text)
    assert streams[0].ids != streams[1].ids  # the rows really used different adapters

    for stream, row in zip(streams, done):  # each row alone gives the same tokens as in the mixed batch
        alone = engine.submit(stream.model, stream.encoded, greedy)
        assert (alone.result().text, alone.ids) == (row.text, stream.ids)


def test_rows_stream_piece_by_piece_and_the_pieces_make_the_answer(engine):
    stream = engine.submit("alpaca", engine.encode_prompt("alpaca", QUESTION), g.Sampling(max_new_tokens=10))
    pieces = list(stream)
    completion = stream.result()
    assert len(pieces) > 1 and "".join(pieces) == completion.text
    assert completion.finish_reason == "length" and completion.completion_tokens == 10
    assert completion.prompt_tokens == len(stream.encoded.ids)


def test_a_cancelled_row_stops_and_the_others_go_on(engine):
    long = g.Sampling(max_new_tokens=60)
    prompt = engine.encode_prompt("alpaca", QUESTION)
    expected = engine.submit("chat", engine.encode_chat("chat", CHAT), long)
    expected.result()
    cancelled = engine.submit("alpaca", prompt, long)
    other = engine.submit("chat", engine.encode_chat("chat", CHAT), long)
    next(iter(cancelled))  # its first piece: the batch is running
    cancelled.cancel()
    assert other.result().text == expected.completion.text and other.completion.finish_reason == "length"
    assert cancelled.result().finish_reason == "cancelled"
    assert len(cancelled.ids) < 60


def test_a_seeded_sampled_answer_is_generates_with_that_seed(engine, generators):
    sampling = g.Sampling(max_new_tokens=12, temperature=1.5, top_k=20, seed=7)
    stream = engine.submit("alpaca", engine.encode_prompt("alpaca", QUESTION), sampling, seed=7)
    generator = g.Generator(generators["alpaca"].run, sampling, generators["alpaca"].tokenizer,
                            generators["alpaca"].model)
    assert stream.result().text == generator.answer([generator.encode(QUESTION)])[0]


def test_stop_strings_end_a_row_without_the_stop_text(engine):
    full = engine.submit("alpaca", engine.encode_prompt("alpaca", QUESTION), g.Sampling(max_new_tokens=12)).result()
    stop = full.text[3:5]
    assert stop and stop in full.text
    cut = engine.submit("alpaca", engine.encode_prompt("alpaca", QUESTION), g.Sampling(max_new_tokens=12), stop=(stop,))
    assert cut.result().text == full.text[:full.text.index(stop)] and cut.completion.finish_reason == "stop"


def test_unknown_models_and_prompts_too_long_are_refused(engine):
    with pytest.raises(UnknownModel, match="'nope' does not exist; this server serves: base_model, alpaca, chat"):
        engine.encode_prompt("nope", QUESTION)
    with pytest.raises(g.GenerateError, match="the prompt is 100000 characters, so at least 20000 tokens, but the "
                                              "model has 512 positions"):  # refused before it is tokenized
        engine.encode_chat("chat", [{"role": "user", "content": "x" * 100_000}])
    encoded = engine.encode_prompt("alpaca", QUESTION)
    with pytest.raises(g.GenerateError, match=r"the model has 512 positions; ask for at most \d+ new tokens"):
        engine.submit("alpaca", encoded, g.Sampling(max_new_tokens=10_000))


def test_messages_a_format_cannot_render_are_refused_with_the_reason(engine):
    cases = [([], "non-empty list"),
             ([{"role": "tool", "content": "x"}], r"messages\[0\].role is 'tool'"),
             ([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], "must be the user's"),
             ([{"role": "system", "content": "a"}, *CHAT], "format 'alpaca', which has no system turn"),
             ([{"role": "user", "content": "a"}, *CHAT], r"messages\[1\] is a user message where the assistant's"),
             ([{"role": "user", "content": [{"type": "image_url"}]}], "only text parts")]
    for messages, message in cases:
        with pytest.raises(g.GenerateError, match=message):
            engine.encode_chat("alpaca", messages)
    with pytest.raises(g.GenerateError, match="has no chat template"):
        engine.encode_chat("base_model", CHAT)
    # the chat run renders a system turn and parts with its template
    parts = engine.encode_chat("chat", [{"role": "system", "content": "Be brief."},
                                        {"role": "user", "content": [{"type": "text", "text": QUESTION}]}])
    assert "<|im_start|>system\nBe brief.<|im_end|>" in parts.text


def test_adapters_load_and_unload_while_serving(engine, runs):
    greedy = g.Sampling(max_new_tokens=8)
    want = engine.submit("chat", engine.encode_chat("chat", CHAT), greedy).result().text
    engine.load_adapter(runs["chat"], "chat.v2")  # a '.' is fine in a served name
    assert engine.submit("chat.v2", engine.encode_chat("chat.v2", CHAT), greedy).result().text == want
    with pytest.raises(EngineError, match="'chat.v2' is already served"):
        engine.load_adapter(runs["chat"], "chat.v2")
    engine.unload_adapter("chat.v2")
    with pytest.raises(UnknownModel):
        engine.encode_chat("chat.v2", CHAT)
    with pytest.raises(EngineError, match="is the base model, which cannot be unloaded"):
        engine.unload_adapter("base_model")
    assert engine.submit("chat", engine.encode_chat("chat", CHAT), greedy).result().text == want


def test_runs_on_different_bases_or_quantizations_are_refused(runs, tmp_path):
    run = trained_run(runs["alpaca"])
    other_base = tmp_path / "base_model"
    shutil.copytree(run.base, other_base)
    weights = next(other_base.glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one bit of one weight
    weights.write_bytes(bytes(data))
    same = FinishedRun(tmp_path, run.recipe, str(other_base), run.status)
    with pytest.raises(EngineError, match="trained on the base .* one server loads one base"):
        check_same_base([run, same])
    fp4_section = run.recipe.quantization.model_copy(update={"quant_type": "fp4"})
    fp4 = run.recipe.model_copy(update={"quantization": fp4_section})
    with pytest.raises(EngineError, match="the runs must quantize it alike"):
        check_same_base([run, FinishedRun(tmp_path, fp4, run.base, run.status)])
    with pytest.raises(EngineError, match="two runs are named 'run'"):
        check_runs([runs["alpaca"], runs["alpaca"]])


def test_an_adapter_that_trained_the_base_biases_is_refused(runs, tmp_path):
    """lora.bias all/lora_only saves base-layer biases that peft loads into the shared base: the
    base rows and every other adapter would answer with them, so serving such a run is refused."""
    import json

    from safetensors.torch import load_file, save_file

    import torch

    run = trained_run(runs["alpaca"])
    copy = tmp_path / "biased"
    shutil.copytree(runs["alpaca"], copy)
    adapter = copy / "adapter"
    config = json.loads((adapter / "adapter_config.json").read_text())
    config["bias"] = "all"
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    tensors = load_file(adapter / "adapter_model.safetensors")
    q = next(name for name in tensors if "q_proj.lora_A" in name)
    bias_name = q.split(".lora_A")[0] + ".bias"
    tensors[bias_name] = torch.zeros(tensors[q.replace("lora_A", "lora_B")].shape[0])
    save_file(tensors, adapter / "adapter_model.safetensors")
    with pytest.raises(EngineError, match=r"trained the base's biases \(lora.bias: all, e.g. .*q_proj.bias\)"):
        check_no_base_biases(FinishedRun(copy, run.recipe, run.base, run.status))  # as check_runs/load_adapter call it
    check_no_base_biases(run)  # a plain LoRA run still serves
