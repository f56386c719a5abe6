"""Recipe -> training and validation batches' features, with counts that are always reported.

    records --format--> conversations --render--> text + spans --tokenize--> examples  (cached per dataset;
                                                 encoder-decoder models: one example per assistant turn)
    examples --max_examples, split, weight--> train / val --pack (or not)--> features

The validation split is taken before weights repeat or thin out the training part, so a
repeated example never lands on both sides.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from qlorafx.data import cache
from qlorafx.data.formats import FORMATS, DatasetBase, RecordError
from qlorafx.data.packing import pack
from qlorafx.data.render import chat_template_of, render_chat, render_text
from qlorafx.data.sources import (DataFileError, fingerprint, hub_dataset, hub_fingerprint, is_hub, read_records,
                                  record_place)
from qlorafx.data.tokenize import Example, tokenize, tokenize_encoder_decoder
from qlorafx.errors import Problem, UserError

class DataError(UserError):
    """Bad data: the message names the dataset, the record and what is wrong."""


@dataclass
class DatasetReport:
    path: str
    format: str
    records: int = 0
    conversations: int = 0
    filtered: dict[str, int] = field(default_factory=dict)
    dropped: int = 0
    truncated: int = 0
    cache: str = ""  # 'hit' or 'miss'
    examples: list[Example] = field(default_factory=list, repr=False)
    used: list[Example] | None = field(default=None, repr=False)  # the ones max_examples kept (None: all)


@dataclass
class Prepared:
    train: list[dict]  # features: examples, or packed rows
    val: list[dict]
    datasets: list[DatasetReport]
    train_examples: list[Example] = field(repr=False, default_factory=list)
    val_examples: list[Example] = field(repr=False, default_factory=list)


def conversations_of(records: list, dataset: DatasetBase, counts: Counter) -> list:
    fmt = FORMATS.get(dataset.format)
    out = []
    for index, record in enumerate(records):
        try:
            out += fmt.conversations(record, dataset, counts)
        except RecordError as err:
            raise DataError(f"{record_place(dataset.path, index)}: {err}") from None
    return out


@dataclass
class DataCheck:
    """What `validate` finds in the data without a tokenizer."""

    problems: list[Problem]
    examples: list[int | None]  # per dataset: the examples its records give at most; None when not read (hub)


def read_datasets(recipe, sources, encoder_decoder: bool = False) -> DataCheck:
    """Every record of every local dataset read and turned into conversations, as training will:
    missing files, malformed or misshapen records anywhere in the file, filters that leave nothing.
    Counts are upper bounds: examples longer than max_length and length_policy drop are only seen
    with the tokenizer (`qlorafx preprocess`)."""
    problems, counts = [], []
    for i, dataset in enumerate(recipe.data.datasets):
        key = f"data.datasets.{i}.path"
        if is_hub(dataset.path):
            counts.append(None)  # checking a hub dataset needs the hub; train and preprocess do
            continue
        filtered: Counter = Counter()
        try:
            conversations = conversations_of(read_records(Path(dataset.path)), dataset, filtered)
        except (DataFileError, DataError) as err:
            problems.append(Problem(key, str(err), sources.where(key)))
            counts.append(None)
            continue
        if not conversations:
            problems.append(Problem(key, f"{dataset.path}: no examples left after filtering ({dict(filtered)})",
                                    sources.where(key)))
        # an encoder-decoder model learns each assistant turn as an example of its own
        found = sum(t.role == "assistant" for c in conversations for t in c) if encoder_decoder else len(conversations)
        counts.append(min(found, dataset.max_examples) if dataset.max_examples is not None else found)
    return DataCheck(problems, counts)


def check_datasets(recipe, sources) -> list[Problem]:
    return read_datasets(recipe, sources).problems


def split_problems(recipe, sources, check: DataCheck) -> list[Problem]:
    """A validation split that leaves no training example, as prepare() would find it."""
    if not check.examples or any(n is None for n in check.examples):
        return []
    total = sum(check.examples)
    try:
        _val_count(total, recipe.data.val_size, at_most=True)
    except DataError as err:
        return [Problem("data.val_size", str(err), sources.where("data.val_size"))]
    return []


def _tokenize_dataset(dataset: DatasetBase, recipe, tokenizer, report: DatasetReport, encoder_decoder: bool,
                      records: list | None = None) -> None:
    """``records``: already read (a hub dataset's); else read from dataset.path."""
    fmt = FORMATS.get(dataset.format)
    d = recipe.data
    if records is None:
        try:
            records = read_records(dataset.path, split=dataset.split)
        except DataFileError as err:
            raise DataError(str(err)) from None
    counts: Counter = Counter()
    conversations = conversations_of(records, dataset, counts)
    template = chat_template_of(tokenizer, getattr(dataset, "chat_template", None)) if fmt.chat else None
    drop_long = d.length_policy == "drop"
    examples, dropped = [], 0
    for index, turns in enumerate(conversations):
        try:
            rendered = render_chat(turns, tokenizer, template) if fmt.chat else render_text(turns, tokenizer.eos_token)
        except RecordError as err:
            raise DataError(f"{dataset.path}: conversation {index}: {err}") from None
        if encoder_decoder:
            kept = tokenize_encoder_decoder(rendered, tokenizer, d.max_length, drop_long)
            dropped += len(rendered.spans) - len(kept)
            examples += kept
            continue
        example = tokenize(rendered, tokenizer, d.max_length, d.train_on_inputs, drop_long)
        if example is None:
            dropped += 1
        else:
            examples.append(example)
    report.examples = examples
    report.records, report.conversations, report.dropped = len(records), len(conversations), dropped
    report.filtered = dict(counts)


def load_dataset(dataset: DatasetBase, recipe, tokenizer, log=print, encoder_decoder: bool = False) -> DatasetReport:
    """One dataset's examples, from the cache when nothing they depend on has changed.
    ``encoder_decoder``: examples for a T5-style model (prompt to the encoder, response as target)."""
    d = recipe.data
    report = DatasetReport(dataset.path, dataset.format)
    hub = None
    if is_hub(dataset.path):  # loaded (from datasets' own cache when the hub has nothing newer) to know its content
        try:
            hub = hub_dataset(dataset.path, dataset.split)
        except DataFileError as err:
            raise DataError(str(err)) from None
        source = f"hub:{dataset.path}:{dataset.split}:{hub_fingerprint(hub)}"
    else:
        source = fingerprint(Path(dataset.path))
    key = cache.cache_key(
        data=source, tokenizer=cache.tokenizer_fingerprint(tokenizer), format_version=FORMATS.get(dataset.format).version,
        dataset=dataset.model_dump(exclude={"path", "weight", "max_examples"}),
        lengths=[d.max_length, d.length_policy, d.train_on_inputs],
        layout="encoder-decoder" if encoder_decoder else "causal",
    )
    path = cache.cache_root(d.cache_dir) / "tokenized" / f"{key}.npz"
    stored = cache.load(path)
    if stored is not None:
        ids, labels, truncated, counts = stored
        report.examples = [Example(i, l, t, encoder_decoder) for i, l, t in zip(ids, labels, truncated)]
        report.records, report.conversations = counts["records"], counts["conversations"]
        report.dropped, report.filtered, report.cache = counts["dropped"], counts["filtered"], "hit"
    else:
        _tokenize_dataset(dataset, recipe, tokenizer, report, encoder_decoder, hub.to_list() if hub is not None else None)
        report.cache = "miss"
        counts = {"records": report.records, "conversations": report.conversations, "dropped": report.dropped,
                  "filtered": report.filtered}
        cache.save(path, [e.input_ids for e in report.examples], [e.labels for e in report.examples],
                   [e.truncated for e in report.examples], counts)
    report.truncated = sum(e.truncated for e in report.examples)
    log(f"data cache {report.cache}: {dataset.path} ({len(report.examples)} examples)")
    if not report.examples:
        raise DataError(f"{dataset.path}: no examples left after filtering ({report.filtered or 'nothing filtered'}) "
                        f"and length policy (dropped {report.dropped}); check the filters and max_length")
    return report


def _val_count(total: int, val_size: float, at_most: bool = False) -> int:
    """``at_most``: ``total`` counts the examples before any are dropped for length (validate's count)."""
    count = round(total * val_size) if val_size < 1 else int(val_size)
    if count >= total:
        found = f"the data gives at most {total} examples" if at_most else f"the data gives {total} examples"
        raise DataError(f"data.val_size {val_size:g} leaves no training examples: {found}; "
                        f"set it below {total}, or to a fraction such as 0.05")
    return count


def _weighted(items: list, weight: float, rng: random.Random) -> list:
    """Whole repeats for the integer part of weight, a random share for the rest."""
    whole, share = int(weight), weight - int(weight)
    return items * whole + rng.sample(items, round(len(items) * share))


def encoder_decoder_problems(recipe) -> list[tuple[str, str]]:
    """(key, message) for each data option that an encoder-decoder model cannot honour."""
    d, found = recipe.data, []
    if d.packing:
        found.append(("data.packing", "true, but the model is an encoder-decoder (T5 family): packing would put "
                                      "several prompts into one encoder row and their responses into one decoder row; "
                                      "set data.packing=false (data.group_by_length=true keeps padding low instead)"))
    if d.train_on_inputs:
        found.append(("data.train_on_inputs", "true, but the model is an encoder-decoder (T5 family): the prompt is "
                                              "the encoder's input and is never predicted; set data.train_on_inputs=false"))
    return found


def check_encoder_decoder(recipe) -> None:
    """Data options that an encoder-decoder model cannot honour are refused, not ignored."""
    for key, message in encoder_decoder_problems(recipe):
        raise DataError(f"{key}: {message}")


def prepare(recipe, tokenizer, log=print, encoder_decoder: bool = False) -> Prepared:
    """``encoder_decoder``: the model is T5-style (qlorafx.model.architecture.is_encoder_decoder)."""
    d, rng = recipe.data, random.Random(recipe.training.seed)
    if encoder_decoder:
        check_encoder_decoder(recipe)
    reports = [load_dataset(dataset, recipe, tokenizer, log, encoder_decoder) for dataset in d.datasets]

    pool = []  # (dataset index, example): capped per dataset, then split all together
    for i, (dataset, report) in enumerate(zip(d.datasets, reports)):
        examples = list(report.examples)
        if dataset.max_examples is not None and dataset.max_examples < len(examples):
            examples = rng.sample(examples, dataset.max_examples)
            report.used = examples  # what the counts of what is trained on are over
        pool += [(i, e) for e in examples]
    rng.shuffle(pool)
    n_val = _val_count(len(pool), d.val_size)
    val = [e for _, e in pool[:n_val]]
    train = []
    for i, dataset in enumerate(d.datasets):
        share = _weighted([e for j, e in pool[n_val:] if j == i], dataset.weight, rng)
        if not share:
            raise DataError(f"data.datasets.{i} ({dataset.path}): weight {dataset.weight:g} and the validation split "
                            "leave it no training examples; raise its weight or remove it")
        train += share
    rng.shuffle(train)
    if not train:
        raise DataError("no training examples: the weights and max_examples leave none")
    if not any(e.trained_tokens for e in train):
        raise DataError("no training example has a token that carries loss: every response was masked or "
                        "truncated away; raise data.max_length or check the format")

    if d.packing:
        features = [r.as_features() for r in pack([e.as_features() for e in train], d.max_length)]
        val_features = [r.as_features() for r in pack([e.as_features() for e in val], d.max_length)]
    else:
        features, val_features = [e.as_features() for e in train], [e.as_features() for e in val]
    return Prepared(features, val_features, reports, train, val)
