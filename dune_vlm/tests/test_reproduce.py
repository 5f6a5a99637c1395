"""A 2-seed tiny reproduce writes per-seed values and a verdict for the paper's claim."""

import json

import numpy as np


def test_two_seed_tiny_reproduce(tmp_path):
    from dune_vlm.reproduce import main

    emb = np.random.default_rng(0).normal(size=(10, 16)).astype(np.float32)
    np.save(tmp_path / "text.npy", emb / np.linalg.norm(emb, axis=1, keepdims=True))
    cfg = tmp_path / "tiny.yml"
    cfg.write_text(f"""inherit: quick
profile: tiny
data: {{root: {tmp_path / 'data'}}}
synthetic: {{size: 96, tile: 32}}
text: {{embed_path: {tmp_path / 'text.npy'}}}
model:
  fusion_arch: {{embed_dims: [16, 32, 32, 64], num_heads: [1, 1, 1, 8], depths: [1, 1, 1, 1]}}
train: {{epochs: 1, batch_size: 8}}
tile: {{tile_size: 32, stride: 32}}
""")
    results, runs = tmp_path / "results", tmp_path / "runs"
    argv = ["--config", str(cfg), "--seeds", "2", "--results", str(results), "--runs",
            str(runs), "--no_progress", "--no-map"]
    assert main(argv) == 0
    s = json.loads((results / "summary.json").read_text())
    assert s["seeds"] == [0, 1] and s["profile"] == "tiny"
    rows = {(r["setting"].split()[0], r["metric"]): r for r in s["rows"]}
    assert len(rows[("fusion", "test OA %")]["ours"]["values"]) == 2
    assert rows[("fusion", "test mIoU % (reference: absent classes 0)")]["reported"] == 80.36
    c = s["claims"][0]
    assert c["a"] == "fusion" and len(c["differences"]) == 2
    assert c["verdict"] in ("supports", "contradicts", "inconclusive")
    # a second call reuses the finished runs (same config, same code): same numbers
    assert main(argv) == 0
    s2 = json.loads((results / "summary.json").read_text())
    assert [p["run"] for p in s2["per_seed"]] == ["reused"] * 4
    assert s2["claims"][0]["differences"] == c["differences"]
