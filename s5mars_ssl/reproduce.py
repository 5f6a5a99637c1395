"""`make reproduce-s5mars`: supervised vs mean teacher vs the full method over several seeds.

For each seed (initialisation, sampling and augmentation; the synthetic data stay fixed unless
``--vary-data``): a supervised warm-up of the student (``reproduce.warmup_iterations``), then
every setting of ``reproduce.settings`` (supervised, mean teacher, full method = mean teacher +
AugIN + SAM-Mix + soft-to-hard) trains the same number of iterations from that warm student,
so the EMA teacher starts from a meaningful model and all settings are compared at equal
iterations. The metric is the test mIoU of the evaluated model (the teacher of a semi run).
Claims, paired by seed: "full method > supervised" and "mean teacher > supervised".

Every size comes from the quick profile (``exps/quick/``); each (setting, seed) has its own run
folder, reused only when ``shared.runs.finished_run`` says it holds the same resolved config and
code version. Writes ``results/s5mars_ssl/summary.json`` (per-seed values, verdicts).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from shared.configs import REPO_ROOT

LABELS = {"supervised": "supervised only (labelled split)",
          "mean_teacher": "mean teacher",
          "full": "full method (mean teacher + AugIN + SAM-Mix + soft-to-hard)"}


def _train(cfg: dict, run_dir: Path, version: str, log) -> dict:
    import json

    from s5mars_ssl.augseg.trainer import prepare_config, run
    from shared.runs import finished_run

    prepared = prepare_config(cfg)
    if finished_run(run_dir, prepared, version):
        log(f"{run_dir}: reusing the finished run")
        return json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    resume = (run_dir / "last.pt").is_file() and (run_dir / "config.yaml").is_file()
    if resume:
        from shared.configs import diff_keys, read_yaml_mapping

        resume = not diff_keys(read_yaml_mapping(run_dir / "config.yaml"), prepared)
    t = time.time()
    res = run(cfg, run_dir, resume=resume, overwrite=not resume, progress=False)
    log(f"{run_dir}: mIoU {res['miou'] * 100:.2f} ({res['evaluated']}) in {time.time() - t:.0f} s")
    return res


def _data(cfg: dict, data_root: Path, data_seed: int, log) -> Path:
    from s5mars_ssl.data.synthetic import generate
    from s5mars_ssl.sam_masks import run as make_masks

    d = cfg["reproduce"]["data"]
    root = data_root / f"seed{data_seed}"
    generate(root, n_train=int(d["n_train"]), n_test=int(d["n_test"]), height=int(d["height"]),
             width=int(d["width"]), labeled_every=int(d["labeled_every"]), seed=data_seed,
             progress=False)
    make_masks(root / "images", root / "sam_masks", proposer="felzenszwalb",
               stems_file=root / "train.json", progress=False)
    log(f"data {root} (synthetic, seed {data_seed}; felzenszwalb proposals in SAM's format)")
    return root


def run_seed(seed: int, data: Path, sets: list[str], runs: Path, version: str, log) -> dict:
    """The warm-up and every setting for one seed; returns {setting: summary}."""
    from s5mars_ssl.augseg.utils.config import load_config, validate

    base = load_config("quick_supervised", sets)
    common = {"seed": seed, "dataset.root": str(data),
              "dataset.split": f"splits/labeled_1_{base['reproduce']['data']['labeled_every']}"
                               ".txt"}
    warm = load_config("quick_supervised", sets)
    warm_sets = {**common, "trainer.iterations": int(warm["reproduce"]["warmup_iterations"])}
    warm = load_config("quick_supervised", [*sets, *(f"{k}={v}" for k, v in warm_sets.items())])
    validate(warm)
    _train(warm, runs / f"seed{seed}" / "warmup", version, log)
    out = {}
    for name in base["reproduce"]["settings"]:
        cfg = load_config(f"quick_{name}", [*sets, *(f"{k}={v}" for k, v in common.items()),
                                            f"net.init={runs / f'seed{seed}' / 'warmup'}"
                                            "/last.pt", "net.init_weights=student"])
        validate(cfg)
        out[name] = _train(cfg, runs / f"seed{seed}" / name, version, log)
    return out


def _summary(per_seed: dict, seeds: list[int], cfg: dict, wall: float, results: Path,
             vary: bool) -> None:
    from s5mars_ssl.constants import CLASSES
    from shared.results import write_summary
    from shared.stats import claim, describe

    settings = list(cfg["reproduce"]["settings"])
    rows, vals = [], {}
    for name in settings:
        vals[name] = [per_seed[s][name]["miou"] * 100 for s in seeds]
        what = "teacher" if name != "supervised" else "student"
        rows.append({"setting": LABELS.get(name, name), "metric": f"test mIoU (%), {what}",
                     "reported": None, "ours": describe(vals[name])})
        rows.append({"setting": LABELS.get(name, name),
                     "metric": "test mIoU (%), absent classes 0 (original's mean)",
                     "reported": None,
                     "ours": describe([per_seed[s][name]["miou_all"] * 100 for s in seeds])})
    claims = []
    for name in ("full", "mean_teacher"):
        if name in vals and "supervised" in vals:
            claims.append(claim(f"{LABELS[name]} > supervised", "test mIoU (%)", name,
                                vals[name], "supervised", vals["supervised"], "greater"))
    d = cfg["reproduce"]["data"]
    data = (f"synthetic S5Mars-layout scenes ({d['n_train']} train, 1/{d['labeled_every']} "
            f"labelled, {d['n_test']} test, {d['width']}x{d['height']}); data seed "
            + ("= run seed" if vary else "0 for every seed"))
    notes = ("Each seed: supervised warm-up of the student "
             f"({cfg['reproduce']['warmup_iterations']} iterations), then every setting "
             f"{cfg['trainer']['iterations']} iterations from that student (equal iterations); "
             "the semi runs evaluate the EMA teacher (decay 0 during the first epoch, as the "
             "original). Model: the exact 40.47M-parameter DeepLabv3+ ResNet-50c from scratch "
             "(no ImageNet weights offline); SAM-Mix objects from a felzenszwalb proposer in "
             "SAM's format. The paper gives no number in the seed text.")
    extra = {"seeds": seeds, "per_seed": {str(s): {n: {k: per_seed[s][n].get(k) for k in
                                                        ("miou", "miou_all", "per_class_iou",
                                                         "train_time_s")}
                                                    for n in settings} for s in seeds},
             "classes": list(CLASSES), "reported_source": cfg["reported"]["source"]}
    precision = "/".join(sorted({str(per_seed[s][n].get("precision", "fp32"))
                                 for s in seeds for n in settings}))
    write_summary(paper="s5mars_ssl", rows=rows, data=data, profile="quick", wall_time_s=wall,
                  results_dir=results, notes=notes, claims=claims, extra=extra,
                  precision=precision)


def _main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="s5mars-reproduce",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=3, help="number of seeds (0..N-1; default 3)")
    p.add_argument("--vary-data", "--data-seeds", dest="vary_data", action="store_true",
                   help="also vary the synthetic data: seed i uses data seed i")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a quick-profile value for every run (tests use tiny sizes)")
    p.add_argument("--data", type=Path, default=REPO_ROOT / "datasets/s5mars_ssl/reproduce",
                   help="dataset folder (default: datasets/s5mars_ssl/reproduce of the repository)")
    p.add_argument("--runs", type=Path, default=REPO_ROOT / "runs/s5mars_ssl/reproduce",
                   help="run folders (default: runs/s5mars_ssl/reproduce of the repository)")
    from shared.cli import finish_parser
    from shared.results import add_results_arguments

    add_results_arguments(p, "s5mars_ssl")
    args = finish_parser(p, set_example="trainer.iterations=4").parse_args(argv)
    from shared.errors import UserError

    if args.seeds < 1:
        raise UserError("--seeds must be at least 1")
    t0 = time.time()
    from s5mars_ssl.runtime import passive_openmp

    passive_openmp()
    import torch

    from s5mars_ssl.augseg.utils.config import PACKAGE_DIR, load_config
    from shared.atomic import atomic_write_text
    from shared.runs import code_version

    torch.set_num_threads(2)
    cfg = load_config("quick_full", args.sets)
    from shared.results import resolve_results

    results, runs = resolve_results(args, "s5mars_ssl"), args.runs
    results.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []

    def log(msg: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        print(line, flush=True)
        lines.append(line)

    version = code_version(PACKAGE_DIR)
    seeds = list(range(args.seeds))
    per_seed = {}
    for s in seeds:
        data = _data(cfg, args.data, s if args.vary_data else 0, log)
        t = time.time()
        per_seed[s] = run_seed(s, data, args.sets, runs / f"data{s if args.vary_data else 0}",
                               version, log)
        log(f"seed {s}: " + ", ".join(f"{n} {r['miou'] * 100:.2f}"
                                      for n, r in per_seed[s].items())
            + f" ({time.time() - t:.0f} s)")
    wall = time.time() - t0
    _summary(per_seed, seeds, cfg, wall, results, args.vary_data)
    import shutil

    for name in cfg["reproduce"]["settings"]:  # the first seed's learning curves
        curves = runs / f"data{seeds[0] if args.vary_data else 0}" / f"seed{seeds[0]}" / name / \
            "curves.png"
        if curves.is_file():
            shutil.copyfile(curves, results / f"curves_{name}.png")
    log(f"done in {wall / 60:.1f} min -> {results / 'summary.json'}")
    atomic_write_text(results / "reproduce_log.txt", "\n".join(lines) + "\n")
    from shared.results import relativize_paths

    relativize_paths(results)  # a record names no machine's absolute path
    return 0


def main(argv=None) -> int:
    from s5mars_ssl.runtime import passive_openmp
    from shared.cli import help_first
    from shared.runs import cli_main

    passive_openmp()
    if (rc := help_first(_main, argv)) is not None:
        return rc
    return cli_main(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
