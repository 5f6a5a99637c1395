"""Train the dune segmenter: fusion (SegFormer + Embed + Text) or the Embed-only baseline.

Reference recipe: AdamW (lr 6e-5, weight decay 0.01), PolynomialLR (power 1) stepped per epoch,
cross-entropy with ignore index 255, batch 4, 50 epochs, keep the best validation mIoU. Profiles:
``--profile paper`` (that recipe) or ``--profile quick`` (CPU-sized, synthetic data); any value can
be overridden on the command line.

A run folder gets ``config.yml``, ``last.pt`` (every epoch), ``best.pt`` (best val mIoU),
``history.json``/``.csv``, ``curves.png`` and ``train.log``; all writes are atomic. Ctrl-C or
SIGTERM stops after the current batch, keeping the last completed epoch in ``last.pt``;
``--resume <run_dir>`` continues from it and gives the same weights as an uninterrupted run (each
epoch reseeds shuffling, augmentation and dropout from ``seed`` and the epoch number).
Runs unchanged under ``torchrun --nproc_per_node=N`` (gloo on CPU, nccl on GPU): a
DistributedSampler splits the data, validation confusion matrices are summed over ranks and only
rank 0 writes.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Train the vision-language dune segmenter (fusion) or the Embed-only "
                    "SegFormer baseline on img_dir/ann_dir tiles.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--profile", default="quick",
                   help="'paper', 'quick' or a YAML file with the same keys")
    p.add_argument("--data_root", help="dataset root with img_dir/ and ann_dir/ (profile default)")
    p.add_argument("--model", choices=["fusion", "baseline"], help="architecture")
    p.add_argument("--text_embed_path", help="(classes, D) .npy of class text embeddings")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch_size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--weight_decay", type=float)
    p.add_argument("--workers", type=int, help="DataLoader worker processes")
    p.add_argument("--seed", type=int)
    p.add_argument("--run_dir", "--save_dir", dest="run_dir", help="run folder to write")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR (last.pt)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument("--amp", action="store_true", help="mixed precision (bf16 CPU, fp16 CUDA)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--no_progress", action="store_true", help="no progress bars")
    return p


def resolve_config(args) -> dict:
    from dune_vlm.utils.config import load_profile

    cfg = load_profile(args.profile)
    cfg.setdefault("train", {})
    cfg.setdefault("data", {})
    cfg.setdefault("text", {})
    cfg.setdefault("model", {})
    if args.data_root:
        cfg["data"]["root"] = args.data_root
    if args.model:
        cfg["model"]["name"] = args.model
    if args.text_embed_path:
        cfg["text"]["embed_path"] = args.text_embed_path
    for key in ("epochs", "batch_size", "lr", "weight_decay", "workers", "seed", "run_dir"):
        value = getattr(args, key)
        if value is not None:
            cfg["train"][key] = value
    if args.amp:
        cfg["train"]["amp"] = True
    t = cfg["train"]
    for key, default in (("epochs", 50), ("batch_size", 4), ("lr", 6e-5),
                         ("weight_decay", 0.01), ("poly_power", 1.0), ("workers", 0),
                         ("seed", 0), ("amp", False), ("run_dir", "runs/dune_vlm/run")):
        t.setdefault(key, default)
    if t["epochs"] < 1 or t["batch_size"] < 1 or t["lr"] <= 0:
        raise ValueError("epochs and batch size must be >= 1 and lr > 0")
    cfg["model"].setdefault("name", "fusion")
    return cfg


def _dist_info():
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return world, rank, local


def plot_curves(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from shared.atomic import atomic_path

    ep = [h["epoch"] for h in history]
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.4))
    ax[0].plot(ep, [h["train_loss"] for h in history], "o-", label="train loss")
    ax[0].set_xlabel("epoch")
    ax[0].set_ylabel("cross-entropy")
    ax[0].legend()
    for key in ("val_OA", "val_mIoU", "val_kappa"):
        ax[1].plot(ep, [h[key] for h in history], "o-", label=key)
    ax[1].set_xlabel("epoch")
    ax[1].set_ylim(0, 1)
    ax[1].legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)


def run(cfg: dict, args) -> dict:
    import torch
    import torch.distributed as dist
    from torch.utils.data import DataLoader
    from torch.utils.data.distributed import DistributedSampler
    from tqdm import tqdm

    from dune_vlm.engine import (
        _amp_dtype,
        collate,
        evaluate,
        load_checkpoint,
        load_text_embeds,
        model_from_spec,
        pick_device,
        save_checkpoint,
    )
    from dune_vlm.utils.config import resolve_path
    from dune_vlm.utils.dataset import DuneDataset
    from shared.atomic import atomic_write_json, atomic_write_text
    from shared.seed import seed_everything

    torch.set_num_threads(max(1, args.threads))
    world, rank, local = _dist_info()
    distributed = world > 1
    device = pick_device(args.device)
    if distributed:
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend)
        if device.type == "cuda":
            device = torch.device("cuda", local)
            torch.cuda.set_device(device)
    main_rank = rank == 0
    t_cfg, d_cfg = cfg["train"], cfg["data"]

    resume_ckpt = None
    if args.resume:
        run_dir = Path(args.resume)
        resume_ckpt = load_checkpoint(run_dir / "last.pt")
        saved = resume_ckpt.get("config", {})
        # keep the saved recipe; the command line may only extend the epochs
        epochs = cfg["train"]["epochs"] if args.epochs else saved["train"]["epochs"]
        cfg = saved
        cfg["train"]["epochs"] = epochs
        t_cfg, d_cfg = cfg["train"], cfg["data"]
    else:
        run_dir = resolve_path(t_cfg["run_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    seed = int(t_cfg["seed"])  # after a resume: the saved run's seed
    seed_everything(seed)

    log = logging.getLogger("dune_vlm.train")
    log.setLevel(logging.INFO)
    log.handlers.clear()
    if main_rank:
        for h in (logging.StreamHandler(sys.stdout),
                  logging.FileHandler(run_dir / "train.log", encoding="utf-8")):
            h.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
            log.addHandler(h)
    else:
        log.addHandler(logging.NullHandler())

    num_classes = int(d_cfg.get("num_classes", 10))
    in_chans = int(d_cfg.get("in_chans", 64))
    root = resolve_path(d_cfg["root"])
    train_ds = DuneDataset(root, "train", num_classes, in_chans, augment=True, seed=seed)
    val_ds = DuneDataset(root, "val", num_classes, in_chans)
    model_name = cfg["model"]["name"]
    text = None
    text_dim = 512
    if model_name == "fusion":
        if resume_ckpt is not None and "text_embeds" in resume_ckpt:
            text_np = resume_ckpt["text_embeds"].numpy()
        else:
            text_np = load_text_embeds(resolve_path(cfg["text"]["embed_path"]), num_classes)
        text_dim = int(text_np.shape[1])
        text = torch.from_numpy(text_np).to(device)
    arch = dict(cfg["model"].get("fusion_arch") or {}) if model_name == "fusion" else {}
    spec = {"name": model_name, "num_classes": num_classes, "text_dim": text_dim,
            "in_chans": in_chans, "arch": arch}
    model = model_from_spec(spec).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=float(t_cfg["lr"]),
                            weight_decay=float(t_cfg["weight_decay"]), foreach=True)
    sched = torch.optim.lr_scheduler.PolynomialLR(opt, total_iters=int(t_cfg["epochs"]),
                                                  power=float(t_cfg["poly_power"]))
    start_epoch, best, history = 0, -1.0, []
    if resume_ckpt is not None:
        model.load_state_dict(resume_ckpt["model"])
        opt.load_state_dict(resume_ckpt["optimizer"])
        sched.load_state_dict(resume_ckpt["scheduler"])
        start_epoch = int(resume_ckpt["epoch"])
        # the schedule follows the (possibly extended) epoch count: set lr for this point of it
        sched.total_iters = int(t_cfg["epochs"])
        factor = (1.0 - min(start_epoch, sched.total_iters) / sched.total_iters) \
            ** float(t_cfg["poly_power"])
        for group, base in zip(opt.param_groups, sched.base_lrs):
            group["lr"] = base * factor
        best = float(resume_ckpt["best_mIoU"])
        history = list(resume_ckpt.get("history", []))
        log.info(f"resumed {run_dir} at epoch {start_epoch}")
    ddp_model = model
    if distributed:
        ddp_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    criterion = torch.nn.CrossEntropyLoss(ignore_index=int(d_cfg.get("ignore_index", 255)))
    amp = bool(t_cfg["amp"])
    scaler = torch.amp.GradScaler("cuda", enabled=amp and device.type == "cuda")
    if main_rank:
        import yaml

        atomic_write_text(run_dir / "config.yml", yaml.safe_dump(
            {k: v for k, v in cfg.items() if not k.startswith("_")}, sort_keys=False))
        log.info(f"model {model_name}: {n_params:,} parameters; {len(train_ds)} train / "
                 f"{len(val_ds)} val tiles; device {device}; world size {world}")

    stop = {"flag": False}

    def _stop(signum, frame):
        stop["flag"] = True

    old_handlers = {s: signal.signal(s, _stop) for s in (signal.SIGINT, signal.SIGTERM)}
    bs = int(t_cfg["batch_size"])
    workers = int(t_cfg["workers"])
    epochs = int(t_cfg["epochs"])
    try:
        for epoch in range(start_epoch, epochs):
            torch.manual_seed(seed * 1000 + epoch * 10 + rank)  # dropout of this epoch
            train_ds.set_epoch(epoch)
            if distributed:
                sampler = DistributedSampler(train_ds, shuffle=True, seed=seed)
                sampler.set_epoch(epoch)
                loader = DataLoader(train_ds, bs, sampler=sampler, num_workers=workers,
                                    collate_fn=collate, drop_last=False)
            else:
                gen = torch.Generator().manual_seed(seed * 1000 + epoch)
                loader = DataLoader(train_ds, bs, shuffle=True, generator=gen,
                                    num_workers=workers, collate_fn=collate)
            ddp_model.train()
            t0 = time.time()
            loss_sum, seen = 0.0, 0
            bar = tqdm(loader, desc=f"epoch {epoch + 1}/{epochs}", unit="batch",
                       disable=args.no_progress or not main_rank, leave=False)
            for imgs, labels, _ in bar:
                imgs, labels = imgs.to(device), labels.to(device)
                with torch.autocast(device_type=device.type, dtype=_amp_dtype(device),
                                    enabled=amp):
                    logits = ddp_model(imgs, text)
                    loss = criterion(logits.float(), labels)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                loss_sum += float(loss.detach()) * imgs.shape[0]
                seen += imgs.shape[0]
                bar.set_postfix(loss=f"{float(loss.detach()):.3f}",
                                img_s=f"{seen / max(time.time() - t0, 1e-9):.1f}")
                if stop["flag"]:
                    break
            if stop["flag"]:
                log.info(f"stopped during epoch {epoch + 1}; {run_dir / 'last.pt'} holds epoch "
                         f"{epoch}; continue with --resume {run_dir}")
                break
            train_time = time.time() - t0
            sched.step()
            val_sampler = DistributedSampler(val_ds, shuffle=False) if distributed else None
            res = evaluate(model, val_ds, text, device, num_classes, bs, workers, amp=amp,
                           sampler=val_sampler)
            metric = res["overall"]
            if distributed:
                cm = torch.as_tensor(metric.confusion)
                dist.all_reduce(cm)
                metric.confusion[:] = cm.numpy()
                stats = torch.tensor([loss_sum, seen], dtype=torch.float64)
                dist.all_reduce(stats)
                loss_sum, seen = float(stats[0]), int(stats[1])
            m = metric.compute()
            row = {"epoch": epoch + 1, "train_loss": loss_sum / max(seen, 1),
                   "lr": opt.param_groups[0]["lr"], "val_OA": m["OA"], "val_mIoU": m["mIoU"],
                   "val_kappa": m["kappa"], "epoch_time_s": round(time.time() - t0, 2),
                   "img_per_s": round(seen / max(train_time, 1e-9), 2)}
            history.append(row)
            improved = m["mIoU"] > best
            best = max(best, m["mIoU"])
            if main_rank:
                payload = {
                    "model": model.state_dict(), "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(), "epoch": epoch + 1, "best_mIoU": best,
                    "history": history, "model_spec": spec,
                    "config": {k: v for k, v in cfg.items() if not k.startswith("_")},
                }
                if text is not None:
                    payload["text_embeds"] = text.detach().cpu()
                save_checkpoint(run_dir / "last.pt", payload)
                if improved:
                    save_checkpoint(run_dir / "best.pt", {
                        k: payload[k] for k in ("model", "epoch", "best_mIoU", "model_spec",
                                                "config", *(("text_embeds",) if text is not None
                                                            else ()))})
                atomic_write_json(run_dir / "history.json", history)
                buf = io.StringIO()
                w = csv.DictWriter(buf, fieldnames=list(row))
                w.writeheader()
                w.writerows(history)
                atomic_write_text(run_dir / "history.csv", buf.getvalue())
                plot_curves(history, run_dir / "curves.png")
                log.info(f"epoch {epoch + 1}/{epochs} loss {row['train_loss']:.4f} "
                         f"val OA {m['OA']:.4f} mIoU {m['mIoU']:.4f} kappa {m['kappa']:.4f} "
                         f"({row['epoch_time_s']:.1f}s, {row['img_per_s']:.1f} img/s)"
                         + (" *best*" if improved else ""))
    finally:
        for s, h in old_handlers.items():
            signal.signal(s, h)
        if distributed:
            dist.destroy_process_group()
    return {"run_dir": str(run_dir), "history": history, "best_mIoU": best,
            "parameters": n_params, "stopped": stop["flag"]}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from dune_vlm.engine import UserError
    from dune_vlm.utils.config import ConfigError
    from dune_vlm.utils.dataset import DatasetError

    try:
        cfg = resolve_config(args)
        out = run(cfg, args)
    except (UserError, ConfigError, DatasetError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({k: out[k] for k in ("run_dir", "best_mIoU", "parameters", "stopped")}))
    return 130 if out["stopped"] else 0


if __name__ == "__main__":
    sys.exit(main())
