"""Chat: ShareGPT and OpenAI conversations, rendered by a chat template; golden and on the real ShareGPT sample."""

import json
from collections import Counter

import pytest

from qlorafx.data.build import DataError, conversations_of
from qlorafx.data.formats import FORMATS, RecordError, Turn
from qlorafx.data.formats.chat import ChatDataset
from qlorafx.model.byte_tokenizer import byte_tokenizer as new_byte_tokenizer
from tests.data.helpers import encode, runs

FMT = FORMATS.get("chat")
SHAREGPT = {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"}]}
OPENAI = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}
CHATML = ChatDataset(path="x", chat_template="chatml")


def test_sharegpt_and_openai_read_the_same():
    assert FMT.conversations(SHAREGPT) == FMT.conversations(OPENAI) == [[Turn("user", "Hi"), Turn("assistant", "Hello!")]]


def test_roles_map_and_a_system_turn_comes_first():
    record = {"conversations": [{"from": "system", "value": "Be brief."}, {"from": "user", "value": "Hi"},
                                {"from": "assistant", "value": "Yo"}, {"from": "human", "value": "Bye"}, {"from": "gpt", "value": "Ciao"}]}
    assert FMT.conversations(record) == [[Turn("system", "Be brief."), Turn("user", "Hi"), Turn("assistant", "Yo"),
                                          Turn("user", "Bye"), Turn("assistant", "Ciao")]]


def test_chatml_rendering_and_mask_token_by_token(byte_tokenizer):
    [example] = encode("chat", SHAREGPT, byte_tokenizer, CHATML)
    assert runs(example, byte_tokenizer) == [
        (False, "<s><|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"), (True, "Hello!<|im_end|>\n"),
    ]


def test_zephyr_trains_the_eos_token_that_ends_each_reply(byte_tokenizer):
    [example] = encode("chat", OPENAI, byte_tokenizer, ChatDataset(path="x", chat_template="zephyr"))
    assert runs(example, byte_tokenizer) == [(False, "<s><|user|>\nHi</s>\n<|assistant|>\n"), (True, "Hello!</s>\n")]
    eos_at = example.input_ids.index(byte_tokenizer.eos_token_id, len("<|user|>\nHi") + 2)
    assert example.labels[eos_at] == byte_tokenizer.eos_token_id  # the special token itself, not its characters


def test_the_tokenizers_own_template_is_used_when_none_is_named():
    tokenizer = new_byte_tokenizer()
    tokenizer.chat_template = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}" \
                              "{% if add_generation_prompt %}[assistant] {% endif %}"
    [example] = encode("chat", OPENAI, tokenizer, ChatDataset(path="x"))
    assert runs(example, tokenizer) == [(False, "<s>[user] Hi\n[assistant] "), (True, "Hello!\n")]
    [example] = encode("chat", OPENAI, tokenizer, CHATML)  # a named template wins over the tokenizer's
    assert runs(example, tokenizer)[1] == (True, "Hello!<|im_end|>\n")


def test_a_template_that_writes_bos_gets_no_second_one():
    tokenizer = new_byte_tokenizer()
    tokenizer.chat_template = "{{ bos_token }}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}" \
                              "{% if add_generation_prompt %}assistant: {% endif %}"
    [example] = encode("chat", OPENAI, tokenizer, ChatDataset(path="x"))
    assert runs(example, tokenizer) == [(False, "<s>user: Hi\nassistant: "), (True, "Hello!\n")]
    assert example.input_ids.count(tokenizer.bos_token_id) == 1


def test_multi_turn_trains_every_assistant_turn_only(byte_tokenizer):
    record = {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "Q1"},
                           {"role": "assistant", "content": "A1"}, {"role": "user", "content": "Q2"},
                           {"role": "assistant", "content": "A2"}]}
    [example] = encode("chat", record, byte_tokenizer, CHATML)
    assert runs(example, byte_tokenizer) == [
        (False, "<s><|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\n"),
        (True, "A1<|im_end|>\n"),
        (False, "<|im_start|>user\nQ2<|im_end|>\n<|im_start|>assistant\n"),
        (True, "A2<|im_end|>\n"),
    ]


def _messages(*roles):
    return {"messages": [{"role": role, "content": f"m{i}"} for i, role in enumerate(roles)]}


@pytest.mark.parametrize("record, message", [
    (_messages("user", "user", "assistant"),
     "format 'chat': roles must alternate user, assistant, ... and end with assistant; found user, user, assistant"),
    (_messages("assistant", "user", "assistant"),
     "format 'chat': roles must alternate user, assistant, ... and end with assistant; found assistant, user, assistant"),
    (_messages("user", "assistant", "user"),
     "format 'chat': roles must alternate user, assistant, ... and end with assistant; found user, assistant, user"),
    (_messages("user", "assistant", "assistant"),
     "format 'chat': roles must alternate user, assistant, ... and end with assistant; found user, assistant, assistant"),
    (_messages(), "format 'chat': roles must alternate user, assistant, ... and end with assistant; found no turns"),
    (_messages("user", "system", "assistant"), "format 'chat': a system turn may only come first"),
    ({"conversations": [{"from": "bot", "value": "x"}]},
     "format 'chat': unknown from 'bot'; expected one of system, human, user, gpt, assistant"),
    ({"messages": [{"role": "gpt", "content": "x"}]}, "format 'chat': unknown role 'gpt'; expected one of system, user, assistant"),
    ({"messages": [{"role": "user"}]}, "format 'chat' needs field 'content'; the record has role"),
    ({"dialog": [], "id": 3}, "format 'chat' needs a 'conversations' (ShareGPT) or 'messages' (OpenAI) list; the record has dialog, id"),
])
def test_bad_conversations_name_the_record(record, message):
    with pytest.raises(DataError) as info:
        conversations_of([OPENAI, OPENAI, record], ChatDataset(path="c.json"), Counter())
    assert str(info.value) == f"c.json: record 2: {message}"


def test_alternation_is_checked_by_the_format_itself():
    with pytest.raises(RecordError, match="found user, user"):
        FMT.conversations(_messages("user", "user"))


# --- the real ShareGPT sample --------------------------------------------------------------------

@pytest.fixture
def sharegpt(shared_data):
    [record] = json.loads((shared_data / "chat" / "sharegpt_tiny.json").read_text())
    return record


SYSTEM, Q1, A1, Q2, A2 = ("You are an AI assistant.", "What is the meaning of life?", "The meaning of life is 42.",
                          "That's ridiculous.", "I agree.")


def test_real_sharegpt_with_chatml(sharegpt, byte_tokenizer):
    assert FMT.conversations(sharegpt) == [[Turn("system", SYSTEM), Turn("user", Q1), Turn("assistant", A1),
                                            Turn("user", Q2), Turn("assistant", A2)]]
    [example] = encode("chat", sharegpt, byte_tokenizer, CHATML)
    assert runs(example, byte_tokenizer) == [
        (False, f"<s><|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{Q1}<|im_end|>\n<|im_start|>assistant\n"),
        (True, f"{A1}<|im_end|>\n"),
        (False, f"<|im_start|>user\n{Q2}<|im_end|>\n<|im_start|>assistant\n"),
        (True, f"{A2}<|im_end|>\n"),
    ]


def test_real_sharegpt_with_the_llama2_tokenizer(sharegpt, llama2_tokenizer):
    tok = llama2_tokenizer
    assert tok.chat_template is None  # so the dataset must name one
    with pytest.raises(RecordError, match="the tokenizer has no chat template"):
        encode("chat", sharegpt, tok, ChatDataset(path="x"))
    [example] = encode("chat", sharegpt, tok, CHATML)
    text = (f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{Q1}<|im_end|>\n<|im_start|>assistant\n"
            f"{A1}<|im_end|>\n<|im_start|>user\n{Q2}<|im_end|>\n<|im_start|>assistant\n{A2}<|im_end|>\n")
    assert example.input_ids == tok(text)["input_ids"] and example.input_ids[0] == 1  # one BOS, the text as at inference
    # SentencePiece decodes the masked run's first piece '▁<' with its word-start space
    assert runs(example, tok) == [
        (False, f"<s> <|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{Q1}<|im_end|>\n<|im_start|>assistant\n"),
        (True, f"{A1}<|im_end|>\n"),
        (False, f"<|im_start|>user\n{Q2}<|im_end|>\n<|im_start|>assistant\n"),
        (True, f"{A2}<|im_end|>\n"),
    ]
    [example] = encode("chat", sharegpt, tok, ChatDataset(path="x", chat_template="zephyr"))
    trained = [t for t, label in zip(example.input_ids, example.labels) if label != -100]
    assert tok.decode(trained) == f"{A1}</s>\n{A2}</s>\n"
    assert trained.count(tok.eos_token_id) == 2  # '</s>' in the template is LLaMA's EOS token, trained
