"""The fake judge server and a comparison YAML written against it."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.judge.fake_server import FakeServer


@pytest.fixture(scope="session")
def _fake_server():
    fake = FakeServer()
    stop = fake.serve()
    yield fake
    stop()


@pytest.fixture
def server(_fake_server):
    """The fake server, its log empty and its rules reset for this test."""
    _fake_server.reset()
    yield _fake_server
    _fake_server.reset()


def write_questions(path: Path, count: int) -> Path:
    import json

    path.write_text("".join(json.dumps({"question_id": i, "category": "test", "text": f"What is {i} plus {i}?"}) + "\n"
                            for i in range(1, count + 1)))
    return path


def write_comparison(tmp_path: Path, url: str, judge: str = "longer", contestants=("short", "medium", "long"),
                     questions: int = 4, extra: str = "") -> Path:
    """A comparison of fake contestants named after their models, judged by a fake judge."""
    write_questions(tmp_path / "questions.jsonl", questions)
    lines = "\n".join(f"  - {{name: {c}, endpoint: fake, model: {c}}}" for c in contestants)
    path = tmp_path / "comparison.yaml"
    path.write_text(textwrap.dedent(f"""\
        description: fake contestants, fake judge
        questions: questions.jsonl
        endpoints:
          fake: {{base_url: "{url}", max_retries: 0}}
        contestants:
        """) + lines + "\n" + textwrap.dedent(f"""\
        judge: {{endpoint: fake, model: {judge}}}
        ratings: {{elo: {{orderings: 200}}, bootstrap_samples: 200}}
        output_dir: {tmp_path / 'out'}
        """) + textwrap.dedent(extra))
    return path
