"""Each contestant answers each question once: the answers are cached, a rerun asks for none again.

The cache key is the request (model name, messages or prompt, sampling) and what names the model
behind it. For a contestant that is a qlorafx run, that is its run.json as training left it (a run
trained again answers again; a run judged or evaluated since does not), not the endpoint's URL:
`qlorafx serve` restarted on another port serves the same run, and its answers come from the cache.
A contestant known only by an endpoint and a model name keeps the URL in its key: two servers may
serve different models under one name ('gpt-4' at two providers, 'default' at two vLLMs), and a
cached answer of one must never stand in for the other.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from qlorafx.judge.cache import Cache, request_key
from qlorafx.judge.client import Endpoint
from qlorafx.judge.questions import Question
from qlorafx.judge.spec import Comparison, ContestantSpec
from qlorafx.judge.tasks import run_together
from qlorafx.run_files import FINISHED_MARKER


@dataclass(frozen=True)
class Answer:
    contestant: str
    question_id: str
    text: str
    finish_reason: str | None  # 'length': cut at generation.max_tokens


AFTER_TRAINING = ("evaluations", "judged")  # what `qlorafx eval` and `qlorafx judge` add to a finished run.json


def _run_fingerprint(contestant: ContestantSpec) -> str | None:
    """The training's own record: another training of the run changes it; an evaluation or a judgment does not."""
    if contestant.run is None:
        return None
    status = json.loads((Path(contestant.run) / FINISHED_MARKER).read_text(encoding="utf-8"))
    trained = {k: v for k, v in status.items() if k not in AFTER_TRAINING}
    return hashlib.sha256(json.dumps(trained, sort_keys=True).encode("utf-8")).hexdigest()


def answer_request(comparison: Comparison, contestant: ContestantSpec, question: Question) -> dict:
    g = comparison.generation
    run = _run_fingerprint(contestant)
    request = {"model": contestant.served_model, "max_tokens": g.max_tokens, "temperature": g.temperature,
               "top_p": g.top_p, "run": run}
    if run is None:  # only the endpoint says which model this is
        request["base_url"] = comparison.endpoints[contestant.endpoint].base_url
    if contestant.api == "completions":  # the template in one pass: a '{question}' inside the question stays as written
        prompt = re.sub(r"\{question\}", lambda _: question.text, contestant.prompt_template)
        return {**request, "prompt": prompt, "stop": contestant.stop}
    messages = ([{"role": "system", "content": g.system}] if g.system else []) + [{"role": "user", "content": question.text}]
    return {**request, "messages": messages}


def missing_answers(comparison: Comparison, questions: list[Question], cache: Cache) -> int:
    return sum(cache.get("answers", request_key(answer_request(comparison, c, q))) is None
               for c in comparison.contestants for q in questions)


async def gather_answers(comparison: Comparison, questions: list[Question], endpoints: dict[str, Endpoint],
                         cache: Cache, done: Callable[[], None] = lambda: None) -> dict[tuple[str, str], Answer]:
    """{(contestant, question id): answer}; asks only for what the cache lacks, and caches each as it arrives."""
    answers: dict[tuple[str, str], Answer] = {}

    async def one(index: int, contestant: ContestantSpec, question: Question) -> None:
        request = answer_request(comparison, contestant, question)
        key = request_key(request)
        found = cache.get("answers", key)
        if found is None:
            endpoint, where = endpoints[contestant.endpoint], f"contestants.{index}.model"
            sampling = {"max_tokens": request["max_tokens"], "temperature": request["temperature"], "top_p": request["top_p"]}
            if "prompt" in request:
                reply = await endpoint.complete(request["model"], request["prompt"], where=where,
                                                **sampling, **({"stop": request["stop"]} if request["stop"] else {}))
            else:
                reply = await endpoint.chat(request["model"], request["messages"], where=where, **sampling)
            found = {"text": reply.text, "finish_reason": reply.finish_reason}
            cache.put("answers", key, found)  # no await before this: a reply received is a reply kept
        answers[contestant.name, question.id] = Answer(contestant.name, question.id, found["text"], found["finish_reason"])
        done()

    await run_together([one(i, c, q) for i, c in enumerate(comparison.contestants) for q in questions])
    return answers

