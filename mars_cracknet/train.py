"""Train Mars-CrackNet (ResUNet) or the UNet baseline in one of the paper's training modes.

Modes (Figure 2 of the paper): ``mars`` (a, MIC only), ``earth_mars`` (b, MIC + EDC), ``semi``
(c: auto-encoder pre-training (``pretrain_data``: the MIC training crops as the original code
does, or unlabelled EDC images as the paper words it), transfer of all weights keeping the
first output channel of the final layer, then supervised fine-tuning; both stages in one run)
and ``earth`` (EDC only).

A validation split is carved from the labelled MIC training crops (``val_list`` or a seeded
``val_fraction``); ``best.safetensors`` is the epoch with the best validation Dice, and the
test set (``lists/mars_test.txt``) is evaluated once at the end, for that epoch and the last.

Examples::

    python -m mars_cracknet.train --config quick --mode mars --run-dir runs/a
    python -m mars_cracknet.train --mode semi --data /data/cracks --run-dir runs/c --precision bf16
    python -m mars_cracknet.train --run-dir runs/a --resume
    python -m mars_cracknet.train --config quick --run-dir runs/a2 --set init_weights=100.pth
    torchrun --nproc_per_node=2 -m mars_cracknet.train --config quick --run-dir runs/ddp

The run folder (the run contract of ``shared/runs.py``) holds config.yaml, history.csv,
train.log, last.safetensors + last.state.pt, best.safetensors (pretrain.safetensors for
``semi``), curves.png and summary.json. SIGINT/SIGTERM save ``last`` and exit 130/143.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.configs import REPO_ROOT

METRICS = ("precision", "recall", "dice", "jaccard")
ALLOW_ON_RESUME = ("epochs", "pretrain_epochs", "device", "precision", "num_workers", "machine")
# the named flags: shortcuts for --set key=value
FLAG_KEYS = ("mode", "model", "data", "epochs", "pretrain_epochs", "batch_size", "lr", "ratio",
             "crop_size", "seed", "device", "threads")


def build_parser() -> argparse.ArgumentParser:
    from shared.cli import add_precision_argument, finish_parser, hidden_alias
    from shared.runs import add_run_arguments, positive_int


    p = argparse.ArgumentParser(
        prog="cracknet-train",
        description="Train Mars-CrackNet (ResUNet) or UNet for crack segmentation.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("Examples::")[1])
    add_run_arguments(p, default_config="quick", config_aliases=("--profile",))
    p.add_argument("--mode", choices=["mars", "earth", "earth_mars", "semi"],
                   help="training scheme: (a) mars, (b) earth, earth_mars, (c) semi "
                   "(default: the config's mode)")
    p.add_argument("--arch", dest="model", choices=["resunet", "unet"],
                   help="network (default: the config's model, resunet)")
    hidden_alias(p, "--model", dest="model", choices=["resunet", "unet"])
    p.add_argument("--data", help="dataset root with imgs/, masks/, lists/ (default: the "
                   "config's data)")
    p.add_argument("--epochs", type=int, help="epochs (default: the config's)")
    p.add_argument("--pretrain-epochs", type=int, dest="pretrain_epochs",
                   help="auto-encoder epochs of mode semi (default: the config's)")
    p.add_argument("--batch-size", type=positive_int, dest="batch_size",
                   help="batch size (default: the config's)")
    p.add_argument("--lr", type=float, help="learning rate (default: the config's)")
    p.add_argument("--ratio", type=float, help="Dice weight w in (1-w)*BCE + w*Dice "
                   "(default: the config's)")
    p.add_argument("--crop-size", type=int, dest="crop_size",
                   help="random training crop side (default: the config's)")
    p.add_argument("--seed", type=int, help="random seed (default: the config's)")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:1 ... (default: the config's, auto)")
    add_precision_argument(p, default=None)
    p.add_argument("--threads", type=positive_int, default=None,
                   help="torch CPU threads (default: OMP_NUM_THREADS or 2)")
    return finish_parser(p, set_example="epochs=3")


# --------------------------------------------------------------------------- distributed
class Dist:
    """Rank/world information and the sums over ranks; a no-op stand-in when not launched by
    torchrun (device and process group: ``shared.torch_runtime.setup``)."""

    def __init__(self, device_pref: str = "auto"):
        from shared import torch_runtime

        self.device, env = torch_runtime.setup(device_pref)
        self.world, self.rank, self.enabled = env.world, env.rank, env.enabled

    @property
    def main(self) -> bool:
        return self.rank == 0

    def all_sum(self, values: list[float]) -> list[float]:
        if not self.enabled:
            return values
        import torch
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64,
                         device=self.device if self.device.type == "cuda" else "cpu")
        dist.all_reduce(t)
        return t.tolist()

    def close(self) -> None:
        if self.enabled:
            from shared import torch_runtime

            torch_runtime.teardown()


# --------------------------------------------------------------------------- data
def validation_stems(cfg: dict[str, Any]) -> list[str]:
    """The MIC training crops held out for validation (a listed file or a seeded share)."""
    import numpy as np

    from mars_cracknet.data.mars import DatasetError, read_list

    lists = Path(cfg["data"]) / "lists"
    train = read_list(lists / "mars_train.txt")
    if cfg["val_list"]:
        val = read_list(lists / f"{cfg['val_list']}.txt")
        unknown = sorted(set(val) - set(train))
        if unknown:
            raise DatasetError(f"{lists / cfg['val_list']}.txt: validation stems not in "
                               f"mars_train.txt: {', '.join(unknown[:5])}")
    else:
        n_val = max(1, round(len(train) * float(cfg["val_fraction"])))
        order = np.random.default_rng(int(cfg["val_seed"])).permutation(len(train))
        val = [train[i] for i in sorted(order[:n_val])]
    if len(val) >= len(train):
        raise DatasetError(f"{lists / 'mars_train.txt'}: the validation split would take all "
                           f"{len(train)} training crops; lower val_fraction")
    return val


def stage_plan(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """The stages of a run: [pre-training (semi only)], supervised training."""
    sup = {"name": "train", "data": cfg["mode"], "classes": 1, "epochs": int(cfg["epochs"]),
           "lr": float(cfg["lr"]), "ratio": float(cfg["ratio"])}
    if cfg["mode"] != "semi":
        return [sup]
    pre = {"name": "pretrain", "data": f"ae_{cfg['pretrain_data']}", "classes": 3,
           "epochs": int(cfg["pretrain_epochs"]), "lr": float(cfg["pretrain_lr"]),
           "ratio": float(cfg["pretrain_ratio"])}
    return [pre, {**sup, "data": cfg["finetune_mode"]}]


def build_datasets(cfg: dict[str, Any], stage: dict[str, Any]):
    """(training set without the validation crops, validation set, test set)."""
    from mars_cracknet.data.mars import CrackDataset

    val = validation_stems(cfg)
    train = CrackDataset.for_mode(cfg["data"], stage["data"], crop_size=cfg["crop_size"],
                                  train=True, seed=int(cfg["seed"]),
                                  interpolation=cfg["interpolation"],
                                  exclude={"mars_train": set(val)})
    val_set = CrackDataset(cfg["data"], ["mars_train"], only={"mars_train": set(val)})
    test = CrackDataset.for_mode(cfg["data"], "test")
    return train, val_set, test


# --------------------------------------------------------------------------- the recipe
@dataclass
class Recipe:
    """Everything one training stage needs."""

    cfg: dict[str, Any]
    stage: dict[str, Any]
    dist: Dist
    model: Any
    optimizer: Any
    criterion: Any
    train_set: Any
    val_set: Any
    test_set: Any
    sampler: Any
    precision: Any = None  # shared.torch_runtime.Precision: the autocast and scaler rule
    scaler: Any = None
    ddp: Any = None  # the DistributedDataParallel wrapper under torchrun
    progress: Any = None


@dataclass
class Progress:
    """What a resumed run needs besides weights and optimizer: position, losses, history."""

    stage: str
    epoch: int = 0
    step: int = 0
    loss_sum: float = 0.0
    loss_n: int = 0
    best: float = -math.inf
    best_epoch: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)
    prior: list[dict[str, Any]] = field(default_factory=list)  # rows of earlier stages


def build(cfg: dict[str, Any], stage: dict[str, Any], dist: Dist) -> Recipe:
    """Data, model, optimiser and loss of one stage (model initialised from ``seed``)."""
    import torch
    from torch.utils.data.distributed import DistributedSampler

    from mars_cracknet.models import build_model
    from mars_cracknet.utils.loss import build_loss
    from shared.runs import derive_seed
    from shared.seed import seed_everything
    from shared.torch_runtime import precision_for

    seed = int(cfg["seed"])
    seed_everything(derive_seed(seed, stage["name"]), deterministic=bool(cfg["deterministic"]))
    train_set, val_set, test_set = build_datasets(cfg, stage)
    model = build_model(cfg["model"], num_classes=stage["classes"],
                        width=int(cfg["width"])).to(dist.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=stage["lr"],
                                 weight_decay=cfg["weight_decay"])
    sampler = DistributedSampler(train_set, num_replicas=dist.world, rank=dist.rank,
                                 shuffle=True, seed=seed, drop_last=False)
    recipe = Recipe(cfg, stage, dist, model, optimizer, build_loss(cfg["loss"], stage["ratio"]),
                    train_set, val_set, test_set, sampler,
                    precision=precision_for(cfg["precision"], dist.device))
    recipe.scaler = recipe.precision.grad_scaler()  # scales only in fp16
    return recipe


class _Indices:
    """A sampler over a fixed list of indices (one epoch's share, minus steps already done)."""

    def __init__(self, indices: list[int]):
        self.indices = indices

    def __iter__(self):
        return iter(self.indices)

    def __len__(self):
        return len(self.indices)


def _step(r: Recipe, x, y) -> float:
    r.optimizer.zero_grad(set_to_none=True)
    with r.precision.autocast():
        logits = (r.ddp or r.model)(x)
    loss = r.criterion(logits.float(), y)
    r.scaler.scale(loss).backward()  # plain backward/step unless fp16
    r.scaler.step(r.optimizer)
    r.scaler.update()
    return float(loss.detach())


def train_one_epoch(r: Recipe, prog: Progress, stop) -> bool:
    """Train epoch ``prog.epoch`` from step ``prog.step``; False when a stop was requested."""
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    bs = int(r.cfg["batch_size"])
    r.sampler.set_epoch(prog.epoch)
    r.train_set.set_epoch(prog.epoch)
    loader = DataLoader(r.train_set, batch_size=bs,
                        sampler=_Indices(list(r.sampler)[prog.step * bs:]),
                        num_workers=int(r.cfg["num_workers"]), drop_last=False)
    r.model.train()
    t0, seen = time.perf_counter(), 0
    from shared.cli import progress_enabled  # bars only on a terminal (not make, CI)

    bar = tqdm(loader, desc=f"{r.stage['name']} {prog.epoch + 1}/{r.stage['epochs']}",
               disable=not (r.dist.main and progress_enabled()), leave=False,
               dynamic_ncols=True, mininterval=1.0)
    for x, y in bar:
        x, y = x.to(r.dist.device), y.to(r.dist.device)
        loss = _step(r, x, y)
        prog.step += 1
        seen += x.shape[0]
        prog.loss_sum += loss * x.shape[0]
        prog.loss_n += x.shape[0]
        bar.set_postfix(loss=f"{prog.loss_sum / max(prog.loss_n, 1):.4f}",
                        img_s=f"{seen / max(time.perf_counter() - t0, 1e-9):.2f}")
        flag = 1.0 if stop is not None and stop.requested else 0.0
        if r.dist.all_sum([flag])[0] > 0:
            bar.close()
            return False
    bar.close()
    return True


def evaluate(model, dataset, dist: Dist, threshold: float = 0.5, precision: str = "fp32"
             ) -> dict[str, Any]:
    """Per-image precision, recall, Dice, Jaccard on full images, averaged (over all ranks)."""
    import torch

    from mars_cracknet.inference import predict_tensor
    from mars_cracknet.utils.metrics import image_scores

    model.eval()
    sums = [0.0] * (len(METRICS) + 1)
    per_image = []
    with torch.no_grad():
        for i in range(dist.rank, len(dataset), dist.world):
            x, y = dataset[i]
            prob = predict_tensor(model, x[None].to(dist.device), precision)[0, 0].cpu().numpy()
            s = image_scores(prob > threshold, y[0].numpy() > 0.5)
            per_image.append({"image": dataset.items[i][0], **s})
            for k, m in enumerate(METRICS):
                sums[k] += s[m]
            sums[-1] += 1
    sums = dist.all_sum(sums)
    n = max(sums[-1], 1)
    return {"n_images": int(sums[-1]), **{m: sums[k] / n for k, m in enumerate(METRICS)},
            "per_image": per_image}


# --------------------------------------------------------------------------- state
LAST_FILES = ("last.safetensors", "last.state.pt")


def save_state(run_dir: Path, r: Recipe, prog: Progress) -> None:
    """``last.safetensors`` (weights) and ``last.state.pt`` (optimizer, progress, RNG)."""
    import dataclasses

    import torch

    from mars_cracknet.checkpoint import save_state as _save
    from mars_cracknet.checkpoint import save_weights
    from shared.atomic import atomic_files

    if not r.dist.main:
        return
    # one unit: a kill between the two files leaves the previous checkpoint (issue 27)
    with atomic_files(run_dir, "last", list(LAST_FILES)) as tmp:
        save_weights(tmp["last.safetensors"], r.model, r.cfg["model"])
        _save(tmp["last.state.pt"], {"optimizer": r.optimizer.state_dict(),
                                     "progress": dataclasses.asdict(prog),
                                     "torch_rng": torch.get_rng_state()})


def load_state(run_dir: Path, r: Recipe) -> Progress | None:
    """The saved progress of this stage (weights and optimizer restored), or None."""
    import torch

    from mars_cracknet.checkpoint import load_state as _load
    from mars_cracknet.checkpoint import load_weights
    from shared.atomic import checked_files

    checked_files(run_dir, "last", list(LAST_FILES))
    path = run_dir / "last.state.pt"
    if not path.is_file():
        return None
    state = _load(path)
    prog = Progress(**state["progress"])
    if prog.stage != r.stage["name"]:
        return None
    load_weights(run_dir / "last.safetensors", r.model, r.cfg["model"])
    r.optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    return prog


def saved_stage(run_dir: Path) -> str | None:
    from mars_cracknet.checkpoint import load_state as _load
    from shared.atomic import checked_files

    checked_files(run_dir, "last", list(LAST_FILES))
    path = run_dir / "last.state.pt"
    return _load(path)["progress"]["stage"] if path.is_file() else None


# --------------------------------------------------------------------------- one stage
def end_of_epoch(r: Recipe, prog: Progress, run_dir: Path, log) -> None:
    """History row, validation, best/last checkpoints of the epoch just finished."""
    from mars_cracknet.checkpoint import save_weights

    ls, ln = r.dist.all_sum([prog.loss_sum, float(prog.loss_n)])
    prog.epoch += 1
    row: dict[str, Any] = {"stage": r.stage["name"], "epoch": prog.epoch,
                           "train_loss": ls / max(ln, 1), "lr": r.optimizer.param_groups[0]["lr"]}
    supervised = r.stage["classes"] == 1
    if supervised and (prog.epoch % int(r.cfg["eval_every"]) == 0
                       or prog.epoch == r.stage["epochs"]):
        ev = evaluate(r.model, r.val_set, r.dist, float(r.cfg["threshold"]), r.precision.name)
        row.update({f"val_{m}": ev[m] for m in METRICS})
        if ev["dice"] > prog.best:
            prog.best, prog.best_epoch = ev["dice"], prog.epoch
            if r.dist.main:
                save_weights(run_dir / "best.safetensors", r.model, r.cfg["model"])
    prog.rows.append(row)
    prog.step, prog.loss_sum, prog.loss_n = 0, 0.0, 0
    save_state(run_dir, r, prog)
    log(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                 for k, v in row.items()))


def train_stage(cfg: dict[str, Any], stage: dict[str, Any], run_dir: Path, dist: Dist,
                rows_before: list, stop, log, init: Path | None = None) -> Recipe:
    """Build, resume or initialise, and train one stage to its last epoch."""
    from mars_cracknet.checkpoint import init_from
    from shared.runs import RunInterrupted

    r = build(cfg, stage, dist)
    prog = load_state(run_dir, r)
    if prog is None:
        prog = Progress(stage=stage["name"], prior=list(rows_before))
        if init is not None:
            fmt = init_from(init, r.model)
            log(f"[{stage['name']}] initialised from {init} ({fmt})")
    if dist.enabled:
        import torch

        r.ddp = torch.nn.parallel.DistributedDataParallel(
            r.model, device_ids=[dist.device.index] if dist.device.type == "cuda" else None)
    while prog.epoch < stage["epochs"]:
        t0 = time.perf_counter()
        if not train_one_epoch(r, prog, stop):
            save_state(run_dir, r, prog)
            raise RunInterrupted(stop.signum, run_dir)
        end_of_epoch(r, prog, run_dir, log)
        log(f"[{stage['name']}] epoch {prog.epoch} took {time.perf_counter() - t0:.1f} s")
        write_history(run_dir, dist, prog.prior + prog.rows)
    r.progress = prog
    return r


def write_history(run_dir: Path, dist: Dist, rows: list[dict[str, Any]]) -> None:
    from shared.runs import RunDir

    if dist.main:
        RunDir(run_dir).write_history(rows)
        plot_curves(rows, run_dir / "curves.png", run_dir.name)


def plot_curves(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    """Training loss and validation scores per epoch (one plotter for runs and reproduce;
    drawn by ``shared.figures.plot_curves``)."""
    from shared.figures import plot_curves as draw

    loss = []
    for stage in dict.fromkeys(r["stage"] for r in rows):
        part = [r for r in rows if r["stage"] == stage]
        loss.append({"x": [r["epoch"] for r in part], "y": [r["train_loss"] for r in part],
                     "label": stage})
    scores = []
    for m in METRICS:
        pts = [(r["epoch"], r[f"val_{m}"]) for r in rows if r.get(f"val_{m}") is not None]
        if pts:
            scores.append({"x": [e for e, _ in pts], "y": [v for _, v in pts], "label": m})
    draw(path, [{"lines": loss, "ylabel": "training loss", "legend": "stage"},
                {"lines": scores, "ylabel": "validation score (threshold 0.5)", "ylim": (0, 1)}],
         title=f"Mars-CrackNet learning curves: {title}", legend_size=10)


# --------------------------------------------------------------------------- run
def test_report(r: Recipe, run_dir: Path) -> dict[str, Any]:
    """The test set evaluated once, for the selected (best validation) and the last epoch."""
    from mars_cracknet.checkpoint import load_weights

    thr, precision = float(r.cfg["threshold"]), r.precision.name
    last = evaluate(r.model, r.test_set, r.dist, thr, precision)
    load_weights(run_dir / "best.safetensors", r.model, r.cfg["model"])
    selected = evaluate(r.model, r.test_set, r.dist, thr, precision)
    best_row = next(x for x in r.progress.rows if x["epoch"] == r.progress.best_epoch
                    and x["stage"] == r.stage["name"])
    keys = ("n_images", *METRICS)
    return {"selected_epoch": r.progress.best_epoch,
            "val_selected": {m: best_row[f"val_{m}"] for m in METRICS},
            "test_selected": {k: selected[k] for k in keys},
            "test_last": {k: last[k] for k in keys},
            "per_image_selected": selected["per_image"], "per_image_last": last["per_image"]}


def resolve_run_precision(cfg: dict[str, Any], device: Any = None) -> dict[str, Any]:
    """A copy with ``precision`` resolved on ``device`` (default: the config's ``device``;
    auto -> bf16 where the CPU has native bf16, else fp32; the old ``amp: true`` is bf16) and
    the CPU it resolved against under ``machine``: config.yaml records what ran, and a
    finished run is reused only on the same kind of CPU."""
    import copy

    from shared import torch_runtime

    cfg = copy.deepcopy(cfg)
    torch_runtime.fold_legacy_amp(cfg)
    kind = (device if device is not None
            else torch_runtime.pick_device(str(cfg.get("device") or "auto")))
    cfg["precision"] = torch_runtime.resolve_precision(cfg["precision"], kind)
    cfg["machine"] = torch_runtime.machine_record()
    return cfg


def _open_run_dir(cfg, run_dir: Path, resume: bool, overwrite: bool, dist: Dist):
    from shared.runs import RunDir

    if not dist.main:
        return None, cfg
    return RunDir.open(run_dir, cfg, resume=resume, overwrite=overwrite,
                       allow_on_resume=ALLOW_ON_RESUME,
                       inputs=[cfg["data"], cfg.get("init_weights")])


def run(cfg: dict[str, Any], run_dir: str | Path, *, resume: bool = False,
        overwrite: bool = False, stop=None, dist: Dist | None = None) -> dict[str, Any]:
    """Train according to ``cfg`` into ``run_dir``; returns the summary (summary.json)."""
    from mars_cracknet.config import validate
    from shared.results import machine_info
    from shared.runs import GracefulStop, code_version

    cfg, run_dir, t0 = validate(cfg), Path(run_dir), time.perf_counter()
    plan = stage_plan(cfg)
    for stage in plan:  # every data problem surfaces before the run folder is touched
        build_datasets(cfg, stage)
    own_dist = dist is None
    dist = dist or Dist(str(cfg["device"]))
    cfg = resolve_run_precision(cfg, dist.device)
    rd, cfg = _open_run_dir(cfg, run_dir, resume, overwrite, dist)
    try:
        log = rd.logger("mars_cracknet").info if rd is not None else (lambda msg: None)
        log(f"run {run_dir} ({'resumed' if resume else 'new'}), device {dist.device}, "
            f"precision {cfg['precision']}")
        with GracefulStop() as graceful:
            stop = stop or graceful
            rows, init = [], cfg["init_weights"]
            skip_pretrain = len(plan) == 2 and saved_stage(run_dir) == "train"
            for k, stage in enumerate(plan):
                if k == 0 and skip_pretrain:  # resumed in fine-tuning: its state has the rest
                    continue
                r = train_stage(cfg, stage, run_dir, dist, rows, stop, log, init)
                if stage["name"] == "pretrain":
                    rows, init = list(r.progress.rows), run_dir / "pretrain.safetensors"
                    if dist.main:
                        from mars_cracknet.checkpoint import save_weights

                        save_weights(init, r.model, cfg["model"])
        summary = {"mode": cfg["mode"], "model": cfg["model"], "epochs": int(cfg["epochs"]),
                   "parameters": sum(p.numel() for p in r.model.parameters()),
                   "code_version": code_version(Path(__file__).parent),
                   **test_report(r, run_dir), "wall_time_s": round(time.perf_counter() - t0, 1),
                   "precision": r.precision.name, "machine": machine_info()}
        if rd is not None:
            rd.write_summary(summary)
            t = summary["test_selected"]
            log(f"selected epoch {summary['selected_epoch']} (validation Dice "
                f"{summary['val_selected']['dice']:.4f}); test " +
                " ".join(f"{m} {t[m]:.4f}" for m in METRICS))
        return summary
    finally:
        if rd is not None:
            rd.close()
        if own_dist:
            dist.close()


# --------------------------------------------------------------------------- CLI
def config_from_args(args: argparse.Namespace) -> tuple[dict[str, Any], Path]:
    """Resolved config and run folder from the contract's flags and the named shortcuts."""
    from mars_cracknet.config import PROFILES
    from shared.configs import cli_path
    from shared.runs import run_config

    cfg = run_config(args, PROFILES)
    for key in FLAG_KEYS:
        if getattr(args, key, None) is not None:
            cfg[key] = getattr(args, key)
    if getattr(args, "precision", None) is not None:  # --precision (or the old --amp)
        cfg["precision"], cfg["amp"] = args.precision, None
    if getattr(args, "data", None) is not None:  # a shell path, from the current folder
        cfg["data"] = cli_path(args.data)
    run_dir = args.run_dir or REPO_ROOT / "runs" / "mars_cracknet" / f"{cfg['model']}_{cfg['mode']}"
    return cfg, run_dir


def _main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    cfg, run_dir = config_from_args(args)
    default_threads = max(1, int(os.environ.get("OMP_NUM_THREADS", "2") or 2))
    if cfg.get("threads") is None and not args.resume:
        # kept in the run config (issue 27): the thread count changes the last digits of the
        # weights, so a resume must run with the same count (a different --threads is refused)
        cfg["threads"] = default_threads
    torch.set_num_threads(int(cfg.get("threads") or default_threads))
    summary = run(cfg, run_dir, resume=args.resume, overwrite=args.overwrite)
    t = summary["test_selected"]
    print(f"[{run_dir.name}] selected epoch {summary['selected_epoch']}: test " +
          " ".join(f"{m} {t[m]:.4f}" for m in METRICS) + f" -> {run_dir}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from shared.cli import help_first

    if (rc := help_first(_main, argv)) is not None:
        return rc
    from shared.runs import cli_main

    return cli_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
