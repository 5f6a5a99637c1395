"""Train the dune segmenter: fusion (SegFormer + Embed + Text) or the Embed-only baseline.

The recipe (reference ``train.py``): AdamW (lr 6e-5, weight decay 0.01), PolynomialLR (power 1)
stepped per epoch, cross-entropy with ignore index 255, batch 4, 50 epochs, keep the epoch with
the best validation mIoU (the reference's definition: absent classes count 0). Read it top to
bottom: ``build`` (data, model, optimiser, schedule), ``train_one_epoch``, ``evaluate``,
``save_state``/``load_state`` and ``run``, which calls them.

The run contract (``shared.runs``): ``--config paper|quick|FILE.yml`` (alias ``--profile``),
``--run-dir DIR`` (aliases ``--run_dir``, ``--save_dir``), ``--resume``, ``--overwrite``,
``--set key.sub=value``. The run folder holds ``config.yaml``, ``history.csv``, ``train.log``,
``last.pt`` (every epoch), ``best.pt`` and ``summary.json`` when finished. SIGINT/SIGTERM stop
after the current batch, leave ``last.pt`` at the last completed epoch and exit 130/143;
``--resume`` then gives the same weights and history as an uninterrupted run (each epoch reseeds
shuffling, augmentation and dropout from the seed and the epoch number). Runs unchanged under
``torchrun --nproc_per_node=N`` (a DistributedSampler splits the data, validation confusion
matrices are summed over ranks and only rank 0 writes).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.runs import default_threads, resolve_run_threads  # noqa: F401 (reproduce)

SHORTCUTS = {  # the reference's flags, kept as shortcuts for --set
    "data_root": ("data.root", str), "model": ("model.name", str),
    "text_embed_path": ("text.embed_path", str), "epochs": ("train.epochs", int),
    "batch_size": ("train.batch_size", int), "lr": ("train.lr", float),
    "weight_decay": ("train.weight_decay", float), "workers": ("train.workers", int),
    "seed": ("train.seed", int), "init": ("model.init", str),
}
# shortcuts that name a file or folder: shell paths, made absolute from the current folder
# (shared.configs.cli_path); a relative path in a config is taken from the repository root
PATH_SHORTCUTS = ("data_root", "text_embed_path", "init")


PAPER_PRECISION = "fp32"  # the reference trains without AMP (configs/paper.yml train.precision)

# the vocabulary's spelling of each shortcut (the reference's, with underscores, stays hidden)
SPELLING = {"data_root": "--data", "model": "--variant", "text_embed_path": "--text-embeds",
            "batch_size": "--batch-size", "weight_decay": "--weight-decay"}


def build_parser() -> argparse.ArgumentParser:
    from shared.cli import (
        add_precision_argument,
        add_progress_argument,
        finish_parser,
        hidden_alias,
    )
    from shared.runs import add_run_arguments, positive_int

    p = argparse.ArgumentParser(
        prog="dunes-train",
        description="Train the vision-language dune segmenter (fusion) or the Embed-only "
                    "SegFormer baseline on img_dir/ann_dir tiles.")
    add_run_arguments(p, "quick", run_dir_aliases=("--run_dir", "--save_dir"),
                      config_aliases=("--profile",))
    for name, (key, typ) in SHORTCUTS.items():
        kw = {"choices": ["fusion", "baseline"]} if name == "model" else {}
        flag = SPELLING.get(name, f"--{name}")
        p.add_argument(flag, dest=name, type=typ,
                       help=f"same as --set {key}=... (default: the config's)", **kw)
        if flag != f"--{name}":
            hidden_alias(p, f"--{name}", dest=name, type=typ, **kw)
    hidden_alias(p, "--data-root", dest="data_root", type=str)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps; a device "
                   "that is not there is an error")
    add_precision_argument(p, default=None)
    p.add_argument("--threads", type=positive_int, default=None,
                   help="torch CPU threads, kept in the run config (same as --set "
                        "train.threads=N; default: the config's, else $OMP_NUM_THREADS or 2)")
    add_progress_argument(p)
    return finish_parser(p, set_example="train.epochs=3")


def config_from_args(args) -> dict:
    from dune_vlm.utils.config import PROFILE_FILES, validate
    from shared.configs import cli_path
    from shared.runs import run_config

    sets = list(args.overrides)
    for name, (key, _) in SHORTCUTS.items():
        value = getattr(args, name)
        if value is not None:
            sets.append(f"{key}={cli_path(value) if name in PATH_SHORTCUTS else value}")
    if getattr(args, "precision", None) is not None:  # --precision (or the old --amp)
        sets.append(f"train.precision={args.precision}")
    if getattr(args, "threads", None) is not None:  # kept in the run config (issue 27)
        sets.append(f"train.threads={args.threads}")
    args.overrides = sets
    if args.config is None and not args.resume:
        args.config = args.default_config
    if args.config is not None:
        from dune_vlm.utils.config import load_run_config

        cfg = load_run_config(args.config, sets)
    else:
        cfg = validate(run_config(args, PROFILE_FILES), str(args.run_dir))
    text = cfg.get("text") or {}
    if (cfg["model"]["name"] == "fusion" and args.text_embed_path is None
            and text.get("embed_path") and text.get("minilm_path")
            and text["embed_path"] != text["minilm_path"]):  # the quick profile uses MiniLM
        from shared.configs import resolve_path

        if not resolve_path(text["embed_path"]).is_file():  # the authors' file is not here
            print(f"note: {text['embed_path']} (the authors' text embeddings) not found; using "
                  f"our MiniLM embeddings {text['minilm_path']} (pass --text-embeds PATH for "
                  "the authors' file)", file=sys.stderr)
            text["embed_path"] = text["minilm_path"]
    if args.text_embed_path is not None and cfg["model"]["name"] != "fusion":
        from shared.errors import UserError

        raise UserError(f"{args.text_embed_path}: the {cfg['model']['name']} model takes no "
                        "text; drop --text-embeds")
    return cfg


# --------------------------------------------------------------------------- recipe
@dataclass
class Job:
    """Everything one training run works with (made by ``build``)."""

    cfg: dict
    device: Any
    model: Any
    text: Any
    train_ds: Any
    val_ds: Any
    opt: Any
    sched: Any
    criterion: Any
    spec: dict
    rank: int = 0
    world: int = 1
    precision: Any = None  # shared.torch_runtime.Precision of train.precision


def model_spec(cfg: dict, text_dim: int) -> dict:
    m, d = cfg["model"], cfg["data"]
    arch = dict(m.get("fusion_arch") or {}) if m["name"] == "fusion" else {}
    return {"name": m["name"], "num_classes": int(d["num_classes"]), "text_dim": text_dim,
            "in_chans": int(d["in_chans"]), "arch": arch}


def build(cfg: dict, device, rank: int = 0, world: int = 1) -> Job:
    """Data, text embeddings, model (optionally initialised from ``model.init``), optimiser,
    schedule and loss of the recipe."""
    import torch

    from dune_vlm.checkpoint import load_model, load_text_embeds, model_from_spec
    from dune_vlm.utils.dataset import DuneDataset
    from shared.configs import resolve_path

    d, t = cfg["data"], cfg["train"]
    seed, n_cls = int(t["seed"]), int(d["num_classes"])
    root = resolve_path(d["root"])
    train_ds = DuneDataset(root, "train", n_cls, int(d["in_chans"]), augment=True, seed=seed)
    val_ds = DuneDataset(root, "val", n_cls, int(d["in_chans"]))
    text, text_dim = None, 512
    if cfg["model"]["name"] == "fusion":
        arr = load_text_embeds(resolve_path(cfg["text"]["embed_path"]), n_cls)
        text, text_dim = torch.from_numpy(arr).to(device), int(arr.shape[1])
    spec = model_spec(cfg, text_dim)
    torch.manual_seed(seed)  # initialisation
    model = model_from_spec(spec)
    if cfg["model"].get("init"):
        init = load_model(resolve_path(cfg["model"]["init"]))
        from dune_vlm.checkpoint import check_strict

        check_strict(model.state_dict(), init.state_dict(), cfg["model"]["init"],
                     "initial (model.init)")
        model.load_state_dict(init.state_dict())
    model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=float(t["lr"]),
                            weight_decay=float(t["weight_decay"]), foreach=True)
    sched = torch.optim.lr_scheduler.PolynomialLR(opt, total_iters=int(t["epochs"]),
                                                  power=float(t["poly_power"]))
    criterion = torch.nn.CrossEntropyLoss(ignore_index=int(d["ignore_index"]))
    from shared.torch_runtime import precision_for

    return Job(cfg, device, model, text, train_ds, val_ds, opt, sched, criterion, spec, rank,
               world, precision_for(t.get("precision", PAPER_PRECISION), device))


def _loader(job: Job, epoch: int):
    import torch
    from torch.utils.data import DataLoader
    from torch.utils.data.distributed import DistributedSampler

    from dune_vlm.evaluation import collate

    t = job.cfg["train"]
    seed, bs, workers = int(t["seed"]), int(t["batch_size"]), int(t["workers"])
    if job.world > 1:
        sampler = DistributedSampler(job.train_ds, shuffle=True, seed=seed)
        sampler.set_epoch(epoch)
        return DataLoader(job.train_ds, bs, sampler=sampler, num_workers=workers,
                          collate_fn=collate)
    gen = torch.Generator().manual_seed(seed * 1000 + epoch)
    return DataLoader(job.train_ds, bs, shuffle=True, generator=gen, num_workers=workers,
                      collate_fn=collate)


def train_one_epoch(job: Job, ddp_model, epoch: int, stop, progress: bool = False) -> dict:
    """One pass over the training tiles; returns loss and throughput, or ``None`` when a stop
    was requested (the epoch is then discarded and redone on resume)."""
    import torch
    from tqdm import tqdm

    seed = int(job.cfg["train"]["seed"])
    torch.manual_seed(seed * 1000 + epoch * 10 + job.rank)  # dropout of this epoch
    job.train_ds.set_epoch(epoch)
    scaler = job.precision.grad_scaler()  # scales only in fp16 (shared.torch_runtime)
    ddp_model.train()
    t0, loss_sum, seen = time.time(), 0.0, 0
    bar = tqdm(_loader(job, epoch), desc=f"epoch {epoch + 1}", unit="batch", leave=False,
               disable=not progress or job.rank != 0)
    for imgs, labels, _ in bar:
        imgs, labels = imgs.to(job.device), labels.to(job.device)
        with job.precision.autocast():
            loss = job.criterion(ddp_model(imgs, job.text).float(), labels)
        job.opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(job.opt)
        scaler.update()
        loss_sum += float(loss.detach()) * imgs.shape[0]
        seen += imgs.shape[0]
        bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
        if stop.requested:
            return None
    job.sched.step()
    return {"loss_sum": loss_sum, "seen": seen, "train_time": time.time() - t0}


def evaluate(job: Job) -> dict:
    """Validation metrics (confusion matrices summed over ranks under torchrun)."""
    from torch.utils.data.distributed import DistributedSampler

    from dune_vlm.evaluation import evaluate as eval_dataset

    t = job.cfg["train"]
    sampler = DistributedSampler(job.val_ds, shuffle=False) if job.world > 1 else None
    res = eval_dataset(job.model, job.val_ds, job.text, job.device, job.spec["num_classes"],
                       int(t["batch_size"]), int(t["workers"]),
                       precision=job.precision.name, sampler=sampler)
    metric = res["overall"]
    if job.world > 1:
        import torch
        import torch.distributed as dist

        cm = torch.as_tensor(metric.confusion)
        dist.all_reduce(cm)
        metric.confusion[:] = cm.numpy()
    return metric.compute()


def save_state(job: Job, run_dir: Path, epoch: int, best: float, history: list,
               improved: bool) -> None:
    """``last.pt`` (resumable) and, when ``improved``, ``best.pt`` (weights + spec + text)."""
    from dune_vlm.checkpoint import save_checkpoint

    payload = {"model": job.model.state_dict(), "optimizer": job.opt.state_dict(),
               "scheduler": job.sched.state_dict(), "epoch": epoch, "best_metric": best,
               "history": history, "model_spec": job.spec, "config": job.cfg}
    if job.text is not None:
        payload["text_embeds"] = job.text.detach().cpu()
    save_checkpoint(run_dir / "last.pt", payload)
    if improved:
        keep = ("model", "epoch", "best_metric", "model_spec", "config", "text_embeds")
        save_checkpoint(run_dir / "best.pt", {k: payload[k] for k in keep if k in payload})


def load_state(job: Job, run_dir: Path) -> tuple[int, float, list]:
    """(start epoch, best metric, history) from ``last.pt``; the schedule follows a possibly
    extended ``train.epochs``."""
    from dune_vlm.checkpoint import load_checkpoint

    ckpt = load_checkpoint(run_dir / "last.pt")
    job.model.load_state_dict(ckpt["model"])
    job.opt.load_state_dict(ckpt["optimizer"])
    job.sched.load_state_dict(ckpt["scheduler"])
    start = int(ckpt["epoch"])
    t = job.cfg["train"]
    job.sched.total_iters = int(t["epochs"])
    factor = (1.0 - min(start, job.sched.total_iters) / job.sched.total_iters) \
        ** float(t["poly_power"])
    for group, base in zip(job.opt.param_groups, job.sched.base_lrs):
        group["lr"] = base * factor
    return start, float(ckpt["best_metric"]), list(ckpt.get("history", []))


def _history_row(epoch, stats, m, job, t_epoch) -> dict:
    return {"epoch": epoch + 1, "train_loss": stats["loss_sum"] / max(stats["seen"], 1),
            "lr": job.opt.param_groups[0]["lr"], "val_OA": m["OA"], "val_mIoU": m["mIoU"],
            "val_mIoU_ref": m["mIoU_ref"], "val_kappa": m["kappa"],
            "epoch_time_s": round(time.time() - t_epoch, 2),
            "img_per_s": round(stats["seen"] / max(stats["train_time"], 1e-9), 2)}


def resolve_run_precision(cfg: dict, device: str = "cpu") -> dict:
    """A copy with ``train.precision`` resolved on ``device`` (auto -> bf16 where the CPU has
    native bf16, else fp32; a missing key is the paper profile's fp32; the old ``train.amp:
    true`` is bf16) and the CPU it resolved against under ``machine``: config.yaml records
    what ran, and a finished run is reused only on the same kind of CPU."""
    import copy

    from shared import torch_runtime

    cfg = copy.deepcopy(cfg)
    t = torch_runtime.fold_legacy_amp(cfg["train"], default=PAPER_PRECISION)
    t["precision"] = torch_runtime.resolve_precision(
        t["precision"], torch_runtime.pick_device(device).type)
    cfg["machine"] = torch_runtime.machine_record()
    return cfg


class _OtherRank:
    """The run folder as a rank > 0 under torchrun sees it: read (resume), never written."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def logger(self, name: str):
        import logging

        log = logging.getLogger(f"{name}.other_rank")
        log.propagate = False
        if not log.handlers:
            log.addHandler(logging.NullHandler())
        return log

    def write_history(self, rows) -> None:
        pass

    def write_summary(self, summary) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None


def run(cfg: dict, run_dir: str | os.PathLike, *, resume: bool = False, overwrite: bool = False,
        device: str = "cpu", threads: int | None = None, progress: bool = False) -> dict:
    """Train ``cfg`` (a validated config) in ``run_dir``; returns the run's summary."""
    import torch

    from shared.results import machine_info
    from shared.runs import GracefulStop, RunDir, code_version
    from shared.seed import seed_everything

    if not (resume and threads is None and "threads" not in cfg["train"]):
        cfg = resolve_run_threads(cfg, threads)  # (a run saved before train.threads: as it was)
    from shared import torch_runtime

    torch.set_num_threads(max(1, int(cfg["train"].get("threads") or default_threads())))
    dev, env = torch_runtime.setup(device)  # the device; under torchrun the process group
    rank, world = env.rank, env.world
    cfg = resolve_run_precision(cfg, device)
    from shared.configs import resolve_path

    if rank != 0:  # only rank 0 holds (locks, writes) the run folder; the others read it
        run = _OtherRank(run_dir)
    else:
        run, cfg = RunDir.open(run_dir, cfg, resume=resume, overwrite=overwrite,
                               allow_on_resume=("train.epochs", "machine"),
                               inputs=[resolve_path(cfg["data"]["root"]),
                                       resolve_path(cfg["text"]["embed_path"])])
    with run, GracefulStop() as stop:
        log = run.logger("dune_vlm.train")
        seed_everything(int(cfg["train"]["seed"]))
        job = build(cfg, dev, rank, world)
        n_params = sum(p.numel() for p in job.model.parameters())
        start, best, history = 0, -1.0, []
        if resume and (run.path / "last.pt").is_file():
            start, best, history = load_state(job, run.path)
            log.info(f"resumed {run.path} at epoch {start}")
        run.write_history(history)
        log.info(f"model {job.spec['name']}: {n_params:,} parameters; {len(job.train_ds)} "
                 f"train / {len(job.val_ds)} val tiles; device {dev}; precision "
                 f"{job.precision.name}; world size {world}")
        ddp = job.model if world == 1 else torch.nn.parallel.DistributedDataParallel(
            job.model, device_ids=[dev.index] if dev.type == "cuda" else None)
        key = cfg["train"]["select_metric"]
        for epoch in range(start, int(cfg["train"]["epochs"])):
            t_epoch = time.time()
            stats = train_one_epoch(job, ddp, epoch, stop, progress)
            if stats is None:
                log.info(f"stopped during epoch {epoch + 1}; last.pt holds epoch {epoch}")
                stop.raise_if_requested(run.path)
            m = evaluate(job)
            history.append(_history_row(epoch, stats, m, job, t_epoch))
            improved = m[key] > best
            best = max(best, m[key])
            if rank == 0:
                save_state(job, run.path, epoch + 1, best, history, improved)
                run.write_history(history)
                log.info(f"epoch {epoch + 1} loss {history[-1]['train_loss']:.4f} val OA "
                         f"{m['OA']:.4f} mIoU {m['mIoU']:.4f} (ref {m['mIoU_ref']:.4f}) "
                         f"kappa {m['kappa']:.4f}" + (" *best*" if improved else ""))
            stop.raise_if_requested(run.path)
        summary = {"run_dir": str(run.path), "model": job.spec["name"], "parameters": n_params,
                   "epochs": len(history), f"best_val_{key}": best,
                   "code_version": code_version(Path(__file__).resolve().parent),
                   "precision": job.precision.name, "machine": machine_info()}
        if rank == 0:
            run.write_summary(summary)
    torch_runtime.teardown()
    return summary


def _main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from shared.cli import progress_enabled
    from shared.errors import UserError

    cfg = config_from_args(args)
    if args.run_dir is None:
        raise UserError("--run-dir is required (e.g. --run-dir runs/dune_vlm/quick/fusion)")
    out = run(cfg, args.run_dir, resume=args.resume, overwrite=args.overwrite,
              device=args.device,
              progress=progress_enabled(args.no_progress))
    print(json.dumps(out))
    return 0


def main(argv=None) -> int:
    from shared.runs import cli_main

    return cli_main(_main, argv)


if __name__ == "__main__":
    if __package__ in (None, ""):
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main())
