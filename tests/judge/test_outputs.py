"""Where the comparison cannot write (its cache or output folder under a file, a file where a folder
must go): exit code 2 naming the path, no traceback, and the answers and judgments already received kept."""

from __future__ import annotations

from qlorafx.cli.main import main
from tests.judge.conftest import write_comparison


def fails(capsys, *args) -> str:
    assert main(["judge", *map(str, args)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_an_output_dir_under_a_file_is_refused_before_any_request(server, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    path = write_comparison(tmp_path, server.url)
    err = fails(capsys, path, f"output_dir={tmp_path / 'afile' / 'out'}")
    assert f"error: cannot create {tmp_path / 'afile' / 'out'}" in err and "cache" in err
    assert server.log == []


def test_a_cache_under_a_file_is_refused_before_any_request(server, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    path = write_comparison(tmp_path, server.url)
    err = fails(capsys, path, f"cache={tmp_path / 'afile' / 'cache.sqlite'}")
    assert f"error: cannot create {tmp_path / 'afile'}" in err and "set cache: to another file" in err
    assert server.log == []


def test_an_output_that_cannot_be_written_keeps_what_was_paid_for(server, tmp_path, capsys):
    path = write_comparison(tmp_path, server.url)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "answers").write_text("a file where the answers folder goes")
    err = fails(capsys, path)
    assert f"error: cannot write the comparison's results in {tmp_path / 'out'}" in err
    assert "the answers and judgments received are cached: fix it and rerun" in err
    asked = len(server.log)
    assert asked == 12 + 24 and not (tmp_path / "out" / "results.json").exists()
    (tmp_path / "out" / "answers").unlink()
    assert main(["judge", str(path)]) == 0
    assert len(server.log) == asked  # the rerun asks for nothing again
    assert (tmp_path / "out" / "results.json").exists()
