"""move_empty: dry run, the move itself, and never overwriting the destination."""

import subprocess
import sys

from crater_resunet.move_empty import move_empty


def _data(tmp_path):
    root = tmp_path / "yolo"
    for split in ("train", "valid"):
        (root / split / "images").mkdir(parents=True)
        (root / split / "labels").mkdir(parents=True)
    for stem, text in (("a", "0 0.5 0.5 0.1 0.1\n"), ("b", ""), ("c", "\n\n")):
        (root / "train" / "images" / f"{stem}.jpg").write_bytes(b"jpg" + stem.encode())
        (root / "train" / "labels" / f"{stem}.txt").write_text(text)
    (root / "valid" / "images" / "d.png").write_bytes(b"png")
    (root / "valid" / "labels" / "d.txt").write_text("")
    return root


def test_dry_run_touches_nothing(tmp_path):
    root = _data(tmp_path)
    rep = move_empty(root, dry_run=True)
    assert rep.empty_pairs == 3 and len(rep.moved) == 6 and not rep.skipped
    assert not (root / "empty").exists()
    assert (root / "train" / "labels" / "b.txt").exists()


def test_moves_empty_pairs(tmp_path):
    root = _data(tmp_path)
    rep = move_empty(root)
    assert len(rep.moved) == 6
    assert sorted(p.name for p in (root / "empty" / "empty_images").iterdir()) == \
        ["b.jpg", "c.jpg", "d.png"]
    assert sorted(p.name for p in (root / "train" / "images").iterdir()) == ["a.jpg"]
    assert sorted(p.name for p in (root / "train" / "labels").iterdir()) == ["a.txt"]


def test_never_overwrites_the_destination(tmp_path):
    root = _data(tmp_path)
    dest = tmp_path / "aside"
    (dest / "empty_images").mkdir(parents=True)
    (dest / "empty_images" / "b.jpg").write_bytes(b"older file")
    rep = move_empty(root, dest)
    assert (dest / "empty_images" / "b.jpg").read_bytes() == b"older file"
    # the whole b pair stays where it was; the others moved
    assert (root / "train" / "images" / "b.jpg").read_bytes() == b"jpgb"
    assert (root / "train" / "labels" / "b.txt").exists()
    assert {s.name for s, _ in rep.skipped} == {"b.jpg", "b.txt"}
    assert (dest / "empty_images" / "c.jpg").exists()
    out = subprocess.run([sys.executable, "-m", "crater_resunet.move_empty", str(root), "--dest",
                          str(dest)], capture_output=True, text=True)
    assert out.returncode == 1 and "already exists" in out.stderr


def test_cli_dry_run_and_errors(tmp_path):
    root = _data(tmp_path)
    out = subprocess.run([sys.executable, "-m", "crater_resunet.move_empty", str(root),
                          "--dry-run"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.count("would move:") == 6
    assert (root / "train" / "labels" / "b.txt").exists()
    out = subprocess.run([sys.executable, "-m", "crater_resunet.move_empty",
                          str(tmp_path / "nope")], capture_output=True, text=True)
    assert out.returncode == 2 and "not found" in out.stderr and "Traceback" not in out.stderr
    (root / "train" / "labels" / "a.txt").write_text("0 0.5 0.5 0.1\n")
    out = subprocess.run([sys.executable, "-m", "crater_resunet.move_empty", str(root)],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "a.txt:1" in out.stderr
