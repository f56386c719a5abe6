"""The web page's chat logic on the real engine, without a browser: answers streamed piece by piece
that equal the engine's own answer to the same messages; multi-turn history; Stop (and a page that
goes away) cancels the engine's row and frees it; side by side in one batch; every error is a status
line with the conversation left as it was; conversations kept as chat-format data."""

from __future__ import annotations

import re

import asyncio
import json

import pytest

from qlorafx.errors import UserError
from qlorafx.infer.generate import Sampling
from qlorafx.serve.kept import KeptChats
from qlorafx.serve.webchat import Conversation, Message, Options, WebChat, WebChatError
from tests.infer.finished import served_engine

QUESTION = "What color is a leaf?"
GREEDY = Options(temperature=0, max_new_tokens=12)


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return served_engine(tmp_path_factory)



@pytest.fixture
def chat(engine, tmp_path) -> WebChat:
    return WebChat(engine, KeptChats(tmp_path / "kept.jsonl"))


def updates(agen) -> list:
    async def collect():
        return [u async for u in agen]

    return asyncio.run(collect())


def direct(engine, model: str, messages: list[dict], max_new_tokens: int = 12) -> str:
    """The engine's answer to these messages, asked directly (as the API asks it)."""
    return engine.submit(model, engine.encode_chat(model, messages), Sampling(max_new_tokens=max_new_tokens)).result().text


def test_an_answer_streams_piece_by_piece_into_the_conversation(chat, engine, recorded):
    seen = updates(chat.reply("s", "chat", Conversation(), QUESTION, GREEDY))
    texts = [u.conversation.messages[-1].content for u in seen]
    assert len(set(texts)) > 2 and all(later.startswith(earlier) for earlier, later in zip(texts, texts[1:]))
    final = seen[-1].conversation
    assert [m.role for m in final.messages] == ["user", "assistant"]
    assert final.messages[0].content == QUESTION and final.messages[1].model == "chat"
    assert final.messages[1].content == direct(engine, "chat", [{"role": "user", "content": QUESTION}])
    assert seen[-1].status.startswith("chat: 12 tokens, stopped at the token limit")
    assert seen[-1].accepted and recorded[0].completion.finish_reason == "length"


def test_the_history_goes_to_the_model_with_each_new_message(chat, engine, recorded):
    first = updates(chat.reply("s", "chat", Conversation(), QUESTION, GREEDY))[-1].conversation
    second = updates(chat.reply("s", "chat", first, "And the sky?", GREEDY))[-1].conversation
    messages = [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": first.messages[1].content},
                {"role": "user", "content": "And the sky?"}]
    assert second.view()[:3] == messages
    assert second.messages[3].content == direct(engine, "chat", messages)
    assert recorded[1].encoded.ids == engine.encode_chat("chat", messages).ids  # the whole history, as the API renders it
    assert f"<|im_start|>assistant\n{first.messages[1].content}<|im_end|>" in recorded[1].encoded.text


def test_a_system_message_is_rendered_with_the_runs_template(chat, engine):
    options = Options(temperature=0, max_new_tokens=12, system="Answer in one word.")
    answer = updates(chat.reply("s", "chat", Conversation(), QUESTION, options))[-1].conversation.messages[1]
    assert answer.content == direct(engine, "chat", [{"role": "system", "content": "Answer in one word."},
                                                     {"role": "user", "content": QUESTION}])


def test_stop_cancels_the_engines_row_and_the_engine_answers_the_next(chat, engine, recorded):
    long = Options(temperature=0, max_new_tokens=300)

    async def stop_after_first_piece():
        seen = []
        async for update in chat.reply("tab", "alpaca", Conversation(), QUESTION, long):
            seen.append(update)
            if update.conversation.messages[-1].content and len(seen) == 2:
                assert chat.stop("tab") == 1  # one row was generating
        return seen

    seen = asyncio.run(stop_after_first_piece())
    row = recorded[0]
    assert row.completion.finish_reason == "cancelled" and len(row.ids) < 300
    assert seen[-1].conversation.messages[-1].content == row.completion.text  # the partial answer stays
    assert "tokens, stopped (" in seen[-1].status
    assert chat.stop("tab") == 0  # nothing left running for the tab
    after = updates(chat.reply("tab", "alpaca", Conversation(), QUESTION, GREEDY))[-1]
    assert recorded[1].completion.finish_reason == "length" and after.status.startswith("alpaca: 12 tokens")


def test_a_page_that_goes_away_cancels_its_row(chat, recorded):
    async def leave_after_first_update():
        agen = chat.reply("gone", "alpaca", Conversation(), QUESTION, Options(temperature=0, max_new_tokens=300))
        await agen.__anext__()
        await agen.__anext__()
        await agen.aclose()  # what Gradio does when the browser tab closes mid-answer

    asyncio.run(leave_after_first_update())
    assert recorded[0].result().finish_reason == "cancelled" and len(recorded[0].ids) < 300
    assert chat.stop("gone") == 0


def test_side_by_side_answers_both_in_one_batch_as_each_alone(chat, engine):
    before = engine.scheduler.batches_run
    final = updates(chat.reply_each("s", ["alpaca", "chat"], [Conversation(), Conversation()], QUESTION, GREEDY))[-1]
    assert engine.scheduler.batches_run == before + 1
    left, right = (c.messages[-1] for c in final.conversations)
    assert (left.model, right.model) == ("alpaca", "chat")
    question = [{"role": "user", "content": QUESTION}]
    assert left.content == direct(engine, "alpaca", question) and right.content == direct(engine, "chat", question)
    assert left.content != right.content
    assert final.status.startswith("alpaca: 12 tokens") and "; chat: 12 tokens" in final.status


@pytest.mark.parametrize("model, options, message, error", [
    ("chat", GREEDY, "   ", "error: type a message first"),
    ("nope", GREEDY, QUESTION, "error: the model 'nope' does not exist; this server serves: base_model, alpaca, chat"),
    ("alpaca", Options(temperature=0, max_new_tokens=12, system="Be brief."), QUESTION,
     "error: the run trained on format 'alpaca', which has no system turn"),
    ("base_model", GREEDY, QUESTION, "error: the base model base_model has no chat template"),
    ("chat", Options(top_p=0), QUESTION, "error: --top-p must be in (0, 1]"),
    ("chat", GREEDY, "word " * 600, "error: the conversation is"),
])
def test_errors_are_a_status_line_and_leave_the_conversation_as_it_was(chat, model, options, message, error):
    before = Conversation([Message("user", "Hi"), Message("assistant", "Hello.", "chat")], options.system)
    seen = updates(chat.reply("s", model, before, message, options))
    assert len(seen) == 1 and seen[0].status.startswith(error) and not seen[0].accepted
    assert seen[0].conversation == before


def test_exchanges_that_no_longer_fit_are_left_out_of_the_prompt_and_said_so(chat, engine, recorded):
    conversation = Conversation([Message("user", "word " * 150), Message("assistant", "ok", "chat")])  # 750+ tokens
    final = updates(chat.reply("s", "chat", conversation, QUESTION, GREEDY))[-1]
    assert final.accepted and final.status.endswith(
        f"; the oldest 1 exchange left out of the prompt: the conversation no longer fits the model's "
        f"{engine.context_length} positions")
    assert recorded[0].encoded.ids == engine.encode_chat("chat", [{"role": "user", "content": QUESTION}]).ids
    assert [m.content for m in final.conversation.messages[:2]] == ["word " * 150, "ok"]  # the page still shows them


def test_an_answer_with_little_room_left_is_shortened_to_fit_and_said_so(chat, engine, recorded):
    frame = len(engine.encode_chat("chat", [{"role": "user", "content": "w"}]).ids) - 1
    message = "w" * (engine.context_length - frame - 30)  # the byte tokenizer: a token a byte; 30 positions left
    final = updates(chat.reply("s", "chat", Conversation(), message, Options(temperature=0, max_new_tokens=200)))[-1]
    room = engine.context_length - len(recorded[0].encoded.ids)
    assert room == 30 and recorded[0].sampling.max_new_tokens == room
    assert final.accepted and f"; at most {room} new tokens: the model's 512 positions were nearly full" in final.status


def test_a_failed_generation_is_an_error_in_the_page_and_the_next_answer_comes(chat, monkeypatch):
    from qlorafx.infer import batching

    def out_of_memory(model, batch):
        raise RuntimeError("CUDA out of memory")

    with monkeypatch.context() as patched:
        patched.setattr(batching, "generate_rows", out_of_memory)
        seen = updates(chat.reply("s", "chat", Conversation(), QUESTION, GREEDY))
    # the exception's message stays in the server's log, under the id the page shows (as the API does)
    assert re.fullmatch(r"error: chat: generation failed: error id err_[0-9a-f]{16}; the server's log has the details",
                        seen[-1].status), seen[-1].status
    assert not seen[-1].accepted and seen[-1].conversation == Conversation()
    assert updates(chat.reply("s", "chat", Conversation(), QUESTION, GREEDY))[-1].status.startswith("chat: 12 tokens")


def test_a_kept_conversation_is_a_chat_record_train_reads(chat, tmp_path):
    brief = Options(temperature=0, max_new_tokens=12, system="Be brief.")
    conversation = updates(chat.reply("s", "chat", Conversation(), QUESTION, brief))[-1].conversation
    fixed = conversation.edit(1, "Green.")
    assert fixed.messages[1].edited and not conversation.messages[1].edited
    assert chat.keep(fixed) == f"kept 1 exchange as line 1 of {tmp_path / 'kept.jsonl'}"
    assert chat.keep(conversation) == f"kept 1 exchange as line 2 of {tmp_path / 'kept.jsonl'}"
    lines = [json.loads(line) for line in (tmp_path / "kept.jsonl").read_text().splitlines()]
    assert lines[0] == {"messages": [{"role": "system", "content": "Be brief."},
                                     {"role": "user", "content": QUESTION}, {"role": "assistant", "content": "Green."}],
                        "models": ["chat"], "edited": True}
    assert lines[1]["edited"] is False and lines[1]["messages"][2]["content"] == conversation.messages[1].content


def test_a_conversation_keeps_the_system_message_it_was_answered_with(chat, engine, tmp_path):
    """The page's System box can change after an answer: what is kept is what the model was given, and a
    next message under another system message is refused (the conversation would mix the two)."""
    brief = Options(temperature=0, max_new_tokens=12, system="Be brief.")
    first = updates(chat.reply("s", "chat", Conversation(), QUESTION, brief))[-1].conversation
    assert first.system == "Be brief." and first.messages[1].content == direct(
        engine, "chat", [{"role": "system", "content": "Be brief."}, {"role": "user", "content": QUESTION}])
    chat.keep(first)
    assert json.loads((tmp_path / "kept.jsonl").read_text())["messages"][0] == {"role": "system", "content": "Be brief."}

    changed = updates(chat.reply("s", "chat", first, "And the sky?", GREEDY))  # the box emptied meanwhile
    assert [u.status for u in changed] == ["error: the system message changed since this conversation began "
                                           "(it began with 'Be brief.'); press New to start a conversation with "
                                           "the new one, or set it back"]
    assert changed[-1].conversation == first and not changed[-1].accepted
    second = updates(chat.reply("s", "chat", first, "And the sky?", brief))[-1].conversation
    assert second.system == "Be brief." and len(second.messages) == 4


def test_keeping_needs_a_file_and_a_whole_conversation(engine, chat):
    with pytest.raises(WebChatError, match="started without a file to keep conversations in"):
        WebChat(engine).keep(Conversation([Message("user", "a"), Message("assistant", "b", "chat")]))
    with pytest.raises(UserError, match="roles must alternate user, assistant, ... and end with assistant"):
        chat.keep(Conversation())
    with pytest.raises(UserError, match="the assistant message is empty"):
        chat.keep(Conversation([Message("user", "a"), Message("assistant", " ", "chat")]))
    with pytest.raises(WebChatError, match="there is no message 5 to edit"):
        Conversation().edit(5, "x")


def test_the_model_list_puts_adapters_first(chat, engine):
    names = chat.model_names()
    assert names[:2] == ["alpaca", "chat"] and names[-1] == "base_model"
    assert sorted(names) == sorted(m.name for m in engine.models())
