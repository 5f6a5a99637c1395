"""Image-level survey from chunk probabilities: the paper's good / hard / bad calls and a report.

Reads ``<predictions>/chunks/*.csv`` written by ``predict.py`` (all shards), applies the rules of
``rules.py`` with the thresholds of the profile's ``rules:`` section, and writes to ``--out``
(default: the predictions folder):

* ``images.csv``: per image n chunks, mean p, icy chunks (p >= 0.6) and their share, chunks in
  the "hard to identify" band (0.4-0.6), max p, decision and the rule branch that gave it;
* ``all_chunks.csv``: every chunk with p and its chunk-level label (ice / hard / no_ice);
* ``survey_report.json``: counts per decision, images without any icy chunk, and with
  ``--truth`` the scores (confusion table truth x decision, share of "good" calls that show ice
  and that are truly good, chunk accuracy when ``--chunk-truth`` is given);
* ``icy_chunks.gpkg``: for georeferenced images, the footprint polygon of every icy chunk
  (p >= ``rules.icy_p``) with its image, grid position, pixel window, p, chunk label and the
  image's decision and rule branch, in the image's CRS (layer ``icy_chunks``; images in other
  CRSs get their own layers ``icy_chunks_2``, ...); opens in QGIS;
* ``contact_sheet.png``: the most likely chunks with their probabilities (like the paper's
  Figure 4), from the PNGs ``predict.py`` kept.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ice_patch_cnn.rules import (
    DECISIONS,
    UNCERTAIN_REASON,
    Rules,
    chunk_label,
    classify_image,
)
from shared.errors import UserError

IMAGE_FIELDS = ["image", "n_chunks", "mean_p", "n_icy", "share_icy", "n_hard_chunks", "max_p",
                "decision", "reason"]


def read_predictions(folder: str | Path) -> dict[str, list[dict]]:
    """image -> its chunk rows (p as float), from ``<folder>/chunks/*.csv``."""
    folder = Path(folder)
    chunk_dir = folder / "chunks"
    if not chunk_dir.is_dir():
        raise UserError(f"{chunk_dir}: no predictions folder (run predict.py first)")
    out: dict[str, list[dict]] = {}
    for path in sorted(chunk_dir.glob("*.csv")):
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        for line, row in enumerate(rows, start=2):
            try:
                row["p"] = float(row["p"])
            except (KeyError, ValueError, TypeError):  # TypeError: a truncated last row
                raise UserError(f"{path}: line {line}: bad or missing probability column 'p' "
                                "(truncated file?)") from None
            if not (math.isfinite(row["p"]) and 0.0 <= row["p"] <= 1.0):
                raise UserError(f"{path}: line {line}: probability p={row['p']} is not within "
                                "[0, 1]")
        out[path.stem] = rows
    return out


def survey(predictions: dict[str, list[dict]], rules: Rules = Rules()) -> list[dict]:
    """One row per image (see ``IMAGE_FIELDS``)."""
    rows = []
    for image, chunks in sorted(predictions.items()):
        call = classify_image([c["p"] for c in chunks], rules)
        row = {"image": image, **asdict(call)}
        for key in ("mean_p", "share_icy", "max_p"):
            row[key] = round(float(row[key]), 6)
        rows.append(row)
    return rows


def decision_counts(rows: Sequence[dict]) -> dict:
    counts = {d: sum(r["decision"] == d for r in rows) for d in DECISIONS}
    return {
        "images": len(rows),
        "chunks": int(sum(int(r["n_chunks"]) for r in rows)),
        **{f"images_{d}": counts[d] for d in DECISIONS},
        "images_without_icy_chunk": sum(int(r["n_icy"]) == 0 for r in rows),
        "images_all_chunks_uncertain": sum(r["reason"] == UNCERTAIN_REASON for r in rows),
    }


def read_truth(path: str | Path) -> dict[str, dict]:
    """Image truth CSV: columns ``name`` (or ``image``), ``truth`` (good/bad), ``has_ice``."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: truth file not found")
    out = {}
    with open(path, newline="", encoding="utf-8") as fh:
        for i, row in enumerate(csv.DictReader(fh), start=2):
            name = row.get("name") or Path(row.get("image") or "").stem
            if not name or row.get("truth") not in ("good", "bad"):
                raise UserError(f"{path}: line {i}: need image/name and truth good|bad")
            out[name] = {"truth": row["truth"],
                         "has_ice": str(row.get("has_ice", "0")).strip().lower()
                         in ("1", "true", "yes")}
    return out


def score_images(rows: Sequence[dict], truth: dict[str, dict]) -> dict:
    """Confusion table (truth x decision) and the paper's two headline ratios.

    ``ice_recognised``: share of images called "good" that do show ice (paper: 29/31 = 94 %).
    ``images_correct``: share of images called "good" that are truly good, i.e. show small
    patches (paper: 18/31 = 58 %).
    """
    scored = [r for r in rows if r["image"] in truth]
    table = {t: {d: 0 for d in DECISIONS} for t in ("good", "bad")}
    for r in scored:
        table[truth[r["image"]]["truth"]][r["decision"]] += 1
    good = [r for r in scored if r["decision"] == "good"]
    hard = [r for r in scored if r["decision"] == "hard"]
    bad = [r for r in scored if r["decision"] == "bad"]

    def share(items, test):
        return round(sum(test(r) for r in items) / len(items), 4) if items else None

    truly_good = lambda r: truth[r["image"]]["truth"] == "good"  # noqa: E731
    return {
        "images_scored": len(scored),
        "confusion": table,
        "images_good": len(good),
        "images_good_with_ice": sum(truth[r["image"]]["has_ice"] for r in good),
        "images_good_sufficient": sum(truly_good(r) for r in good),
        "ice_recognised": share(good, lambda r: truth[r["image"]]["has_ice"]),
        "images_correct": share(good, truly_good),
        "images_hard": len(hard),
        "images_hard_truly_good": sum(truly_good(r) for r in hard),
        "images_bad_truly_good": sum(truly_good(r) for r in bad),
        "truly_good_found": share([r for r in scored if truly_good(r)],
                                  lambda r: r["decision"] == "good"),
        "accuracy_good_vs_rest": share(scored, lambda r: (r["decision"] == "good")
                                       == truly_good(r)),
    }


def report_problems(report: dict, rules: Rules = Rules()) -> list[str]:
    """Contradictions between the counts of a survey report (an empty list when consistent).

    Every image gets exactly one decision; with the paper's rules (an icy chunk needed for
    "good" and two for "hard") an image without any icy chunk is "bad", or "hard" when every
    chunk lies in the 0.4-0.6 band, so the images without an icy chunk can never outnumber
    those; scores against a truth file must
    cover at least one image and agree with the decision counts.
    """
    problems = []
    n = report["images"]
    by_decision = [report[f"images_{d}"] for d in DECISIONS]
    if sum(by_decision) != n:
        problems.append(f"decisions {by_decision} do not add up to {n} images")
    if (rules.good_min_icy_chunks >= 1 and rules.hard_min_icy_chunks >= 1
            and report["images_without_icy_chunk"]
            > report["images_bad"] + report.get("images_all_chunks_uncertain", 0)):
        problems.append(f"{report['images_without_icy_chunk']} images without an icy chunk but "
                        f"only {report['images_bad']} called bad")
    scores = report.get("image_scores")
    if scores is not None:
        if scores["images_scored"] == 0:
            problems.append("no image of the predictions is named in the truth file")
        elif scores["images_scored"] == n and (scores["images_good"], scores["images_hard"]) != (
                report["images_good"], report["images_hard"]):
            problems.append("scored good/hard counts differ from the decision counts")
    return problems


def read_chunk_truth(path: str | Path) -> dict[tuple[str, int, int], int]:
    """Chunk truth CSV: ``image, grid_row, grid_col, label`` (1, 0 or -1 = hard)."""
    out = {}
    with open(path, newline="", encoding="utf-8") as fh:
        for line, row in enumerate(csv.DictReader(fh), start=2):
            try:
                out[row["image"], int(row["grid_row"]), int(row["grid_col"])] = int(row["label"])
            except (KeyError, ValueError, TypeError):  # TypeError: a truncated last row
                raise UserError(f"{path}: line {line}: need image, grid_row, grid_col and label "
                                "(whole numbers)") from None
    return out


def score_chunks(predictions: dict[str, list[dict]], truth: dict, rules: Rules = Rules(),
                 threshold: float = 0.5) -> dict:
    """Chunk accuracy at ``threshold`` (hard truth chunks left out) and the 0.4-0.6 band."""
    y, p = [], []
    hard_truth = 0
    for image, chunks in predictions.items():
        for c in chunks:
            label = truth.get((image, int(c["grid_row"]), int(c["grid_col"])))
            if label is None:
                continue
            if label < 0:
                hard_truth += 1
                continue
            y.append(label)
            p.append(c["p"])
    if not y:
        return {"chunks_scored": 0}
    y_arr, p_arr = np.asarray(y), np.asarray(p)
    pred = p_arr >= threshold
    tp = int((pred & (y_arr == 1)).sum())
    fp = int((pred & (y_arr == 0)).sum())
    fn = int((~pred & (y_arr == 1)).sum())
    band = (p_arr >= rules.chunk_hard_low) & (p_arr <= rules.chunk_hard_high)
    confident = ~band
    return {
        "chunks_scored": int(y_arr.size),
        "chunks_positive": int(y_arr.sum()),
        "hard_truth_left_out": hard_truth,
        "accuracy": round(float((pred == (y_arr == 1)).mean()), 4),
        "precision": round(tp / (tp + fp), 4) if tp + fp else None,
        "recall": round(tp / (tp + fn), 4) if tp + fn else None,
        "chunks_in_hard_band": int(band.sum()),
        "accuracy_outside_hard_band": round(float((pred == (y_arr == 1))[confident].mean()), 4)
        if confident.any() else None,
    }


def rank_labels(ps: list[float], max_digits: int = 8) -> list[str]:
    """Probability labels with just enough digits to tell ranked values apart: ``p = 0.93``,
    or for values near 1 the distance to 1, ``1 - p = 3.2e-05``; "100.0 %" for every chunk
    ranks nothing."""
    def label(p: float, digits: int) -> str:
        if p >= 0.999:
            return f"1 - p = {1 - p:.{max(1, digits - 3)}e}"
        return f"p = {p:.{digits}f}"

    for digits in range(2, max_digits + 1):
        out = [label(p, digits) for p in ps]
        if all(out[i] != out[i + 1] for i in range(len(ps) - 1) if ps[i] != ps[i + 1]):
            return out
    return [label(p, max_digits) for p in ps]


def contact_sheet(folder: Path, predictions: dict[str, list[dict]], path: Path, n: int = 16,
                  rules: Rules = Rules()) -> int:
    """Grid of the ``n`` most likely chunks (PNGs kept by predict.py) with their p."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from shared.figures import save_figure
    from shared.images import read_image

    items = []
    for image, chunks in predictions.items():
        for c in chunks:
            png = folder / "top" / f"{image}_r{c['grid_row']}_c{c['grid_col']}.png"
            if png.is_file():
                items.append((c["p"], f"{image} r{c['grid_row']} c{c['grid_col']}", png))
    items.sort(key=lambda t: -t[0])
    items = items[:n]
    if not items:
        return 0
    cols = min(4, len(items))
    rows = -(-len(items) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.9 * cols, 3.3 * rows + 0.5), squeeze=False,
                             layout="constrained")
    colours = {"ice": "tab:blue", "hard": "tab:orange", "no_ice": "tab:grey"}
    for ax in axes.ravel():
        ax.axis("off")
    labels = rank_labels([p for p, _, _ in items])
    for rank, (ax, (p, title, png), label) in enumerate(zip(axes.ravel(), items, labels), 1):
        ax.imshow(read_image(png, mode="L"), cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"#{rank}  {label}\n{title}", fontsize=10,
                     color=colours[chunk_label(p, rules)])
    fig.suptitle("Most likely chunks: predicted probability p of a small ice patch (title "
                 "colour: blue ice, orange hard, grey no ice)", fontsize=11)
    save_figure(fig, path, dpi=100)
    return len(items)


def image_crs(folder: Path, image: str) -> str | None:
    """The image's CRS (WKT) from predict.py's ``chunks/<image>.json`` (None if unknown)."""
    path = folder / "chunks" / f"{image}.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("crs")
    except json.JSONDecodeError:
        raise UserError(f"{path}: not valid JSON") from None


GPKG_FIELDS = ["image", "source", "grid_row", "grid_col", "x", "y", "size", "p", "label",
               "image_decision", "image_reason"]


def write_icy_chunks(folder: Path, preds: dict[str, list[dict]], image_rows: Sequence[dict],
                     path: Path, rules: Rules = Rules()) -> dict:
    """``icy_chunks.gpkg`` (one layer per CRS); returns {"layers": .., "features": ..}."""
    import pyogrio.raw
    import shapely

    from shared.atomic import atomic_path

    calls = {r["image"]: r for r in image_rows}
    groups: dict[str | None, list[dict]] = {}
    for image, chunks in sorted(preds.items()):
        icy = [c for c in chunks if c["p"] >= rules.icy_p and c.get("footprint")]
        if icy:
            groups.setdefault(image_crs(folder, image), []).extend(icy)
    if not groups:
        return {"layers": 0, "features": 0}
    with atomic_path(path) as tmp:
        tmp.unlink()                      # GDAL creates the GeoPackage itself
        for i, (crs, chunks) in enumerate(groups.items(), start=1):
            geoms = shapely.to_wkb(shapely.from_wkt([c["footprint"] for c in chunks]))
            rows = [{**c, "label": chunk_label(c["p"], rules),
                     "image_decision": calls[c["image"]]["decision"],
                     "image_reason": calls[c["image"]]["reason"]} for c in chunks]
            data = [np.asarray([_gpkg_value(r[f], f) for r in rows]) for f in GPKG_FIELDS]
            pyogrio.raw.write(str(tmp), geoms, data, GPKG_FIELDS, driver="GPKG",
                              layer="icy_chunks" if i == 1 else f"icy_chunks_{i}",
                              geometry_type="Polygon", crs=crs, append=i > 1)
    return {"layers": len(groups), "features": sum(len(c) for c in groups.values())}


def _gpkg_value(value, field: str):
    if field in ("grid_row", "grid_col", "x", "y", "size"):
        return int(value)
    if field == "p":
        return float(value)
    return str(value)


def _csv(rows: Sequence[dict], fields: Sequence[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fields), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


SURVEY_FILES = ("images.csv", "all_chunks.csv", "survey_report.json", "contact_sheet.png")


def run_survey(predictions_dir: str | Path, out: str | Path | None = None,
               rules: Rules = Rules(), truth: str | Path | None = None,
               chunk_truth: str | Path | None = None, sheet: int = 16) -> dict:
    """Everything survey.py writes; returns the report dict."""
    from shared.atomic import atomic_write_json, atomic_write_text

    folder = Path(predictions_dir)
    out = Path(out) if out is not None else folder
    preds = read_predictions(folder)
    if not preds:
        raise UserError(f"{folder / 'chunks'}: no per-image prediction CSV found")
    rows = survey(preds, rules)
    atomic_write_text(out / "images.csv", _csv(rows, IMAGE_FIELDS))
    chunk_rows = [{**c, "label": chunk_label(c["p"], rules)}
                  for image in sorted(preds) for c in preds[image]]
    atomic_write_text(out / "all_chunks.csv",
                      _csv(chunk_rows, ["image", "source", "grid_row", "grid_col", "y", "x",
                                        "size", "p", "label"]))
    report = {"rules": rules.as_dict(), **decision_counts(rows),
              "chunks_by_label": {k: sum(r["label"] == k for r in chunk_rows)
                                  for k in ("ice", "hard", "no_ice")}}
    if truth:
        report["image_scores"] = score_images(rows, read_truth(truth))
    if chunk_truth:
        report["chunk_scores"] = score_chunks(preds, read_chunk_truth(chunk_truth), rules)
    problems = report_problems(report, rules)
    if problems:
        raise UserError(f"{folder}: inconsistent survey report: " + "; ".join(problems))
    report["contact_sheet_chunks"] = contact_sheet(folder, preds, out / "contact_sheet.png",
                                                   sheet, rules)
    report["icy_chunks_gpkg"] = write_icy_chunks(folder, preds, rows, out / "icy_chunks.gpkg",
                                                 rules)
    atomic_write_json(out / "survey_report.json", report)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    from shared.runs import cli_main

    return cli_main(_main, argv)


def _main(argv: Sequence[str] | None = None) -> int:
    from shared.cli import finish_parser

    parser = argparse.ArgumentParser(
        prog="ice-survey",
        description="Image-level good / hard / bad calls from predict.py's chunk probabilities "
                    "(rules of the paper's section 5, thresholds from the profile); writes "
                    "images.csv, all_chunks.csv, survey_report.json, contact_sheet.png.")
    parser.add_argument("predictions", type=Path, help="predict.py output folder")
    parser.add_argument("--out", type=Path, help="output folder (default: the predictions one)")
    parser.add_argument("--config", default="paper", help="profile giving the rules thresholds")
    parser.add_argument("--truth", type=Path,
                        help="image truth CSV (name,truth,has_ice) to score the calls")
    parser.add_argument("--chunk-truth", type=Path,
                        help="chunk truth CSV (image,grid_row,grid_col,label) to score chunks")
    parser.add_argument("--sheet", type=int, default=16, help="chunks on the contact sheet")
    args = finish_parser(parser).parse_args(argv)

    from ice_patch_cnn.config import load_config
    from shared.runs import check_paths

    # issue 27: a survey written among the prediction CSVs it reads (--out <predictions>/chunks)
    # would be read as predictions by every later survey; nor may it replace a truth file
    check_paths([args.out, *(args.out / n for n in SURVEY_FILES if args.out)],
                [args.predictions / "chunks", args.truth, args.chunk_truth], containing=False)
    rules = Rules.from_config(load_config(args.config)["rules"])
    report = run_survey(args.predictions, args.out, rules, args.truth, args.chunk_truth,
                        args.sheet)
    print(json.dumps({k: report[k] for k in ("images", "chunks") if k in report}
                     | {f"images_{d}": report[f"images_{d}"] for d in DECISIONS}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
