"""Issue 27 in the bench: an unknown entry or nothing selected is an error that writes nothing
(``--only <typo>`` used to exit 0 and replace the committed report with an empty one); a report
path under a regular file is one line."""

from __future__ import annotations

import pytest

from bench.run import cli as main  # the entry point: main under the error contract


@pytest.mark.parametrize("argv,match", [
    (["--only", "dune_vml"], "unknown"),                   # the typo
    (["--only", "mars_cracknet,typo"], "unknown"),         # one good entry, one typo
    (["--only", ","], "unknown"),                          # nothing selected
    (["--sections", "tiling", "--only", "nope"], "unknown"),
])
def test_unknown_bench_entries_are_an_error_and_write_nothing(tmp_path, capsys, argv, match):
    out, md = tmp_path / "bench.json", tmp_path / "BENCH.md"
    out.write_text('{"kept": true}')
    md.write_text("kept")
    assert main([*argv, "--quick", "--json", str(out), "--markdown", str(md)]) == 2
    err = capsys.readouterr().err
    assert match in err and err.count("\n") == 1
    assert out.read_text() == '{"kept": true}' and md.read_text() == "kept"


def test_report_under_a_regular_file_is_one_line(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    rc = main(["--quick", "--only", "mars_cracknet", "--sections", "train", "--json",
               str(tmp_path / "f" / "bench.json"), "--markdown", str(tmp_path / "b.md")])
    err = capsys.readouterr().err
    assert rc == 2 and "is a file" in err and err.count("\n") == 1
