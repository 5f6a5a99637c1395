"""Keras (TensorFlow backend) benchmark child: training steps and the crater input pipeline.

Run by ``bench/run.py`` as ``python -m bench.keras_bench <task> --json OUT [--model NAME]``.

Tasks
- ``train``: the matrix-multiply peak of this process (``tf.linalg.matmul`` fp32 and bf16), then
  ``model.train_on_batch`` of ``--model`` at its paper input size in each variant (fp32 graph,
  fp32 with XLA, ``mixed_bfloat16``). FLOPs are counted analytically from the layer shapes
  (:func:`forward_flops`; a training step is taken as 3x the forward pass).
- ``pipeline``: the crater ``tf.data`` pipeline against a plain Python generator that re-reads
  and resizes every file in the training thread (what the original crater code does), and
  against the same batches already in memory.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import WORK_DIR, NotBuilt, need, run_child, time_reps

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

KERAS_MODELS = ("crater_resunet", "ice_patch_cnn")
DEFAULT_VARIANTS = ("fp32", "fp32_xla", "bf16")
# fp32_b1: the crater step at batch 1, the batch the first bench runs used, beside batch 4
KNOWN_VARIANTS = (*DEFAULT_VARIANTS, "fp32_b1")
CRATER_BATCH = 4  # of the paper's 16: 4 fits this CPU's memory and time budget


def _tf_threads(n: int) -> None:
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(n)
    except RuntimeError:  # already initialised
        pass


def tf_matmul_peak(n: int, reps: int = 5) -> dict[str, Any]:
    import tensorflow as tf

    out: dict[str, Any] = {"n": n}
    for name, dtype in (("fp32", tf.float32), ("bf16", tf.bfloat16)):
        a = tf.cast(tf.random.normal((n, n)), dtype)
        b = tf.cast(tf.random.normal((n, n)), dtype)
        t = time_reps(lambda a=a, b=b: tf.linalg.matmul(a, b).numpy(), warmup=2, reps=reps)
        out[f"{name}_gflops"] = 2.0 * n**3 / t["median_s"] / 1e9
        out[f"{name}_times_s"] = t["times_s"]
    return out


def cpu_has_native_bf16() -> bool:
    """Whether the CPU advertises bf16 arithmetic (AVX512-BF16 or AMX-BF16)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            flags = next((ln.split(":", 1)[1].split() for ln in fh if ln.startswith("flags")),
                         [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _shape(tensor) -> tuple:
    return tuple(tensor.shape)


def forward_flops(model) -> dict[str, int]:
    """Multiply-add FLOPs (2 per MAC) of one sample's forward pass, per layer type.

    Counts Conv2D, SeparableConv2D (depthwise + pointwise), DepthwiseConv2D, Conv2DTranspose
    and Dense from their input and output shapes; like ``FlopCounterMode`` it leaves out
    normalisation, activations, pooling and element-wise adds.
    """
    totals: dict[str, int] = {}
    stack = list(model.layers)
    while stack:
        layer = stack.pop(0)
        if hasattr(layer, "layers") and layer.layers:  # nested model
            stack[:0] = list(layer.layers)
            continue
        cls = layer.__class__.__name__
        if cls not in ("Conv2D", "SeparableConv2D", "DepthwiseConv2D", "Conv2DTranspose",
                       "Dense"):
            continue
        ins, outs = _shape(layer.input), _shape(layer.output)
        if cls == "Dense":
            rows = int(np.prod([d for d in outs[1:-1]] or [1]))
            f = 2 * rows * ins[-1] * outs[-1]
        else:
            kh, kw = layer.kernel_size
            cin = ins[-1]
            hi, wi = ins[1], ins[2]
            ho, wo = outs[1], outs[2]
            if cls == "Conv2D":
                f = 2 * ho * wo * outs[-1] * kh * kw * cin // getattr(layer, "groups", 1)
            elif cls == "Conv2DTranspose":
                f = 2 * hi * wi * cin * outs[-1] * kh * kw
            else:
                dm = getattr(layer, "depth_multiplier", 1)
                f = 2 * ho * wo * cin * dm * kh * kw
                if cls == "SeparableConv2D":
                    f += 2 * ho * wo * cin * dm * outs[-1]
        totals[cls] = totals.get(cls, 0) + int(f)
    totals["total"] = sum(totals.values())
    return totals


# ------------------------------------------------------------------------------ the models
def _crater_info(quick: bool, variant: str = "fp32") -> dict[str, Any]:
    size, base, batch = (64, 4, 2) if quick else (256, 64, CRATER_BATCH)
    if variant == "fp32_b1":
        batch = 1
    return {"input": f"{size}x{size}x3", "batch": batch, "base_filters": base,
            "paper_input": "256x256x3, batch 16", "kind": "dense conv",
            "notes": "ResNet-UNet, 0.5 BCE + 0.5 (1 - Dice), AdamW, paper metrics"}


def _ice_info(quick: bool) -> dict[str, Any]:
    size, scale, batch = (64, 0.0625, 2) if quick else (1024, 1.0, 1)
    return {"input": f"{size}x{size}x1", "batch": batch, "width_scale": scale,
            "paper_input": "1024x1024x1 chunks, batch 25", "kind": "separable conv",
            "notes": "Xception-style chunk classifier, BCE, Adam"}


def _crater(quick: bool, variant: str):
    build = need("crater_resunet.model", "build_resunet")
    compile_model = need("crater_resunet.model", "compile_model")
    info = _crater_info(quick, variant)
    size, batch = int(info["input"].split("x")[0]), info["batch"]
    model = build((size, size, 3), base_filters=info["base_filters"])
    compile_model(model, jit_compile=variant.endswith("_xla"))
    rng = np.random.default_rng(0)
    x = rng.random((batch, size, size, 3), dtype=np.float32)
    y = (rng.random((batch, size, size, 1)) > 0.7).astype(np.float32)
    return model, x, y, info


def _ice(quick: bool, variant: str):
    import keras

    build = need("ice_patch_cnn.model", "build_xception")
    size, scale, batch = (64, 0.0625, 2) if quick else (1024, 1.0, 1)
    model = build((size, size, 1), width_scale=scale)
    compile_fn = None
    try:
        compile_fn = need("ice_patch_cnn.model", "compile_model")
    except Exception:
        compile_fn = None
    if compile_fn is not None:
        try:
            compile_fn(model, jit_compile=variant.endswith("_xla"))
        except TypeError:
            compile_fn = None
    if compile_fn is None:
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy",
                      metrics=["accuracy"], jit_compile=variant.endswith("_xla"))
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (batch, size, size, 1)).astype(np.float32)
    y = rng.integers(0, 2, (batch, 1)).astype(np.float32)
    return model, x, y, {"input": f"{size}x{size}x1", "batch": batch, "width_scale": scale,
                         "paper_input": "1024x1024x1 chunks, batch 25",
                         "kind": "separable conv",
                         "notes": "Xception-style chunk classifier, BCE, Adam"}


BUILDERS = {"crater_resunet": _crater, "ice_patch_cnn": _ice}


def task_train(args: argparse.Namespace) -> dict[str, Any]:
    import keras

    _tf_threads(args.threads)
    if args.model not in BUILDERS:
        raise ValueError(f"unknown model {args.model!r}; expected one of {sorted(BUILDERS)}")
    peak = tf_matmul_peak(256 if args.quick else 2048, reps=3 if args.quick else 5)
    variants = args.variants.split(",") if args.variants else list(DEFAULT_VARIANTS)
    out: dict[str, Any] = {"model": args.model, "peak": peak, "variants": {}}
    if not args.quick and "bf16" in variants and not cpu_has_native_bf16():
        variants.remove("bf16")  # emulated bf16 steps at the paper size take many minutes
        out["skipped_variants"] = {"bf16": "not timed: this CPU has no native bf16 "
                                           "(no avx512_bf16 / amx_bf16 flag); bf16 matmul runs "
                                           f"at {peak['bf16_gflops']:.1f} GFLOP/s against "
                                           f"{peak['fp32_gflops']:.0f} in fp32"}
    for variant in variants:
        if variant not in KNOWN_VARIANTS or (variant == "fp32_b1"
                                             and args.model != "crater_resunet"):
            raise ValueError(f"unknown variant {variant!r} for {args.model}")
        keras.mixed_precision.set_global_policy("mixed_bfloat16" if variant == "bf16"
                                                else "float32")
        keras.utils.set_random_seed(0)
        t0 = time.perf_counter()
        model, x, y, info = BUILDERS[args.model](args.quick, variant)
        model.train_on_batch(x, y)  # traces (and XLA-compiles) the step
        first_s = time.perf_counter() - t0
        t = time_reps(lambda m=model, x=x, y=y: m.train_on_batch(x, y), args.warmup, args.reps)
        t["images_per_s"] = info["batch"] / t["median_s"]
        t["batch"] = info["batch"]
        t["build_and_first_step_s"] = round(first_s, 1)
        out["variants"][variant] = t
        if variant == "fp32" and args.loader_steps:
            try:  # the same (traced, warm) model fed by the input pipelines
                out["loader"] = {"status": "ok", **pipeline_compare(
                    args.model, args.quick, args.loader_steps, 1, model)}
            except NotBuilt as exc:
                out["loader"] = {"status": "not built yet", "reason": str(exc)}
            except Exception as exc:  # the training figures stay valid
                out["loader"] = {"status": "error",
                                 "reason": f"{exc.__class__.__name__}: {exc}"}
        if "flops_per_step" not in out:
            fwd = forward_flops(model)
            out.update({k: v for k, v in info.items()})
            out["params"] = int(model.count_params())
            out["forward_flops_per_sample"] = fwd
            out["flops_per_step"] = 3 * fwd["total"] * info["batch"]
            out["flops_method"] = "analytic from layer shapes: 3 x forward (conv/dense MACs x2)"
        del model
        keras.backend.clear_session()
    keras.mixed_precision.set_global_policy("float32")
    return out


# ------------------------------------------------------------------------ input pipeline
def _write_yolo(root: Path, n: int, size: int) -> None:
    """Synthetic crater tiles in the YOLO layout: JPEG images and one box per line."""
    from PIL import Image

    from shared.atomic import atomic_path, atomic_write_text

    img_dir, lbl_dir = root / "train" / "images", root / "train" / "labels"
    img_dir.mkdir(parents=True, exist_ok=True)
    lbl_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        ip, lp = img_dir / f"c{i:03d}.jpg", lbl_dir / f"c{i:03d}.txt"
        if ip.is_file() and lp.is_file():
            continue
        base = rng.integers(0, 255, (size // 8, size // 8, 3), dtype=np.uint8)
        with atomic_path(ip) as tmp:
            Image.fromarray(base).resize((size, size), Image.BILINEAR).save(tmp, "JPEG")
        boxes = rng.random((5, 4)) * [0.8, 0.8, 0.2, 0.2] + [0.1, 0.1, 0.02, 0.02]
        atomic_write_text(lp, "".join(f"0 {a:.4f} {b:.4f} {c:.4f} {d:.4f}\n"
                                      for a, b, c, d in boxes))


def python_generator(images: list[Path], labels: list[Path], size: int, batch: int):
    """What the original crater code does: OpenCV read + resize per file, in the loop."""
    import cv2

    while True:
        for i in range(0, len(images) - batch + 1, batch):
            xs, ys = [], []
            for ip, lp in zip(images[i:i + batch], labels[i:i + batch]):
                img = cv2.imread(str(ip))
                img = cv2.resize(img, (size, size)).astype(np.float32) / 255.0
                mask = np.zeros((size, size, 1), np.float32)
                for line in Path(lp).read_text().splitlines():
                    parts = line.split()
                    if len(parts) != 5:
                        continue
                    _, xc, yc, bw, bh = map(float, parts)
                    x0, y0 = int((xc - bw / 2) * size), int((yc - bh / 2) * size)
                    x1, y1 = int((xc + bw / 2) * size), int((yc + bh / 2) * size)
                    mask[max(y0, 0):y1, max(x0, 0):x1] = 1.0
                xs.append(img)
                ys.append(mask)
            yield np.stack(xs), np.stack(ys)


def _write_ice_chunks(root: Path, n: int, size: int) -> list[Path]:
    from PIL import Image

    from shared.atomic import atomic_path

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        p = root / f"chunk{i:03d}.png"
        paths.append(p)
        if p.is_file():
            continue
        coarse = rng.integers(1, 255, (size // 16, size // 16), dtype=np.uint8)
        img = np.kron(coarse, np.ones((16, 16), np.uint8))
        with atomic_path(p) as tmp:
            Image.fromarray(img).save(tmp, format="PNG")
    return paths


def _pipelines(model_name: str, quick: bool, n_batches: int, model=None):
    """(model, batch, info, tf.data iterator factory, Python generator factory)."""
    if model_name == "crater_resunet":
        index_split = need("crater_resunet.data", "index_split")
        make_dataset = need("crater_resunet.data", "make_dataset")
        src_size, size = (128, 64) if quick else (640, 256)
        if model is None:
            model, _, _, info = _crater(quick, "fp32")
        else:
            info = _crater_info(quick)
        batch = info["batch"]
        n_files = max(8, batch * n_batches)
        root = WORK_DIR / "crater_resunet" / f"yolo{src_size}"
        _write_yolo(root, n_files, src_size)
        index = index_split(root, "train", warn=False)
        files = f"{n_files} synthetic {src_size}x{src_size} JPEG + YOLO labels"

        def tfdata():  # one iterator over repeated epochs, as in a long fit
            ds = make_dataset(index, image_size=(size, size), batch_size=batch, shuffle=True)
            return iter(ds.repeat())

        def generator():
            return python_generator(index.images, index.labels, size, batch)
    elif model_name == "ice_patch_cnn":
        make_dataset = need("ice_patch_cnn.train", "make_dataset")
        from shared.images import read_image

        if model is None:
            model, _, _, info = _ice(quick, "fp32")
        else:
            info = _ice_info(quick)
        batch = info["batch"]
        size = 64 if quick else 1024
        n_files = max(8, batch * n_batches)
        paths = _write_ice_chunks(WORK_DIR / "ice_patch_cnn" / f"png{size}", n_files, size)
        labels = (np.arange(n_files) % 5 == 0).astype("float32")
        files = f"{n_files} synthetic {size}x{size} grayscale PNG chunks"

        def tfdata():  # one iterator over repeated epochs, as in a long fit
            ds = make_dataset([str(p) for p in paths], labels, size, batch, shuffle=True)
            return iter(ds.repeat())

        def generator():
            while True:
                for i in range(0, n_files - batch + 1, batch):
                    x = np.stack([read_image(p, mode="L") for p in paths[i:i + batch]])
                    yield x[..., None].astype(np.float32), labels[i:i + batch, None]
    else:
        raise ValueError(f"unknown model {model_name!r}; expected one of {sorted(BUILDERS)}")
    return model, batch, {**info, "files": files}, tfdata, generator


def task_pipeline(args: argparse.Namespace) -> dict[str, Any]:
    """tf.data vs a Python generator vs batches in memory, feeding train_on_batch."""
    import keras

    _tf_threads(args.threads)
    keras.utils.set_random_seed(0)
    return pipeline_compare(args.model or "crater_resunet", args.quick, args.reps, args.warmup)


def pipeline_compare(model_name: str, quick: bool, steps: int, warmup: int, model=None
                     ) -> dict[str, Any]:
    model, batch, info, tfdata_iter, gen_iter = _pipelines(model_name, quick,
                                                           steps + warmup + 1, model)
    args = argparse.Namespace(model=model_name, warmup=warmup)
    out: dict[str, Any] = {"model": args.model or "crater_resunet", "batch": batch,
                           "steps": steps, "warmup": args.warmup, "input": info["input"],
                           "files": info["files"]}
    # the pipelines alone: batches/s (16 batches: each takes milliseconds, and fewer would
    # time little more than one epoch boundary of a 16-file set)
    n_only = max(steps, 16)
    for name, make in (("tfdata", tfdata_iter), ("generator", gen_iter)):
        it = make()
        next(it)
        t0 = time.perf_counter()
        for _ in range(n_only):
            next(it)
        out[f"{name}_only_batches_per_s"] = n_only / (time.perf_counter() - t0)
    # training fed by each, and by the same batches already in memory, in blocks ordered
    # memory, tf.data, generator, generator, tf.data, memory (a drift of the machine's speed
    # weighs on all three alike); each pipeline block is a fresh iterator after the warm-up
    it = tfdata_iter()
    cached = [tuple(np.asarray(t) for t in next(it)) for _ in range(2 * (steps + args.warmup))]
    del it
    in_memory = iter(cached)
    feeds = {"memory": lambda: in_memory, "tfdata": tfdata_iter, "generator": gen_iter}
    model.train_on_batch(*cached[0])  # trace once
    total = dict.fromkeys(feeds, 0.0)
    order = ("memory", "tfdata", "generator", "generator", "tfdata", "memory")
    for name in order:
        it = feeds[name]()
        for _ in range(args.warmup):
            model.train_on_batch(*next(it))
        t0 = time.perf_counter()
        for _ in range(steps):
            model.train_on_batch(*next(it))
        total[name] += time.perf_counter() - t0
    out["order"] = ", ".join(order)
    for name, seconds in total.items():
        out[f"{name}_steps_per_s"] = 2 * steps / seconds
    return out


TASKS = {"train": task_train, "pipeline": task_pipeline}


def main(argv: list[str] | None = None) -> int:
    return run_child(TASKS, "Keras benchmark child of bench/run.py (one task per process).",
                     argv)


if __name__ == "__main__":
    sys.exit(main())
