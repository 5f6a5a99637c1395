"""PyTorch child: training steps, data loaders and tiled inference of the three torch papers.

``python -m bench.torch_bench train --entries mars_cracknet,dune_vlm,s5mars_ssl --out DIR``
``python -m bench.torch_bench tiling --entries dune_vlm,mars_cracknet,s5mars_ssl --out DIR``

Every entry reads its subproject's own profile (``paper``; ``--quick``: ``quick`` at tiny
sizes) and builds model, optimiser, loss and data from the subproject's own constructors and
synthetic generator. ``train``: the peak kernels of this process, then one full training step
(forward, loss, backward, optimiser) in fp32 and, where the CPU has native bf16, under bf16
autocast, its FLOPs counted by ``FlopCounterMode``; then the same step fed by the
subproject's DataLoader against the same batches in memory. ``tiling``: the subproject's own
large-image predictor against the pure model forward replayed over the very same windows.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import (
    WORK_DIR,
    add_utilisation,
    alternate,
    best_peak,
    child_main,
    loader_record,
    loader_steps,
    merge_peaks,
    native_bf16,
    theoretical_peak,
    tiled_vs_pure,
    time_reps,
)

CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


# ------------------------------------------------------------------------------ the peak
def torch_peaks(quick: bool, threads: int) -> dict[str, Any]:
    """Large ``torch.mm`` and 3x3 ``conv2d`` in fp32 (and bf16 where native) + theory."""
    import torch
    import torch.nn.functional as F

    sizes, hw, ch = ((256,), 32, 32) if quick else ((2048, 4096), 128, 256)
    bf16_ok, bf16_note = native_bf16()
    out: dict[str, Any] = {"theoretical": theoretical_peak(threads), "bf16_native": bf16_ok,
                           "bf16_note": bf16_note,
                           "kernels": f"torch.mm {' and '.join(f'{n}^3' for n in sizes)}; "
                                      f"conv2d 3x3 {ch}->{ch} and 1x1 {2 * ch}->{2 * ch} "
                                      f"(oneDNN) on {hw}x{hw}; best of 5"}
    for prec, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        if prec == "bf16" and not bf16_ok:
            continue
        measured = {}
        with torch.inference_mode():
            for n in sizes:
                a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
                mm = time_reps(lambda a=a, b=b: torch.mm(a, b), 2, 5)["best_s"]
                measured[f"torch.mm {n}"] = 2 * n**3 / mm / 1e9
            for k, c in ((3, ch), (1, 2 * ch)):  # 1x1: the GEMM of linear/MLP layers, oneDNN
                x = torch.randn(1, c, hw, hw, dtype=dtype)
                w = torch.randn(c, c, k, k, dtype=dtype)
                cv = time_reps(lambda x=x, w=w, k=k: F.conv2d(x, w, padding=k // 2), 2,
                               5)["best_s"]
                measured[f"conv2d {k}x{k}"] = 2 * hw * hw * c * c * k * k / cv / 1e9
        peak, source = best_peak(measured, out["theoretical"][f"{prec}_gflops"])
        out[prec] = {"measured_gflops": measured, "peak_gflops": peak, "source": source}
    return out


# ----------------------------------------------------------------------------- recipes
@dataclass
class Recipe:
    """One paper's training step as its subproject builds it."""

    profile: str
    model: Any
    optimizer: Any
    loss: Any  # (model, batch) -> scalar
    loader: Any  # DataLoader over the subproject's dataset and synthetic files
    unpack: Any  # loader item -> batch tuple
    batch: int
    paper_batch: int
    input: str
    notes: str
    extra: dict[str, Any] = field(default_factory=dict)


def _workers(n: int) -> int:
    return max(0, min(int(n), CORES))


def _loader(ds, batch: int, workers: int):
    from torch.utils.data import DataLoader

    return DataLoader(ds, batch_size=batch, shuffle=True, num_workers=_workers(workers),
                      drop_last=True)


def recipe_mars_cracknet(args: argparse.Namespace) -> Recipe:
    import torch

    from mars_cracknet.config import load_config
    from mars_cracknet.data.mars import CrackDataset
    from mars_cracknet.data.synthetic import generate_dataset
    from mars_cracknet.models import build_model
    from mars_cracknet.utils.loss import build_loss

    profile = "quick" if args.quick else "paper"
    cfg = load_config(profile)
    crop = 32 if args.quick else int(cfg["crop_size"])
    batch = min(int(cfg["batch_size"]), args.batch_cap)
    root = generate_dataset(WORK_DIR / "mars_cracknet" / f"crop{crop}", seed=0, n_mars_large=1,
                            large_size=3 * crop, crops_per_large=8, crop_size=3 * crop // 2,
                            n_mars_test=1, test_size=64, n_earth=1, earth_size=64,
                            n_earth_unlabelled=1, n_mars_unlabelled=1, unlabelled_size=64)
    ds = CrackDataset.for_mode(root, cfg["mode"], crop_size=crop, train=True,
                               seed=int(cfg["seed"]))
    model = build_model(cfg["model"], num_classes=1, width=int(cfg["width"]))
    if cfg["optimizer"] != "adam":
        raise ValueError(f"optimizer {cfg['optimizer']!r}: the trainer knows only adam")
    opt = torch.optim.Adam(model.parameters(), lr=float(cfg["lr"]),
                           weight_decay=float(cfg["weight_decay"]))
    crit = build_loss(cfg["loss"], cfg["ratio"])
    return Recipe(profile, model, opt, lambda m, b: crit(m(b[0]), b[1]),
                  _loader(ds, batch, cfg["num_workers"]), lambda b: (b[0], b[1]), batch,
                  int(cfg["batch_size"]), f"3x{crop}x{crop}",
                  f"{cfg['model']}, loss {cfg['loss']}, Adam lr {cfg['lr']}, mode {cfg['mode']}")


def _dune_model(cfg: dict, quick: bool):
    """The profile's dune model and its text embeddings (the profile's file when present)."""
    import torch
    import torch.nn.functional as F

    from dune_vlm.models.fusion import build_model
    from shared.configs import resolve_path

    d = cfg["data"]
    name = cfg["model"]["name"]
    path = resolve_path(cfg["text"]["embed_path"])
    if path is not None and path.is_file():
        text = torch.from_numpy(np.load(path).astype(np.float32))
        note = f"text embeddings {path.name}"
    else:  # the quick file is made by make_text_embeds.py; its content does not change cost
        dim = 384 if quick else 512
        text = F.normalize(torch.randn(int(d["num_classes"]), dim,
                                       generator=torch.Generator().manual_seed(0)), dim=1)
        shown = cfg["text"]["embed_path"]  # as the config names it: no machine path
        note = f"random unit text embeddings ({shown} not found)"
    arch = dict(cfg["model"].get("fusion_arch") or {}) if name == "fusion" else {}
    model = build_model(name, int(d["num_classes"]), int(text.shape[1]), int(d["in_chans"]),
                        **arch)
    return model, text, note


def recipe_dune_vlm(args: argparse.Namespace) -> Recipe:
    import torch

    from dune_vlm.data.synthetic import generate_dataset
    from dune_vlm.utils.config import load_run_config
    from dune_vlm.utils.dataset import DuneDataset

    profile = "quick" if args.quick else "paper"
    cfg = load_run_config(profile)
    d, t = cfg["data"], cfg["train"]
    tile = 32 if args.quick else 512  # the paper's tiles are 64 x 512 x 512
    size, regions = (128, ("namib",)) if args.quick else (1024, ("namib", "mojave"))
    root = WORK_DIR / "dune_vlm" / f"tiles{tile}"
    generate_dataset(root, size=size, tile=tile, seed=0, regions=regions, map_region=None,
                     progress=False)
    ds = DuneDataset(root, "train", int(d["num_classes"]), int(d["in_chans"]), augment=True,
                     seed=int(t["seed"]))
    model, text, note = _dune_model(cfg, args.quick)
    opt = torch.optim.AdamW(model.parameters(), lr=float(t["lr"]),
                            weight_decay=float(t["weight_decay"]))
    crit = torch.nn.CrossEntropyLoss(ignore_index=int(d.get("ignore_index", 255)))
    batch = min(int(t["batch_size"]), args.batch_cap)
    return Recipe(profile, model, opt, lambda m, b: crit(m(b[0], text), b[1]),
                  _loader(ds, batch, t["workers"]), lambda b: (b[0].float(), b[1].long()),
                  batch, int(t["batch_size"]), f"{d['in_chans']}x{tile}x{tile}",
                  f"{cfg['model']['name']}, CE, AdamW lr {t['lr']}; {note}")


def _s5mars_cfg(quick: bool) -> dict:
    from s5mars_ssl.augseg.utils.config import PACKAGE_DIR, load_config

    return load_config(PACKAGE_DIR / "exps" / ("quick/supervised.yaml" if quick
                                                else "s5mars/config_supervised.yaml"))


def _s5mars_data(cfg: dict, quick: bool) -> tuple[Path, list[str], dict]:
    import json

    from s5mars_ssl.augseg.dataset.mars import image_stats
    from s5mars_ssl.data.synthetic import generate

    h, w = (96, 128) if quick else (768, 1024)
    root = generate(WORK_DIR / "s5mars_ssl" / f"scenes{h}x{w}", n_train=8, n_test=1,
                    height=h, width=w, progress=False)
    stems = json.loads((root / "train.json").read_text(encoding="utf-8"))
    dcfg = dict(cfg["dataset"])
    if "auto" in (dcfg["mean"], dcfg["std"]):  # the quick profile measures them, as we do
        dcfg["mean"], dcfg["std"] = image_stats(root, stems)
    return root, stems, dcfg


def recipe_s5mars_ssl(args: argparse.Namespace) -> Recipe:
    import torch

    from s5mars_ssl.augseg.dataset.mars import MarsDataset
    from s5mars_ssl.augseg.models.model_helper import DeepLabV3Plus
    from s5mars_ssl.augseg.utils.loss_helper import OhemCrossEntropy
    from s5mars_ssl.augseg.utils.lr_helper import build_optimizer

    cfg = _s5mars_cfg(args.quick)
    root, stems, dcfg = _s5mars_data(cfg, args.quick)
    t, ohem = cfg["trainer"], cfg["criterion"]["ohem"]
    crop = 32 if args.quick else int(dcfg["crop_size"])
    if args.quick:
        dcfg.update(crop_size=crop, base_size=64)
    # batch >= 2: the ASPP image-pooling BatchNorm cannot train on one 1 x 1 sample
    batch = max(2, min(int(t["batch_labeled"]), args.batch_cap))
    ds = MarsDataset(root, stems, "labeled", dcfg, seed=int(cfg["seed"]))
    model = DeepLabV3Plus(num_classes=int(cfg["net"]["num_classes"]))
    opt = build_optimizer(model, t)
    # min_kept is per batch: scaled from the profile's batch and crop to the one timed here
    kept = max(1, int(ohem["min_kept"] * batch * crop**2
                      / (int(t["batch_labeled"]) * int(cfg["dataset"]["crop_size"]) ** 2)))
    crit = (OhemCrossEntropy(ohem["thresh"], kept) if ohem.get("enabled")
            else torch.nn.CrossEntropyLoss(ignore_index=255))
    return Recipe("quick" if args.quick else "paper (config_supervised.yaml)", model, opt,
                  lambda m, b: crit(m(b[0]), b[1]), _loader(ds, batch, dcfg["workers"]),
                  lambda b: (b["image"], b["label"]), batch, int(t["batch_labeled"]),
                  f"3x{crop}x{crop}",
                  f"DeepLabv3+ R50c, supervised step, OHEM min_kept {kept}, SGD lr {t['lr']} "
                  "(the semi-supervised step adds a teacher forward and an unlabelled batch)")


RECIPES = {"mars_cracknet": recipe_mars_cracknet, "dune_vlm": recipe_dune_vlm,
           "s5mars_ssl": recipe_s5mars_ssl}


# ------------------------------------------------------------------------ training step
def _step(rec: Recipe, bf16: bool):
    import torch

    def step(batch):
        rec.optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = rec.loss(rec.model, batch)
        loss.backward()
        rec.optimizer.step()

    return step


def conv_backward_flops(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding,
                        _dilation, transposed, _output_padding, _groups, output_mask,
                        out_shape=None) -> int:
    """FLOPs of ``aten.convolution_backward``: each gradient asked for (input, weight) costs
    the forward's ``2 x batch x spatial x prod(weight shape)``. Replaces torch's formula, which
    ignores ``groups`` and counts the backward of a depthwise 3x3 conv far over (128x at 256
    groups: torch 2.14, 38.8 GFLOP for the 0.30 GFLOP of its two gradients on
    2 x 256 x 128 x 128)."""
    spatial = x_shape[2:] if transposed else grad_out_shape[2:]
    per_grad = 2 * grad_out_shape[0] * int(np.prod(spatial)) * int(np.prod(w_shape))
    return per_grad * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


def step_flops(rec: Recipe, batch) -> int:
    """FLOPs of forward + loss + backward (fp32), counted by ``FlopCounterMode`` with a
    grouped-convolution-aware backward formula (:func:`conv_backward_flops`)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    rec.model.zero_grad(set_to_none=True)
    mapping = {torch.ops.aten.convolution_backward: conv_backward_flops}
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        rec.loss(rec.model, batch).backward()
    rec.model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def loader_vs_memory(rec: Recipe, step, steps: int) -> dict[str, Any]:
    """The step fed by the loader from disk against the same batches held in memory."""

    def batches():
        while True:  # new epochs (and worker start-ups) count, as in training
            yield from rec.loader

    it = batches()
    cached = [rec.unpack(next(it)) for _ in range(2 * steps + 1)]
    del it
    step(cached[0])
    mem = iter(cached[1:])

    def memory() -> float:
        t0 = time.perf_counter()
        for _ in range(steps):
            step(next(mem))
        return time.perf_counter() - t0

    def disk() -> float:
        it = batches()  # a fresh iteration: workers start as in a new epoch
        step(rec.unpack(next(it)))
        t0 = time.perf_counter()
        for _ in range(steps):
            step(rec.unpack(next(it)))
        return time.perf_counter() - t0

    return {**loader_record(steps, *alternate(memory, disk), batches),
            "workers": rec.loader.num_workers}


def train_entry(name: str):
    def run(args: argparse.Namespace) -> dict[str, Any]:
        import torch

        torch.set_num_threads(args.threads)
        torch.manual_seed(0)
        peaks = torch_peaks(args.quick, args.threads)
        rec = RECIPES[name](args)
        rec.model.train()
        batch = rec.unpack(next(iter(rec.loader)))
        flops = step_flops(rec, batch)
        out: dict[str, Any] = {
            "model": name, "profile": rec.profile, "notes": rec.notes, "input": rec.input,
            "batch": rec.batch, "paper_batch": rec.paper_batch, "flops_per_step": flops,
            "params": int(sum(p.numel() for p in rec.model.parameters())), "peaks": peaks,
            "variants": {}}
        for prec in ("fp32", "bf16"):
            if prec == "bf16" and not peaks["bf16_native"]:
                out["variants"]["bf16"] = {"skipped": peaks["bf16_note"]}
                continue
            t = time_reps(lambda p=prec: _step(rec, p == "bf16")(batch), 1, args.reps)
            t.update(images_per_s=rec.batch / t["median_s"])
            out["variants"][prec] = t
        out["peaks"] = merge_peaks(peaks, torch_peaks(args.quick, args.threads))
        add_utilisation(name, out["variants"], flops, out["peaks"])
        steps = loader_steps(out["variants"]["fp32"]["median_s"], args.quick)
        out["loader"] = loader_vs_memory(rec, _step(rec, False), steps)
        return out

    return run


# ------------------------------------------------------------------------ tiled inference
class Recording:
    """The model as a predictor calls it: forwards every call and records its inputs' shapes,
    so that the same forwards can be replayed on their own."""

    def __init__(self, model):
        import torch

        self.model, self.calls = model, []
        wrapper = self

        class _Module(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.inner = model

            def forward(self, *a, **kw):
                wrapper.calls.append(([_shape_or(v) for v in a],
                                      {k: _shape_or(v) for k, v in kw.items()}))
                return self.inner(*a, **kw)

        self.module = _Module()

    def windows(self) -> int:
        return int(sum(a[0][1][0] for a, _ in self.calls))

    def replay_s(self) -> float:
        """Wall time of the recorded forwards alone (random inputs of the same shapes)."""
        import torch

        total = 0.0
        with torch.inference_mode():
            for a, kw in self.calls:
                args = [_make(v) for v in a]
                kwargs = {k: _make(v) for k, v in kw.items()}
                t0 = time.perf_counter()
                self.model(*args, **kwargs)
                total += time.perf_counter() - t0
        return total


def _shape_or(v):
    import torch

    if isinstance(v, torch.Tensor) and v.ndim == 4:
        return ("tensor", tuple(v.shape), v.dtype)
    return ("value", v)


def _make(v):
    import torch

    return torch.randn(v[1]).to(v[2]) if v[0] == "tensor" else v[1]


def _tiled(record: Recording, predict) -> dict[str, Any]:
    """``predict()`` against the forwards it makes, replayed alone (``tiled_vs_pure``)."""

    def tiled() -> float:
        record.calls.clear()
        t0 = time.perf_counter()
        predict()
        return time.perf_counter() - t0

    out = tiled_vs_pure(tiled, record.replay_s)
    out.update(forward_calls=len(record.calls), windows_predicted=record.windows())
    return out


def _decode_s(path) -> float:
    """Seconds to decode every block of a GeoTIFF once, alone, one block row at a time (the
    mapper's reading): a floor of its input cost that the mapper can hide only on idle cores."""
    import rasterio
    from rasterio.windows import Window

    with rasterio.Env(GDAL_CACHEMAX=64), rasterio.open(path) as src:
        bh = src.block_shapes[0][0]
        buf = np.empty((src.count, bh, src.width), np.dtype(src.dtypes[0]))
        t0 = time.perf_counter()
        for r in range(0, src.height, bh):
            n = min(bh, src.height - r)
            src.read(window=Window(0, r, src.width, n), out=buf[:, :n])
        return time.perf_counter() - t0


def tile_dune(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from dune_vlm.data.synthetic import REGIONS, write_scene
    from dune_vlm.inference_tile import predict_raster
    from dune_vlm.utils.config import load_run_config

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = load_run_config("quick" if args.quick else "paper")
    tc = {k: int(v) for k, v in cfg["tile"].items()}  # predict_raster's keywords
    size = 128 if args.quick else 1536
    if args.quick:
        tc.update(tile_size=32, stride=16, **({"block": 64} if "block" in tc else {}))
    model, text, note = _dune_model(cfg, args.quick)
    model.eval()
    out_dir = WORK_DIR / "dune_vlm" / "tiling"
    out_dir.mkdir(parents=True, exist_ok=True)
    src, _ = write_scene(out_dir, REGIONS["namib"], size, 1, 0.33, suffix=f"_{size}")
    rec = Recording(model)
    stats: dict[str, Any] = {}

    def predict():
        stats.update(predict_raster(src, out_dir / f"map_{size}.tif", rec.module, text,
                                    progress=False, **tc))

    res = _tiled(rec, predict)
    res.update(input_decode_s=_decode_s(src), reader=stats.get("reader"),
               raster=f"{size}x{size}x64 float32 GeoTIFF (dune_vlm.data.synthetic)", tile=tc,
               predictor="dune_vlm.inference_tile.predict_raster (shared.engine)",
               notes=note,
               windows_planned=stats.get("windows_total"),
               windows_skipped_nodata=stats.get("windows_skipped_nodata", 0))
    return res


def tile_mars_cracknet(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from PIL import Image

    from mars_cracknet.config import load_config
    from mars_cracknet.data.synthetic import make_scene
    from mars_cracknet.models import build_model
    from mars_cracknet.predict import open_source, predict_image
    from shared.atomic import atomic_path

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = load_config("quick" if args.quick else "paper")
    size = 96 if args.quick else 1536
    kw = {"tile": 64, "overlap": 16} if args.quick else {}  # else predict_image's defaults
    model = build_model(cfg["model"], num_classes=1, width=int(cfg["width"])).eval()
    path = WORK_DIR / "mars_cracknet" / f"scene{size}.png"
    if not path.is_file():
        img, _ = make_scene("mars", (size, size), np.random.default_rng(0))
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            Image.fromarray(img).save(tmp, format="PNG")
    rec = Recording(model)

    def predict():
        src = open_source(path)
        try:
            predict_image(rec.module, src, WORK_DIR / "mars_cracknet" / "tiling", **kw)
        finally:
            if hasattr(src, "close"):
                src.close()

    res = _tiled(rec, predict)
    res.update(image=f"{size}x{size} RGB PNG (mars_cracknet.data.synthetic)",
               predictor="mars_cracknet.predict.predict_image", tile=kw or "defaults")
    return res


def tile_s5mars(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from s5mars_ssl.augseg.dataset.augmentation import normalize
    from s5mars_ssl.augseg.models.model_helper import DeepLabV3Plus
    from s5mars_ssl.augseg.utils.metrics import predict_sliding
    from s5mars_ssl.data.synthetic import render_scene

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = _s5mars_cfg(args.quick)
    d = cfg["dataset"]
    # the sliding-window evaluation of the profile, as the trainer and evaluate.py read it
    h, w, crop, stride = (64, 96, 32, 24) if args.quick else (
        1024, 1536, int(d.get("sliding_crop", d["crop_size"])),
        int(d.get("sliding_stride", d["crop_size"])))
    rgb, _ = render_scene(np.random.default_rng(0), h, w)
    mean = d["mean"] if d["mean"] != "auto" else [0.5, 0.5, 0.5]
    std = d["std"] if d["std"] != "auto" else [0.25, 0.25, 0.25]
    x = torch.from_numpy(normalize(rgb, np.asarray(mean, np.float32),
                                   np.asarray(std, np.float32)))[None]
    model = DeepLabV3Plus(num_classes=int(cfg["net"]["num_classes"])).eval()
    rec = Recording(model)
    res = _tiled(rec, lambda: predict_sliding(rec.module, x, crop, stride,
                                              int(cfg["net"]["num_classes"])))
    res.update(image=f"{h}x{w} RGB (s5mars_ssl.data.synthetic.render_scene)", crop=crop,
               stride=stride,
               predictor="s5mars_ssl.augseg.utils.metrics.predict_sliding (shared.engine)")
    return res


ENTRIES = {
    "train": {name: train_entry(name) for name in RECIPES},
    "tiling": {"dune_vlm": tile_dune, "mars_cracknet": tile_mars_cracknet,
               "s5mars_ssl": tile_s5mars},
}


def main(argv: list[str] | None = None) -> int:
    return child_main(ENTRIES, "PyTorch child of bench/run.py (one framework per process).",
                      argv)


if __name__ == "__main__":
    sys.exit(main())
