"""Fixtures for the data tests."""

from __future__ import annotations

import pytest

from tests.conftest import SHARED_DATA


@pytest.fixture(scope="session")
def llama2_tokenizer():
    """The LLaMA-2 tokenizer from ../shared/data, loaded as its README says (BOS 1, EOS 2); once per session."""
    folder = SHARED_DATA / "tokenizers" / "llama2"
    if not folder.is_dir():
        pytest.skip("../shared/data is not present (it is not part of a user's clone)")
    from transformers import LlamaTokenizer

    tokenizer = LlamaTokenizer.from_pretrained(str(folder), add_bos_token=True)
    assert tokenizer("Hello world")["input_ids"] == [1, 15043, 3186]
    return tokenizer
