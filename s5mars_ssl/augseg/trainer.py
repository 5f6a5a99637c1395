"""The training recipe shared by ``train_supervised.py``, ``train_semi.py`` and ``reproduce.py``.

Read top to bottom: :func:`build` (data, model, optimiser, schedule), :func:`train_step` (one
supervised or mean-teacher step), :func:`train_one_epoch`, :func:`evaluate_job`,
:func:`save_state` / :func:`load_state`, and :func:`run`, which applies the run contract
(``shared.runs.RunDir``: refused reuse, lock, ``config.yaml``, ``history.csv``, ``train.log``,
``last.pt`` / ``best.pt``, ``summary.json``; ``GracefulStop``: SIGINT/SIGTERM save a resumable
checkpoint and raise ``RunInterrupted``).

Semi-supervised (mean teacher): the EMA teacher labels the weak view of unlabelled crops (images
of the labelled split keep their ground truth, confidence 1; every other image is label-free);
the student sees the strong view (weak + AugIN + SAM-Mix, each switchable) and learns from hard
pseudo-labels and, with soft-to-hard on, from the teacher's soft distribution. The teacher is
evaluated.

Resume equals an uninterrupted run: every random draw is a function of the seed and the
position (epoch order: ``derive_seed(seed, stream, epoch)``; augmentation of a sample:
``(seed, stream, epoch, index)``; AugIN and SAM-Mix: ``(seed, name, iteration)``), so a resumed
run only needs the weights, the optimiser and the iteration.
"""

from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from s5mars_ssl.augseg.dataset.augin import augin
from s5mars_ssl.augseg.dataset.mars import build_datasets, resolve_normalization
from s5mars_ssl.augseg.dataset.sam_mix import choose_paste_masks, sam_mix
from s5mars_ssl.augseg.models import DeepLabV3Plus, load_pretrained_encoder
from s5mars_ssl.augseg.utils.config import PACKAGE_DIR
from s5mars_ssl.augseg.utils.ema import ema_update
from s5mars_ssl.augseg.utils.loss_helper import OhemCrossEntropy, unsupervised_loss
from s5mars_ssl.augseg.utils.lr_helper import build_optimizer, poly_lr, set_lr
from s5mars_ssl.augseg.utils.metrics import evaluate
from s5mars_ssl.constants import CLASSES, IGNORE_INDEX
from shared import torch_runtime
from shared.atomic import atomic_path
from shared.configs import resolve_path
from shared.errors import UserError
from shared.runs import GracefulStop, RunDir, code_version, derive_seed

MODES = ("supervised", "semi")
CKPT_FORMAT = "s5mars_ssl/1"
PAPER_PRECISION = "fp32"  # the original trains without AMP (exps/s5mars: trainer.precision)


@dataclass
class Job:
    """Everything :func:`build` makes; the training state lives in the modules and ``it``."""

    cfg: dict
    mode: str
    dev: torch.device
    seed: int
    lab_ds: Any
    unl_ds: Any
    val_ds: Any
    student: torch.nn.Module
    teacher: torch.nn.Module | None
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    sup_crit: torch.nn.Module
    per_epoch: int
    total: int
    lr_stop: int | None
    rank: int = 0
    world: int = 1
    precision: Any = None  # shared.torch_runtime.Precision: the autocast and scaler rule
    it: int = 0
    scaler: Any = None
    history: list = field(default_factory=list)
    acc: dict = field(default_factory=dict)
    best: float = -1.0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def semi(self) -> dict:
        return self.cfg.get("semi", {}) if self.mode == "semi" else {}


# --------------------------------------------------------------------------- build
def prepare_config(cfg: dict, device: str = "auto") -> dict:
    """A copy with the data root resolved, ``auto`` normalisation measured and
    ``trainer.precision`` resolved on ``device`` (a missing key is the paper profile's fp32;
    the old ``amp: true`` is bf16) with the CPU it resolved against in ``machine``, so that
    the saved ``config.yaml`` holds the values the run used."""
    cfg = copy.deepcopy(cfg)
    if cfg.get("mode") not in MODES:
        raise UserError(f"config: mode must be one of {MODES}, got {cfg.get('mode')!r}")
    t = torch_runtime.fold_legacy_amp(cfg.setdefault("trainer", {}), default=PAPER_PRECISION)
    kind = torch_runtime.pick_device(device).type
    t["precision"] = torch_runtime.resolve_precision(t["precision"], kind)
    cfg["machine"] = torch_runtime.machine_record()
    cfg["dataset"]["root"] = str(resolve_path(cfg["dataset"]["root"]))
    resolve_normalization(cfg)
    return cfg


def _build_model(cfg: dict, dev: torch.device, distributed: bool, main: bool):
    n_cls = int(cfg["net"].get("num_classes", len(CLASSES)))
    student = DeepLabV3Plus(n_cls)
    if cfg["net"].get("pretrained"):
        load_pretrained_encoder(student, resolve_path(cfg["net"]["pretrained"]), verbose=main)
    if cfg["net"].get("init"):
        from s5mars_ssl.checkpoint import read_weights

        student.load_state_dict(read_weights(resolve_path(cfg["net"]["init"]),
                                             cfg["net"].get("init_weights", "teacher"))[0])
    if distributed and dev.type == "cuda" and cfg["net"].get("sync_bn", "auto") in (True, "auto"):
        student = torch.nn.SyncBatchNorm.convert_sync_batchnorm(student)
    return student.to(dev)


def build(cfg: dict, device: str = "auto") -> Job:
    """Data, model (student, EMA teacher), optimiser, loss and schedule of a prepared config
    (``shared.torch_runtime``: the device, the process group under torchrun, and
    ``trainer.precision``)."""
    dev, env = torch_runtime.setup(device)
    distributed, rank, world, local_rank = env.enabled, env.rank, env.world, env.local_rank
    precision = torch_runtime.precision_for(cfg["trainer"].get("precision", PAPER_PRECISION),
                                            dev)
    mode, seed, t = cfg["mode"], int(cfg.get("seed", 0)), cfg["trainer"]
    if dev.type == "cpu" and int(cfg.get("threads", 0)) > 0:
        torch.set_num_threads(int(cfg["threads"]))
    torch.set_flush_denormal(True)  # denormal floats make CPU convolutions many times slower
    torch.manual_seed(seed)
    use_sam = mode == "semi" and cfg["semi"]["sammix"].get("enabled", False)
    lab_ds, unl_ds, val_ds = build_datasets(cfg, with_sam=use_sam, seed=seed)
    bl, bu = int(t["batch_labeled"]), int(t.get("batch_unlabeled") or t["batch_labeled"])
    if mode == "supervised" and bl < 2:
        raise UserError("trainer.batch_labeled must be at least 2 for supervised training "
                        "(BatchNorm in the ASPP image-pooling branch needs 2 samples)")
    per_epoch = len(lab_ds) // (bl * world)
    if mode == "semi":
        per_epoch = min(per_epoch, len(unl_ds) // (bu * world))
    if per_epoch < 1:
        raise UserError(f"{cfg['dataset']['root']}: too few training samples for one batch "
                        f"of {bl} labelled / {bu} unlabelled")
    total = int(t["iterations"]) if t.get("iterations") else int(t["epochs"]) * per_epoch
    stop_epoch = t.get("poly_stop_epoch")
    lr_stop = int(stop_epoch) * per_epoch if stop_epoch is not None else None
    student = _build_model(cfg, dev, distributed, rank == 0)
    teacher = None
    if mode == "semi":
        teacher = copy.deepcopy(student).to(dev)
        for p in teacher.parameters():
            p.requires_grad_(False)
    model = student
    if distributed:
        model = torch.nn.parallel.DistributedDataParallel(
            student, device_ids=[local_rank] if dev.type == "cuda" else None)
    c = cfg.get("criterion", {})
    if c.get("ohem", {}).get("enabled", True):
        sup_crit = OhemCrossEntropy(c["ohem"].get("thresh", 0.7),
                                    c["ohem"].get("min_kept", 100000), IGNORE_INDEX)
    else:
        sup_crit = torch.nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX)
    return Job(cfg, mode, dev, seed, lab_ds, unl_ds, val_ds, student, teacher, model,
               build_optimizer(student, t), sup_crit, per_epoch, total, lr_stop, rank, world,
               precision, scaler=precision.grad_scaler())


# --------------------------------------------------------------------------- data order
def _epoch_batches(n: int, batch: int, seed: int, stream: str, epoch: int, rank: int,
                   world: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(derive_seed(seed, stream, epoch))
    order = torch.randperm(n, generator=g).tolist()[rank::world]
    return [order[i:i + batch] for i in range(0, len(order) - batch + 1, batch)]


def _loader(ds, batches, workers: int):
    return iter(DataLoader(ds, batch_sampler=batches, num_workers=workers))


# --------------------------------------------------------------------------- one step
def _teacher_predict(teacher, x):
    with torch.no_grad():
        prob = F.softmax(teacher(x).float(), dim=1)
    conf, pred = prob.max(dim=1)
    return pred, conf, prob


def _unlabelled_targets(job: Job, ub: dict):
    """Teacher pseudo-labels on the weak view; labelled-split images keep their ground truth
    with confidence 1 (every other image's label is all 255 by construction)."""
    weak = ub["image"].to(job.dev)
    pred, conf, prob = _teacher_predict(job.teacher, weak)
    gt = ub["label"].to(job.dev)
    has = gt != IGNORE_INDEX
    n_cls = prob.shape[1]
    pred = torch.where(has, gt, pred)
    conf = torch.where(has, torch.ones_like(conf), conf)
    onehot = F.one_hot(gt.clamp(max=n_cls - 1), n_cls).permute(0, 3, 1, 2).to(prob.dtype)
    prob = torch.where(has.unsqueeze(1), onehot, prob)
    return weak, pred, conf, prob, ub["valid"].to(job.dev)


def _strong_view(job: Job, lb: dict, img_l, lbl_l, weak, pred, conf, prob, valid):
    """AugIN, then SAM-Mix (object paste + CutMix box); returns the mixed tensors and stats."""
    s_augin, s_mix = job.semi.get("augin", {}), job.semi.get("sammix", {})
    strong, n_none = weak.clone(), 0
    if s_augin.get("enabled", False):
        g = torch.Generator().manual_seed(derive_seed(job.seed, "augin", job.it))
        strong = augin(strong, s_augin.get("mode", "both"),
                       prob=float(s_augin.get("prob", 1.0)), generator=g)
    if s_mix.get("enabled", False):
        pred_l, conf_l, prob_l = _teacher_predict(job.teacher, img_l)
        rng = np.random.default_rng(derive_seed(job.seed, "sammix", job.it))
        ch = choose_paste_masks(lb["objects"].to(job.dev), lb["n_objects"], weak.shape[0],
                                int(s_mix.get("min_mask_px", 100)),
                                float(s_mix.get("flip_prob", 0.5)), float(s_mix.get("beta", 4.0)),
                                rng)
        strong, pred, conf, prob = sam_mix(strong, pred, conf, prob, img_l, lbl_l, pred_l,
                                           conf_l, prob_l, ch["src"], ch["masks"], ch["flips"],
                                           IGNORE_INDEX, ch["boxes"], ch["box_src"])
        lab_valid = lb["valid"].to(job.dev)
        obj_valid = torch.stack([lab_valid[j].flip(-1) if f else lab_valid[j]
                                 for j, f in zip(ch["src"], ch["flips"])])
        new_valid = torch.where(ch["masks"], obj_valid, valid)
        valid = torch.where(ch["boxes"], valid[ch["box_src"]], new_valid)
        n_none = sum(ch["no_object"])
    return strong, pred, conf, prob, valid, n_none


def train_step(job: Job, lb: dict, ub: dict | None) -> dict:
    """One optimiser step (and EMA update); returns the step's record."""
    t = job.cfg["trainer"]
    lr = poly_lr(t["lr"], job.it, job.total, t.get("poly_power", 0.9), job.lr_stop)
    set_lr(job.optimizer, lr)
    img_l, lbl_l = lb["image"].to(job.dev), lb["label"].to(job.dev)
    rec = {"iter": job.it + 1, "lr": lr}
    with job.precision.autocast():
        if job.mode == "supervised":
            loss = sup = job.sup_crit(job.model(img_l), lbl_l)
        else:
            weak, pred, conf, prob, valid = _unlabelled_targets(job, ub)
            strong, pred, conf, prob, valid, n_none = _strong_view(
                job, lb, img_l, lbl_l, weak, pred, conf, prob, valid)
            logits = job.model(torch.cat([img_l, strong]))
            sup = job.sup_crit(logits[:img_l.shape[0]], lbl_l)
            hard, soft, st = unsupervised_loss(logits[img_l.shape[0]:], pred, conf, prob, valid,
                                               job.semi)
            w = float(job.semi.get("unsup_weight", 2.0))
            loss = sup + w * hard + soft
            rec.update(unsup=(w * hard + soft).item(), hard=hard.item(), soft=soft.item(),
                       pseudo_ratio=st["hard_ratio"], soft_ratio=st["soft_ratio"],
                       no_object=n_none)
    job.optimizer.zero_grad(set_to_none=True)
    job.scaler.scale(loss).backward()  # the scaler is a no-op unless fp16 (torch_runtime)
    job.scaler.unscale_(job.optimizer)
    if t.get("clip_grad"):
        torch.nn.utils.clip_grad_norm_(job.student.parameters(), float(t["clip_grad"]))
    job.scaler.step(job.optimizer)
    job.scaler.update()
    if job.teacher is not None:
        rec["ema_decay"] = ema_update(job.teacher, job.student, job.it,
                                      float(t.get("ema_decay", 0.996)), job.it // job.per_epoch)
    rec.update(sup=sup.item(), loss=loss.item())
    if not math.isfinite(rec["loss"]):
        raise FloatingPointError(f"loss is {rec['loss']} at iteration {job.it + 1}")
    job.it += 1
    return rec


# --------------------------------------------------------------------------- epoch
def _epoch_row(job: Job, epoch: int) -> dict:
    n = max(job.acc.get("n", 0), 1)
    row = {"epoch": epoch + 1, "iter": job.it}
    row.update({k: v / n for k, v in job.acc.items() if k != "n"})
    return row


def train_one_epoch(job: Job, epoch: int, stop: GracefulStop, log, bar, run: RunDir | None):
    """The remaining steps of ``epoch`` (all of them unless resumed mid-epoch); evaluates and
    saves on the configured iterations and stops cleanly on a signal."""
    t = job.cfg["trainer"]
    bl = int(t["batch_labeled"])
    bu = int(t.get("batch_unlabeled") or bl)
    first = job.it - epoch * job.per_epoch
    n_steps = min(job.per_epoch, job.total - epoch * job.per_epoch)
    workers = int(job.cfg["dataset"].get("workers", 0))
    job.lab_ds.set_epoch(epoch)
    lab = _epoch_batches(len(job.lab_ds), bl, job.seed, "lab", epoch, job.rank, job.world)
    lab_it = _loader(job.lab_ds, lab[first:n_steps], workers)
    unl_it = None
    if job.mode == "semi":
        job.unl_ds.set_epoch(epoch)
        unl = _epoch_batches(len(job.unl_ds), bu, job.seed, "unl", epoch, job.rank, job.world)
        unl_it = _loader(job.unl_ds, unl[first:n_steps], workers)
    eval_every, save_every = int(t.get("eval_every") or 0), int(t.get("save_every") or 0)
    log_every = max(1, int(t.get("log_every", 10)))
    for _ in range(first, n_steps):
        rec = train_step(job, next(lab_it), next(unl_it) if unl_it is not None else None)
        job.acc["n"] = job.acc.get("n", 0) + 1
        for k in ("loss", "sup", "unsup", "hard", "soft", "pseudo_ratio", "soft_ratio"):
            if k in rec:
                job.acc[k] = job.acc.get(k, 0.0) + rec[k]
        bar.update(1)
        if job.it % log_every == 0 or job.it == job.total:
            extra = "".join(f" {k} {rec[k]:.3f}" for k in ("unsup", "hard", "soft",
                                                           "pseudo_ratio") if k in rec)
            log(f"iter {job.it}/{job.total} lr {rec['lr']:.5f} loss {rec['loss']:.3f} "
                f"sup {rec['sup']:.3f}{extra}")
        if job.it == (epoch + 1) * job.per_epoch or job.it == job.total:
            job.history.append(_epoch_row(job, epoch))
            job.acc = {}
        if eval_every and job.it % eval_every == 0 and job.it != job.total:
            _record_eval(job, evaluate_job(job), log, run)
        if stop.requested or (save_every and job.it % save_every == 0):
            save_state(job, run)
            stop.raise_if_requested(run.path if run else None)


# --------------------------------------------------------------------------- evaluation
def evaluate_job(job: Job, modes: list[str] | None = None) -> dict:
    """mIoU of the evaluated model (teacher in semi runs) with the config's evaluation and,
    for the final evaluation, the extra modes (e.g. the sliding window beside the original's
    centre crop)."""
    d = job.cfg["dataset"]
    model = job.teacher if job.teacher is not None else job.student
    out = {}
    for mode in modes or [d.get("eval_mode", "whole")]:
        ds = job.val_ds
        if mode != d.get("eval_mode", "whole"):
            ds = copy.copy(job.val_ds)
            ds.center = d.get("eval_crop") if mode == "center_crop" else None
        out[mode] = evaluate(model, DataLoader(ds, batch_size=1), model.num_classes, job.dev,
                             mode=mode, crop=int(d.get("sliding_crop", d["crop_size"])),
                             stride=int(d.get("sliding_stride", d["crop_size"])))
    return out


def _record_eval(job: Job, ev: dict, log, run: RunDir | None) -> float:
    main_mode = job.cfg["dataset"].get("eval_mode", "whole")
    r = ev[main_mode]
    per_class = ", ".join(f"{n} {v * 100:.1f}" if v is not None else f"{n} -"
                          for n, v in zip(CLASSES, r["iou"]))
    log(f"eval @ {job.it} ({main_mode}): mIoU {r['miou'] * 100:.2f}, all-class mIoU "
        f"{r['miou_all'] * 100:.2f} ({per_class})")
    job.history.append({"iter": job.it, "eval_mode": main_mode, "miou": r["miou"],
                        "miou_all": r["miou_all"]})
    if r["miou"] > job.best:
        job.best = r["miou"]
        if run is not None and job.main:
            _write_checkpoint(job, run.file("best.pt"))
    return r["miou"]


# --------------------------------------------------------------------------- state
def normalization(cfg: dict) -> dict:
    d = cfg["dataset"]
    return {"mean": [float(v) for v in d["mean"]], "std": [float(v) for v in d["std"]],
            "note": d.get("normalization_note", "")}


def _write_checkpoint(job: Job, path: Path) -> None:
    state = {"format": CKPT_FORMAT, "student": job.student.state_dict(),
             "teacher": job.teacher.state_dict() if job.teacher is not None else None,
             "optimizer": job.optimizer.state_dict(), "iteration": job.it,
             "history": job.history, "acc": job.acc, "best_miou": job.best, "config": job.cfg,
             "mode": job.mode, "num_classes": job.student.num_classes,
             "normalization": normalization(job.cfg)}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def save_state(job: Job, run: RunDir | None) -> None:
    """``last.pt`` (atomic) and ``history.csv``."""
    if run is None or not job.main:
        return
    _write_checkpoint(job, run.file("last.pt"))
    if job.history:
        run.write_history(job.history)


def load_state(job: Job, path: Path) -> None:
    """Continue from ``last.pt`` (weights, optimiser, iteration, history)."""
    from shared.torch_checkpoint import load_strict, load_torch_file

    if not path.is_file():
        raise UserError(f"{path}: no checkpoint to resume from")
    ck = load_torch_file(path, map_location=job.dev, what="training state")  # weights-only
    if not isinstance(ck, dict) or not isinstance(ck.get("student"), dict):
        raise UserError(f"{path}: not a resumable training state of this run (no student)")
    load_strict(job.student, ck["student"], path, "student")
    if job.teacher is not None and ck.get("teacher") is not None:
        load_strict(job.teacher, ck["teacher"], path, "teacher")
    try:
        job.optimizer.load_state_dict(ck["optimizer"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise UserError(f"{path}: not a resumable training state of this run (optimizer: "
                        f"{first})") from None
    if job.teacher is not None and ck.get("teacher") is None:
        raise UserError(f"{path}: holds no teacher (a supervised run?)")
    job.it, job.history = int(ck["iteration"]), list(ck.get("history", []))
    job.acc, job.best = dict(ck.get("acc", {})), float(ck.get("best_miou", -1.0))


# --------------------------------------------------------------------------- run
def _result(job: Job, ev: dict, t0: float) -> dict:
    main_mode = job.cfg["dataset"].get("eval_mode", "whole")
    r = ev[main_mode]
    return {"mode": job.mode, "iterations": job.total, "per_epoch": job.per_epoch,
            "evaluated": "teacher" if job.teacher is not None else "student",
            "eval_mode": main_mode, "miou": r["miou"], "miou_all": r["miou_all"],
            "best_miou": job.best, "per_class_iou": dict(zip(CLASSES, r["iou"])),
            "pixel_acc": r["pixel_acc"],
            "other_eval": {m: {"miou": v["miou"], "miou_all": v["miou_all"]}
                           for m, v in ev.items() if m != main_mode},
            "train_time_s": time.time() - t0, "code_version": code_version(PACKAGE_DIR)}


def run(cfg: dict, run_dir: str | os.PathLike, *, resume: bool = False,
        overwrite: bool = False, device: str = "auto", progress: bool = True) -> dict:
    """Train ``cfg`` (``cfg["mode"]``: supervised or semi) in ``run_dir``; returns the final
    evaluation of the evaluated model (the teacher in semi runs), also in ``summary.json``."""
    cfg = prepare_config(cfg, device)
    rd = None
    if torch_runtime.dist_env().main:
        net = cfg.get("net", {})
        rd, cfg = RunDir.open(run_dir, cfg, resume=resume, overwrite=overwrite,
                              allow_on_resume=("machine",), inputs=[cfg["dataset"]["root"],
                                      *(resolve_path(net[k]) for k in ("pretrained", "init")
                                        if net.get(k))])
    try:
        with GracefulStop() as stop:
            return _train(cfg, rd, resume, device, progress, stop)
    finally:
        if rd is not None:
            rd.close()
        torch_runtime.teardown()


def _train(cfg, rd: RunDir | None, resume, device, progress, stop) -> dict:
    job = build(cfg, device)
    logger = rd.logger("s5mars_ssl") if rd is not None else None

    def log(msg: str) -> None:
        if logger is not None:
            logger.info(msg)

    if resume:
        load_state(job, rd.file("last.pt") if rd is not None else Path("last.pt"))
        log(f"resumed from {rd.file('last.pt')} at iteration {job.it}/{job.total}")
    log(f"mode={job.mode} device={job.dev} world={job.world} iterations={job.total} "
        f"({job.per_epoch} per epoch) labelled={len(job.lab_ds)} unlabelled="
        f"{len(job.unl_ds) if job.mode == 'semi' else 0} test={len(job.val_ds)} "
        f"params={sum(p.numel() for p in job.student.parameters()):,} precision="
        f"{job.precision.name}")
    job.model.train()
    if job.teacher is not None:
        job.teacher.eval()
    t0 = time.time()
    with tqdm(total=job.total, initial=job.it, desc=f"{job.mode}",
              disable=not (progress and job.main), dynamic_ncols=True) as bar:
        while job.it < job.total:
            train_one_epoch(job, job.it // job.per_epoch, stop, log, bar, rd)
    modes = [cfg["dataset"].get("eval_mode", "whole"),
             *cfg["dataset"].get("eval_extra_modes", [])]
    ev = evaluate_job(job, modes)
    _record_eval(job, ev, log, rd)
    for m, v in ev.items():
        log(f"final {m}: mIoU {v['miou'] * 100:.2f}, all-class mIoU {v['miou_all'] * 100:.2f}")
    save_state(job, rd)
    result = _result(job, ev, t0)
    from shared.results import machine_info

    result["precision"], result["machine"] = job.precision.name, machine_info()
    if rd is not None:
        rd.write_summary(result)
        _plot(job, rd)
    return result


def _plot(job: Job, rd: RunDir) -> None:
    """Learning curves of the run (``shared.figures.plot_curves``), a 2 x 2 grid legible at
    its saved size."""
    from shared.figures import plot_curves

    keys = [("sup", "supervised loss"), ("unsup", "unsupervised loss"),
            ("pseudo_ratio", "hard pseudo-label ratio"), ("miou", "mIoU (eval)")]
    panels = []
    for k, label in keys:
        rows = [h for h in job.history if k in h]
        lines = [{"x": [h["iter"] for h in rows], "y": [h[k] for h in rows]}] if rows else []
        panels.append({"title": label, "lines": lines, "empty": "not recorded in this mode"})
    plot_curves(rd.file("curves.png"), panels, ncols=2, panel_size=(5.5, 3.5),
                xlabel="iteration", title=f"S5Mars learning curves, {job.mode}: {rd.path.name}")
