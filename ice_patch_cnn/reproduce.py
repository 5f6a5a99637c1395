"""`make reproduce-ice`: the whole survey pipeline on synthetic scenes over several seeds.

For each seed (``--seeds N``, default 3; seed ``i`` is the profile's ``seed + i``: it changes the
initialisation, the shuffling and dropout; the data stay fixed unless ``--data-seeds``, which
also draws the synthetic scenes from that seed):

1. synthetic HiRISE-like training and survey scenes (``data/synthetic.py``; reused when present);
2. chunk the training scenes (``chunk.py``) and label the chunks from the patch positions
   (hard, cut patches left out as in the paper);
3. train with ``train.run(cfg, run_dir)``: ``train.epochs``, then resumed for
   ``train.resume_epochs`` more (the paper's 25 + 48 scheme, shrunk); a finished run of the same
   config and code is reused (``shared.runs.finished_run``);
4. predict every chunk of the held-out survey scenes and make the image-level calls, scored
   against the scenes' truth.

``results/ice_patch_cnn/summary.json`` holds every metric per seed with mean and 95 % t interval
(``shared.stats.describe``) and one paired claim: the chunk classifier beats the majority class
("no ice" for every chunk) on the held-out survey chunks. Every size comes from the profile.
"""

from __future__ import annotations

import argparse
import copy
import csv
import io
import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _label_chunks(chunk_dir: Path, scene_dir: Path, size: int, out_csv: Path) -> dict:
    """index.csv of chunk.py + chunk truth from each scene's label raster -> file,label CSV."""
    from ice_patch_cnn.data.synthetic import chunk_truth
    from shared.atomic import atomic_write_text
    from shared.images import read_image

    truth_cache: dict[str, dict] = {}
    rows = []
    with open(chunk_dir / "index.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            image = row["image"]
            if image not in truth_cache:
                labels = read_image(scene_dir / f"{image}_ice.tif")
                truth_cache[image] = chunk_truth(labels, size)
            label = truth_cache[image][int(row["grid_row"]), int(row["grid_col"])]
            rows.append({"file": row["file"], "label": label})
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["file", "label"])
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out_csv, buf.getvalue())
    labels = np.array([r["label"] for r in rows])
    return {"chunks": int(labels.size), "positive": int((labels == 1).sum()),
            "negative": int((labels == 0).sum()), "hard": int((labels == -1).sum())}


def _chunk_truth_csv(scene_dir: Path, names: Sequence[str], size: int, out_csv: Path) -> None:
    from ice_patch_cnn.data.synthetic import chunk_truth
    from shared.atomic import atomic_write_text
    from shared.images import read_image

    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["image", "grid_row", "grid_col", "label"])
    for name in names:
        for (r, c), label in chunk_truth(read_image(scene_dir / f"{name}_ice.tif"),
                                         size).items():
            writer.writerow([name, r, c, label])
    atomic_write_text(out_csv, buf.getvalue())


def prepare_data(cfg: dict, data_seed: int, root: Path) -> dict:
    """Scenes, training chunks and their labels for one data seed (reused when present)."""
    from ice_patch_cnn.chunk import ChunkSpec, chunk_images
    from ice_patch_cnn.data.synthetic import generate_scenes

    scfg = cfg["synthetic"]
    size = int(cfg["data"]["chunk_size"])
    train_scenes = generate_scenes(root / "scenes_train", int(scfg["train_scenes"]),
                                   scfg["scene_size"], scfg["train_kinds"], data_seed, "TRAIN",
                                   progress=False)
    survey_scenes = generate_scenes(root / "scenes_survey", int(scfg["survey_scenes"]),
                                    scfg["survey_scene_size"], scfg["survey_kinds"],
                                    data_seed + 1, "SURVEY", progress=False)
    spec = ChunkSpec.from_config(cfg)
    report = chunk_images([root / "scenes_train" / r["image"] for r in train_scenes],
                          root / "chunks_train", spec, progress=False)
    labels = _label_chunks(root / "chunks_train", root / "scenes_train", size,
                           root / "chunks_train" / "labels.csv")
    return {"root": root, "train_scenes": train_scenes, "survey_scenes": survey_scenes,
            "spec": spec, "labels": labels, "data_csv": root / "chunks_train" / "labels.csv",
            "chunks_dropped_nodata": report["chunks_dropped_nodata"]}


def train_seed(cfg: dict, data: dict, run_dir: Path) -> dict:
    """Train (epochs, then resumed for resume_epochs) unless a finished run can be reused
    (``train.threads``, ``train.precision`` and ``data.root`` resolved first, as the run's
    config.yaml keeps them)."""
    from ice_patch_cnn.train import resolve_run_precision, resolve_run_threads, run
    from shared.configs import cli_path
    from shared.runs import code_version, finished_run

    cfg = resolve_run_precision(resolve_run_threads(cfg))
    cfg["data"]["root"] = cli_path(data["data_csv"])
    first, more = int(cfg["train"]["epochs"]), int(cfg["train"]["resume_epochs"])
    total = first + more
    version = code_version(Path(__file__).parent)
    summary_path = run_dir / "summary.json"
    if finished_run(run_dir, cfg, version) and \
            json.loads(summary_path.read_text())["epochs_done"] == total:
        print(f"   reusing the finished run {run_dir}")
        return json.loads(summary_path.read_text())
    state_path = run_dir / "state.json"
    done = json.loads(state_path.read_text())["epochs_done"] if state_path.is_file() else None
    kw = {"progress": False}
    if done is not None and (done >= total or not _same_config(run_dir, cfg)):
        done = None                       # another config or code: train again from scratch
    summary = None
    if done is None:
        summary = run(cfg, run_dir, overwrite=True, **kw)
        done = first
    elif done < first:
        summary = run(cfg, run_dir, resume=True, **kw)
        done = first
    if done < total:
        print(f"   resuming for {total - done} more epoch(s) (the paper's retraining)")
        summary = run(cfg, run_dir, resume=True, epochs=total - done, **kw)
    return summary


def _same_config(run_dir: Path, cfg: dict) -> bool:
    from shared.configs import diff_keys, read_yaml_mapping
    from shared.runs import _plain

    path = run_dir / "config.yaml"
    return path.is_file() and not diff_keys(read_yaml_mapping(path), _plain(cfg))


def survey_seed(cfg: dict, data: dict, run_dir: Path) -> dict:
    """Predict the held-out survey scenes with best.keras and make the image-level calls."""
    from ice_patch_cnn.model import load_model
    from ice_patch_cnn.predict import run_predict
    from ice_patch_cnn.rules import Rules
    from ice_patch_cnn.survey import run_survey

    root, size = data["root"], int(cfg["data"]["chunk_size"])
    survey_dir = run_dir / "survey"
    shutil.rmtree(survey_dir, ignore_errors=True)
    model = load_model(run_dir / "best.keras")
    run_predict(model, [root / "scenes_survey" / r["image"] for r in data["survey_scenes"]],
                survey_dir, data["spec"], int(cfg["predict"]["batch_size"]), progress=False)
    _chunk_truth_csv(root / "scenes_survey", [r["name"] for r in data["survey_scenes"]], size,
                     survey_dir / "chunk_truth.csv")
    return run_survey(survey_dir, survey_dir, Rules.from_config(cfg["rules"]),
                      truth=root / "scenes_survey" / "scenes.csv",
                      chunk_truth=survey_dir / "chunk_truth.csv", sheet=16)


def seed_metrics(summary: dict, report: dict) -> dict:
    """The per-seed numbers the summary rows are made of."""
    n_img = report["images"]
    chunks = report["chunk_scores"]
    img = report["image_scores"]
    return {
        "val_accuracy": summary["best_val_accuracy"], "best_epoch": summary["best_epoch"],
        "chunk_accuracy": chunks["accuracy"],
        "majority_accuracy": round(1 - chunks["chunks_positive"] / chunks["chunks_scored"], 4),
        "ice_recognised": img["ice_recognised"], "images_correct": img["images_correct"],
        "share_good": round(report["images_good"] / n_img, 4),
        "share_hard": round(report["images_hard"] / n_img, 4),
        "share_without_icy_chunk": round(report["images_without_icy_chunk"] / n_img, 4),
        "hard_truly_good": (round(img["images_hard_truly_good"] / report["images_hard"], 4)
                            if report["images_hard"] else None),
    }


ROWS = [  # (metric key, setting, metric text, reported value from cfg["reported"])
    ("val_accuracy", "chunk classifier, 20 % validation split", "val accuracy at the best epoch",
     lambda r: r["val_accuracy"]),
    ("chunk_accuracy", "survey, held-out images", "chunks classified right (ours: all scored "
     "chunks at p>=0.5; paper: ~200 checked)",
     lambda r: round(r["chunks_checked_correct"] / r["chunks_checked"], 4)),
    ("ice_recognised", "survey, held-out images", "ice recognised (share of 'good' calls "
     "showing ice)", lambda r: r["ice_recognised"]),
    ("images_correct", "survey, held-out images", "images correct (share of 'good' calls truly "
     "good)", lambda r: r["images_correct"]),
    ("share_good", "survey, held-out images", "share of images called good",
     lambda r: round(r["images_good"] / r["survey_images"], 4)),
    ("share_hard", "survey, held-out images", "share of images called hard",
     lambda r: round(r["images_hard"] / r["survey_images"], 4)),
    ("share_without_icy_chunk", "survey, held-out images", "share of images without an icy "
     "chunk", lambda r: round(r["images_without_icy_chunk"] / r["survey_images"], 4)),
    ("hard_truly_good", "survey, held-out images", "share of 'hard' calls truly good",
     lambda r: round(r["images_hard_truly_good"] / r["images_hard"], 4)),
]


def summary_rows(cfg: dict, per_seed: list[dict]) -> list[dict]:
    """One row per metric: the paper's figure and ours over the seeds that have a value."""
    from shared.stats import describe

    rows = []
    for key, setting, metric, reported in ROWS:
        values = [m[key] for m in per_seed if m[key] is not None]
        if not values:
            continue
        rows.append({"setting": setting, "metric": metric, "reported": reported(cfg["reported"]),
                     "ours": describe(values),
                     "seeds_without_value": len(per_seed) - len(values)})
    return rows


def run_all(cfg: dict, seeds: Sequence[int], *, data_seeds: bool = False,
            results: Path | None = None, runs_root: Path | None = None,
            data_root: Path | None = None) -> dict:
    """Every seed, then ``summary.json`` (and ``metrics.json``) in ``results``."""
    from shared.configs import REPO_ROOT, resolve_path

    t_start = time.time()
    results = results or REPO_ROOT / "results" / "ice_patch_cnn"
    runs_root = runs_root or REPO_ROOT / "runs" / "ice_patch_cnn" / cfg["profile"]
    data_root = data_root or resolve_path(cfg["data"]["root"]) / cfg["profile"]
    per_seed, timings = [], []
    for seed in seeds:
        t0 = time.time()
        data_seed = seed if data_seeds else int(cfg["seed"])
        print(f"== seed {seed} (data seed {data_seed})")
        data = prepare_data(cfg, data_seed, data_root / f"data_seed{data_seed}")
        seed_cfg = copy.deepcopy(cfg)
        seed_cfg["seed"] = int(seed)
        run_dir = runs_root / f"seed{seed}_data{data_seed}"
        summary = train_seed(seed_cfg, data, run_dir)
        report = survey_seed(seed_cfg, data, run_dir)
        metrics = {"seed": seed, "data_seed": data_seed, **seed_metrics(summary, report),
                   "train_chunks": summary["train_chunks"], "val_chunks": summary["val_chunks"],
                   "precision": summary.get("precision", "fp32"),
                   "labels": data["labels"], "survey_chunks": report["chunks"]}
        per_seed.append(metrics)
        timings.append(round(time.time() - t0, 1))
        print(f"   {json.dumps({k: metrics[k] for k in ('val_accuracy', 'chunk_accuracy')})}"
              f" ({timings[-1]} s)")
    return write_results(cfg, per_seed, timings, time.time() - t_start, data_seeds, results,
                         runs_root)


def write_results(cfg: dict, per_seed: list[dict], timings: list[float], wall: float,
                  data_seeds: bool, results: Path, runs_root: Path) -> dict:
    """summary.json (rows + claim), metrics.json, the last seed's curves and contact sheet."""
    from shared.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
    from shared.results import write_summary
    from shared.stats import claim

    seeds = [m["seed"] for m in per_seed]
    rows = summary_rows(cfg, per_seed)
    claims = [claim("the chunk classifier beats the majority class ('no ice' everywhere) on "
                    "the held-out survey chunks", "chunk accuracy at p>=0.5", "classifier",
                    [m["chunk_accuracy"] for m in per_seed], "majority class",
                    [m["majority_accuracy"] for m in per_seed], "greater")]
    last = runs_root / f"seed{per_seed[-1]['seed']}_data{per_seed[-1]['data_seed']}"
    results.mkdir(parents=True, exist_ok=True)
    for name, src in (("training_curves.png", last / "training_curves.png"),
                      ("contact_sheet.png", last / "survey" / "contact_sheet.png"),
                      ("survey_images.csv", last / "survey" / "images.csv")):
        if src.is_file():
            atomic_write_bytes(results / name, src.read_bytes())
    import yaml

    atomic_write_text(results / "config.yml", yaml.safe_dump(cfg, sort_keys=False))
    atomic_write_json(results / "metrics.json", {"profile": cfg["profile"],
                                                 "per_seed": per_seed, "seconds": timings})
    m0 = per_seed[0]
    notes = (f"Synthetic data, not HiRISE: {cfg['synthetic']['train_scenes']} training scenes "
             f"({m0['labels']['chunks']} chunks of {cfg['data']['chunk_size']} px, "
             f"{m0['labels']['positive']} with ice, {m0['labels']['hard']} hard left out), "
             f"{cfg['synthetic']['survey_scenes']} held-out survey scenes ({m0['survey_chunks']} "
             f"chunks). Network width x{cfg['model']['width_scale']}, "
             f"{cfg['train']['epochs']} + {cfg['train']['resume_epochs']} resumed epochs. "
             f"{len(seeds)} seeds ({'data varied too' if data_seeds else 'data fixed'}). The "
             "paper's numbers come from 216 real HiRISE images checked by hand: compare the "
             "pipeline's behaviour, not the values.")
    precisions = sorted({m.get("precision", "fp32") for m in per_seed})
    write_summary(paper="ice_patch_cnn", rows=rows, data="synthetic HiRISE-like scenes",
                  profile=cfg["profile"], wall_time_s=wall, notes=notes, claims=claims,
                  precision="/".join(precisions),
                  results_dir=results, extra={"seeds": seeds, "data_seeds": data_seeds,
                                              "seconds_per_seed": timings})
    print(f"wall time {wall:.0f} s; results in {results}")
    return {"rows": rows, "claims": claims, "per_seed": per_seed}


def _main(argv: Sequence[str] | None = None) -> int:
    from shared.cli import finish_parser, hidden_alias
    from shared.results import add_results_arguments

    parser = argparse.ArgumentParser(
        prog="ice-reproduce",
        description="Reproduce the ice-patch survey end to end on synthetic scenes over several "
                    "seeds (quick profile): scenes -> chunks -> training -> survey -> "
                    "results/local/ice_patch_cnn/summary.json (--record: results/ice_patch_cnn/).")
    parser.add_argument("--config", default="quick", help="profile")
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds")
    parser.add_argument("--data-seeds", action="store_true",
                        help="draw the synthetic scenes from each seed too (default: fixed data)")
    add_results_arguments(parser, "ice_patch_cnn")
    parser.add_argument("--runs", type=Path, help="run folders (default runs/ice_patch_cnn/"
                        "<profile>)")
    parser.add_argument("--data", dest="data_root", type=Path,
                        help="generated data (default the profile's data.root/<profile>)")
    hidden_alias(parser, "--data-root", dest="data_root", type=Path)
    finish_parser(parser)
    args = parser.parse_args(argv)
    from ice_patch_cnn.config import load_config
    from shared.errors import UserError

    if args.seeds < 1:
        raise UserError(f"--seeds must be >= 1, got {args.seeds}")
    from shared.runs import quiet_tensorflow

    quiet_tensorflow()
    cfg = load_config(args.config)
    seeds = [int(cfg["seed"]) + i for i in range(args.seeds)]
    from shared.results import resolve_results

    results = resolve_results(args, "ice_patch_cnn")
    results.mkdir(parents=True, exist_ok=True)
    from shared.results import ReproduceLog

    with ReproduceLog(results / "reproduce.log") as log:
        try:
            run_all(cfg, seeds, data_seeds=args.data_seeds, results=results,
                    runs_root=args.runs, data_root=args.data_root)
        finally:
            log.save()  # also the log of a failed or interrupted reproduce
    from shared.results import relativize_paths

    relativize_paths(results)  # a record names no machine's absolute path
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from shared.runs import cli_main

    return cli_main(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
