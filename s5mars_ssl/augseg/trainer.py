"""The training loop shared by ``train_supervised.py`` and ``train_semi.py``.

Supervised: OHEM CE on labelled crops. Semi-supervised (mean teacher): the EMA teacher labels the
weak view of unlabelled crops; the student sees the strong view (weak + AugIN + SAM-Mix, each
switchable) and learns from hard pseudo-labels and, with soft-to-hard on, from the teacher's soft
distribution on low-confidence pixels. The teacher is evaluated. Run folder: ``config.yaml``,
``log.txt``, ``history.jsonl`` (curves), ``last.pt`` (student, teacher, optimiser; atomic),
``eval.json`` and ``curves.png``.
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
import yaml
from torch.utils.data import DataLoader, RandomSampler
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from s5mars_ssl.augseg.dataset.augin import augin
from s5mars_ssl.augseg.dataset.mars import build_datasets
from s5mars_ssl.augseg.dataset.sam_mix import choose_paste_masks, sam_mix
from s5mars_ssl.augseg.models import DeepLabV3Plus, load_pretrained_encoder
from s5mars_ssl.augseg.utils.config import resolve_path
from s5mars_ssl.augseg.utils.ema import ema_update
from s5mars_ssl.augseg.utils.loss_helper import OhemCrossEntropy, unsupervised_loss
from s5mars_ssl.augseg.utils.lr_helper import build_optimizer, poly_lr, set_lr
from s5mars_ssl.augseg.utils.metrics import evaluate
from s5mars_ssl.constants import CLASSES, IGNORE_INDEX
from shared import atomic_path, atomic_write_json, atomic_write_text, seed_everything


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda requested but no CUDA device is available")
    return torch.device(name)


def _dist_info() -> tuple[bool, int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return world > 1, rank, world, local


def _infinite(loader):
    epoch = 0
    while True:
        if isinstance(getattr(loader, "sampler", None), DistributedSampler):
            loader.sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def _loader(ds, batch, distributed, workers, seed):
    if distributed:
        sampler = DistributedSampler(ds, shuffle=True, seed=seed, drop_last=True)
    else:
        g = torch.Generator().manual_seed(seed)
        sampler = RandomSampler(ds, replacement=len(ds) < batch, num_samples=max(len(ds), batch),
                                generator=g)
    return DataLoader(ds, batch_size=batch, sampler=sampler, num_workers=workers,
                      drop_last=True, persistent_workers=workers > 0)


class Logger:
    def __init__(self, path: Path | None, main: bool):
        self.path, self.main = path, main
        self.lines: list[str] = []
        if path is not None and path.exists():
            self.lines = path.read_text(encoding="utf-8").splitlines()

    def __call__(self, msg: str) -> None:
        if not self.main:
            return
        stamp = time.strftime("%H:%M:%S")
        line = f"[{stamp}] {msg}"
        tqdm.write(line)
        self.lines.append(line)
        if self.path is not None:
            atomic_write_text(self.path, "\n".join(self.lines) + "\n")


def _teacher_predict(teacher, x):
    with torch.no_grad():
        prob = F.softmax(teacher(x).float(), dim=1)
    conf, pred = prob.max(dim=1)
    return pred, conf, prob


def plot_curves(history: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [h for h in history if "sup" in h]
    evals = [h for h in history if "miou" in h]
    keys = [("sup", "supervised loss"), ("unsup", "unsupervised loss"),
            ("pseudo_ratio", "pseudo-label ratio (hard)"), ("miou", "mIoU (eval)")]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.2))
    for ax, (k, label) in zip(axes, keys):
        rows = evals if k == "miou" else train
        xs = [h["iter"] for h in rows if k in h]
        ys = [h[k] for h in rows if k in h]
        if xs:
            ax.plot(xs, ys, marker="o" if k == "miou" else None, ms=3)
        ax.set_title(label)
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)


def train(cfg: dict, run_dir: str | os.PathLike, mode: str = "semi", resume: bool = False,
          device: str = "auto", amp: bool = False, progress: bool = True) -> dict:
    """Train with ``cfg``; returns the final evaluation of the evaluated model (teacher in semi).

    ``mode``: ``"supervised"`` (labelled data only) or ``"semi"`` (mean teacher + the enabled
    components). ``resume`` continues from ``run_dir/last.pt``.
    """
    if mode not in ("supervised", "semi"):
        raise ValueError(f"mode must be supervised or semi, got {mode!r}")
    distributed, rank, world, local_rank = _dist_info()
    dev = pick_device(device)
    if distributed:
        if dev.type == "cuda":
            dev = torch.device("cuda", local_rank)
            torch.cuda.set_device(dev)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    main = rank == 0
    cfg = copy.deepcopy(cfg)
    cfg["dataset"]["root"] = str(resolve_path(cfg["dataset"]["root"]))
    semi_cfg = cfg.get("semi", {}) if mode == "semi" else {}
    use_sam = mode == "semi" and semi_cfg.get("sammix", {}).get("enabled", False)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    log = Logger(run_dir / "log.txt", main)
    seed = int(cfg.get("seed", 0))
    threads = int(cfg.get("threads", 0))
    if dev.type == "cpu" and threads > 0:
        torch.set_num_threads(threads)
    torch.set_flush_denormal(True)  # denormal floats make CPU convolutions many times slower
    seed_everything(seed + rank)

    lab_ds, unl_ds, val_ds = build_datasets(cfg, with_sam=use_sam)
    if mode == "semi" and unl_ds is None:
        raise ValueError("semi-supervised training needs unlabelled samples: the split labels "
                         "every training sample")
    t = cfg["trainer"]
    bl, bu = int(t["batch_labeled"]), int(t.get("batch_unlabeled", t["batch_labeled"]))
    if mode == "supervised" and bl < 2:
        raise ValueError("trainer.batch_labeled must be at least 2 for supervised training "
                         "(BatchNorm in the ASPP image-pooling branch needs 2 samples)")
    workers = int(cfg["dataset"].get("workers", 0))
    lab_loader = _loader(lab_ds, bl, distributed, workers, seed)
    unl_loader = _loader(unl_ds, bu, distributed, workers, seed + 1) if mode == "semi" else None
    val_loader = DataLoader(val_ds, batch_size=1, shuffle=False, num_workers=workers)
    if t.get("iterations"):
        total = int(t["iterations"])
    else:
        per_epoch = math.ceil(len(unl_ds if mode == "semi" else lab_ds) / (bu if mode == "semi"
                                                                             else bl) / world)
        total = int(t["epochs"]) * per_epoch

    n_cls = int(cfg["net"].get("num_classes", len(CLASSES)))
    student = DeepLabV3Plus(n_cls)
    if cfg["net"].get("pretrained"):
        load_pretrained_encoder(student, resolve_path(cfg["net"]["pretrained"]), verbose=main)
    sync_bn = cfg["net"].get("sync_bn", "auto")
    if distributed and dev.type == "cuda" and sync_bn in (True, "auto"):
        student = torch.nn.SyncBatchNorm.convert_sync_batchnorm(student)
    student.to(dev)
    teacher = None
    if mode == "semi":
        teacher = copy.deepcopy(student).to(dev)
        for p in teacher.parameters():
            p.requires_grad_(False)
    optimizer = build_optimizer(student, t)
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
    use_amp = bool(amp)
    amp_dtype = torch.float16 if dev.type == "cuda" else torch.bfloat16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and dev.type == "cuda")

    start, history, best = 0, [], -1.0
    ckpt_path = run_dir / "last.pt"
    if resume:
        if not ckpt_path.is_file():
            raise FileNotFoundError(f"{ckpt_path}: no checkpoint to resume from")
        ck = torch.load(ckpt_path, map_location=dev, weights_only=True)
        student.load_state_dict(ck["student"])
        if teacher is not None:
            if ck.get("teacher") is None:
                raise ValueError(f"{ckpt_path}: holds no teacher (a supervised run?)")
            teacher.load_state_dict(ck["teacher"])
        optimizer.load_state_dict(ck["optimizer"])
        start, history, best = int(ck["iteration"]), list(ck.get("history", [])), \
            float(ck.get("best_miou", -1.0))
        if "torch_rng" in ck:
            torch.set_rng_state(ck["torch_rng"].cpu())
        log(f"resumed from {ckpt_path} at iteration {start}/{total}")
    if main:
        atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(cfg, sort_keys=False))
        n_params = sum(p.numel() for p in student.parameters())
        log(f"mode={mode} device={dev} world={world} iterations={total} labelled={len(lab_ds)} "
            f"unlabelled={len(unl_ds) if unl_ds is not None and mode == 'semi' else 0} "
            f"test={len(val_ds)} params={n_params:,}")

    def save(it: int) -> None:
        if not main:
            return
        state = {"student": student.state_dict(),
                 "teacher": teacher.state_dict() if teacher is not None else None,
                 "optimizer": optimizer.state_dict(), "iteration": it, "history": history,
                 "best_miou": best, "config": cfg, "mode": mode, "num_classes": n_cls,
                 "torch_rng": torch.get_rng_state()}
        with atomic_path(ckpt_path) as tmp:
            torch.save(state, tmp)

    def run_eval(it: int) -> dict:
        ev = evaluate(teacher if teacher is not None else student, val_loader, n_cls, dev,
                      mode=cfg["dataset"].get("eval_mode", "whole"),
                      crop=cfg["dataset"].get("eval_crop", cfg["dataset"]["crop_size"]),
                      stride=cfg["dataset"].get("eval_stride", cfg["dataset"]["crop_size"]))
        per_class = ", ".join(f"{n} {v * 100:.1f}" if v is not None else f"{n} -"
                              for n, v in zip(CLASSES, ev["iou"]))
        log(f"eval @ {it}: mIoU {ev['miou'] * 100:.2f} ({per_class})")
        return ev

    lab_iter = _infinite(lab_loader)
    unl_iter = _infinite(unl_loader) if unl_loader is not None else None
    eval_every = int(t.get("eval_every", 0) or 0)
    save_every = int(t.get("save_every", 0) or 0)
    log_every = max(1, int(t.get("log_every", 10)))
    w_unsup = float(semi_cfg.get("unsup_weight", 2.0))
    s_augin = semi_cfg.get("augin", {})
    s_mix = semi_cfg.get("sammix", {})
    last_eval = None
    model.train()
    if teacher is not None:
        teacher.eval()
    bar = tqdm(range(start, total), initial=start, total=total, desc=f"{mode} {run_dir.name}",
               disable=not (progress and main), dynamic_ncols=True)
    t0 = time.time()
    for it in bar:
        lr = poly_lr(t["lr"], it, total, t.get("poly_power", 0.9))
        set_lr(optimizer, lr)
        lb = next(lab_iter)
        img_l, lbl_l = lb["image"].to(dev), lb["label"].to(dev)
        rec = {"iter": it + 1, "lr": lr}
        with torch.autocast(dev.type, dtype=amp_dtype, enabled=use_amp):
            if mode == "supervised":
                logits = model(img_l)
                sup = sup_crit(logits, lbl_l)
                loss = sup
                rec.update(sup=sup.item())
            else:
                ub = next(unl_iter)
                weak = ub["image"].to(dev)
                valid_u = ub["valid"].to(dev)
                pred_u, conf_u, prob_u = _teacher_predict(teacher, weak)
                if semi_cfg.get("use_unlabeled_gt", False):
                    gt_u = ub["label"].to(dev)
                    has = gt_u != IGNORE_INDEX
                    pred_u = torch.where(has, gt_u, pred_u)
                    conf_u = torch.where(has, torch.ones_like(conf_u), conf_u)
                    onehot = F.one_hot(gt_u.clamp(max=n_cls - 1), n_cls).permute(0, 3, 1, 2)
                    prob_u = torch.where(has.unsqueeze(1), onehot.to(prob_u.dtype), prob_u)
                strong = weak.clone()
                if s_augin.get("enabled", False):
                    g = torch.Generator().manual_seed(seed * 100003 + it)
                    strong = augin(strong, s_augin.get("mode", "both"),
                                   prob=float(s_augin.get("prob", 1.0)), generator=g)
                n_box = 0
                if s_mix.get("enabled", False):
                    pred_l, conf_l, prob_l = _teacher_predict(teacher, img_l)
                    rng = np.random.default_rng(seed * 100003 + it)
                    src, masks, flips, fb = choose_paste_masks(
                        lb["objects"].to(dev), lb["n_objects"], weak.shape[0],
                        int(s_mix.get("min_mask_px", 100)), float(s_mix.get("flip_prob", 0.5)),
                        float(s_mix.get("beta", 4.0)), rng)
                    strong, pred_u, conf_u, prob_u = sam_mix(
                        strong, pred_u, conf_u, prob_u, img_l, lbl_l, pred_l, conf_l, prob_l,
                        src, masks, flips, IGNORE_INDEX)
                    flip_valid = [lb["valid"][j].to(dev).flip(-1) if f else
                                  lb["valid"][j].to(dev) for j, f in zip(src, flips)]
                    valid_u = torch.where(masks, torch.stack(flip_valid), valid_u)
                    n_box = sum(fb)
                logits = model(torch.cat([img_l, strong]))
                logit_l, logit_u = logits[:img_l.shape[0]], logits[img_l.shape[0]:]
                sup = sup_crit(logit_l, lbl_l)
                hard, soft, st = unsupervised_loss(logit_u, pred_u, conf_u, prob_u, valid_u,
                                                   semi_cfg)
                loss = sup + w_unsup * hard + soft
                rec.update(sup=sup.item(), unsup=(w_unsup * hard + soft).item(),
                           hard=hard.item(), soft=soft.item(), pseudo_ratio=st["hard_ratio"],
                           soft_ratio=st["soft_ratio"], cutmix_fallback=n_box)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        if t.get("clip_grad"):
            torch.nn.utils.clip_grad_norm_(student.parameters(), float(t["clip_grad"]))
        scaler.step(optimizer)
        scaler.update()
        if teacher is not None:
            ema_update(teacher, student, it, float(t.get("ema_decay", 0.996)))
        rec["loss"] = loss.item()
        if not math.isfinite(rec["loss"]):
            raise FloatingPointError(f"loss is {rec['loss']} at iteration {it + 1}")
        history.append(rec)
        if main and ((it + 1) % log_every == 0 or it == start):
            bar.set_postfix(loss=f"{rec['loss']:.3f}", sup=f"{rec['sup']:.3f}")
            extra = (f" unsup {rec['unsup']:.3f} (hard {rec['hard']:.3f}, soft "
                     f"{rec['soft']:.3f}) pseudo {rec['pseudo_ratio']:.2f}"
                     if mode == "semi" else "")
            log(f"iter {it + 1}/{total} lr {lr:.5f} loss {rec['loss']:.3f} sup {rec['sup']:.3f}"
                f"{extra} ({(time.time() - t0) / (it + 1 - start):.2f} s/iter)")
        done = it + 1 == total
        if main and (done or (eval_every and (it + 1) % eval_every == 0)):
            last_eval = run_eval(it + 1)
            history.append({"iter": it + 1, "miou": last_eval["miou"]})
            best = max(best, last_eval["miou"])
        if done or (save_every and (it + 1) % save_every == 0):
            save(it + 1)
    if start >= total and main:
        last_eval = run_eval(total)
    if main:
        with atomic_path(run_dir / "history.jsonl") as tmp:
            tmp.write_text("".join(json.dumps(h) + "\n" for h in history), encoding="utf-8")
        plot_curves(history, run_dir / "curves.png", f"{mode}: {run_dir.name}")
        result = {"mode": mode, "iterations": total, "evaluated": "teacher" if teacher is not None
                  else "student", "miou": last_eval["miou"], "best_miou": best,
                  "per_class_iou": dict(zip(CLASSES, last_eval["iou"])),
                  "pixel_acc": last_eval["pixel_acc"], "train_time_s": time.time() - t0}
        atomic_write_json(run_dir / "eval.json", result)
    else:
        result = {}
    if distributed:
        dist.barrier()
        dist.destroy_process_group()
    random.seed(seed)
    return result
