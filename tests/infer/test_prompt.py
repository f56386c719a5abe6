"""Prompts render exactly as the run trained: the inference ids equal the training example's prompt,
in every format, history and OpenAI messages included; prompts that do not fit the format are refused
before anything loads. No model: a tokenizer and the run's recipe are enough."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from qlorafx.data.build import load_dataset
from qlorafx.data.collate import IGNORE_INDEX
from qlorafx.infer.prompt import GenerateError, Prompter, conversation, from_messages, read_prompts
from qlorafx.report.run import FinishedRun
from qlorafx.recipe.load import load_recipe
from tests.train.tiny import QUICKSTART_DATA, tiny_recipe

ALPACA = [json.loads(line) for line in QUICKSTART_DATA.read_text().splitlines()]


# ---------------------------------------------------------------------------------------------
# Rendering: the inference prompt is the training prompt, token for token (no model needed).


def _run(tmp_path: Path, dataset: str, records: list) -> FinishedRun:
    tmp_path.mkdir(parents=True, exist_ok=True)
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    recipe = load_recipe(tiny_recipe(tmp_path), [f"data.datasets=[{{path: {data}, {dataset}}}]"]).recipe
    return FinishedRun(tmp_path, recipe, base="", status={"status": "finished"})


def _training_examples(run: FinishedRun, tokenizer):
    return load_dataset(run.dataset, run.recipe, tokenizer, log=lambda *_: None).examples


def _before_last_answer(example) -> list[int]:
    """The training tokens before the last assistant turn (the first token of its trained run)."""
    trained = [i for i, label in enumerate(example.labels) if label != IGNORE_INDEX]
    start = trained[-1]
    while start - 1 in trained:
        start -= 1
    return example.input_ids[:start]


def without(record: dict, key: str) -> dict:
    return {k: v for k, v in record.items() if k != key}


CHAT = [
    {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                  {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Why?"},
                  {"role": "assistant", "content": "Because."}]},
    {"conversations": [{"from": "human", "value": "What is NF4?"}, {"from": "gpt", "value": "A 4-bit type."}]},
]
FORMATS = {
    # name: (dataset entry, training records, the same prompts as given to generate)
    "alpaca": ("format: alpaca", ALPACA[:6], [without(r, "output") for r in ALPACA[:6]]),
    "chat-chatml": ("format: chat, chat_template: chatml", CHAT,
                    [{"messages": CHAT[0]["messages"][:-1]}, {"conversations": CHAT[1]["conversations"][:-1]}]),
    "chat-zephyr": ("format: chat, chat_template: zephyr", CHAT[:1], [{"messages": CHAT[0]["messages"][:-1]}]),
    "guanaco": ("format: guanaco", [{"text": "### Human: Hi### Assistant: Hello!### Human: Why?### Assistant: Because."}],
                [{"text": "### Human: Hi### Assistant: Hello!### Human: Why?"}]),
    "oasst": ("format: oasst", [{"message_tree_id": "t", "tree_state": "ready_for_export", "prompt": {
        "role": "prompter", "text": "Hi", "replies": [{"role": "assistant", "text": "Hello!", "rank": 0}]}}], ["Hi"]),
    "self_instruct": ("format: self_instruct",
                      [{"prompt": "Great phone!\nPositive?\nAnswer:", "completion": " Yes<|endoftext|>"},
                       {"instruction": "Give a synonym.", "instances": [{"input": "happy", "output": "glad"}]}],
                      [{"prompt": "Great phone!\nPositive?\nAnswer:"},
                       {"instruction": "Give a synonym.", "instances": [{"input": "happy"}]}]),
    "template": ("format: template, prompt: 'Q: {question}\\nA: ', response: '{answer}'",
                 [{"question": "What is 2+2?", "answer": "4"}, {"question": "And 3+3?", "answer": "6"}],
                 [{"question": "What is 2+2?"}, "And 3+3?"]),
    "chip2": ("format: chip2", [{"text": "<human>: Hi\n<bot>: Hello!\n<human>: Why?\n<bot>: Because."},
                                {"text": "<human>: What is NF4?\n<bot>: A 4-bit type."}],
              [{"text": "<human>: Hi\n<bot>: Hello!\n<human>: Why?"}, "What is NF4?"]),
    "hh_rlhf": ("format: hh_rlhf", [{"chosen": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Why?\n\nAssistant: Because.",
                                     "rejected": "\n\nHuman: Hi\n\nAssistant: Go away."},
                                    {"chosen": "\n\nHuman: What is NF4?\n\nAssistant: A 4-bit type."}],
                [{"chosen": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Why?"}, "What is NF4?"]),
    "longform": ("format: longform", [{"input": "Write a haiku.\n", "output": "Four bits"}, {"input": "Hi", "output": "!"}],
                 [{"input": "Write a haiku.\n"}, "Hi"]),
    "unnatural_instructions": (
        "format: unnatural_instructions, reformulations: true",
        [{"instances": [{"instruction_with_input": "Color?\nObject: banana", "output": "Yellow."}],
          "reformulations": [{"instruction_with_input": "What color is a banana?", "output": "Yellow."}]}],
        [{"instances": [{"instruction_with_input": "Color?\nObject: banana"}]},
         {"instruction_with_input": "What color is a banana?"}]),
}


def test_every_registered_format_is_prompted_here():
    """A format that forgets its inference side, or is not in FORMATS above, fails here, not in generate."""
    from qlorafx.data.formats import FORMATS as REGISTRY

    completion = {"completion"}  # its prompt is the text to continue: test_a_completion_prompt_is_the_text_to_continue
    assert {name.split("-")[0] for name in FORMATS} | completion == set(REGISTRY.keys())


@pytest.mark.parametrize("name", FORMATS)
def test_inference_ids_are_the_training_prompt_in_every_format(name, tmp_path, byte_tokenizer):
    dataset, records, prompts = FORMATS[name]
    run = _run(tmp_path, dataset, records)
    examples = _training_examples(run, byte_tokenizer)
    prompter = Prompter(run, byte_tokenizer)
    assert len(examples) == len(prompts)
    for prompt, example in zip(prompts, examples):
        encoded = prompter.encode(conversation(run.dataset, prompt))
        assert encoded.ids == _before_last_answer(example)
        assert byte_tokenizer.decode(encoded.ids) == "<s>" + encoded.text and encoded.carried == ""


def test_alpaca_prompt_is_the_training_prompt_up_to_the_response(tmp_path, byte_tokenizer):
    """Both Alpaca templates: text and ids equal training's Rendered.prompt and Example.prompt_ids."""
    from qlorafx.data.formats import FORMATS as REGISTRY
    from qlorafx.data.render import render_text

    run = _run(tmp_path, "format: alpaca", ALPACA)
    prompter = Prompter(run, byte_tokenizer)
    examples = _training_examples(run, byte_tokenizer)
    assert {bool(r["input"]) for r in ALPACA} == {True, False}
    for record, example in zip(ALPACA, examples):
        trained = render_text(REGISTRY.get("alpaca").conversations(record)[0], byte_tokenizer.eos_token)
        encoded = prompter.encode(conversation(run.dataset, without(record, "output")))
        assert encoded.text == trained.prompt and trained.text == trained.prompt + record["output"] + "</s>"
        assert encoded.ids == example.prompt_ids
        if not record["input"]:  # a plain text prompt is the instruction
            assert prompter.encode(conversation(run.dataset, record["instruction"])) == encoded


def test_a_bpe_boundary_is_tokenized_as_in_training(tmp_path):
    """With a byte-level BPE tokenizer, training tokenized the Alpaca prompt's trailing space into the
    response's first token (' A'); the prompt tokenized alone would end in a lone space token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    from qlorafx.data.formats import FORMATS as REGISTRY
    from qlorafx.data.render import render_text

    texts = [render_text(REGISTRY.get("alpaca").conversations(r)[0], "</s>").text for r in ALPACA]
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.post_processor = processors.ByteLevel(trim_offsets=True)
    core.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=400, special_tokens=["<pad>", "<s>", "</s>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    bpe = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>")

    run = _run(tmp_path, "format: alpaca", ALPACA[:8])
    prompter = Prompter(run, bpe)
    for record, example in zip(ALPACA[:8], _training_examples(run, bpe)):
        encoded = prompter.encode(conversation(run.dataset, without(record, "output")))
        assert encoded.ids == example.prompt_ids
        assert bpe(encoded.text)["input_ids"] == encoded.ids + [bpe.convert_tokens_to_ids("Ġ")]  # the naive way
        assert encoded.carried == " "
        first_answer_token = example.input_ids[len(example.prompt_ids)]
        assert prompter.decode([first_answer_token, bpe.eos_token_id], encoded) == record["output"].split()[0]


def test_chat_answers_end_at_the_templates_end_of_turn(tmp_path, byte_tokenizer):
    run = _run(tmp_path, "format: chat, chat_template: chatml", CHAT)
    prompter = Prompter(run, byte_tokenizer)
    assert prompter.end_marker == "<|im_end|>"
    encoded = prompter.encode(conversation(run.dataset, "Hi"))
    assert encoded.text == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    generated = byte_tokenizer("Hello!<|im_end|>\n<|im_start|>user\nmore", add_special_tokens=False)["input_ids"]
    assert prompter.decode(generated, encoded) == "Hello!"
    text_prompter = Prompter(_run(tmp_path / "a", "format: alpaca", ALPACA[:2]), byte_tokenizer)
    assert text_prompter.end_marker == "</s>" and text_prompter.stop_ids == [byte_tokenizer.eos_token_id]


def test_history_is_kept_as_turns_in_the_runs_format(tmp_path, byte_tokenizer):
    chat = _run(tmp_path / "c", "format: chat, chat_template: chatml", CHAT)
    text = Prompter(chat, byte_tokenizer).encode(conversation(chat.dataset, "Why?", [("Hi", "Hello!")])).text
    assert text == ("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"
                    "<|im_start|>user\nWhy?<|im_end|>\n<|im_start|>assistant\n")
    guanaco = _run(tmp_path / "g", "format: guanaco", FORMATS["guanaco"][1])
    text = Prompter(guanaco, byte_tokenizer).encode(conversation(guanaco.dataset, "Why?", [("Hi", "Hello!")])).text
    assert text == "### Human: Hi### Assistant: Hello!</s>### Human: Why?### Assistant: "
    alpaca = _run(tmp_path / "a", "format: alpaca", ALPACA[:2])
    first = Prompter(alpaca, byte_tokenizer).encode(conversation(alpaca.dataset, "Hi")).text
    text = Prompter(alpaca, byte_tokenizer).encode(conversation(alpaca.dataset, "Why?", [("Hi", "Hello!")])).text
    assert text == first + "Hello!</s>" + first.replace("Hi", "Why?")  # the template per message, joined as trained


def test_a_completion_prompt_is_the_text_to_continue(tmp_path, byte_tokenizer):
    run = _run(tmp_path, "format: completion", [{"text": "Any text."}])
    [example] = _training_examples(run, byte_tokenizer)
    encoded = Prompter(run, byte_tokenizer).encode(conversation(run.dataset, "Any te"))
    assert encoded.text == "Any te" and encoded.ids == example.input_ids[:len(encoded.ids)] and len(encoded.ids) == 7


# ---------------------------------------------------------------------------------------------
# Prompts that are refused before anything loads.


@pytest.mark.parametrize("dataset, prompt, message", [
    ("format: template, prompt: '{a} and {b}', response: '{c}'", "text", "names 2 fields (a, b)"),
    ("format: chat", {"messages": CHAT[0]["messages"]}, "the last of the 'messages' must be the user's message"),
    ("format: chat", {"text": "Hi"}, "needs a 'messages' (OpenAI) or 'conversations' (ShareGPT) list"),
    ("format: guanaco", {"text": "### Human: Hi### Assistant: Hello!"}, "ending with a human turn"),
    ("format: alpaca", {"input": "x"}, "needs field 'instruction'"),
    ("format: self_instruct", {"instruction": "x", "instances": []}, "exactly one instance"),
    ("format: alpaca", 3, "expected a text or a JSON object"),
])
def test_prompts_that_do_not_fit_the_format_are_refused(tmp_path, dataset, prompt, message):
    run = _run(tmp_path, dataset, [])
    with pytest.raises(GenerateError, match=re.escape(message)):
        conversation(run.dataset, prompt)


def test_prompt_files_are_read_with_line_numbers(tmp_path):
    good = tmp_path / "p.jsonl"
    good.write_text('"Hi"\n\n{"instruction": "Say hi.", "input": ""}\n')
    assert read_prompts(good) == ["Hi", {"instruction": "Say hi.", "input": ""}]
    for text, message in (('"Hi"\n{oops\n', ":2: not JSON"), ("3\n", ":1: expected a JSON string or object"),
                          ("\n", "holds no prompt")):
        bad = tmp_path / "bad.jsonl"
        bad.write_text(text)
        with pytest.raises(GenerateError, match=message):
            read_prompts(bad)
    with pytest.raises(GenerateError, match="no such file"):
        read_prompts(tmp_path / "missing.jsonl")




# ---------------------------------------------------------------------------------------------
# OpenAI chat messages, as a server receives them.


def test_messages_render_as_the_training_conversation(tmp_path, byte_tokenizer):
    """A chat record's messages up to its last answer are that answer's training prompt, token for token."""
    run = _run(tmp_path, "format: chat, chat_template: chatml", CHAT[:1])
    [example] = _training_examples(run, byte_tokenizer)
    messages = CHAT[0]["messages"][:-1]
    encoded = Prompter(run, byte_tokenizer).encode_messages(messages)
    assert encoded.ids == _before_last_answer(example)
    alpaca = _run(tmp_path / "a", "format: alpaca", ALPACA[:2])
    prompter = Prompter(alpaca, byte_tokenizer)
    assert prompter.encode_messages([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                                     {"role": "user", "content": [{"type": "text", "text": "Wh"},
                                                                  {"type": "text", "text": "y?"}]}]) == \
        prompter.encode(conversation(alpaca.dataset, "Why?", [("Hi", "Hello!")]))


@pytest.mark.parametrize("dataset, messages, message", [
    ("format: chat", [], "'messages' must be a non-empty list"),
    ("format: chat", [{"role": "user", "content": "Hi"}, {"role": "user", "content": "Hi"}],
     "messages[1] is a user message where the assistant's was expected: after an optional system message, user "
     "and assistant alternate"),
    ("format: chat", [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}],
     "the last message is the assistant's; it must be the user's"),
    ("format: chat", [{"role": "system", "content": "Be brief."}, {"role": "assistant", "content": "Hello"},
                      {"role": "user", "content": "Hi"}], "messages[1] is a assistant message where the user's"),
    ("format: chat", [{"role": "user", "content": "Hi"}, {"role": "system", "content": "Be brief."},
                      {"role": "user", "content": "Hi"}], "messages[1] is a system message where the assistant's"),
    ("format: chat", [{"role": "tool", "content": "Hi"}], "messages[0].role is 'tool'; expected one of system, user"),
    ("format: chat", [{"role": "user", "content": [{"type": "image_url"}]}], "messages[0].content[0] is a 'image_url' "
                                                                            "part; only text parts"),
    ("format: guanaco", [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
     "the run trained on format 'guanaco', which has no system turn; leave the system message out"),
    ("format: completion", [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
                            {"role": "user", "content": "Why?"}], "trained on plain text with no turns"),
])
def test_messages_that_do_not_fit_are_refused(tmp_path, dataset, messages, message):
    with pytest.raises(GenerateError, match=re.escape(message)):
        from_messages(_run(tmp_path, dataset, []).dataset, messages)
