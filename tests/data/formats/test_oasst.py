"""OpenAssistant trees: best-ranked path, every path, the filters and their counts; golden and on the real export."""

import json
import random
from collections import Counter

import pytest

from qlorafx.data.build import DataError, conversations_of
from qlorafx.data.formats import FORMATS, Turn
from qlorafx.data.formats.oasst import OasstDataset
from tests.data.helpers import encode, runs

FMT = FORMATS.get("oasst")


def msg(role, text, rank=None, replies=(), lang="en", **extra):
    return {"role": role, "text": text, "rank": rank, "lang": lang, "deleted": False, "review_result": True,
            "replies": list(replies), **extra}


def tree(prompt, state="ready_for_export"):
    return {"message_tree_id": "t1", "tree_state": state, "prompt": prompt}


def human_assistant(*pairs):
    return [t for q, a in pairs for t in (Turn("user", f"### Human: {q}### Assistant: "), Turn("assistant", a))]


DOCSTRING_TREE = tree(msg("prompter", "Hi", replies=[msg("assistant", "Hello!", 0), msg("assistant", "Hey.", 1)]))

# ranks listed out of order on purpose, so that taking the first reply would be wrong
DEEP_TREE = tree(msg("prompter", "Q1", replies=[
    msg("assistant", "A1 second", 1, [msg("prompter", "Q2 under second", replies=[msg("assistant", "A2 under second", 0)])]),
    msg("assistant", "A1 unranked", None),
    msg("assistant", "A1 best", 0, [
        msg("prompter", "Q2", replies=[
            msg("assistant", "A2 third", 2),
            msg("assistant", "A2 best", 0, [msg("prompter", "Q3 unanswered")]),
            msg("assistant", "A2 second", 1),
        ]),
    ]),
]))


def test_the_docstring_record_follows_the_best_ranked_reply():
    assert FMT.conversations(DOCSTRING_TREE) == [human_assistant(("Hi", "Hello!"))]


def test_the_lowest_rank_wins_at_every_level_whatever_the_order():
    expected = [human_assistant(("Q1", "A1 best"), ("Q2", "A2 best"))]  # Q3 has no answer: the path ends on A2
    assert FMT.conversations(DEEP_TREE) == expected
    reversed_tree = json.loads(json.dumps(DEEP_TREE))
    reversed_tree["prompt"]["replies"].reverse()
    assert FMT.conversations(reversed_tree) == expected


def test_all_paths_gives_every_root_to_leaf_path_ending_on_an_assistant():
    options = OasstDataset(path="x", all_paths=True)
    assert FMT.conversations(DOCSTRING_TREE, options) == [human_assistant(("Hi", "Hello!")), human_assistant(("Hi", "Hey."))]
    assert FMT.conversations(DEEP_TREE, options) == [  # in rank order, unranked last
        human_assistant(("Q1", "A1 best"), ("Q2", "A2 best")),
        human_assistant(("Q1", "A1 best"), ("Q2", "A2 second")),
        human_assistant(("Q1", "A1 best"), ("Q2", "A2 third")),
        human_assistant(("Q1", "A1 second"), ("Q2 under second", "A2 under second")),
        human_assistant(("Q1", "A1 unranked")),
    ]


def test_rendered_text_and_mask_token_by_token(byte_tokenizer):
    [example] = encode("oasst", DEEP_TREE, byte_tokenizer)
    assert runs(example, byte_tokenizer) == [
        (False, "<s>### Human: Q1### Assistant: "), (True, "A1 best</s>"),
        (False, "### Human: Q2### Assistant: "), (True, "A2 best</s>"),
    ]


def test_filters_drop_messages_and_count_each_one_the_walk_meets():
    record = tree(msg("prompter", "Q", replies=[
        msg("assistant", "deleted best", 0, deleted=True),
        msg("assistant", "failed review", 1, review_result=False),
        msg("assistant", "in Spanish", 2, lang="es"),
        msg("assistant", "kept", 3, [msg("prompter", "deleted follow-up", deleted=True, replies=[msg("assistant", "x", 0)])]),
    ]))
    counts = Counter()
    assert FMT.conversations(record, OasstDataset(path="x", lang=["en"]), counts) == [human_assistant(("Q", "kept"))]
    assert counts == {"deleted messages": 2, "messages failed review": 1, "messages not in lang en": 1}
    counts = Counter()  # without a lang filter, the Spanish reply (rank 2) is the best one left
    assert FMT.conversations(record, OasstDataset(path="x"), counts) == [human_assistant(("Q", "in Spanish"))]
    assert counts == {"deleted messages": 1, "messages failed review": 1}


def test_a_tree_not_ready_for_export_is_counted_and_skipped_unless_ready_only_is_off():
    record = tree(DOCSTRING_TREE["prompt"], state="growing")
    counts = Counter()
    assert FMT.conversations(record, OasstDataset(path="x"), counts) == []
    assert counts == {"trees not ready_for_export": 1}
    assert FMT.conversations(record, OasstDataset(path="x", ready_only=False)) == [human_assistant(("Hi", "Hello!"))]


def test_a_filtered_prompt_leaves_no_conversation_and_says_so():
    counts = Counter()
    record = tree(msg("prompter", "Hola", lang="es", replies=[msg("assistant", "Hola!", 0, lang="es")]))
    assert FMT.conversations(record, OasstDataset(path="x", lang=["en", "de"]), counts) == []
    assert counts == {"messages not in lang en, de": 1, "trees with no usable conversation": 1}


def test_bad_trees_name_the_record():
    records = [DOCSTRING_TREE, {"message_tree_id": "t2", "tree_state": "ready_for_export"}]
    with pytest.raises(DataError, match=r"^o.jsonl: record 1: format 'oasst' needs a message tree with a 'prompt' "
                                        r"message; found message_tree_id, tree_state$"):
        conversations_of(records, OasstDataset(path="o.jsonl"), Counter())
    no_text = tree({"role": "prompter", "replies": []})
    with pytest.raises(DataError, match=r"^o.jsonl: record 0: format 'oasst' needs messages with role and text"):
        conversations_of([no_text], OasstDataset(path="o.jsonl"), Counter())
    two_prompters = tree(msg("prompter", "Q", replies=[msg("prompter", "Q again", replies=[msg("assistant", "A", 0)])]))
    with pytest.raises(DataError, match=r"^o.jsonl: record 0: format 'oasst': roles must alternate prompter, assistant; "
                                        r"found prompter, prompter, assistant$"):
        conversations_of([two_prompters], OasstDataset(path="o.jsonl"), Counter())


# --- the real oasst2 export, walked here independently of the format's code -----------------------

def _why_unusable(message, lang):
    """The filter that drops a message (the format checks deleted, then review, then lang), or None."""
    if message.get("deleted"):
        return "deleted messages"
    if message.get("review_result") is False:
        return "messages failed review"
    if lang is not None and message.get("lang") not in lang:
        return f"messages not in lang {', '.join(lang)}"
    return None


def _usable_replies(message, lang, counts):
    kept = []
    for reply in message.get("replies") or []:
        why = _why_unusable(reply, lang)
        if why:
            counts[why] += 1
        else:
            kept.append(reply)
    return kept


def _rank(message):
    return message["rank"] if message.get("rank") is not None else float("inf")


def _trim(path):
    while path and path[-1]["role"] != "assistant":
        path = path[:-1]
    return path


def _best_path(prompt, lang, counts):
    path, message = [], prompt
    while True:
        path.append(message)
        replies = _usable_replies(message, lang, counts)
        if not replies:
            break
        message = min(replies, key=_rank)  # the first of equal ranks, as a stable sort gives
    return [_trim(path)] if _trim(path) else []


def _every_path(prompt, lang, counts):
    leaves = []

    def down(message, path):
        replies = _usable_replies(message, lang, counts)
        for reply in replies:
            down(reply, path + [reply])
        if not replies:
            leaves.append(_trim(path))

    down(prompt, [prompt])
    paths = {tuple(map(id, p)): p for p in leaves if p}
    # a path cut back to its last assistant adds nothing when a longer path goes through that assistant
    return [p for k, p in paths.items() if not any(len(o) > len(k) and o[:len(k)] == k for o in paths)]


def _walk(trees, lang=None, all_paths=False):
    counts, conversations = Counter(), []
    for record in trees:
        if record["tree_state"] != "ready_for_export":
            counts["trees not ready_for_export"] += 1
            continue
        paths = []
        if _why_unusable(record["prompt"], lang):
            counts[_why_unusable(record["prompt"], lang)] += 1
        else:
            paths = (_every_path if all_paths else _best_path)(record["prompt"], lang, counts)
        if not paths:
            counts["trees with no usable conversation"] += 1
        conversations += [human_assistant(*[(p[i]["text"], p[i + 1]["text"]) for i in range(0, len(p), 2)]) for p in paths]
    return conversations, counts


@pytest.fixture(scope="module")
def real_trees():
    from tests.conftest import SHARED_DATA

    path = SHARED_DATA / "oasst" / "oasst2_trees.jsonl"
    if not path.is_file():
        pytest.skip("../shared/data is not present (it is not part of a user's clone)")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _format(trees, **options):
    counts = Counter()
    conversations = conversations_of(trees, OasstDataset(path="oasst2_trees.jsonl", **options), counts)
    return conversations, counts


def _key(conversation):
    return tuple((t.role, t.text) for t in conversation)


NOT_READY = {"trees not ready_for_export": 455}  # of 551 trees, 96 are ready_for_export (the README's count)


@pytest.mark.parametrize("options, expected_counts, expected_conversations", [
    ({}, {**NOT_READY, "deleted messages": 21, "messages failed review": 9}, 96),
    ({"lang": ["en"]}, {**NOT_READY, "deleted messages": 15, "messages failed review": 6, "messages not in lang en": 47,
                        "trees with no usable conversation": 47}, 49),
    # every path meets every filtered message whose ancestors are all kept: 35 of the ready trees' 50 deleted
    # messages and 22 of their 33 failed reviews (the rest lie under a message already dropped)
    ({"all_paths": True}, {**NOT_READY, "deleted messages": 35, "messages failed review": 22}, 452),
    ({"all_paths": True, "lang": ["en"]}, {**NOT_READY, "deleted messages": 25, "messages failed review": 14,
                                           "messages not in lang en": 49, "trees with no usable conversation": 47}, 257),
])
def test_real_export_conversations_and_filter_counts(real_trees, options, expected_counts, expected_conversations):
    assert len(real_trees) == 551
    conversations, counts = _format(real_trees, **options)
    mine, my_counts = _walk(real_trees, options.get("lang"), options.get("all_paths", False))
    assert counts == my_counts == expected_counts
    assert len(conversations) == expected_conversations
    assert sorted(map(_key, conversations)) == sorted(map(_key, mine))
    if not options.get("all_paths"):
        assert [_key(c) for c in conversations] == [_key(c) for c in mine]  # one per tree, in file order
    for conversation in conversations:
        assert [t.role for t in conversation] == ["user", "assistant"] * (len(conversation) // 2)


def test_real_tree_best_ranked_path_and_every_path(real_trees):
    [record] = [t for t in real_trees if t["message_tree_id"] == "dc807989-4b1e-42c4-9776-d5159c6df052"]
    prompt = record["prompt"]
    ranked = [r for r in prompt["replies"] if r["rank"] is not None]
    assert [r["rank"] for r in ranked] == [0, 1, 2] and len(prompt["replies"]) == 9  # 6 unranked: deleted or failed
    best, second, third = ranked
    counts = Counter()
    assert FMT.conversations(record, OasstDataset(path="x"), counts) == [human_assistant((prompt["text"], best["text"]))]
    assert counts == {"deleted messages": 4, "messages failed review": 2}  # the unranked six beside the best reply

    [hey] = third["replies"]
    hello, bro, hello_there = sorted(hey["replies"], key=lambda m: m["rank"])
    [not_asked] = hello["replies"]
    [sorry] = not_asked["replies"]
    counts = Counter()
    assert FMT.conversations(record, OasstDataset(path="x", all_paths=True), counts) == [
        human_assistant((prompt["text"], best["text"])),  # its one reply is a user turn nobody answered
        human_assistant((prompt["text"], second["text"])),  # its one reply is deleted
        human_assistant((prompt["text"], third["text"]), (hey["text"], hello["text"]), (not_asked["text"], sorry["text"])),
        human_assistant((prompt["text"], third["text"]), (hey["text"], bro["text"])),
        human_assistant((prompt["text"], third["text"]), (hey["text"], hello_there["text"])),
    ]
    assert counts == {"deleted messages": 5, "messages failed review": 2}

    shuffled = json.loads(json.dumps(record))  # reply order in the file does not matter, only rank
    random.Random(0).shuffle(shuffled["prompt"]["replies"])
    assert shuffled["prompt"]["replies"][0]["rank"] != 0
    assert FMT.conversations(shuffled, OasstDataset(path="x")) == [human_assistant((prompt["text"], best["text"]))]
