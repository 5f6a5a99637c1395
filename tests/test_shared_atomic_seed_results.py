import json
import random

import numpy as np
import pytest

from shared.atomic import atomic_path, atomic_write_json, atomic_write_text
from shared.results import build_results_table, write_summary
from shared.seed import seed_everything


def test_atomic_write_replaces_and_cleans_up(tmp_path):
    p = tmp_path / "sub" / "out.json"
    atomic_write_json(p, {"a": np.float32(1.5), "b": np.arange(3)})
    assert json.loads(p.read_text()) == {"a": 1.5, "b": [0, 1, 2]}
    atomic_write_text(p, "second")
    assert p.read_text() == "second"
    assert sorted(x.name for x in p.parent.iterdir()) == ["out.json"]


def test_interrupted_write_keeps_old_file(tmp_path):
    p = tmp_path / "ckpt.bin"
    p.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(p) as tmp:
            tmp.write_bytes(b"half")
            raise KeyboardInterrupt
    assert p.read_bytes() == b"old"
    assert [x.name for x in tmp_path.iterdir()] == ["ckpt.bin"]


def test_atomic_path_keeps_suffix(tmp_path):
    with atomic_path(tmp_path / "fig.png") as tmp:
        assert tmp.suffix == ".png"
        tmp.write_bytes(b"x")
    assert (tmp_path / "fig.png").read_bytes() == b"x"


def test_seed_everything_repeats():
    seed_everything(3)
    a = (random.random(), np.random.rand())
    seed_everything(3)
    assert (random.random(), np.random.rand()) == a
    with pytest.raises(ValueError):
        seed_everything(-1)


def test_summary_and_results_table(tmp_path):
    write_summary("dune_vlm", [{"setting": "fusion", "metric": "mIoU", "reported": 80.36,
                                "ours": 51.2}], data="synthetic", profile="quick",
                  wall_time_s=12.0, results_dir=tmp_path / "dune_vlm")
    table = build_results_table(tmp_path)
    # a record without its precision ran before --precision existed: fp32, said so
    assert "| fusion | mIoU | 80.36 | 51.2 | synthetic | quick, fp32 (not recorded" in table
    write_summary("dune_vlm", [{"setting": "fusion", "metric": "mIoU", "reported": 80.36,
                                "ours": 51.2}], data="synthetic", profile="quick",
                  wall_time_s=12.0, results_dir=tmp_path / "dune_vlm", precision="bf16")
    table = build_results_table(tmp_path)
    assert "| fusion | mIoU | 80.36 | 51.2 | synthetic | quick, bf16 |" in table
    assert "| profile, precision |" in table
    assert "not reproduced yet" in table  # the other four
    with pytest.raises(ValueError, match="lacks"):
        write_summary("dune_vlm", [{"setting": "x"}], data="d", profile="p", wall_time_s=1,
                      results_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown paper"):
        write_summary("nope", [], data="d", profile="p", wall_time_s=1, results_dir=tmp_path)


def test_file_sha256_matches_hashlib(tmp_path):
    import hashlib

    from shared.atomic import file_sha256

    p = tmp_path / "blob.bin"
    data = bytes(range(256)) * 9000  # more than one 1 MiB block
    p.write_bytes(data)
    assert file_sha256(p) == hashlib.sha256(data).hexdigest()
