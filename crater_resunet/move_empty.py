"""Move crater-free images (empty label files) and their labels out of a YOLO data set.

The reference's cleaning step, as a CLI: for every ``<root>/<split>/labels/<stem>.txt`` that
holds no crater line, the label file and its image ``<root>/<split>/images/<stem>.*`` are moved
to ``<dest>/empty_labels`` and ``<dest>/empty_images`` (default ``<root>/empty``). A file that
already exists at the destination is never overwritten: that pair is skipped and reported.

    python -m crater_resunet.move_empty datasets/crater_resunet/LU3M6TGT_yolo_format --dry-run
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from crater_resunet.data import IMAGE_EXTS, read_yolo_labels
from shared.errors import UserError


@dataclass
class MoveReport:
    moved: list[tuple[Path, Path]] = field(default_factory=list)  # (source, destination)
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (source, why)
    empty_pairs: int = 0


def find_empty(root: Path, splits) -> list[tuple[Path, Path | None]]:
    """(label, image or None) for every label file with no crater line."""
    found = []
    for split in splits:
        lbl_dir = root / split / "labels"
        img_dir = root / split / "images"
        if not lbl_dir.is_dir():
            continue
        images = {}
        if img_dir.is_dir():
            for p in img_dir.iterdir():
                if p.suffix.lower() in IMAGE_EXTS:
                    images[p.stem] = p
        for lbl in sorted(lbl_dir.glob("*.txt")):
            if len(read_yolo_labels(lbl)) == 0:
                found.append((lbl, images.get(lbl.stem)))
    return found


def move_empty(root: str | os.PathLike, dest: str | os.PathLike | None = None,
               splits=("train", "valid"), dry_run: bool = False) -> MoveReport:
    """Move empty pairs to ``dest/empty_images`` and ``dest/empty_labels`` (never overwrite)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: data folder not found")
    dest = Path(dest) if dest is not None else root / "empty"
    report = MoveReport()
    for lbl, img in find_empty(root, splits):
        report.empty_pairs += 1
        plan = [(lbl, dest / "empty_labels" / lbl.name)]
        if img is not None:
            plan.append((img, dest / "empty_images" / img.name))
        clash = [d for _, d in plan if d.exists()]
        if clash:
            for src, _ in plan:
                report.skipped.append((src, f"{clash[0]} already exists"))
            continue
        for src, dst in plan:
            if not dry_run:
                dst.parent.mkdir(parents=True, exist_ok=True)
                if dst.exists():  # appeared meanwhile
                    report.skipped.append((src, f"{dst} already exists"))
                    continue
                shutil.move(str(src), str(dst))
            report.moved.append((src, dst))
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="craters-move-empty",
        description="Move images whose YOLO label file is empty (no crater), and those label "
                    "files, to <dest>/empty_images and <dest>/empty_labels. Never overwrites.")
    parser.add_argument("root", type=Path, help="YOLO data root with <split>/{images,labels}")
    parser.add_argument("--dest", type=Path, help="destination folder (default: <root>/empty)")
    parser.add_argument("--splits", nargs="+", default=["train", "valid"],
                        help="splits to clean (default: train valid)")
    parser.add_argument("--dry-run", action="store_true",
                        help="only list what would be moved; touch nothing")
    args = parser.parse_args(argv)
    try:
        report = move_empty(args.root, args.dest, args.splits, args.dry_run)
    except UserError as exc:  # LabelError too
        print(f"error: {exc}", file=sys.stderr)
        return 2
    verb = "would move" if args.dry_run else "moved"
    for src, dst in report.moved:
        print(f"{verb}: {src} -> {dst}")
    for src, why in report.skipped:
        print(f"skipped: {src} ({why})", file=sys.stderr)
    print(f"{report.empty_pairs} empty label file(s); {verb} {len(report.moved)} file(s); "
          f"skipped {len(report.skipped)}")
    return 1 if report.skipped else 0


def cli(argv=None) -> int:
    from shared.runs import cli_main

    return cli_main(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
