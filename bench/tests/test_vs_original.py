"""``bench.vs_original`` against FAKE originals written into tmp_path (no original code, no
network): the quick run end to end (JSON and section 5), "not run" without a path, the notebook
cell picking, the statistics and the splice that leaves sections 1-4 alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from bench.report import render_vs_original
from bench.vs_original import (
    SECTION_TITLE,
    notebook_cells,
    parse_originals,
    ratio_stats,
    splice_section,
)
from shared.configs import REPO_ROOT as ROOT

FAKE_MARS = '''
import torch
from torch import nn


class TinyCrackNet(nn.Module):  # a tiny stand-in, bound below to the name the loader expects
    def __init__(self, num_classes):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.final = nn.Conv2d(4, num_classes, 1)

    def forward(self, x):
        h = self.body(x)
        return h, torch.sigmoid(self.final(h))


Res_UNet = TinyCrackNet
'''
FAKE_SEGFORMER = '''
from torch import nn


class Stem(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)

    def forward(self, x):
        return self.conv(x)
'''
FAKE_FUSION = '''
from torch import nn

from .segformer import Stem  # a relative import, as the original's


class Fusion(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.stem, self.text = Stem(64, 8), nn.Linear(512, 8)
        self.head = nn.Conv2d(8, num_classes, 1)

    def forward(self, x, text_embeds):  # text (B, N, 512), as its loader yields
        return self.head(self.stem(x) + self.text(text_embeds[:, 0])[:, :, None, None])


def build_tiny_fusion(num_classes=10):
    return Fusion(num_classes)


get_fusion_model = build_tiny_fusion  # the name the loader calls
'''


def _cell(src: str, kind: str = "code") -> dict:
    return {"cell_type": kind, "metadata": {}, "source": src.splitlines(keepends=True),
            **({"outputs": [], "execution_count": None} if kind == "code" else {})}


@pytest.fixture(scope="module")
def fakes(tmp_path_factory):
    root = tmp_path_factory.mktemp("originals")
    mars = root / "Mars-CrackNet" / "models"
    mars.mkdir(parents=True)
    # like the real package, whose __init__ imports a module that is not in the repository
    (mars / "__init__.py").write_text("from .not_in_this_checkout import Missing\n")
    (mars / "resunet.py").write_text(textwrap.dedent(FAKE_MARS))
    dune = root / "MADS" / "models"
    dune.mkdir(parents=True)
    (dune / "__init__.py").write_text("")
    (dune / "segformer.py").write_text(textwrap.dedent(FAKE_SEGFORMER))
    (dune / "fusion.py").write_text(textwrap.dedent(FAKE_FUSION))
    return root


@pytest.fixture(scope="module")
def quick(fakes, tmp_path_factory):
    out = tmp_path_factory.mktemp("vs")
    md = out / "BENCHMARKS.md"
    md.write_text("# Benchmarks\n\n## 1. One\n\nkept\n\n## 4. Four\n\nkept too\n")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", OMP_NUM_THREADS="1")
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        [sys.executable, "-m", "bench.vs_original", "--quick",
         "--only", "mars_cracknet,dune_vlm,crater_resunet,ice_patch_cnn",
         "--original", f"mars_cracknet={fakes / 'Mars-CrackNet'}",
         "--original", f"dune_vlm={fakes / 'MADS'}",
         "--json", str(out / "vs.json"), "--markdown", str(md)],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    print(proc.stdout[-3000:])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return json.loads((out / "vs.json").read_text()), md.read_text()


def test_quick_against_fake_originals(quick):
    res, md = quick
    meta, entries = res["meta"], res["entries"]
    assert meta["quick"] is True and meta["reps"] == 2 and meta["threads"] == 1
    assert {"cpu", "bf16", "cpu_flags"} <= set(meta["machine"])
    assert list(entries) == ["mars_cracknet", "dune_vlm", "crater_resunet", "ice_patch_cnn"]
    for name in ("mars_cracknet", "dune_vlm"):
        r = entries[name]
        assert r["status"] == "ok", r
        f = r["fp32"]
        assert len(f["ours_s"]) == len(f["original_s"]) == 2
        assert f["ratio"] == pytest.approx(f["original_median_s"] / f["ours_median_s"])
        assert f["at_least_1x"] in ("yes", "no", "undecided")
        assert len(f["ci95"]) == 2 and f["ci95"][0] <= f["geo_mean_ratio"] <= f["ci95"][1]
        assert r["params_original"] < r["params_ours"]  # the fakes are tiny
        assert "ours_median_s" in r["bf16"] or "skipped" in r["bf16"]
    assert entries["crater_resunet"] == {"status": "not_run",
                                         "reason": "not run: no --original path"}
    assert entries["ice_patch_cnn"]["status"] == "no_original"
    # section 5 appended, sections 1-4 as they were
    assert md.startswith("# Benchmarks\n\n## 1. One\n\nkept\n\n## 4. Four\n\nkept too\n\n")
    assert md.count(SECTION_TITLE) == 1 and "Quick mode" in md
    rows = [ln for ln in md.splitlines() if ln.startswith("| ")]
    assert rows[0].startswith("| model | original") and len(rows) == 2 + 4
    assert any("crater" in ln and "not run: no --original path" in ln for ln in rows)
    assert any("ice" in ln and "no public original code" in ln for ln in rows)
    assert any("Mars-CrackNet" in ln and "x |" in ln for ln in rows)


def test_no_path_runs_nothing(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        [sys.executable, "-m", "bench.vs_original", "--quick", "--json",
         str(tmp_path / "v.json"), "--markdown", str(tmp_path / "v.md")],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    entries = json.loads((tmp_path / "v.json").read_text())["entries"]
    assert {k: v["status"] for k, v in entries.items()} == {
        "mars_cracknet": "not_run", "dune_vlm": "not_run", "s5mars_ssl": "not_run",
        "crater_resunet": "not_run", "ice_patch_cnn": "no_original"}
    assert "child" not in proc.stdout
    md = (tmp_path / "v.md").read_text()
    assert md.startswith("# Benchmarks\n\n" + SECTION_TITLE)


def test_bad_original_arguments(tmp_path):
    with pytest.raises(ValueError, match="NAME=PATH"):
        parse_originals(["mars_cracknet"])
    with pytest.raises(ValueError, match="unknown entry"):
        parse_originals([f"nope={tmp_path}"])
    with pytest.raises(ValueError, match="no public original code"):
        parse_originals([f"ice_patch_cnn={tmp_path}"])
    with pytest.raises(ValueError, match="does not exist"):
        parse_originals([f"dune_vlm={tmp_path / 'missing'}"])
    assert parse_originals([f"dune_vlm={tmp_path}"]) == {"dune_vlm": tmp_path.resolve()}


def test_notebook_cells_pick_only_the_model_and_metric_cells(tmp_path):
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        _cell("import cv2\nIMG = 256\n"),
        _cell("# Title", "markdown"),
        _cell("def load(d):\n    return open(d)\n"),
        _cell("def dice_bce_loss(t, p):\n    return t\n\n"
              "def create_deeper_resnet_unet(shape):\n    return shape\n"),
        _cell("def dice_coefficient(t, p):\n    return 1.0\n"),
        _cell("%matplotlib inline\nmodel = create_deeper_resnet_unet((8, 8, 3))\n"
              "model.fit(load('/kaggle'))\n"),
    ]}
    (tmp_path / "crater-detection.ipynb").write_text(json.dumps(nb))
    book, cells = notebook_cells(tmp_path)
    assert book.name == "crater-detection.ipynb"
    assert [i for i, _ in cells] == [3, 4]
    ns: dict = {}
    for _, src in cells:
        exec(src, ns)  # noqa: S102
    assert ns["create_deeper_resnet_unet"]((1,)) == (1,) and "load" not in ns
    (tmp_path / "crater-detection.ipynb").write_text(json.dumps({"cells": nb["cells"][:3]}))
    with pytest.raises(FileNotFoundError, match="create_deeper_resnet_unet"):
        notebook_cells(tmp_path)


def test_ratio_stats():
    faster = ratio_stats([1.0, 1.02, 0.98, 1.0], [2.0, 2.1, 1.9, 2.05])
    assert faster["ratio"] == pytest.approx(2.0 / 1.0, rel=0.03)
    assert faster["at_least_1x"] == "yes" and faster["ci95"][0] > 1.0
    slower = ratio_stats([2.0, 2.1, 1.9, 2.05], [1.0, 1.02, 0.98, 1.0])
    assert slower["at_least_1x"] == "no" and slower["ci95"][1] < 1.0
    assert ratio_stats([1.0, 1.0, 1.0], [0.8, 1.3, 1.0])["at_least_1x"] == "undecided"
    one = ratio_stats([1.0], [1.5])
    assert one["ci95"] is None and one["at_least_1x"] == "undecided"
    with pytest.raises(ValueError):
        ratio_stats([1.0], [1.0, 2.0])


def test_splice_replaces_only_section_5():
    head = "# B\n\n## 1. One\n\na | b\n\n## 4. Four\n\nc\n"
    once = splice_section(head, f"{SECTION_TITLE}\n\nold\n")
    assert once == head + f"\n{SECTION_TITLE}\n\nold\n"
    twice = splice_section(once + "\n## 6. Later\n\nz\n", f"{SECTION_TITLE}\n\nnew\n")
    assert twice == head + f"\n{SECTION_TITLE}\n\nnew\n\n## 6. Later\n\nz\n"


def test_render_vs_original_row_shapes():
    entry = {"status": "ok", "loaded": "models/x.py", "input": "2 x 3 x 8 x 8",
             "params_ours": 10, "params_original": 10, "loss": "BCE", "optimizer": "Adam",
             "ours_built": "b", "fp32": ratio_stats([1.0, 1.0], [1.2, 1.3]),
             "bf16": {"skipped": "no native bf16"}}
    res = {"meta": {"quick": False, "date": "d", "wall_s": 60.0, "command": "c", "threads": 2,
                    "reps": 2, "repos": {"mars_cracknet": "https://example.org/r"},
                    "machine": {"cpu": "x", "cores": 2, "cpu_flags": [], "bf16": "no"}},
           "entries": {"mars_cracknet": entry,
                       "dune_vlm": {"status": "not_run", "reason": "not run: no --original "
                                                                   "path"}}}
    lines = render_vs_original(res)
    assert lines[0] == SECTION_TITLE
    rows = [ln for ln in lines if ln.startswith("| ")]
    assert len(rows) == 4 and all(r.count(" | ") == 10 for r in rows)
    assert "**1.25x**" in rows[2] and "| 10 / 10 |" in rows[2]
    assert rows[2].endswith("| — (no native bf16) | — |")  # no bf16: no bf16 ratio either
    entry["bf16"] = {"ours_median_s": 0.5}
    row = [ln for ln in render_vs_original(res) if ln.startswith("| ")][2]
    assert row.endswith("| 0.5 | 2.50x |")  # original fp32 median 1.25 over our bf16 0.5
    assert "not run: no --original path" in rows[3]


def test_make_bench_keeps_section_5(tmp_path):
    """``bench.run`` re-renders BENCHMARKS.md from results/bench.json: section 5 comes back from
    the bench_vs_original.json beside it."""
    from bench.report import VS_ORIGINAL_JSON, render_markdown

    meta = {"quick": False, "date": "d", "wall_s": 60.0, "command": "c", "threads": 2,
            "reps": 2, "targets": {}, "repos": {},
            "machine": {"cpu": "x", "cores": 2, "cpu_flags": [], "bf16": "no"}}
    assert SECTION_TITLE not in render_markdown({"meta": meta}, tmp_path / "bench.json")
    (tmp_path / VS_ORIGINAL_JSON).write_text(json.dumps(
        {"meta": meta, "entries": {"dune_vlm": {"status": "not_run"}}}))
    md = render_markdown({"meta": meta}, tmp_path / "bench.json")
    assert md.count(SECTION_TITLE) == 1 and "not run: no --original path" in md
