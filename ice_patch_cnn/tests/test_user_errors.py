"""Survey inputs that are wrong are one line naming the file and line (a UserError, exit 2);
the survey CLI no longer turns every ValueError into one line (issue 25)."""

from __future__ import annotations

import csv

import pytest

from ice_patch_cnn.rules import Rules
from ice_patch_cnn.survey import main, read_chunk_truth, read_predictions
from shared.errors import UserError
from shared.runs import cli_main


def _preds(folder, probs):
    (folder / "chunks").mkdir(parents=True, exist_ok=True)
    with open(folder / "chunks" / "A.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "grid_row", "grid_col", "y", "x", "size", "p"])
        for i, p in enumerate(probs):
            w.writerow(["A", 0, i, 0, 32 * i, 32, p])


@pytest.mark.parametrize("bad", ["1.5", "-0.1", "nan", "inf"])
def test_a_probability_outside_0_1_names_file_and_line(tmp_path, bad, capsys):
    _preds(tmp_path, ["0.5", bad])
    with pytest.raises(UserError, match=r"A\.csv: line 3: probability"):
        read_predictions(tmp_path)
    assert cli_main(main, [str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "A.csv: line 3" in err


def test_a_malformed_chunk_truth_names_file_and_line(tmp_path):
    path = tmp_path / "truth.csv"
    path.write_text("image,grid_row,grid_col,label\nA,0,0,1\nA,0,x,1\n")
    with pytest.raises(UserError, match=r"truth\.csv: line 3"):
        read_chunk_truth(path)


def test_bad_rules_are_user_errors():
    with pytest.raises(UserError, match="uncertain_image"):
        Rules.from_config({"uncertain_image": "maybe"})
    with pytest.raises(UserError, match="unknown rules"):
        Rules.from_config({"no_such_rule": 1})
