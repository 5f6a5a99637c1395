"""The pycda tile -> YOLO conversion, on a small fake tile (no download)."""

import csv
import io
import tarfile

import numpy as np
import pytest
from PIL import Image

from crater_resunet.data import read_yolo_labels
from crater_resunet.prepare_pycda import PrepareError, convert, fetch_pycda, main


def _fake_tile(tmp_path, size=600, n=40, seed=0):
    rng = np.random.default_rng(seed)
    img = tmp_path / "tile.pgm"
    Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8)).save(img)
    d = rng.uniform(4, 30, n)
    x = rng.uniform(0, size, n)
    y = rng.uniform(0, size, n)
    x[0], y[0], d[0] = 300.0, 449.0, 20.0  # straddles the split row (450)
    lab = tmp_path / "tile.csv"
    lab.write_text("long,lat,diameter\n" + "".join(f"{a},{b},{c}\n" for a, b, c in zip(x, y, d)))
    return img, lab, np.stack([x, y, d], 1)


def _ids_by_split(out):
    rows = list(csv.DictReader(io.StringIO((out / "tiles.csv").read_text())))
    ids = {"train": set(), "valid": set()}
    for r in rows:
        ids[r["split"]] |= {int(i) for i in r["ids"].split()}
    return rows, ids


def test_conversion_counts_and_spatial_split(tmp_path):
    img, lab, craters = _fake_tile(tmp_path)
    out = tmp_path / "yolo"
    counts = convert(img, lab, out, tile=128, overlap=32, valid_fraction=0.25, min_visible=0.5)
    split_row = counts["split_row"]
    assert split_row == 450
    want = {"train": int((craters[:, 1] < split_row).sum()),
            "valid": int((craters[:, 1] >= split_row).sum())}
    assert {s: counts[s]["csv_craters"] for s in want} == want
    assert sum(want.values()) == len(craters) == counts["csv_craters"]
    rows, ids = _ids_by_split(out)
    assert not ids["train"] & ids["valid"]  # no crater in both splits
    # overlap (32) > every crater diameter (< 30): each crater is whole in some tile
    assert {s: len(ids[s]) for s in ids} == want
    assert {s: counts[s]["labelled_craters"] for s in want} == want
    assert 0 in ids["train"] and counts["train"]["cross_split_boundary"] >= 1
    for r in rows:  # tiles lie inside their split's rows, labels parse, counts agree
        row = int(r["row"])
        assert (row + 128 <= split_row) if r["split"] == "train" else (row >= split_row)
        labels = read_yolo_labels(out / r["split"] / "labels" / f"{r['tile']}.txt")
        assert len(labels) == int(r["craters"])
        assert Image.open(out / r["split"] / "images" / f"{r['tile']}.png").size == (128, 128)
    # a box clipped by the tile edge stays inside [0, 1]
    all_labels = np.concatenate([read_yolo_labels(p) for p in (out / "train" / "labels")
                                 .glob("*.txt")])
    assert ((all_labels[:, 1:] >= 0) & (all_labels[:, 1:] <= 1)).all()
    strip = read_yolo_labels(out / "valid_strip" / "labels" / "holdout_valid.txt")
    assert len(strip) == want["valid"]


def test_edge_craters_kept_only_if_enough_is_inside(tmp_path):
    img = tmp_path / "t.pgm"
    Image.fromarray(np.zeros((256, 256), np.uint8)).save(img)
    lab = tmp_path / "t.csv"
    # tile 128, no overlap: crater A centred 2 px left of the column edge at 128 (mostly in the
    # left tile), crater B whole inside the first tile
    lab.write_text("long,lat,diameter\n126,40,20\n40,40,10\n")
    convert(img, lab, tmp_path / "o", tile=128, overlap=0, valid_fraction=0.5, min_visible=0.5)
    left = read_yolo_labels(tmp_path / "o" / "train" / "labels" / "holdout_r0000_c0000.txt")
    right = read_yolo_labels(tmp_path / "o" / "train" / "labels" / "holdout_r0000_c0128.txt")
    assert len(left) == 2 and len(right) == 0  # 12/20 inside on the left, 8/20 on the right
    clipped = left[np.argmax(left[:, 3])]
    assert clipped[3] * 128 == pytest.approx(12.0, abs=1e-3)  # 116..128


def test_bad_inputs_are_clean_errors(tmp_path, capsys):
    img, lab, _ = _fake_tile(tmp_path)
    bad = tmp_path / "bad.csv"
    bad.write_text("x,y,d\n1,2,3\n")
    with pytest.raises(PrepareError, match="long,lat,diameter"):
        convert(img, bad, tmp_path / "o")
    bad.write_text("long,lat,diameter\n10,900,5\n")
    with pytest.raises(PrepareError, match="outside"):
        convert(img, bad, tmp_path / "o", tile=128)
    rc = main(["--image", str(tmp_path / "missing.pgm"), "--labels", str(lab), "--out",
               str(tmp_path / "o2")])
    assert rc == 2 and "missing.pgm" in capsys.readouterr().err


def test_fetch_uses_a_cached_sdist_without_downloading(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    with tarfile.open(cache / "pycda-0.1.16.tar.gz", "w:gz") as tar:
        for name, data in (("pycda/sample_imgs/holdout_tile.pgm", b"P5 fake"),
                           ("pycda/sample_imgs/holdout_tile_labels.csv", b"long,lat,diameter\n"),
                           ("pycda/other.py", b"")):
            info = tarfile.TarInfo(f"pycda-0.1.16/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    image, labels = fetch_pycda(cache)
    assert image.read_bytes() == b"P5 fake" and labels.name == "holdout_tile_labels.csv"
    assert not (cache / "other.py").exists()
