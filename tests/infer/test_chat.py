"""ChatSession: the history rendered in the run's format, the oldest exchanges dropped (only) when the
prompt and an answer no longer fit, OpenAI messages loaded and given back, and runs or messages it
cannot chat with refused before anything loads. No model: a tokenizer and the run's recipe."""

from __future__ import annotations

import re

import pytest

from qlorafx.infer.chat import ChatSession, check_chattable
from qlorafx.infer.prompt import GenerateError, Prompter
from tests.infer.test_prompt import ALPACA, CHAT, _run

EXCHANGES = [("What sound does a cow make?", "Moo."), ("And a dog?", "Woof."), ("And a cat?", "Meow.")]


def alpaca_session(tmp_path, tokenizer, context_length=4096, max_new_tokens=16):
    return ChatSession(Prompter(_run(tmp_path, "format: alpaca", ALPACA[:2]), tokenizer), max_new_tokens, context_length)


def test_the_oldest_exchanges_are_dropped_until_the_prompt_and_an_answer_fit(tmp_path, byte_tokenizer):
    roomy = alpaca_session(tmp_path, byte_tokenizer)
    roomy.history = list(EXCHANGES)
    full = roomy.prompt("And a bird?")
    assert full.dropped == 0 and roomy.history == EXCHANGES
    keep_one = list(EXCHANGES[2:])
    needed = len(ChatSession(roomy.prompter, 16, 4096).encode("And a bird?").ids)  # an empty history
    roomy.history = keep_one
    one = len(roomy.encode("And a bird?").ids)
    assert needed < one < len(full.encoded.ids)

    session = alpaca_session(tmp_path, byte_tokenizer, context_length=one + 16)  # room for the last exchange only
    for message, answer in EXCHANGES:
        session.add(message, answer)
    prompt = session.prompt("And a bird?")
    assert prompt.dropped == 2 and session.history == keep_one  # dropped for good, oldest first
    assert prompt.encoded == roomy.encode("And a bird?") and len(prompt.encoded.ids) + 16 == one + 16
    assert session.limit() == f"the history and an answer of 16 tokens must fit the model's {one + 16} positions"

    tight = alpaca_session(tmp_path, byte_tokenizer, context_length=one + 15)
    tight.history = list(EXCHANGES)
    assert tight.prompt("And a bird?").dropped == 3 and tight.history == []
    assert len(tight.prompt("And a bird?").encoded.ids) == needed  # nothing left to drop: the message alone


def test_the_context_length_is_asked_once_when_a_history_is_first_checked(tmp_path, byte_tokenizer):
    """Generator.context_length loads the model: a session asks it only when there is a history to fit."""
    asked = []
    session = ChatSession(Prompter(_run(tmp_path, "format: alpaca", ALPACA[:2]), byte_tokenizer), 16,
                          lambda: asked.append(1) or 4096)
    session.prompt("Hi")
    assert asked == []
    session.add("Hi", "Hello!")
    session.prompt("Why?")
    session.prompt("Why?")
    assert asked == [1]


def test_an_encoder_decoder_leaves_no_room_for_the_answer(tmp_path, byte_tokenizer):
    run = _run(tmp_path, "format: alpaca", ALPACA[:2])
    t5 = type(run)(run.path, run.recipe, run.base, run.status, encoder_decoder=True)
    session = ChatSession(Prompter(t5, byte_tokenizer), 16, 100)
    assert session.answer_room == 0 and session.limit() == "the history must fit the model's 100 positions"


def test_messages_load_into_the_session_and_come_back(tmp_path, byte_tokenizer):
    prompter = Prompter(_run(tmp_path, "format: chat, chat_template: chatml", CHAT), byte_tokenizer)
    session = ChatSession(prompter, 16, 512)
    messages = CHAT[0]["messages"][:-1]  # system, user, assistant, user
    message = session.load(messages)
    assert message == "Why?" and session.system == "Be brief." and session.history == [("Hi", "Hello!")]
    assert session.messages() == messages[:-1]
    assert session.prompt(message).encoded == prompter.encode_messages(messages)
    assert session.prompt(message).encoded.text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        "Hello!<|im_end|>\n<|im_start|>user\nWhy?<|im_end|>\n<|im_start|>assistant\n")
    session.reset()
    assert session.history == [] and session.messages() == messages[:1]  # the system message stays


@pytest.mark.parametrize("dataset, message", [
    ("format: completion", "trained on format 'completion' (plain text, no turns), so there is nothing to chat in; "
                           "use qlorafx generate"),
    ("format: template, prompt: '{a} and {b}', response: '{c}'", "names 2 fields (a, b)"),
])
def test_runs_a_message_cannot_be_chatted_with_are_refused(tmp_path, dataset, message):
    with pytest.raises(GenerateError, match=re.escape(message)):
        check_chattable(_run(tmp_path, dataset, []))


def test_a_system_message_for_a_format_without_one_is_refused(tmp_path, byte_tokenizer):
    session = alpaca_session(tmp_path, byte_tokenizer)
    with pytest.raises(GenerateError, match=re.escape("the run trained on format 'alpaca', which has no system turn")):
        session.load([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}])
