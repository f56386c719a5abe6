from qlorafx.data.synthetic import quickstart_records, write_jsonl
from tests.conftest import REPO


def test_committed_quickstart_data_is_what_the_generator_writes(tmp_path):
    write_jsonl(quickstart_records(), tmp_path / "q.jsonl")
    assert (tmp_path / "q.jsonl").read_text() == (REPO / "recipes" / "data" / "quickstart.jsonl").read_text()


def test_both_alpaca_templates_appear():
    records = quickstart_records()
    assert any(r["input"] for r in records) and any(not r["input"] for r in records)
