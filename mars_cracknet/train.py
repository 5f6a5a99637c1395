"""Train Mars-CrackNet (ResUNet) or the UNet baseline in one of the paper's training modes.

Modes (Figure 2 of the paper): ``mars`` (a, MIC only), ``earth_mars`` (b, MIC + EDC), ``semi``
(c: auto-encoder pre-training on the unlabelled Earth and Mars images, transfer of all weights
keeping the first output channel of the final layer, then supervised fine-tuning; both stages in
one command, each resumable) and ``earth`` (EDC only).

Examples::

    python -m mars_cracknet.train --profile quick --mode mars --name a_mars
    python -m mars_cracknet.train --mode semi --data /data/cracks --name c_semi --amp
    python -m mars_cracknet.train --resume runs/mars_cracknet/a_mars
    torchrun --nproc_per_node=2 -m mars_cracknet.train --profile quick --mode mars

Each run writes ``runs/mars_cracknet/<name>/``: config.yml, metrics.csv, curves.png,
best/last weights (.safetensors) and training state (.state.pt), results.json. Ctrl-C or
SIGTERM saves ``last`` and exits; ``--resume <run dir>`` continues.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
METRIC_FIELDS = ("epoch", "train_loss", "precision", "recall", "dice", "jaccard", "lr",
                 "images_per_s", "seconds")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Train Mars-CrackNet (ResUNet) or UNet for crack segmentation.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("Each run")[0])
    p.add_argument("--profile", default="paper",
                   help="paper (cfg.yml), quick (configs/quick.yml) or a YAML path "
                        "(default: %(default)s)")
    p.add_argument("--mode", choices=["mars", "earth", "earth_mars", "semi"])
    p.add_argument("--model", choices=["resunet", "unet"])
    p.add_argument("--data", help="dataset root with imgs/, masks/, lists/")
    p.add_argument("--name", help="run name (default: <model>_<mode>)")
    p.add_argument("--runs", help="folder of runs (default: runs/mars_cracknet)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--pretrain-epochs", type=int, dest="pretrain_epochs")
    p.add_argument("--batch-size", type=int, dest="batch_size")
    p.add_argument("--lr", type=float)
    p.add_argument("--ratio", type=float, help="Dice weight w in (1-w)*BCE + w*Dice")
    p.add_argument("--crop-size", type=int, dest="crop_size")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--amp", action="store_true", default=None,
                   help="mixed precision: bf16 autocast on CPU, bf16/fp16 on CUDA")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override any config key (repeatable), e.g. --set num_workers=0")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR",
                   help="continue an interrupted run (its saved config is used; --epochs, "
                        "--pretrain-epochs, --device and --amp may change it)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: OMP_NUM_THREADS or 2)")
    return p


# --------------------------------------------------------------------------- distributed
class Dist:
    """Rank/world information; a no-op stand-in when not launched by torchrun."""

    def __init__(self, device_pref: str):
        import torch
        import torch.distributed as dist

        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if device_pref == "auto":
            device_pref = "cuda" if torch.cuda.is_available() else "cpu"
        if device_pref.startswith("cuda") and self.world > 1:
            device_pref = f"cuda:{self.local_rank}"
        self.device = torch.device(device_pref)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.enabled = self.world > 1
        if self.enabled and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")

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
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


# --------------------------------------------------------------------------- evaluation
def evaluate(model, dataset, dist: Dist, threshold: float = 0.5, amp: bool = False
             ) -> dict[str, Any]:
    """Per-image precision, recall, Dice, Jaccard on full images, averaged (over all ranks)."""
    import torch

    from mars_cracknet.inference import predict_tensor
    from mars_cracknet.utils.metrics import METRICS, image_scores

    model.eval()
    sums = [0.0] * (len(METRICS) + 1)
    per_image = []
    with torch.no_grad():
        for i in range(dist.rank, len(dataset), dist.world):
            x, y = dataset[i]
            prob = predict_tensor(model, x[None].to(dist.device), amp=amp)[0, 0].cpu().numpy()
            s = image_scores(prob > threshold, y[0].numpy() > 0.5)
            per_image.append({"image": dataset.items[i][0], **s})
            for k, m in enumerate(METRICS):
                sums[k] += s[m]
            sums[-1] += 1
    sums = dist.all_sum(sums)
    n = max(sums[-1], 1)
    return {"n_images": int(sums[-1]), **{m: sums[k] / n for k, m in enumerate(METRICS)},
            "per_image": per_image}


# --------------------------------------------------------------------------- one stage
class Stopper:
    """Turns SIGINT/SIGTERM into a flag checked between steps."""

    def __init__(self):
        self.requested = False
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.getsignal(sig)
            signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):  # noqa: ARG002
        if self.requested:  # a second Ctrl-C aborts at once
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False


class IndexSampler:
    """Yields a fixed list of indices (this rank's share of one epoch, minus skipped steps)."""

    def __init__(self, indices: list[int]):
        self.indices = indices

    def __iter__(self):
        return iter(self.indices)

    def __len__(self):
        return len(self.indices)


def _plot_curves(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from shared.atomic import atomic_path

    ep = [r["epoch"] for r in rows]
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.4))
    ax[0].plot(ep, [r["train_loss"] for r in rows], "o-")
    ax[0].set(xlabel="epoch", ylabel="train loss", title=title)
    for m in ("precision", "recall", "dice", "jaccard"):
        vals = [r.get(m) for r in rows]
        if any(v not in ("", None) for v in vals):
            ax[1].plot(ep, [float("nan") if v in ("", None) else v for v in vals], "o-", label=m)
    ax[1].set(xlabel="epoch", ylabel="test score", ylim=(0, 1))
    if ax[1].lines:
        ax[1].legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def _write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    from shared.atomic import atomic_write_text

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=METRIC_FIELDS)
    writer.writeheader()
    for r in rows:
        writer.writerow({k: r.get(k, "") for k in METRIC_FIELDS})
    atomic_write_text(path, buf.getvalue())


def train_stage(cfg: dict[str, Any], run_dir: Path, dist: Dist, *, dataset_mode: str,
                epochs: int, lr: float, num_classes: int, evaluate_test: bool,
                init_weights: Path | None = None, stopper: Stopper | None = None
                ) -> dict[str, Any]:
    """Train one stage into ``run_dir`` (resuming from its ``last`` state when present)."""
    import torch
    import yaml
    from torch.utils.data import DataLoader
    from torch.utils.data.distributed import DistributedSampler
    from tqdm import tqdm

    from mars_cracknet.checkpoint import (
        load_state,
        load_weights,
        read_weights,
        save_state,
        save_weights,
        transfer_autoencoder_weights,
    )
    from mars_cracknet.data.mars import CrackDataset
    from mars_cracknet.models import build_model
    from mars_cracknet.utils.loss import build_loss
    from shared.atomic import atomic_write_json, atomic_write_text
    from shared.seed import seed_everything

    seed = int(cfg["seed"])
    seed_everything(seed, deterministic=bool(cfg["deterministic"]))
    train_set = CrackDataset.for_mode(cfg["data"], dataset_mode, crop_size=cfg["crop_size"],
                                      train=True, seed=seed)
    test_set = CrackDataset.for_mode(cfg["data"], "test") if evaluate_test else None
    model = build_model(cfg["model"], num_classes=num_classes,
                        width=int(cfg["width"])).to(dist.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=cfg["weight_decay"])
    criterion = build_loss(cfg["loss"], cfg["ratio"])
    amp = bool(cfg["amp"])
    amp_dtype = torch.bfloat16
    scaler = None
    if amp and dist.device.type == "cuda" and not torch.cuda.is_bf16_supported():
        amp_dtype = torch.float16
        scaler = torch.amp.GradScaler("cuda")

    last_w, last_s = run_dir / "last.safetensors", run_dir / "last.state.pt"
    start_epoch, start_step, rows = 0, 0, []
    loss_sum, loss_n, best = 0.0, 0, -math.inf
    if last_s.is_file() and last_w.is_file():
        state = load_state(last_s)
        load_weights(last_w, model, cfg["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, start_step = int(state["epoch"]), int(state["step"])
        loss_sum, loss_n = float(state["loss_sum"]), int(state["loss_n"])
        best = float(state["best"])
        rows = list(state["rows"])
        torch.set_rng_state(state["torch_rng"])
        if dist.main:
            print(f"[{run_dir.name}] resuming at epoch {start_epoch + 1}, step {start_step}")
    elif init_weights is not None:
        ae_state, _ = read_weights(init_weights)
        transfer_autoencoder_weights(ae_state, model)
        if dist.main:
            print(f"[{run_dir.name}] initialised from {init_weights} (first output channel)")
    if dist.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "config.yml", yaml.safe_dump(
            {**cfg, "stage_mode": dataset_mode, "stage_epochs": epochs, "stage_lr": lr,
             "num_classes": num_classes, "world_size": dist.world}, sort_keys=False))
    ddp_model = model
    if dist.enabled:
        ddp_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[dist.device.index] if dist.device.type == "cuda" else None)
    sampler = DistributedSampler(train_set, num_replicas=dist.world, rank=dist.rank,
                                 shuffle=True, seed=seed, drop_last=False)
    bs = int(cfg["batch_size"])

    def save_last(epoch: int, step: int) -> None:
        if not dist.main:
            return
        save_weights(last_w, model, cfg["model"])
        save_state(last_s, {"optimizer": optimizer.state_dict(), "epoch": epoch, "step": step,
                            "loss_sum": loss_sum, "loss_n": loss_n, "best": best,
                            "rows": rows, "torch_rng": torch.get_rng_state()})

    stopped = False
    for epoch in range(start_epoch, epochs):
        sampler.set_epoch(epoch)
        train_set.set_epoch(epoch)
        skip = start_step if epoch == start_epoch else 0
        if skip == 0:
            loss_sum, loss_n = 0.0, 0
        indices = list(sampler)[skip * bs:]
        loader = DataLoader(train_set, batch_size=bs, sampler=IndexSampler(indices),
                            num_workers=int(cfg["num_workers"]),
                            persistent_workers=False, drop_last=False)
        model.train()
        t0, seen = time.perf_counter(), 0
        bar = tqdm(loader, desc=f"{run_dir.name} {epoch + 1}/{epochs}", disable=not dist.main,
                   leave=False, dynamic_ncols=True, mininterval=1.0)
        step = skip
        for x, y in bar:
            x, y = x.to(dist.device), y.to(dist.device)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(dist.device.type, dtype=amp_dtype, enabled=amp):
                logits = ddp_model(x)
            loss = criterion(logits.float(), y)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
            step += 1
            seen += x.shape[0]
            loss_sum += float(loss.detach()) * x.shape[0]
            loss_n += x.shape[0]
            rate = seen / max(time.perf_counter() - t0, 1e-9)
            bar.set_postfix(loss=f"{loss_sum / max(loss_n, 1):.4f}", img_s=f"{rate:.2f}")
            flag = stopper.requested if stopper is not None else False
            if dist.all_sum([1.0 if flag else 0.0])[0] > 0:
                stopped = True
                break
        bar.close()
        if stopped:
            save_last(epoch, step)
            if dist.main:
                print(f"[{run_dir.name}] interrupted: saved {last_w} (epoch {epoch + 1}, "
                      f"step {step}); continue with --resume")
            return {"interrupted": True}
        seconds = time.perf_counter() - t0
        ls, ln, n_seen = dist.all_sum([loss_sum, float(loss_n), float(seen)])
        row: dict[str, Any] = {"epoch": epoch + 1, "train_loss": ls / max(ln, 1),
                               "lr": optimizer.param_groups[0]["lr"],
                               "images_per_s": n_seen / max(seconds, 1e-9),
                               "seconds": round(seconds, 2)}
        is_eval = test_set is not None and ((epoch + 1) % int(cfg["eval_every"]) == 0
                                            or epoch + 1 == epochs)
        if is_eval:
            ev = evaluate(model, test_set, dist, float(cfg["threshold"]), amp)
            row.update({k: ev[k] for k in ("precision", "recall", "dice", "jaccard")})
            score = ev["dice"]
        else:
            score = -row["train_loss"] if test_set is None else -math.inf
        rows.append(row)
        improved = score > best
        if improved:
            best = score
        loss_sum, loss_n = 0.0, 0
        if dist.main:
            if improved:
                save_weights(run_dir / "best.safetensors", model, cfg["model"])
            save_last(epoch + 1, 0)
            _write_csv(rows, run_dir / "metrics.csv")
            _plot_curves(rows, run_dir / "curves.png", run_dir.name)
            msg = " ".join(f"{k}={v:.4f}" for k, v in row.items()
                           if isinstance(v, float) and k != "lr")
            tqdm.write(f"[{run_dir.name}] epoch {epoch + 1}/{epochs} {msg}")
    result: dict[str, Any] = {"interrupted": False, "epochs": epochs,
                              "parameters": sum(p.numel() for p in model.parameters())}
    if test_set is not None:
        load_weights(run_dir / "best.safetensors", model, cfg["model"])
        ev = evaluate(model, test_set, dist, float(cfg["threshold"]), amp)
        best_row = max((r for r in rows if r.get("dice") not in (None, "")),
                       key=lambda r: r["dice"])
        result["final"] = {k: rows[-1][k] for k in ("epoch", "precision", "recall", "dice",
                                                    "jaccard")}
        result.update({"best_epoch": best_row["epoch"],
                       "test": {k: ev[k] for k in ("n_images", "precision", "recall", "dice",
                                                   "jaccard")},
                       "per_image": ev["per_image"]})
    result["final_train_loss"] = rows[-1]["train_loss"] if rows else None
    if dist.main:
        atomic_write_json(run_dir / "results.json", result)
    return result


# --------------------------------------------------------------------------- main
def run(cfg: dict[str, Any], run_dir: Path, dist: Dist) -> dict[str, Any]:
    """Train according to ``cfg``; ``semi`` runs pre-training then fine-tuning."""
    import yaml

    from shared.atomic import atomic_write_json, atomic_write_text

    t0 = time.perf_counter()
    if dist.main:
        atomic_write_text(run_dir / "config.yml", yaml.safe_dump(cfg, sort_keys=False))
    with Stopper() as stopper:
        if cfg["mode"] == "semi":
            pre_dir = run_dir / "pretrain"
            done = (pre_dir / "results.json").is_file()
            if not done:
                pre = train_stage(cfg, pre_dir, dist, dataset_mode="semi",
                                  epochs=int(cfg["pretrain_epochs"]), lr=float(cfg["pretrain_lr"]),
                                  num_classes=3, evaluate_test=False, stopper=stopper)
                if pre["interrupted"]:
                    return pre
            result = train_stage(cfg, run_dir, dist, dataset_mode=cfg["finetune_mode"],
                                 epochs=int(cfg["epochs"]), lr=float(cfg["lr"]), num_classes=1,
                                 evaluate_test=True, init_weights=pre_dir / "last.safetensors",
                                 stopper=stopper)
        else:
            result = train_stage(cfg, run_dir, dist, dataset_mode=cfg["mode"],
                                 epochs=int(cfg["epochs"]), lr=float(cfg["lr"]), num_classes=1,
                                 evaluate_test=True, stopper=stopper)
    if not result.get("interrupted"):
        result["wall_time_s"] = round(time.perf_counter() - t0, 1)
        result["mode"], result["model"] = cfg["mode"], cfg["model"]
        if dist.main:
            atomic_write_json(run_dir / "results.json", result)
    return result


def resolve(args: argparse.Namespace) -> tuple[dict[str, Any], Path]:
    """Config and run folder from the command line (or from the run being resumed)."""
    import yaml

    from mars_cracknet.config import ConfigError, load_config, parse_set, validate

    overrides = parse_set(args.set)
    for key in ("mode", "model", "data", "runs", "epochs", "pretrain_epochs", "batch_size",
                "lr", "ratio", "crop_size", "seed", "device", "amp"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    if args.resume is not None:
        cfg_path = args.resume / "config.yml"
        if not cfg_path.is_file():
            raise ConfigError(f"{cfg_path}: not a run folder (config.yml missing)")
        saved = yaml.safe_load(cfg_path.read_text(encoding="utf-8"))
        if saved.get("stage_mode") == "semi":  # resuming inside the pre-training folder
            args.resume = args.resume.parent
            saved = yaml.safe_load((args.resume / "config.yml").read_text(encoding="utf-8")) \
                if (args.resume / "config.yml").is_file() else saved
        cfg = load_config("paper", {k: v for k, v in saved.items() if k in load_config("paper")})
        # a resumed run keeps its settings; only where it runs and how long may change
        cfg.update({k: v for k, v in overrides.items()
                    if k in ("device", "amp", "epochs", "pretrain_epochs")})
        return validate(cfg), args.resume
    cfg = validate(load_config(args.profile, overrides))
    name = args.name or f"{cfg['model']}_{cfg['mode']}"
    runs = Path(cfg["runs"])
    if not runs.is_absolute():
        runs = REPO_ROOT / runs
    data = Path(cfg["data"])
    if not data.is_absolute() and not data.exists() and (REPO_ROOT / data).exists():
        cfg["data"] = str(REPO_ROOT / data)
    return cfg, runs / name


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from mars_cracknet.checkpoint import CheckpointError
    from mars_cracknet.config import ConfigError
    from mars_cracknet.data.mars import DatasetError

    try:
        cfg, run_dir = resolve(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    threads = args.threads or int(os.environ.get("OMP_NUM_THREADS", "2"))
    import torch

    torch.set_num_threads(max(1, threads))
    dist = Dist(str(cfg["device"]))
    try:
        result = run(cfg, run_dir, dist)
    except (DatasetError, CheckpointError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        dist.close()
    if result.get("interrupted"):
        return 130
    if dist.main and "test" in result:
        t = result["test"]
        print(f"[{run_dir.name}] best epoch {result['best_epoch']}: precision "
              f"{t['precision']:.4f} recall {t['recall']:.4f} dice {t['dice']:.4f} "
              f"jaccard {t['jaccard']:.4f} -> {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
