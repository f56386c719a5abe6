import json

import pytest

from qlorafx.data.sources import DataFileError, read_records


def test_json_list_and_jsonl_read_the_same(tmp_path):
    records = [{"instruction": "a", "output": "b"}, {"instruction": "c", "output": "d"}]
    (tmp_path / "d.json").write_text(json.dumps(records))
    (tmp_path / "d.jsonl").write_text("\n".join(map(json.dumps, records)) + "\n\n")
    assert read_records(tmp_path / "d.json") == read_records(tmp_path / "d.jsonl") == records
    assert read_records(tmp_path / "d.jsonl", limit=1) == records[:1]


@pytest.mark.parametrize("name, content, message", [
    ("bad.jsonl", '{"a": 1}\n{"a": 2,,}\n', r"bad.jsonl:2: malformed JSON .* line starting '\{\"a\": 2,,\}'"),
    ("bad.json", '[\n {"a": 1},\n {"a": }\n]', r"bad.json:3: malformed JSON"),
    ("obj.json", '{"a": 1}', r"expected a JSON list of records, found a dict"),
    ("empty.jsonl", "", r"holds no records"),
    ("data.txt", "x", r"unsupported file type .txt"),
])
def test_malformed_files_name_file_and_line(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(DataFileError, match=message):
        read_records(tmp_path / name)


def test_missing_file_and_wrong_encoding(tmp_path):
    with pytest.raises(DataFileError, match="nope.json: data file not found"):
        read_records(tmp_path / "nope.json")
    (tmp_path / "latin.jsonl").write_bytes('{"a": "caf\xe9"}'.encode("latin-1"))
    with pytest.raises(DataFileError, match="not UTF-8"):
        read_records(tmp_path / "latin.jsonl")


RECORDS = [{"instruction": "a", "input": "", "output": "b"}, {"instruction": "c, with a comma", "input": "x", "output": 'say "d"\nthen e'}]


def test_csv_reads_quoted_fields_and_empty_cells_as_text(tmp_path):
    (tmp_path / "d.csv").write_text('instruction,input,output\na,,b\n"c, with a comma",x,"say ""d""\nthen e"\n')
    assert read_records(tmp_path / "d.csv") == RECORDS
    assert read_records(tmp_path / "d.csv", limit=1) == RECORDS[:1]


def test_parquet(tmp_path):
    import pyarrow
    import pyarrow.parquet

    pyarrow.parquet.write_table(pyarrow.Table.from_pylist(RECORDS), tmp_path / "d.parquet")
    assert read_records(tmp_path / "d.parquet") == RECORDS
    assert read_records(tmp_path / "d.parquet", limit=1) == RECORDS[:1]


def test_a_damaged_parquet_file(tmp_path):
    (tmp_path / "d.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(DataFileError, match=r"d.parquet: not a readable parquet file \("):
        read_records(tmp_path / "d.parquet")


def test_a_folder_of_mixed_files_reads_them_in_sorted_order(tmp_path):
    import pyarrow
    import pyarrow.parquet

    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "c.jsonl").write_text('{"n": 5}\n{"n": 6}\n')
    (folder / "a.json").write_text('[{"n": 1}, {"n": 2}]')
    pyarrow.parquet.write_table(pyarrow.Table.from_pylist([{"n": 7}]), folder / "d.parquet")
    (folder / "b.csv").write_text("n\n3\n4\n")
    (folder / "notes.txt").write_text("not data")
    (folder / "sub").mkdir()
    (folder / "sub" / "e.jsonl").write_text('{"n": 99}\n')
    assert read_records(folder) == [{"n": 1}, {"n": 2}, {"n": "3"}, {"n": "4"}, {"n": 5}, {"n": 6}, {"n": 7}]
    assert read_records(folder, limit=3) == [{"n": 1}, {"n": 2}, {"n": "3"}]  # stops inside the second file
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.md").write_text("x")
    with pytest.raises(DataFileError, match=r"empty: folder holds no data files \(.json, .jsonl, .csv, .parquet\)"):
        read_records(empty)


@pytest.mark.parametrize("content, message", [
    ('instruction,output\n"unclosed,b\n', r"d.csv:2: malformed CSV \(unexpected end of data\)"),
    ('instruction,output\na,b\nc,"d"e\n', r"d.csv:3: malformed CSV \(',' expected after '\"'\)"),
    # an unquoted comma would silently cut the text short: refused, with the header it does not match
    ("instruction,output\na,b\nSay hi,Hello, world\n",
     r"d.csv:3: malformed CSV \(a row of 3 fields under a header of 2: instruction, output\); quote fields that hold commas"),
    ("instruction,output\na\n", r"d.csv:2: malformed CSV \(a row of 1 fields under a header of 2: instruction, output\)"),
    ("instruction,output\n", r"d.csv: holds no records"),
])
def test_malformed_csv_names_file_and_line(tmp_path, content, message):
    (tmp_path / "d.csv").write_text(content)
    with pytest.raises(DataFileError, match=message):
        read_records(tmp_path / "d.csv")


@pytest.mark.parametrize("name, value", [("HF_HUB_OFFLINE", "1"), ("HF_HUB_OFFLINE", "true"), ("HF_DATASETS_OFFLINE", "1")])
def test_a_hub_id_with_the_hub_offline_fails_at_once(monkeypatch, name, value):
    import sys

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv(name, value)
    monkeypatch.delitem(sys.modules, "datasets", raising=False)
    with pytest.raises(DataFileError) as info:
        read_records("tatsu-lab/alpaca")
    assert str(info.value) == (
        f"tatsu-lab/alpaca: is a hub dataset id and the hub is offline ({name}={value}); "
        "fetch it once with the hub reachable, or give a local .json/.jsonl/.csv/.parquet file")
    assert "datasets" not in sys.modules  # failed before importing (or reaching) anything


@pytest.mark.parametrize("value, hub", [
    ("tatsu-lab/alpaca", True), ("OpenAssistant/oasst1", True), ("org/name.v2", True),
    ("data/train.jsonl", False), ("./org/name", False), ("alpaca", False), ("a/b/c", False), ("/abs/path", False),
])
def test_what_looks_like_a_hub_id(value, hub):
    from qlorafx.data.sources import looks_like_hub_id

    assert looks_like_hub_id(value) is hub


def test_a_hub_looking_path_that_exists_locally_is_read_locally(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # reaching for the hub would fail
    (tmp_path / "tatsu-lab" / "alpaca").mkdir(parents=True)
    (tmp_path / "tatsu-lab" / "alpaca" / "train.jsonl").write_text('{"instruction": "a", "output": "b"}\n')
    assert read_records("tatsu-lab/alpaca") == [{"instruction": "a", "output": "b"}]


def test_recipe_paths_keep_hub_ids_and_resolve_local_ones(tmp_path, monkeypatch):
    from qlorafx.recipe.load import load_recipe

    monkeypatch.chdir(tmp_path)
    (tmp_path / "recipes" / "org" / "local").mkdir(parents=True)
    (tmp_path / "recipes" / "org" / "local" / "d.jsonl").write_text('{"instruction": "a", "output": "b"}\n')
    (tmp_path / "recipes" / "r.yaml").write_text(
        "model: {loader: from_config, config: {model_type: llama}}\n"
        "data:\n  datasets:\n    - {path: tatsu-lab/alpaca}\n    - {path: org/local}\n    - {path: data/train.jsonl}\n"
        "output_dir: out\n")
    paths = [d.path for d in load_recipe(tmp_path / "recipes" / "r.yaml").recipe.data.datasets]
    assert paths == ["tatsu-lab/alpaca", str(tmp_path / "recipes" / "org" / "local"),
                     str(tmp_path / "recipes" / "data" / "train.jsonl")]
