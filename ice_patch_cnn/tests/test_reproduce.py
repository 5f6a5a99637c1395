"""A 2-seed tiny reproduce: per-seed values, mean and interval, a paired verdict, reuse."""

import json
from pathlib import Path

import yaml

from ice_patch_cnn.config import load_config
from ice_patch_cnn.reproduce import run_all


def _tiny(tmp_path: Path) -> dict:
    cfg = {"inherit": str(Path(__file__).resolve().parents[1] / "configs" / "quick.yml"),
           "profile": "test", "data": {"chunk_size": 32},
           "synthetic": {"scene_size": [160, 160], "survey_scene_size": [96, 96],
                         "train_scenes": 3, "survey_scenes": 3},
           "model": {"width_scale": 0.0625},
           "train": {"batch_size": 16, "epochs": 1, "resume_epochs": 1, "run_eagerly": True}}
    path = tmp_path / "tiny.yml"
    path.write_text(yaml.safe_dump(cfg))
    return load_config(path)


def test_two_seed_reproduce_writes_per_seed_values_and_a_verdict(tmp_path):
    cfg = _tiny(tmp_path)
    seeds = [int(cfg["seed"]), int(cfg["seed"]) + 1]
    kw = {"results": tmp_path / "results", "runs_root": tmp_path / "runs",
          "data_root": tmp_path / "data"}
    out = run_all(cfg, seeds, **kw)
    summary = json.loads((tmp_path / "results" / "summary.json").read_text())
    assert summary["seeds"] == seeds and summary["profile"] == "test"
    from shared.precision import cpu_has_native_bf16  # the quick profile's auto, resolved

    assert summary["precision"] == ("bf16" if cpu_has_native_bf16() else "fp32")
    rows = {r["metric"]: r for r in summary["rows"]}
    val = rows["val accuracy at the best epoch"]["ours"]
    assert val["n"] == 2 and len(val["values"]) == 2 and val["ci95"] is not None
    assert rows["val accuracy at the best epoch"]["reported"] == 0.98
    (c,) = summary["claims"]
    assert c["verdict"] in ("supports", "contradicts", "inconclusive")
    assert len(c["differences"]) == 2
    per_seed = json.loads((tmp_path / "results" / "metrics.json").read_text())["per_seed"]
    assert [m["seed"] for m in per_seed] == seeds
    # the same seeds again: the finished runs are reused and give identical metrics
    again = run_all(cfg, seeds, **kw)
    assert again["per_seed"] == out["per_seed"]
    log = (tmp_path / "runs" / f"seed{seeds[0]}_data{cfg['seed']}" / "train.log").read_text()
    assert log.count("resuming at epoch 2") == 1
