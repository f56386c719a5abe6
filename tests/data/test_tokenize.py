"""Label masking, token by token: only assistant turns and the end marker after each carry loss."""

from qlorafx.data.collate import IGNORE_INDEX
from qlorafx.data.formats import FORMATS, Turn
from qlorafx.data.render import chat_template_of, render_chat, render_text
from qlorafx.data.tokenize import tokenize, tokenize_encoder_decoder

RECORD = {"instruction": "Name a primary color.", "input": "", "output": "Red."}


def _alpaca(tok):
    [turns] = FORMATS.get("alpaca").conversations(RECORD)
    return turns, render_text(turns, tok.eos_token)


def test_mask_token_by_token(byte_tokenizer):
    tok = byte_tokenizer
    (prompt, response), rendered = _alpaca(tok)
    example = tokenize(rendered, tok, max_length=1024, train_on_inputs=False)
    prompt_ids = tok(prompt.text, add_special_tokens=False)["input_ids"]
    response_ids = tok(response.text, add_special_tokens=False)["input_ids"]
    assert example.input_ids == [tok.bos_token_id, *prompt_ids, *response_ids, tok.eos_token_id]
    assert example.labels == [IGNORE_INDEX] * (1 + len(prompt_ids)) + [*response_ids, tok.eos_token_id]
    assert not example.truncated and example.trained_tokens == len(response_ids) + 1
    assert example.prompt_ids == [tok.bos_token_id, *prompt_ids]


def test_multi_turn_masks_every_user_turn_and_trains_every_assistant_turn(byte_tokenizer):
    tok = byte_tokenizer
    turns = [Turn("user", "Hi"), Turn("assistant", "Yo"), Turn("user", "Bye"), Turn("assistant", "Ciao")]
    rendered = render_chat(turns, tok, chat_template_of(tok, "chatml"))
    example = tokenize(rendered, tok, 1024, train_on_inputs=False)
    trained = "".join(tok.decode([t]) if label != IGNORE_INDEX else "·" for t, label in zip(example.input_ids, example.labels))
    masked_user = "·" * len("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    masked_user2 = "·" * len("<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n")
    assert trained == "·" + masked_user + "Yo<|im_end|>\n" + masked_user2 + "Ciao<|im_end|>\n"


def test_train_on_inputs_trains_everything_but_bos(byte_tokenizer):
    example = tokenize(_alpaca(byte_tokenizer)[1], byte_tokenizer, 1024, train_on_inputs=True)
    assert example.labels == [IGNORE_INDEX, *example.input_ids[1:]]


def test_truncation_keeps_the_start_and_drop_drops(byte_tokenizer):
    rendered = _alpaca(byte_tokenizer)[1]
    full = tokenize(rendered, byte_tokenizer, 1024, False)
    cut = tokenize(rendered, byte_tokenizer, len(full.input_ids) - 3, False)
    assert cut.truncated and cut.input_ids == full.input_ids[:-3] and cut.labels == full.labels[:-3]
    assert tokenize(rendered, byte_tokenizer, len(full.input_ids) - 3, False, drop_long=True) is None
    assert tokenize(rendered, byte_tokenizer, len(full.input_ids), False, drop_long=True) == full


def test_llama2_tokenizer_mask_covers_exactly_the_response(shared_data):
    from transformers import LlamaTokenizer

    tok = LlamaTokenizer.from_pretrained(str(shared_data / "tokenizers" / "llama2"), add_bos_token=True)
    example = tokenize(_alpaca(tok)[1], tok, 1024, train_on_inputs=False)
    assert example.input_ids[0] == tok.bos_token_id == 1
    trained = [label for label in example.labels if label != IGNORE_INDEX]
    assert trained[-1] == tok.eos_token_id == 2
    assert tok.decode(trained[:-1]).strip() == "Red."
    first_trained = next(i for i, label in enumerate(example.labels) if label != IGNORE_INDEX)
    assert all(label != IGNORE_INDEX for label in example.labels[first_trained:])  # one contiguous block
    assert tok.decode(example.prompt_ids).endswith("### Response:")


# Encoder-decoder models (T5): the prompt is the encoder's input, each assistant turn a decoder target.


def test_encoder_decoder_prompt_to_encoder_response_to_decoder_token_by_token(byte_tokenizer):
    tok = byte_tokenizer
    (prompt, response), rendered = _alpaca(tok)
    [example] = tokenize_encoder_decoder(rendered, tok, max_length=1024)
    prompt_ids = tok(prompt.text, add_special_tokens=False)["input_ids"]
    response_ids = tok(response.text, add_special_tokens=False)["input_ids"]
    assert example.input_ids == [tok.bos_token_id, *prompt_ids]  # the tokenizer's own special tokens, as at inference
    assert example.labels == [*response_ids, tok.eos_token_id]  # every target token carries loss, EOS included
    assert example.encoder_decoder and example.prompt_ids == example.input_ids
    assert example.trained_tokens == len(response_ids) + 1
    assert example.length == len(example.input_ids) + len(example.labels)
    # the encoder input is exactly the causal example's inference prompt, so both read the same text
    assert tokenize(rendered, tok, 1024, train_on_inputs=False).prompt_ids == example.input_ids


def test_encoder_decoder_makes_one_example_per_assistant_turn(byte_tokenizer):
    tok = byte_tokenizer
    turns = [Turn("user", "Hi"), Turn("assistant", "Yo"), Turn("user", "Bye"), Turn("assistant", "Ciao")]
    rendered = render_chat(turns, tok, chat_template_of(tok, "chatml"))
    first, second = tokenize_encoder_decoder(rendered, tok, 1024)
    decode = lambda ids: tok.decode(ids, skip_special_tokens=False)
    assert decode(first.input_ids) == "<s><|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    assert decode(first.labels) == "Yo<|im_end|>\n"
    # the earlier answer is context for the later one, never its target
    assert decode(second.input_ids) == decode(first.input_ids) + "Yo<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n"
    assert decode(second.labels) == "Ciao<|im_end|>\n"


def test_encoder_decoder_truncates_each_side_or_drops(byte_tokenizer):
    rendered = _alpaca(byte_tokenizer)[1]
    [full] = tokenize_encoder_decoder(rendered, byte_tokenizer, 1024)
    limit = len(full.labels) - 2  # the target is the shorter side: both get cut
    [cut] = tokenize_encoder_decoder(rendered, byte_tokenizer, limit)
    # the input keeps its end (the latest user turn, what the target answers) after the tokenizer's BOS;
    # the target keeps its start
    bos = byte_tokenizer.bos_token_id
    assert cut.truncated and cut.input_ids == [bos, *full.input_ids[-(limit - 1):]] and cut.labels == full.labels[:limit]
    assert tokenize_encoder_decoder(rendered, byte_tokenizer, limit, drop_long=True) == []
    assert tokenize_encoder_decoder(rendered, byte_tokenizer, len(full.input_ids), drop_long=True) == [full]


def test_a_long_conversation_keeps_the_latest_user_turn_in_t5_s_encoder(byte_tokenizer):
    """T5's tokenizer closes the encoder input with </s>; cut to max_length, the input keeps the
    question being answered and that closing token, and loses the oldest turns."""
    from tokenizers import processors

    from qlorafx.model.byte_tokenizer import byte_tokenizer as fresh

    t5_like = fresh()  # appends EOS as T5's tokenizer does, no BOS
    eos = t5_like.eos_token_id
    t5_like.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", eos)])
    history = [Turn("user", "An old question " * 20), Turn("assistant", "An old answer " * 20)]
    turns = [*history, Turn("user", "What is the capital of France?"), Turn("assistant", "Paris.")]
    rendered = render_chat(turns, t5_like, chat_template_of(t5_like, "chatml"))
    _, latest = tokenize_encoder_decoder(rendered, t5_like, max_length=100)
    text = t5_like.decode(latest.input_ids, skip_special_tokens=False)
    assert latest.truncated and len(latest.input_ids) == 100 and latest.input_ids[-1] == eos
    assert text.endswith("<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n</s>")
    assert "An old question" not in text
    assert t5_like.decode(latest.labels, skip_special_tokens=False) == "Paris.<|im_end|>\n"
