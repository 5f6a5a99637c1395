import json

from s5mars_ssl import reproduce

TINY = ["reproduce.data.n_train=4", "reproduce.data.n_test=2", "reproduce.data.height=48",
        "reproduce.data.width=64", "reproduce.data.labeled_every=2",
        "reproduce.warmup_iterations=1", "reproduce.settings=[supervised, full]",
        "trainer.iterations=1", "dataset.base_size=64", "dataset.crop_size=48",
        "criterion.ohem.min_kept=100", "semi.sammix.min_iou=0.0", "semi.sammix.min_area=20"]


def _args(tmp_path, seeds, runs):
    out = ["--seeds", str(seeds), "--data", str(tmp_path / "data"), "--runs",
           str(tmp_path / runs), "--results", str(tmp_path / f"res_{runs}")]
    for s in TINY:
        out += ["--set", s]
    return out


def test_two_seed_tiny_reproduce_writes_per_seed_values_and_a_verdict(tmp_path):
    assert reproduce.main(_args(tmp_path, 2, "a")) == 0
    summary = json.loads((tmp_path / "res_a" / "summary.json").read_text())
    assert summary["seeds"] == [0, 1]
    from shared.precision import cpu_has_native_bf16  # the quick profile's auto, resolved

    assert summary["precision"] == ("bf16" if cpu_has_native_bf16() else "fp32")
    rows = {(r["setting"], r["metric"]): r["ours"] for r in summary["rows"]}
    sup = rows[(reproduce.LABELS["supervised"], "test mIoU (%), student")]
    assert sup["n"] == 2 and len(sup["values"]) == 2
    (c,) = summary["claims"]
    assert c["a"] == "full" and c["b"] == "supervised"
    assert c["verdict"] in ("supports", "contradicts", "inconclusive")
    assert len(c["differences"]) == 2
    # the same seed again, in fresh run folders: identical metrics (determinism)
    assert reproduce.main(_args(tmp_path, 1, "b")) == 0
    again = json.loads((tmp_path / "res_b" / "summary.json").read_text())
    for name, first in summary["per_seed"]["0"].items():
        second = again["per_seed"]["0"][name]
        for key in ("miou", "miou_all", "per_class_iou"):
            assert second[key] == first[key], (name, key)
    # a finished run is reused, not retrained
    assert reproduce.main(_args(tmp_path, 1, "b")) == 0
    log = (tmp_path / "res_b" / "reproduce_log.txt").read_text()
    assert log.count("reusing the finished run") == 3
