"""Prompts -> continuations with a finished run's model, rendered exactly as the run trained.

    open_run (files only: a finished run, its adapter, its recipe)
    -> conversation (the prompt as the user turn of the run's first dataset format; no tokenizer)
    -> Prompter.encode (rendered and tokenized by the training code itself)
    -> load_model (the quantized base + adapter) -> generate_ids (left-padded batches)
    -> Prompter.decode (up to EOS or the chat template's end of turn) -> text

The prompt ids are the training example's ``prompt_ids``, not the rendered prompt tokenized on its
own: the conversation is rendered with a stand-in response, tokenized as a training example (the
same render and tokenize functions), and cut before the first token of the response. With a
byte-level or SentencePiece BPE tokenizer the two can differ: the Alpaca prompt ends in a space
(``### Response: ``) that training tokenized into the response's first token (`` Red``), so the
prompt tokenized alone would end in a lone space token the model never saw there.

Everything that can be wrong with the input (the run directory, the sampling options, the
prompts) is refused before any weight loads.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qlorafx.errors import UserError
from qlorafx.infer.trained_run import TrainedRun, finished_run, load_quantized
from qlorafx.model.architecture import is_encoder_decoder

# The response while the prompt is rendered and tokenized: tokens that touch it are left out, so
# its first token decides where the prompt ends. A word-initial letter, as most responses start:
# every BPE vocabulary has it with a leading space (GPT-2's "ĠA", SentencePiece's "▁A").
PLACEHOLDER = "A"
# Formats whose user turn a prompt text can stand for (the registry may hold others).
SUPPORTED = ("alpaca", "self_instruct", "oasst", "guanaco", "chat", "completion", "template")
NO_LIMIT = 1 << 62  # max_length for tokenizing a prompt: generation never truncates it


class GenerateError(UserError):
    """A run, prompt or option that generate or chat cannot use; the message says what to do."""


# ---------------------------------------------------------------------------------------------
# Sampling options: checked before anything loads.


@dataclass(frozen=True)
class Sampling:
    """temperature 0 is greedy decoding (the default, deterministic); above 0 samples, with top_p
    (nucleus; 1 keeps all) and top_k (0 keeps all) applied to the tempered distribution."""

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int = 0

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def problems(self) -> list[str]:
        found = []
        if not self.max_new_tokens >= 1:
            found.append(f"--max-new-tokens must be at least 1, got {self.max_new_tokens}")
        if not self.temperature >= 0 or self.temperature == float("inf"):
            found.append(f"--temperature must be 0 (greedy) or a positive number, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            found.append(f"--top-p must be in (0, 1] (1 keeps every token), got {self.top_p}")
        if not self.top_k >= 0:
            found.append(f"--top-k must be 0 (off) or a positive count, got {self.top_k}")
        if self.seed < 0:
            found.append(f"--seed must be 0 or positive, got {self.seed}")
        return found

    def check(self) -> "Sampling":
        found = self.problems()
        if found:
            raise GenerateError("; ".join(found))
        return self

    def generate_kwargs(self) -> dict[str, Any]:
        """Every decoding option given explicitly, so no generation_config.json default (top_k 50) leaks in."""
        if self.greedy:
            return {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        return {"do_sample": True, "temperature": self.temperature, "top_p": self.top_p, "top_k": self.top_k}


# ---------------------------------------------------------------------------------------------
# The run directory, read without torch.


Run = TrainedRun


def open_run(run_dir: str | Path) -> Run:
    """A finished run whose first dataset's format generate can prompt; files only."""
    run = finished_run(run_dir)
    fmt = run.dataset.format
    if fmt not in SUPPORTED:
        raise GenerateError(f"the run's first dataset has format {fmt!r}, which generate cannot turn a prompt into; "
                            f"it supports {', '.join(SUPPORTED)}")
    return run


# ---------------------------------------------------------------------------------------------
# Prompts -> conversations ending in a stand-in assistant turn (no tokenizer).


def _record_error(fmt: str, message: str) -> GenerateError:
    return GenerateError(f"prompt for a {fmt!r} run: {message}")


def _from_text(dataset, text: str):
    """The one exchange of the run's format whose user turn is ``text``."""
    from qlorafx.data.formats import Turn
    from qlorafx.data.formats.guanaco import guanaco_turns
    from qlorafx.data.formats.template import template_fields

    fmt = dataset.format
    if fmt == "alpaca":
        column = {"instruction": "instruction", "input": "input", "output": "output", **dataset.columns}
        return _one(dataset, {column["instruction"]: text, column["input"]: "", column["output"]: PLACEHOLDER})
    if fmt == "self_instruct":
        return _one(dataset, {"prompt": text, "completion": PLACEHOLDER})
    if fmt in ("guanaco", "oasst"):
        return guanaco_turns([(text, PLACEHOLDER)])
    if fmt in ("chat", "completion"):  # completion: the text itself is the start to continue
        return [Turn("user", text), Turn("assistant", PLACEHOLDER)]
    if fmt == "template":
        fields = list(dict.fromkeys(template_fields(dataset.prompt)))
        if len(fields) != 1:
            raise _record_error(fmt, f"the prompt template {dataset.prompt!r} names {len(fields)} fields "
                                     f"({', '.join(fields) or 'none'}), so a prompt text cannot fill it; give "
                                     f"--file records with those fields")
        return _one(dataset, {fields[0]: text, **_response_fields(dataset)})
    raise _record_error(fmt, f"unsupported format; use one of {', '.join(SUPPORTED)}")


def _response_fields(dataset) -> dict[str, str]:
    from qlorafx.data.formats.template import template_fields

    return {name: PLACEHOLDER for name in template_fields(dataset.response)}


def _one(dataset, record: dict):
    from qlorafx.data.formats import FORMATS, RecordError

    try:
        conversations = FORMATS.get(dataset.format).conversations(record, dataset, Counter())
    except RecordError as err:
        raise _record_error(dataset.format, str(err)) from None
    if len(conversations) != 1:
        raise _record_error(dataset.format, f"the record gives {len(conversations)} conversations; give one prompt "
                                            f"per record")
    return conversations[0]


def _from_record(dataset, record: dict):
    """A record of the run's format, without its response (one is filled in and ignored)."""
    fmt = dataset.format
    if fmt == "alpaca":
        column = {"instruction": "instruction", "input": "input", "output": "output", **dataset.columns}
        return _one(dataset, {**record, column["output"]: PLACEHOLDER})
    if fmt == "self_instruct":
        if "instances" in record:
            instances = record["instances"]
            if not isinstance(instances, list) or len(instances) != 1 or not isinstance(instances[0], dict):
                raise _record_error(fmt, "a task record needs exactly one instance ({'input': ...}) per prompt")
            return _one(dataset, {**record, "instances": [{**instances[0], "output": PLACEHOLDER}]})
        return _one(dataset, {**record, "completion": PLACEHOLDER})
    if fmt == "chat":
        for key, role_key, text_key, user, assistant in (("messages", "role", "content", ("user",), "assistant"),
                                                         ("conversations", "from", "value", ("human", "user"), "gpt")):
            messages = record.get(key)
            if isinstance(messages, list):
                if not messages or not isinstance(messages[-1], dict) or messages[-1].get(role_key) not in user:
                    raise _record_error(fmt, f"the last of the {key!r} must be the user's message, which the "
                                             f"model answers")
                return _one(dataset, {key: [*messages, {role_key: assistant, text_key: PLACEHOLDER}]})
        raise _record_error(fmt, "a chat record needs a 'messages' (OpenAI) or 'conversations' (ShareGPT) list "
                                 "ending with the user's message")
    if fmt in ("guanaco", "oasst"):
        from qlorafx.data.formats.guanaco import ASSISTANT, GuanacoDataset, _MARKER

        column = getattr(dataset, "column", "text")
        text = record.get(column)
        speakers = _MARKER.findall(text) if isinstance(text, str) else []
        if not speakers or speakers[-1] != "Human":
            raise _record_error(fmt, f"a record needs {column!r}: the conversation so far in Guanaco's form, "
                                     f"'### Human: ...### Assistant: ...### Human: ...', ending with a human turn")
        guanaco = GuanacoDataset(path="", column=column)
        return _one(guanaco, {column: f"{text.rstrip()}{ASSISTANT}{PLACEHOLDER}"})
    if fmt == "template":
        return _one(dataset, {**record, **_response_fields(dataset)})
    if fmt == "completion":
        text = record.get(dataset.column)
        if not isinstance(text, str):
            raise _record_error(fmt, f"a record needs the text to continue in {dataset.column!r}")
        return _from_text(dataset, text)
    raise _record_error(fmt, "records are not supported for this format; give the prompt text")


def conversation(dataset, prompt: str | dict, history: list = ()):
    """The turns the model is given: each earlier (prompt, answer) exchange in the run's format with
    its answer as the assistant turn, then ``prompt`` with a stand-in assistant turn."""
    from qlorafx.data.formats import Turn

    turns = []
    for earlier, answer in history:
        done = _exchange(dataset, earlier)
        turns += [*done[:-1], Turn("assistant", answer)]
    return [*turns, *_exchange(dataset, prompt)]


def _exchange(dataset, prompt: str | dict):
    if isinstance(prompt, str):
        return _from_text(dataset, prompt)
    if isinstance(prompt, dict) and set(prompt) == {"prompt"} and isinstance(prompt["prompt"], str):
        return _from_text(dataset, prompt["prompt"])
    if isinstance(prompt, dict):
        return _from_record(dataset, prompt)
    raise _record_error(dataset.format, f"expected a text or a JSON object, found {type(prompt).__name__}")


def read_prompts(path: str | Path) -> list[str | dict]:
    """A JSONL file of prompts: each line a JSON string (the prompt text), {"prompt": TEXT}, or a
    record of the run's format without its response (alpaca: {"instruction", "input"})."""
    path = Path(path)
    if not path.is_file():
        raise GenerateError(f"--file {path}: no such file; give a JSONL file, one prompt per line")
    prompts = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as err:
            raise GenerateError(f"{path}:{number}: not JSON ({err.msg}): {line[:60]!r}; each line is a JSON string "
                                f"(the prompt) or object (a record of the run's format)") from None
        if not isinstance(item, (str, dict)):
            raise GenerateError(f"{path}:{number}: expected a JSON string or object, found {type(item).__name__}")
        prompts.append(item)
    if not prompts:
        raise GenerateError(f"{path} holds no prompt; write one JSON string or object per line")
    return prompts


# ---------------------------------------------------------------------------------------------
# Conversations -> token ids, by the training code; generated ids -> text.


@dataclass(frozen=True)
class Encoded:
    ids: list[int]  # what the model is given: the training example's prompt_ids
    text: str  # the rendered prompt (Rendered.prompt): everything before the assistant turn
    # The end of ``text`` that training tokenized into the response's first token (e.g. the
    # space of '### Response: '): the model writes it again, so it is taken off the output.
    carried: str = ""


class Prompter:
    """Renders and tokenizes conversations exactly as the run's training data was."""

    def __init__(self, run: Run, tokenizer):
        from qlorafx.data.formats import FORMATS, RecordError
        from qlorafx.data.render import chat_template_of

        self.dataset, self.tokenizer = run.dataset, tokenizer
        self.encoder_decoder = run.encoder_decoder
        self.chat = FORMATS.get(self.dataset.format).chat
        try:
            self.template = chat_template_of(tokenizer, getattr(self.dataset, "chat_template", None)) if self.chat else None
        except RecordError as err:
            raise GenerateError(str(err)) from None
        self.end_marker = self._end_marker()
        vocab = tokenizer.get_vocab()
        self.stop_ids = list(dict.fromkeys(
            [tokenizer.eos_token_id] + ([vocab[self.end_marker]] if self.end_marker in vocab else [])))

    def render(self, turns):
        from qlorafx.data.formats import RecordError
        from qlorafx.data.render import render_chat, render_text

        try:
            return render_chat(turns, self.tokenizer, self.template) if self.chat else \
                render_text(turns, self.tokenizer.eos_token)
        except RecordError as err:
            raise GenerateError(str(err)) from None

    def _end_marker(self) -> str:
        """What ends an assistant turn: the tokenizer's EOS for text formats, the chat template's
        end-of-turn text (e.g. <|im_end|>) for chat."""
        if not self.chat:
            return self.tokenizer.eos_token
        from qlorafx.data.formats import Turn

        rendered = self.render([Turn("user", "x"), Turn("assistant", PLACEHOLDER)])
        start, end = rendered.spans[-1]
        return rendered.text[start:end].removeprefix(PLACEHOLDER).strip() or self.tokenizer.eos_token

    def encode(self, turns) -> Encoded:
        from qlorafx.data.render import Rendered
        from qlorafx.data.tokenize import tokenize, tokenize_encoder_decoder

        rendered = self.render(turns)
        last = Rendered(rendered.text, rendered.spans[-1:], rendered.add_special_tokens)  # earlier answers are context
        if self.encoder_decoder:  # the encoder reads the whole prompt; nothing of it is carried into the answer
            return Encoded(tokenize_encoder_decoder(last, self.tokenizer, NO_LIMIT)[0].prompt_ids, last.prompt)
        ids = tokenize(last, self.tokenizer, NO_LIMIT, train_on_inputs=False).prompt_ids
        if not ids:
            raise GenerateError("the prompt renders to no tokens; give a non-empty prompt")
        offsets = self.tokenizer(rendered.text, return_offsets_mapping=True,
                                 add_special_tokens=rendered.add_special_tokens)["offset_mapping"][:len(ids)]
        covered = max((end for _, end in offsets), default=0)
        return Encoded(ids, last.prompt, last.prompt[covered:])

    def decode(self, new_ids: list[int], encoded: Encoded) -> str:
        """Generated ids -> the answer: up to the first stop token or end marker."""
        stops = [i for i, token in enumerate(new_ids) if token in self.stop_ids]
        text = self.tokenizer.decode(new_ids[:stops[0]] if stops else new_ids, skip_special_tokens=True)
        if self.end_marker and self.end_marker in text:
            text = text[:text.index(self.end_marker)]
        return text.removeprefix(encoded.carried)


# ---------------------------------------------------------------------------------------------
# The model: quantized base + adapter, as trained.


def load_tokenizer(run: Run):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(run.path / "tokenizer")
    if tokenizer.pad_token is None:  # as in training: padding is masked out, so EOS is a safe pad
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def load_model(run: Run):
    """The run's base, quantized as the recipe says, with the adapter on top, in eval mode."""
    return load_quantized(run)


def generate_ids(model, batch: list[list[int]], pad_token_id: int, stop_ids: list[int], sampling: Sampling) -> list[list[int]]:
    """New token ids for each prompt, the prompts left-padded into one batch; each row ends at its
    first stop token (kept), so the padding that fills a finished row in a batch is not returned.
    An encoder-decoder model returns only its decoder's tokens, after the start token."""
    import torch

    width = max(len(ids) for ids in batch)
    input_ids = torch.tensor([[pad_token_id] * (width - len(ids)) + ids for ids in batch], device=model.device)
    attention_mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in batch], device=model.device)
    with torch.no_grad():
        output = model.generate(input_ids=input_ids, attention_mask=attention_mask,
                                max_new_tokens=sampling.max_new_tokens, pad_token_id=pad_token_id,
                                eos_token_id=stop_ids, use_cache=True, **sampling.generate_kwargs())
    skip = 1 if is_encoder_decoder(model.config) else width
    rows = [row[skip:].tolist() for row in output]
    return [row[:next((i + 1 for i, token in enumerate(row) if token in stop_ids), len(row))] for row in rows]


class Generator:
    """A run ready to answer: tokenizer and prompter at once, the model on the first answer (so
    every prompt is rendered, and refused if it must be, before any weight loads)."""

    def __init__(self, run: Run, sampling: Sampling, tokenizer=None, model=None):
        self.run, self.sampling = run, sampling.check()
        self.tokenizer = tokenizer or load_tokenizer(run)
        self.prompter = Prompter(run, self.tokenizer)
        self._model = model
        self._seeded = False

    @property
    def model(self):
        if self._model is None:
            self._model = load_model(self.run)
        return self._model

    def context_length(self) -> int:
        """Positions the model has (max_position_embeddings or its family's name for it); the
        run's data.max_length where the config names none."""
        config = self.model.config
        for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
            if isinstance(getattr(config, name, None), int):
                return getattr(config, name)
        return self.run.recipe.data.max_length

    def encode(self, prompt: str | dict, history: list = ()) -> Encoded:
        return self.prompter.encode(conversation(self.run.dataset, prompt, history))

    def answer(self, encoded: list[Encoded], batch_size: int = 8) -> list[str]:
        """One answer per prompt, in order; the prompts go to the model batch_size at a time."""
        if not self._seeded:  # once: later answers continue the same random stream
            from transformers import set_seed

            self.model  # loaded first: loading draws random numbers (peft initializes LoRA before loading it)

            set_seed(self.sampling.seed)
            self._seeded = True
        answers = []
        for start in range(0, len(encoded), batch_size):
            chunk = encoded[start:start + batch_size]
            new = generate_ids(self.model, [e.ids for e in chunk], self.tokenizer.pad_token_id,
                               self.prompter.stop_ids, self.sampling)
            answers += [self.prompter.decode(ids, e) for ids, e in zip(new, chunk)]
        return answers


def generate_text(model, tokenizer, prompt: str | list[int], max_new_tokens: int) -> str:
    """Greedy continuation of a prompt given as text or as token ids (ids exactly as trained)."""
    import torch

    if isinstance(prompt, str):
        inputs = tokenizer(prompt, return_tensors="pt").to(model.device)
    else:
        ids = torch.tensor([prompt], device=model.device)
        inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    was_training = model.training
    model.eval()
    with torch.no_grad():
        output = model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            use_cache=True,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    model.train(was_training)
    skip = 1 if is_encoder_decoder(model.config) else inputs["input_ids"].shape[1]  # the decoder start, or the prompt
    return tokenizer.decode(output[0, skip:], skip_special_tokens=True)
