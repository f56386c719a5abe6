"""A comparison YAML -> a validated Comparison: who answers, who judges, how the results are rated.

Loaded by the recipe's own machinery (safe YAML, ``extends``, ``key.path=value`` overrides, one
report of every problem with its file and line, exit code 2), then validated here:

    endpoints:              # the OpenAI-compatible servers, by name
      local: {base_url: http://127.0.0.1:8000/v1}
      openai: {base_url: https://api.openai.com/v1, api_key_env: OPENAI_API_KEY}
    contestants:            # two or more
      - {name: guanaco, endpoint: local, run: runs/guanaco}   # model: the run directory's name
      - {name: chatgpt, endpoint: openai, model: gpt-3.5-turbo}
    judge: {endpoint: openai, model: gpt-4}
    output_dir: judgments/guanaco

API keys are read from the environment variables named here, never from the file.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from qlorafx.errors import Problem
from qlorafx.recipe.errors import RecipeError
from qlorafx.recipe.load import merged_yaml
from qlorafx.recipe.sources import SourceMap
from qlorafx.recipe.validation import validation_problems
from qlorafx.section import Section

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # also a file name: answers/<name>.jsonl
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
PLACEHOLDERS = ("{question}", "{answer_a}", "{answer_b}")


def _name(value: str, what: str) -> str:
    if not NAME.fullmatch(value):
        raise ValueError(f"{what} {value!r} must be letters, digits, '.', '_' or '-' (at most 64, not starting with "
                         f"'.' or '-'): it names files; e.g. guanaco-7b")
    return value


class EndpointSpec(Section):
    base_url: str = Field(description="The OpenAI-compatible API's base URL, e.g. http://127.0.0.1:8000/v1.")
    api_key_env: str | None = Field(None, description="Name of the environment variable holding the API key; "
                                                      "null for a server that needs none. The key itself never goes in a file.")
    concurrency: int = Field(4, ge=1, le=256, description="Requests in flight at once to this endpoint.")
    max_retries: int = Field(5, ge=0, le=20, description="Retries of a failed request (connection errors, 408, 409, 429, "
                                                        "5xx), with exponential back-off from 0.5 s to 8 s, honouring Retry-After.")
    timeout: float = Field(600, gt=0, description="Seconds one request may take.")

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
            raise ValueError(f"expected an http:// or https:// URL such as http://127.0.0.1:8000/v1; found {value!r}")
        return value

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not ENV_NAME.fullmatch(value):
            hint = " (write the variable's NAME here and export the key in the shell)" if len(value) > 20 else ""
            raise ValueError(f"expected the name of an environment variable, e.g. OPENAI_API_KEY{hint}")
        return value


class GenerationSpec(Section):
    max_tokens: int = Field(512, ge=1, le=1_000_000, description="Longest answer a contestant may give, in tokens.")
    temperature: float = Field(0.7, ge=0, le=2, description="Contestants' sampling temperature (the QLoRA paper: 0.7).")
    top_p: float = Field(0.9, gt=0, le=1, description="Contestants' nucleus sampling (the QLoRA paper: 0.9).")
    system: str | None = Field(None, description="A system message sent before each question; null sends none.")


class ContestantSpec(Section):
    name: str = Field(description="How the contestant is called in the results (and its answers file).")
    endpoint: str = Field(description="The name of one of `endpoints`.")
    model: str | None = Field(None, description="The model name the endpoint serves it under; default: the name of `run`'s "
                                                "directory (what `qlorafx serve` calls a run).")
    run: str | None = Field(None, description="A finished qlorafx run directory: its model card gets this comparison's figures.")
    api: Literal["chat", "completions"] = Field(
        "chat", description="chat: /chat/completions, the endpoint applies the model's chat template; completions: "
                            "/completions with prompt_template, for a model without one (such as a base model).")
    prompt_template: str = Field("{question}", description="api completions: the prompt, with {question} in it, "
                                                           "e.g. '### Human: {question} ### Assistant:'.")
    stop: list[str] = Field(default_factory=list, description="api completions: where an answer ends, e.g. ['### Human:'].")

    _check_name = field_validator("name")(lambda cls, v: _name(v, "name"))

    @model_validator(mode="after")
    def _model_or_run(self) -> "ContestantSpec":
        if self.model is None and self.run is None:
            raise ValueError("give model (the name the endpoint serves) or run (a qlorafx run directory served under its name)")
        if "{question}" not in self.prompt_template:
            raise ValueError("prompt_template must hold {question}, where the question goes")
        if self.api == "chat" and (self.prompt_template != "{question}" or self.stop):
            raise ValueError("prompt_template and stop are for api: completions; with api chat the endpoint's chat "
                             "template shapes the prompt: set api: completions or remove them")
        return self

    @property
    def served_model(self) -> str:
        return self.model if self.model is not None else Path(self.run).name


class PromptSpec(Section):
    system: str = Field("", description="The judge's system message.")
    user: str = Field(description="The judge's message; holds {question}, {answer_a} and {answer_b}.")

    @field_validator("user")
    @classmethod
    def _placeholders(cls, value: str) -> str:
        missing = [p for p in PLACEHOLDERS if p not in value]
        if missing:
            raise ValueError(f"the judge's message must hold {', '.join(PLACEHOLDERS)}; missing {', '.join(missing)}")
        return value


class JudgeSpec(Section):
    endpoint: str = Field(description="The name of one of `endpoints`.")
    model: str = Field(description="The judge model's name at that endpoint, e.g. gpt-4.")
    mode: Literal["pairwise", "score"] = Field(
        "pairwise", description="pairwise: the judge ends with [[A]], [[B]] or [[C]] (tie); score: the judge's first line is "
                                "two scores from 1 to 10 (Vicuna's protocol), which also gives the relative score.")
    verdict_format: Literal["brackets", "digits"] = Field(
        "brackets", description="Mode pairwise: brackets, a last line [[A]], [[B]] or [[C]] (MT-Bench); digits, a last line 1, "
                                "2 or 3 for a tie (the QLoRA paper's three-class prompt).")
    both_orders: bool = Field(True, description="Judge every pair in both orders (the judge favours a position); a verdict "
                                                "that flips with the order is a tie. false: one order per question, drawn by a hash.")
    temperature: float = Field(0.0, ge=0, le=2, description="The judge's sampling temperature.")
    max_tokens: int = Field(1024, ge=1, le=1_000_000, description="Longest judgment, in tokens.")
    prompt: PromptSpec | None = Field(None, description="A prompt of your own; null: the built-in one for the mode.")


    @model_validator(mode="after")
    def _format_fits_mode(self) -> "JudgeSpec":
        if self.mode == "score" and self.verdict_format != "brackets":
            raise ValueError("verdict_format is for mode pairwise; mode score reads two scores on the first line: "
                             "remove verdict_format")
        if self.verdict_format == "digits" and self.prompt is None:
            raise ValueError("verdict_format digits needs a prompt that asks for 1, 2 or 3 on the last line (the built-in "
                             "prompt asks for [[A]], [[B]] or [[C]]): give judge.prompt")
        return self


class EloSpec(Section):
    k: float = Field(32, gt=0, description="Elo K-factor (the QLoRA paper: 32).")
    initial: float = Field(1000, description="Every contestant's rating before the first match (the paper: 1000).")
    orderings: int = Field(10_000, ge=1, le=1_000_000, description="Random orderings of the matches averaged over (the paper: 10,000).")


class RatingsSpec(Section):
    elo: EloSpec = EloSpec()
    bootstrap_samples: int = Field(1000, ge=10, le=1_000_000, description="Resamples of the questions for the intervals.")
    confidence: float = Field(0.95, gt=0, lt=1, description="Coverage of every interval reported.")
    seed: int = Field(0, description="Seed of the orderings and resamples: the same judgments give the same figures.")
    reference: str | None = Field(None, description="A contestant's name: relative scores (mode score) are against it.")


class Comparison(Section):
    description: str | None = Field(None, description="One line saying what is compared; shown in the report.")
    questions: str | None = Field(None, description="JSONL of questions ({question_id, text, category}); null: the "
                                                    "question set shipped with qlorafx.")
    endpoints: dict[str, EndpointSpec] = Field(description="The OpenAI-compatible servers, by name.")
    contestants: list[ContestantSpec] = Field(min_length=2, description="What answers the questions; two or more.")
    generation: GenerationSpec = GenerationSpec()
    judge: JudgeSpec
    matches: Literal["all_pairs", "against_reference"] = Field(
        "all_pairs", description="all_pairs: every contestant against every other; against_reference: each against ratings.reference.")
    ratings: RatingsSpec = RatingsSpec()
    output_dir: str = Field(description="Where results.json, report.md, the plot, answers and judgments go.")
    cache: str | None = Field(None, description="SQLite file of answers and judgments already paid for; default "
                                                "OUTPUT_DIR/cache.sqlite. Share it between comparisons to reuse answers.")

    @field_validator("endpoints")
    @classmethod
    def _endpoint_names(cls, value: dict[str, EndpointSpec]) -> dict[str, EndpointSpec]:
        if not value:
            raise ValueError("name at least one endpoint, e.g. local: {base_url: http://127.0.0.1:8000/v1}")
        for name in value:
            _name(str(name), "endpoint name")
        return value

    @model_validator(mode="after")
    def _references(self) -> "Comparison":
        found: list[str] = []
        names = [c.name for c in self.contestants]
        for i, c in enumerate(self.contestants):
            if names.index(c.name) != i:
                found.append(f"contestants.{i}.name: {c.name!r} is already the name of contestants.{names.index(c.name)}; "
                             f"give each contestant its own name")
            if c.endpoint not in self.endpoints:
                found.append(f"contestants.{i}.endpoint: {_unknown(c.endpoint, self.endpoints)}")
        if self.judge.endpoint not in self.endpoints:
            found.append(f"judge.endpoint: {_unknown(self.judge.endpoint, self.endpoints)}")
        reference = self.ratings.reference
        if reference is not None and reference not in names:
            close = difflib.get_close_matches(reference, names, n=1)
            found.append(f"ratings.reference: no contestant is named {reference!r} (contestants: {', '.join(names)})"
                         + (f"; did you mean {close[0]!r}?" if close else ""))
        if self.matches == "against_reference" and reference is None:
            found.append("ratings.reference: matches against_reference needs a reference contestant; name one here")
        if found:
            raise ValueError("\n".join(found))
        return self


def _unknown(name: str, endpoints: dict) -> str:
    close = difflib.get_close_matches(name, list(endpoints), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"no endpoint is named {name!r} (endpoints: {', '.join(endpoints)}){hint}"


def _absolute(data: dict, sources: SourceMap) -> dict:
    """questions and runs are relative to the file that names them; output_dir and cache to the current folder."""
    def resolve(value, base: Path):
        return str((base / Path(value).expanduser()).resolve()) if isinstance(value, str) and value else value

    if "questions" in data:
        data["questions"] = resolve(data["questions"], sources.base_dir("questions"))
    for i, contestant in enumerate(data.get("contestants") or []):
        if isinstance(contestant, dict) and "run" in contestant:
            contestant["run"] = resolve(contestant["run"], sources.base_dir(f"contestants.{i}.run"))
    for key in ("output_dir", "cache"):
        if key in data:
            data[key] = resolve(data[key], Path.cwd())
    return data


def load_comparison(path: str | Path, overrides: list[str] = ()) -> tuple[Comparison, SourceMap]:
    """The validated comparison, and where each of its values came from; a RecipeError listing every problem."""
    data, sources, problems = merged_yaml(path, overrides)
    try:
        comparison = Comparison.model_validate(_absolute(data, sources))
    except ValidationError as err:
        problems += validation_problems(err, sources, root=Comparison)
    if problems:
        raise RecipeError(str(path), problems)
    return comparison, sources


def problem(sources: SourceMap, key: str, message: str) -> Problem:
    """A problem found after validation (a missing file, an unset key variable), placed where the key was written."""
    return Problem(key, message, sources.where(key))


def problems_error(sources: SourceMap, problems: list[Problem]) -> RecipeError:
    """Problems found after validation, reported as validation's are: under the comparison's file."""
    return RecipeError(str(sources.layers[-1].path), problems)
