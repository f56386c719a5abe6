from transformers import AutoTokenizer


def test_every_byte_round_trips(byte_tokenizer):
    text = "Héllo, wörld! 你好 🙂\n\t### Response: "
    ids = byte_tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text.encode("utf-8"))
    assert byte_tokenizer.decode(ids) == text


def test_bos_is_added_and_eos_in_text_is_one_special_token(byte_tokenizer):
    ids = byte_tokenizer("ab</s>")["input_ids"]
    assert ids[0] == byte_tokenizer.bos_token_id and ids[-1] == byte_tokenizer.eos_token_id and len(ids) == 4
    assert len(byte_tokenizer) == 259 and byte_tokenizer.pad_token_id not in ids


def test_saved_tokenizer_reloads_with_the_same_ids(byte_tokenizer, tmp_path):
    byte_tokenizer.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    text = "What sound does a cow make?</s>"
    assert again(text)["input_ids"] == byte_tokenizer(text)["input_ids"]
    assert again(text, return_offsets_mapping=True)["offset_mapping"] == byte_tokenizer(text, return_offsets_mapping=True)["offset_mapping"]
