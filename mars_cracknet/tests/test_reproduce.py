"""A 2-seed tiny reproduce: per-seed values, paired claims with verdicts, finished-run reuse."""

import json

TINY = ["model=unet", "width=8", "epochs=1", "pretrain_epochs=1", "crop_size=32",
        "batch_size=2", "reproduce.synthetic.n_mars_large=1",
        "reproduce.synthetic.large_size=96", "reproduce.synthetic.crops_per_large=5",
        "reproduce.synthetic.crop_size=64", "reproduce.synthetic.n_mars_test=2",
        "reproduce.synthetic.test_size=64", "reproduce.synthetic.n_earth=2",
        "reproduce.synthetic.earth_size=64", "reproduce.synthetic.n_earth_unlabelled=2",
        "reproduce.synthetic.n_mars_unlabelled=2", "reproduce.synthetic.unlabelled_size=64"]


def test_two_seed_tiny_reproduce(tmp_path):
    from mars_cracknet.reproduce import main

    args = ["--seeds", "2", "--datasets", str(tmp_path / "ds"), "--runs", str(tmp_path / "runs"),
            "--results", str(tmp_path / "res"), "--no-analysis"]
    for s in TINY:
        args += ["--set", s]
    assert main(args) == 0
    summary = json.loads((tmp_path / "res" / "summary.json").read_text())
    assert summary["seeds"] == [0, 1]
    from shared.precision import cpu_has_native_bf16  # the quick profile's auto, resolved

    assert summary["precision"] == ("bf16" if cpu_has_native_bf16() else "fp32")
    dice_rows = [r for r in summary["rows"] if r["metric"] == "Dice"]
    assert len(dice_rows) == 6  # a, b, c: selected and last epoch
    for row in dice_rows:
        assert row["ours"]["n"] == 2 and len(row["ours"]["values"]) == 2
    names = [c["claim"] for c in summary["claims"]]
    assert names[0].startswith("mode c > mode a") and names[1].startswith("mode b vs mode a")
    for c in summary["claims"]:
        assert c["verdict"] in ("supports", "contradicts", "inconclusive")
        assert len(c["differences"]) == 2
    first = summary["runs"]
    # a second call reuses every finished run (same config, same code) and gives the same values
    assert main(args) == 0
    again = json.loads((tmp_path / "res" / "summary.json").read_text())
    assert all(r["reused"] for r in again["runs"].values())
    assert [r["test_selected"] for r in again["runs"].values()] == \
        [r["test_selected"] for r in first.values()]
