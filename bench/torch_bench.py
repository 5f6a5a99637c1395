"""PyTorch benchmark child: training-step throughput, data loaders, tiled inference.

Run by ``bench/run.py`` as ``python -m bench.torch_bench <task> --json OUT [--model NAME]``;
one framework (torch) per process, one task per process so that its peak RSS is its own.

Tasks
- ``train``: the matrix-multiply peak of this process (fp32 and bf16 ``torch.mm``), then one
  full training step (forward, loss, backward, optimiser) of ``--model`` at its paper input
  size, timed in each variant (fp32, bf16 autocast, channels-last, torch.compile), with the
  step's FLOPs counted by ``torch.utils.flop_counter.FlopCounterMode``.
- ``loader``: the same step fed by the subproject's own dataset class and a ``DataLoader``
  reading files from disk, against the same batches already in memory.
- ``dune_tile``: ``dune_vlm.inference_tile.predict_raster`` on a synthetic 64-band GeoTIFF
  against the pure model forward over the same number of windows (and its peak RSS).
- ``crack_tile``: Mars-CrackNet tiled prediction of a large image (Mpx/s, peak RSS).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import WORK_DIR, NotBuilt, need, parse_size, run_child, time_reps

TORCH_MODELS = ("mars_cracknet", "dune_vlm", "s5mars_ssl", "reference")
DEFAULT_VARIANTS = ("fp32", "bf16", "fp32_cl", "bf16_cl")


# ----------------------------------------------------------------------------------- peak
def matmul_peak(n: int, reps: int = 5) -> dict[str, Any]:
    """GFLOP/s of an n x n x n ``torch.mm`` in fp32 and bf16 (median of ``reps``)."""
    import torch

    native = bf16_native()
    out: dict[str, Any] = {"n": n, "bf16_native": native,
                           "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        if name == "bf16" and not native:  # emulated bf16 is ~50x slower: a smaller product
            n = min(n, 512)
            out["bf16_n"] = n
        a = torch.randn(n, n).to(dtype)
        b = torch.randn(n, n).to(dtype)
        c = torch.empty(n, n, dtype=dtype)
        t = time_reps(lambda a=a, b=b, c=c: torch.mm(a, b, out=c), warmup=2, reps=reps)
        out[f"{name}_gflops"] = 2.0 * n**3 / t["median_s"] / 1e9
        out[f"{name}_times_s"] = t["times_s"]
    return out


def bf16_native() -> bool:
    """Whether oneDNN has native bf16 kernels on this CPU (AVX512-BF16 / AMX); without them
    torch falls back to slow reference kernels for bf16 convolutions and matmuls."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


# ------------------------------------------------------------------------------ the models
@dataclass
class ModelSpec:
    """One model at one input size with its loss, optimiser and batch builders."""

    name: str
    model: Any
    batch_size: int
    input_shape: tuple[int, ...]  # per sample, (C, H, W)
    paper_input: str
    make_batch: Any  # () -> tuple of tensors (x, y, ...)
    loss: Any  # (model, batch) -> scalar tensor
    optimizer: Any  # (model) -> optimiser
    kind: str  # "dense conv" | "transformer" ... (for the target)
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _rand_image(batch: int, shape: tuple[int, ...], seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.rand((batch, *shape), generator=g)


def spec_mars_cracknet(quick: bool) -> ModelSpec:
    import torch

    ResUNet = need("mars_cracknet.models.resunet", "ResUNet")
    build_loss = need("mars_cracknet.utils.loss", "build_loss")
    size, batch = (32, 2) if quick else (224, 2)
    model = ResUNet(num_classes=1)
    crit = build_loss("bce_dice", 0.5)

    def make_batch():
        x = _rand_image(batch, (3, size, size))
        y = (_rand_image(batch, (1, size, size), 1) > 0.9).float()
        return x, y

    return ModelSpec(
        "mars_cracknet", model, batch, (3, size, size), "3x224x224 crops, batch 16",
        make_batch, lambda m, b: crit(m(b[0]), b[1]),
        lambda m: torch.optim.Adam(m.parameters(), lr=1e-4, weight_decay=5e-4),
        "dense conv", "ResUNet (Mars-CrackNet), BCE+Dice, Adam")


def spec_dune_vlm(quick: bool) -> ModelSpec:
    import torch
    import torch.nn.functional as F

    build = need("dune_vlm.models.fusion", "build_fusion_model")
    size, batch = (32, 1) if quick else (512, 1)
    model = build(num_classes=10, text_dim=512, in_chans=64)
    g = torch.Generator().manual_seed(0)
    text = F.normalize(torch.randn(10, 512, generator=g), dim=1)

    def make_batch():
        x = torch.randn((batch, 64, size, size), generator=torch.Generator().manual_seed(1)) * 0.3
        y = torch.randint(0, 10, (batch, size, size), generator=torch.Generator().manual_seed(2))
        return x, y

    def loss(m, b):
        return F.cross_entropy(m(b[0], text), b[1], ignore_index=255)

    return ModelSpec(
        "dune_vlm", model, batch, (64, size, size), "64x512x512 embedding tiles, batch 4",
        make_batch, loss,
        lambda m: torch.optim.AdamW(m.parameters(), lr=6e-5, weight_decay=0.01),
        "transformer", "SegFormer MiT + text alignment (fusion), CE, AdamW",
        extra={"text": text})


def spec_s5mars_ssl(quick: bool) -> ModelSpec:
    import torch

    DeepLab = need("s5mars_ssl.augseg.models.model_helper", "DeepLabV3Plus")
    Ohem = need("s5mars_ssl.augseg.utils.loss_helper", "OhemCrossEntropy")
    # batch 2: the ASPP image-pooling BatchNorm cannot train on one 1x1 sample
    size, batch = (32, 2) if quick else (512, 2)
    model = DeepLab(num_classes=9)
    # min_kept 100000 for 8 x 512^2 labelled pixels in the paper, scaled to this batch
    min_kept = max(1, int(100000 * batch * size * size / (8 * 512 * 512)))
    crit = Ohem(0.7, min_kept)

    def make_batch():
        x = torch.randn((batch, 3, size, size), generator=torch.Generator().manual_seed(1))
        y = torch.randint(0, 9, (batch, size, size), generator=torch.Generator().manual_seed(2))
        return x, y

    return ModelSpec(
        "s5mars_ssl", model, batch, (3, size, size), "3x512x512 crops, batch 8+8",
        make_batch, lambda m, b: crit(m(b[0]), b[1]),
        lambda m: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4),
        "dense conv", "DeepLabv3+ ResNet-50c, supervised step with OHEM CE, SGD "
        "(the semi-supervised step adds a teacher forward and a second student batch)")


def spec_reference(quick: bool) -> ModelSpec:
    """A plain conv net owned by the bench: what a straightforward PyTorch conv step reaches."""
    import torch
    from torch import nn

    size, batch, width = (32, 2, 16) if quick else (112, 2, 64)
    layers: list[nn.Module] = [nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width),
                               nn.ReLU(inplace=True)]
    for _ in range(5):
        layers += [nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                   nn.ReLU(inplace=True)]
    layers.append(nn.Conv2d(width, 1, 1))
    model = nn.Sequential(*layers)

    def make_batch():
        return _rand_image(batch, (3, size, size)), _rand_image(batch, (1, size, size), 1)

    return ModelSpec(
        "reference", model, batch, (3, size, size), "none: the bench's own control",
        make_batch, lambda m, b: nn.functional.mse_loss(m(b[0]), b[1]),
        lambda m: torch.optim.Adam(m.parameters(), lr=1e-4),
        "dense conv", f"7 convs 3x3 at {width} channels, full resolution, MSE, Adam")


SPECS = {"mars_cracknet": spec_mars_cracknet, "dune_vlm": spec_dune_vlm,
         "s5mars_ssl": spec_s5mars_ssl, "reference": spec_reference}


def build_spec(name: str, quick: bool) -> ModelSpec:
    if name not in SPECS:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(SPECS)}")
    return SPECS[name](quick)


def count_params(model) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def step_flops(spec: ModelSpec, batch) -> int:
    """FLOPs of forward + loss + backward, counted by FlopCounterMode (fp32)."""
    from torch.utils.flop_counter import FlopCounterMode

    spec.model.train()
    spec.model.zero_grad(set_to_none=True)
    with FlopCounterMode(display=False) as counter:
        loss = spec.loss(spec.model, batch)
        loss.backward()
    spec.model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def _to_format(batch, channels_last: bool):
    import torch

    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return tuple(t.contiguous(memory_format=fmt) if t.ndim == 4 and t.is_floating_point() else t
                 for t in batch)


def make_step(spec: ModelSpec, model, opt, variant: str):
    """A closure doing one training step on a given batch in the given variant."""
    import torch

    amp = variant.startswith("bf16")

    def step(batch):
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            loss = spec.loss(model, batch)
        loss.backward()
        opt.step()
        return loss

    return step


def task_train(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    peak = matmul_peak(256 if args.quick else 2048, reps=3 if args.quick else 5)
    spec = build_spec(args.model, args.quick)
    batch = spec.make_batch()
    flops = step_flops(spec, batch)
    opt = spec.optimizer(spec.model)
    spec.model.train()
    variants = args.variants.split(",") if args.variants else list(DEFAULT_VARIANTS)
    results: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    if not peak["bf16_native"] and not args.quick and args.model != "reference":
        for v in [v for v in variants if v.startswith("bf16")]:
            variants.remove(v)
            skipped[v] = (f"not timed: this CPU ({peak['cpu_capability']}) has no native bf16, "
                          f"bf16 matmul runs at {peak['bf16_gflops']:.1f} GFLOP/s against "
                          f"{peak['fp32_gflops']:.0f} in fp32; see the reference model")
    for k, variant in enumerate(variants):
        if variant not in ("fp32", "bf16", "fp32_cl", "bf16_cl", "fp32_compile",
                           "bf16_compile"):
            raise ValueError(f"unknown variant {variant!r}")
        cl = variant.endswith("_cl")
        model = spec.model.to(memory_format=torch.channels_last if cl
                              else torch.contiguous_format)
        compile_s = None
        if variant.endswith("_compile"):
            t0 = time.perf_counter()
            model = torch.compile(spec.model)
            make_step(spec, model, opt, variant)(batch)  # compile happens here
            compile_s = time.perf_counter() - t0
        b = _to_format(batch, cl)
        step = make_step(spec, model, opt, variant)
        slow = variant.startswith("bf16") and not peak["bf16_native"] and not args.quick
        # emulated bf16 steps take minutes: one untimed-warm-up-free repetition
        # the FLOP-counting forward + backward already warmed up the first variant's kernels
        warm = max(0, args.warmup - 1) if k == 0 else args.warmup
        t = time_reps(lambda step=step, b=b: step(b), 0 if slow else warm,
                      1 if slow else args.reps)
        if slow:
            t["note"] = "emulated bf16 (no native bf16 on this CPU): 1 repetition, no warm-up"
        t["images_per_s"] = spec.batch_size / t["median_s"]
        if compile_s is not None:
            t["compile_s"] = round(compile_s, 1)
        results[variant] = t
    spec.model.to(memory_format=torch.contiguous_format)
    rec: dict[str, Any] = {}
    if args.loader_steps:
        try:  # one warm-up step each (memory: re-warm after the last variant; disk: workers)
            rec["loader"] = {"status": "ok", **loader_compare(
                spec, opt, args.quick, args.loader_steps, 1, 1, args.loader_alternative)}
        except NotBuilt as exc:
            rec["loader"] = {"status": "not built yet", "reason": str(exc)}
        except Exception as exc:  # the training figures stay valid
            rec["loader"] = {"status": "error", "reason": f"{exc.__class__.__name__}: {exc}"}
    return {
        **rec,
        "model": spec.name, "kind": spec.kind, "notes": spec.notes,
        "params": count_params(spec.model), "batch": spec.batch_size,
        "input": "x".join(map(str, spec.input_shape)), "paper_input": spec.paper_input,
        "flops_per_step": flops, "peak": peak, "variants": results,
        "skipped_variants": skipped,
    }


# ------------------------------------------------------------------------- data loaders
def _loader_mars_cracknet(quick: bool, batch: int):
    from torch.utils.data import DataLoader

    gen = need("mars_cracknet.data.synthetic", "generate_dataset")
    Crack = need("mars_cracknet.data.mars", "CrackDataset")
    large, crop, train_crop = (96, 48, 32) if quick else (672, 336, 224)
    root = gen(WORK_DIR / "mars_cracknet" / ("quick" if quick else "full"), seed=0,
               n_mars_large=1, large_size=large, crops_per_large=8, crop_size=crop,
               n_mars_test=1, test_size=64, n_earth=1, earth_size=64, n_earth_unlabelled=1,
               n_mars_unlabelled=1, unlabelled_size=64)
    ds = Crack.for_mode(root, "mars", crop_size=train_crop, train=True, seed=0)
    workers = 2  # the paper profile's num_workers
    loader = DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers, drop_last=True)
    return loader, (lambda b: (b[0], b[1])), {
        "dataset": f"synthetic PNG crops {crop}x{crop} -> random {train_crop} crop + "
                   "albumentations (CrackDataset)", "workers": workers}


def _write_dune_tiles(root: Path, n: int, size: int) -> None:
    from PIL import Image

    from shared.atomic import atomic_path

    img_dir, ann_dir = root / "img_dir" / "train", root / "ann_dir" / "train"
    img_dir.mkdir(parents=True, exist_ok=True)
    ann_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        ipath, apath = img_dir / f"t{i:03d}.npy", ann_dir / f"t{i:03d}.png"
        if ipath.is_file() and apath.is_file():
            continue
        arr = (rng.standard_normal((64, size, size), dtype=np.float32) * 0.3)
        with atomic_path(ipath) as tmp:
            np.save(tmp, arr)
        lab = rng.integers(0, 10, (size, size), dtype=np.uint8)
        with atomic_path(apath) as tmp:
            Image.fromarray(lab).save(tmp, format="PNG")


def _loader_dune_vlm(quick: bool, batch: int, workers: int = 0):
    from torch.utils.data import DataLoader

    Dune = need("dune_vlm.utils.dataset", "DuneDataset")
    collate = need("dune_vlm.engine", "collate")
    size = 32 if quick else 512
    root = WORK_DIR / "dune_vlm" / f"tiles{size}"
    _write_dune_tiles(root, 6, size)
    ds = Dune(root, "train", augment=True)
    loader = DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers,
                        collate_fn=collate, drop_last=True)
    return loader, (lambda b: (b[0], b[1])), {
        "dataset": f"synthetic 64x{size}x{size} float32 .npy tiles + PNG labels (DuneDataset, "
                   "flip/rot90 augmentation)", "workers": workers}


def _write_s5mars_images(root: Path, n: int, size: int) -> list[str]:
    from PIL import Image

    from shared.atomic import atomic_path

    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    stems = []
    for i in range(n):
        stem = f"s{i:03d}"
        stems.append(stem)
        ipath, lpath = root / "images" / f"{stem}.jpg", root / "labels" / f"{stem}.png"
        if ipath.is_file() and lpath.is_file():
            continue
        base = rng.integers(0, 255, (size // 8, size // 8, 3), dtype=np.uint8)
        img = Image.fromarray(base).resize((size, size), Image.BILINEAR)
        with atomic_path(ipath) as tmp:
            img.save(tmp, format="JPEG", quality=90)
        lab = rng.integers(0, 9, (size // 16, size // 16), dtype=np.uint8)
        with atomic_path(lpath) as tmp:
            Image.fromarray(lab).resize((size, size), Image.NEAREST).save(tmp, format="PNG")
    return stems


def _loader_s5mars_ssl(quick: bool, batch: int):
    from torch.utils.data import DataLoader

    Mars = need("s5mars_ssl.augseg.dataset.mars", "MarsDataset")
    size, crop = (64, 32) if quick else (1200, 512)
    root = WORK_DIR / "s5mars_ssl" / f"img{size}"
    stems = _write_s5mars_images(root, 8, size)
    cfg = {"mean": [0.625, 0.519, 0.363], "std": [0.1342, 0.1212, 0.0995], "base_size": size,
           "crop_size": crop, "scale": (0.5, 2.0), "flip": True}
    ds = Mars(root, stems, "labeled", cfg)
    workers = 2  # the paper profile asks for 4; this machine has 2 cores
    loader = DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers, drop_last=True)
    return loader, (lambda b: (b["image"], b["label"])), {
        "dataset": f"synthetic {size}x{size} JPEG + PNG labels, random scale 0.5-2 + {crop} crop "
                   "+ flip (MarsDataset, labelled mode)", "workers": workers}


def _loader_reference(quick: bool, batch: int):
    """Bench-owned: PNG files read with shared.read_image in a DataLoader (a control)."""
    import torch
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset

    from shared.atomic import atomic_path
    from shared.images import read_image

    size = 32 if quick else 224
    root = WORK_DIR / "reference" / f"png{size}"
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(8):
        p = root / f"r{i:03d}.png"
        if not p.is_file():
            with atomic_path(p) as tmp:
                Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(
                    tmp, format="PNG")
        paths.append(p)

    class Png(Dataset):
        def __len__(self):
            return len(paths)

        def __getitem__(self, i):
            x = torch.from_numpy(read_image(paths[i], mode="RGB")).permute(2, 0, 1).float() / 255
            return x, x[:1].clone()

    loader = DataLoader(Png(), batch_size=batch, shuffle=True, num_workers=2, drop_last=True)
    return loader, (lambda b: (b[0], b[1])), {"dataset": f"random {size}x{size} PNGs",
                                              "workers": 2}


def task_loader(args: argparse.Namespace) -> dict[str, Any]:
    """Steps/s fed from disk by the subproject's loader vs the same batches in memory."""
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    spec = build_spec(args.model, args.quick)
    opt = spec.optimizer(spec.model)
    alternative = (args.variants or "") == "alternative"
    return loader_compare(spec, opt, args.quick, args.reps, args.warmup, args.warmup,
                          alternative)


# the loader setting each subproject is also timed in (config name, maker keywords)
ALTERNATIVE_LOADERS = {"dune_vlm": ("workers2", {"workers": 2})}


def loader_compare(spec: ModelSpec, opt, quick: bool, steps: int, warm_mem: int,
                   warm_disk: int, alternative: bool = False) -> dict[str, Any]:
    """The fp32 step fed by the subproject's DataLoader from disk against the same batches
    already in memory, timed in blocks ordered memory, disk, disk, memory (``steps`` steps per
    block, each disk block a fresh loader iteration after ``warm_disk`` untimed steps); plus
    the loader alone."""
    import torch

    makers = {"mars_cracknet": _loader_mars_cracknet, "dune_vlm": _loader_dune_vlm,
              "s5mars_ssl": _loader_s5mars_ssl, "reference": _loader_reference}
    out: dict[str, Any] = {"model": spec.name, "batch": spec.batch_size, "steps": steps,
                           "warmup": warm_disk, "variant": "fp32"}
    configs: list[tuple[str, dict[str, Any]]] = [("default", {})]
    if alternative and spec.name in ALTERNATIVE_LOADERS:
        configs.append(ALTERNATIVE_LOADERS[spec.name])
    spec.model.to(memory_format=torch.contiguous_format)
    step = make_step(spec, spec.model, opt, "fp32")
    spec.model.train()
    for name, kw in configs:
        loader, unpack, info = makers[spec.name](quick, spec.batch_size, **kw)

        def batches(loader=loader):
            while True:  # new epochs (and worker start-ups) count, as in training
                yield from loader

        # the same batches in memory: materialised first, untimed
        it = batches()
        cached = [unpack(next(it)) for _ in range(warm_mem + 2 * steps)]
        del it
        for b in cached[:warm_mem]:
            step(b)
        mem = iter(cached[warm_mem:])

        def memory_block(mem=mem) -> float:
            t0 = time.perf_counter()
            for _ in range(steps):
                step(next(mem))
            return time.perf_counter() - t0

        def disk_block(batches=batches, unpack=unpack) -> float:
            it = batches()  # a fresh loader iteration (workers start, as in a new epoch)
            for _ in range(warm_disk):
                step(unpack(next(it)))
            t0 = time.perf_counter()
            for _ in range(steps):
                step(unpack(next(it)))
            return time.perf_counter() - t0

        # memory, disk, disk, memory: a drift of the machine's speed over the run (other
        # tenants, thermal state) weighs on both sides alike
        mem_s = memory_block()
        disk_s = disk_block() + disk_block()
        mem_s += memory_block()
        # the loader alone, no training: how many batches/s the pipeline delivers
        it = batches()
        next(it)
        n_only = max(steps, 4)
        t0 = time.perf_counter()
        for _ in range(n_only):
            next(it)
        only_s = time.perf_counter() - t0
        del it
        out[name] = {**info, "memory_steps_per_s": 2 * steps / mem_s,
                     "disk_steps_per_s": 2 * steps / disk_s,
                     "order": "memory, disk, disk, memory",
                     "loader_only_batches_per_s": n_only / only_s}
    return out


# ------------------------------------------------------------------------- large rasters
def _write_multiband(path: Path, bands: int, h: int, w: int, seed: int = 0) -> Path:
    """A tiled, uncompressed int8 GeoTIFF with a CRS (written once, reused)."""
    if path.is_file():
        return path
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    from shared.rasters import geotiff_writer

    rng = np.random.default_rng(seed)
    with geotiff_writer(path, width=w, height=h, count=bands, dtype="int8", crs="EPSG:4326",
                        transform=from_origin(10.0, 20.0, 1e-4, 1e-4), compress="NONE",
                        interleave="pixel") as dst:
        step = 256
        for r in range(0, h, step):
            rh = min(step, h - r)
            dst.write(rng.integers(-100, 100, (bands, rh, w), dtype=np.int8),
                      window=Window(0, r, w, rh))
    return path


def task_dune_tile(args: argparse.Namespace) -> dict[str, Any]:
    """predict_raster wall vs pure forward of the same windows; peak RSS of this process."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    predict_raster = need("dune_vlm.inference_tile", "predict_raster")
    build = need("dune_vlm.models.fusion", "build_fusion_model")
    quick = args.quick
    tile, stride, batch = (32, 16, 2) if quick else (512, 256, 4)
    h, w = parse_size(args.size, (64, 64) if quick else (768, 768))
    block = int(args.variants) if args.variants and args.variants.isdigit() else \
        (64 if quick else 2048)
    model = build(num_classes=10, text_dim=512, in_chans=64).eval()
    text = F.normalize(torch.randn(10, 512), dim=1)
    src = _write_multiband(WORK_DIR / "dune_vlm" / f"raster_{h}x{w}.tif", 64, h, w)
    out_dir = WORK_DIR / "dune_vlm" / "out"
    x = torch.randn(batch, 64, tile, tile) * 0.3

    def forward():
        with torch.inference_mode():
            torch.softmax(model(x, text).float(), dim=1)

    fwd = time_reps(forward, args.warmup, args.reps)  # also warms the model up
    walls, stats = [], {}
    for i in range(args.reps):
        t0 = time.perf_counter()
        stats = predict_raster(src, out_dir / f"map_{h}x{w}_{i}.tif", model, text,
                               tile_size=tile, stride=stride, block=block, batch_size=batch,
                               progress=False)
        walls.append(time.perf_counter() - t0)
    n_win = int(stats.get("windows_predicted", 0))
    import statistics

    return {"raster": f"{h}x{w}x64 int8 GeoTIFF (random values)", "height": h, "width": w,
            "tile": tile, "stride": stride, "block": block, "batch": batch,
            "windows_predicted": n_win, "windows_total": stats.get("windows_total"),
            "wall_times_s": [round(t, 3) for t in walls], "wall_median_s": statistics.median(walls),
            "forward_batch_median_s": fwd["median_s"], "forward_batch_times_s": fwd["times_s"],
            "pure_forward_s": n_win / batch * fwd["median_s"],
            "mpx_per_s": h * w / 1e6 / statistics.median(walls)}


def task_crack_tile(args: argparse.Namespace) -> dict[str, Any]:
    """Mars-CrackNet's own tiled prediction (``predict.predict_image``) of a large GeoTIFF."""
    import torch
    from rasterio.transform import from_origin

    from shared.rasters import geotiff_writer

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ResUNet = need("mars_cracknet.models.resunet", "ResUNet")
    predict_tensor = need("mars_cracknet.inference", "predict_tensor")
    predict_image = need("mars_cracknet.predict", "predict_image")
    open_source = need("mars_cracknet.predict", "open_source")
    h, w = parse_size(args.size, (96, 96) if args.quick else (1024, 1024))
    tile, overlap = (64, 16) if args.quick else (512, 64)
    net = ResUNet(num_classes=1).eval()
    path = WORK_DIR / "mars_cracknet" / f"large_geo_{h}x{w}.tif"
    if not path.is_file():
        rng = np.random.default_rng(0)
        with geotiff_writer(path, width=w, height=h, count=3, dtype="uint8", crs="EPSG:4326",
                            transform=from_origin(0, 0, 1e-5, 1e-5)) as dst:
            dst.write(rng.integers(0, 255, (3, h, w), dtype=np.uint8))

    class Counting:  # the model as predict_tensor calls it, counting the tiles
        def __init__(self, model):
            self.model, self.calls = model, 0

        def __call__(self, x):
            self.calls += 1
            return self.model(x)

    variants = args.variants.split(",") if args.variants else ["fp32"]
    out: dict[str, Any] = {"image": f"{h}x{w} RGB uint8 GeoTIFF (random values)", "height": h,
                           "width": w, "tile": tile, "overlap": overlap,
                           "pipeline": "mars_cracknet.predict.predict_image (mask GeoTIFF)"}
    x = torch.rand(1, 3, tile, tile)
    for variant in variants:
        if variant not in ("fp32", "bf16", "fp32_cl", "bf16_cl"):
            raise ValueError(f"unknown variant {variant!r}")
        amp = variant.startswith("bf16")
        net.to(memory_format=torch.channels_last if variant.endswith("_cl")
               else torch.contiguous_format)
        fwd = time_reps(lambda amp=amp: predict_tensor(net, x, amp=amp), args.warmup,
                        args.reps)
        counting = Counting(net)
        src = open_source(path)
        t0 = time.perf_counter()
        try:
            predict_image(counting, src, WORK_DIR / "mars_cracknet" / f"pred_{variant}",
                          tile=tile, overlap=overlap, amp=amp)
        finally:
            src.close()
        wall = time.perf_counter() - t0
        out[variant] = {"wall_s": wall, "tiles": counting.calls, "mpx_per_s": h * w / 1e6 / wall,
                        "tile_forward_median_s": fwd["median_s"],
                        "pure_forward_s": counting.calls * fwd["median_s"]}
    return out


TASKS = {"train": task_train, "loader": task_loader, "dune_tile": task_dune_tile,
         "crack_tile": task_crack_tile}


def main(argv: list[str] | None = None) -> int:
    return run_child(TASKS, "PyTorch benchmark child of bench/run.py (one task per process).",
                     argv)


if __name__ == "__main__":
    sys.exit(main())
