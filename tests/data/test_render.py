"""Rendering conversations to text and the character spans that carry loss."""

import pytest

from qlorafx.data.formats import RecordError, Turn
from qlorafx.data.render import chat_template_of, render_chat, render_text

CONVERSATION = [Turn("system", "Be brief."), Turn("user", "Hi"), Turn("assistant", "Hello!"),
                Turn("user", "Bye"), Turn("assistant", "Bye!")]


def test_text_rendering_puts_eos_after_each_assistant_turn():
    rendered = render_text([Turn("user", "Q: "), Turn("assistant", "A."), Turn("user", " Q2: "), Turn("assistant", "B.")], "</s>")
    assert rendered.text == "Q: A.</s> Q2: B.</s>"
    assert [rendered.text[a:b] for a, b in rendered.spans] == ["A.</s>", "B.</s>"]
    assert rendered.prompt == "Q: A.</s> Q2: "


def test_chatml_spans_hold_each_assistant_text_and_its_end_of_turn(byte_tokenizer):
    rendered = render_chat(CONVERSATION, byte_tokenizer, chat_template_of(byte_tokenizer, "chatml"))
    assert rendered.text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n"
        "<|im_start|>assistant\nBye!<|im_end|>\n"
    )
    assert [rendered.text[a:b] for a, b in rendered.spans] == ["Hello!<|im_end|>\n", "Bye!<|im_end|>\n"]
    # the inference prompt is what add_generation_prompt renders: identical to training up to the reply
    assert rendered.prompt == byte_tokenizer.apply_chat_template(
        [{"role": t.role, "content": t.text} for t in CONVERSATION[:-1]], chat_template=chat_template_of(byte_tokenizer, "chatml"),
        tokenize=False, add_generation_prompt=True)


def test_zephyr_ends_turns_with_eos(byte_tokenizer):
    rendered = render_chat(CONVERSATION[1:3], byte_tokenizer, chat_template_of(byte_tokenizer, "zephyr"))
    assert [rendered.text[a:b] for a, b in rendered.spans] == ["Hello!</s>\n"]


def test_a_tokenizer_without_chat_template_needs_a_named_one(byte_tokenizer):
    with pytest.raises(RecordError, match="the tokenizer has no chat template; set chat_template on the dataset to one of chatml, zephyr"):
        chat_template_of(byte_tokenizer, None)


def test_a_template_that_rewrites_earlier_turns_is_refused(byte_tokenizer):
    # renders the number of messages first: each added turn changes the text before it
    odd = "{{ messages|length }}{% for m in messages %}{{ m['content'] }}{% endfor %}"
    with pytest.raises(RecordError, match="does not render a conversation turn by turn"):
        render_chat(CONVERSATION[1:3], byte_tokenizer, odd)
