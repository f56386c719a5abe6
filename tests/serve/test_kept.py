"""KeptChats' refusals of a file it must not append to (no engine, no weights)."""

from __future__ import annotations

import json

import pytest

from qlorafx.serve.kept import KeepError, KeptChats


def test_a_file_of_another_format_is_refused_before_anything_is_appended(tmp_path):
    alpaca = tmp_path / "alpaca.jsonl"
    alpaca.write_text(json.dumps({"instruction": "Hi", "input": "", "output": "Hello"}) + "\n")
    before = alpaca.read_bytes()
    with pytest.raises(KeepError, match=r"line 1 is not a chat-format conversation"):
        KeptChats(alpaca).check_writable()
    assert alpaca.read_bytes() == before


def test_a_file_the_page_wrote_is_accepted_again(tmp_path):
    kept = KeptChats(tmp_path / "chats.jsonl")
    kept.check_writable()  # absent: fine
    kept.append([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}], models=["a"])
    KeptChats(kept.path).check_writable()
    assert kept.append([{"role": "user", "content": "Again"}, {"role": "assistant", "content": "Yes"}]) == 2
