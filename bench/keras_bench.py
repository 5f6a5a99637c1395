"""Keras (TensorFlow backend) child: training steps, input pipelines and crater tiling.

``python -m bench.keras_bench train --entries crater_resunet,ice_patch_cnn --out DIR``
``python -m bench.keras_bench tiling --entries crater_resunet --out DIR``

Each entry reads its subproject's profile (``paper``; ``--quick``: ``quick`` at tiny sizes)
and builds model, optimiser and loss with the subproject's own ``build``/``compile`` functions
and data with its own synthetic generator and input pipeline. The peak of this process: a large
``tf.linalg.matmul`` (fp32; bf16 where the CPU has it natively) and the theoretical FMA peak.
FLOPs are counted analytically from the layer shapes (:func:`forward_flops`; a training step
is taken as 3x the forward pass).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
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

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _threads(name: str, n: int) -> None:
    """The subproject's own thread cap (``set_threads`` of its trainer or model module)."""
    import importlib

    module = {"crater_resunet": "crater_resunet.train", "ice_patch_cnn": "ice_patch_cnn.model"}
    importlib.import_module(module[name]).set_threads(n)


def tf_peaks(quick: bool, threads: int) -> dict[str, Any]:
    import tensorflow as tf

    sizes = (256,) if quick else (2048, 4096)
    bf16_ok, bf16_note = native_bf16()
    out: dict[str, Any] = {"theoretical": theoretical_peak(threads), "bf16_native": bf16_ok,
                           "bf16_note": bf16_note,
                           "kernels": "tf.linalg.matmul "
                                      f"{' and '.join(f'{n}^3' for n in sizes)}; best of 5"}
    for prec, dtype in (("fp32", tf.float32), ("bf16", tf.bfloat16)):
        if prec == "bf16" and not bf16_ok:
            continue
        measured = {}
        for n in sizes:
            a = tf.cast(tf.random.normal((n, n)), dtype)
            b = tf.cast(tf.random.normal((n, n)), dtype)
            t = time_reps(lambda a=a, b=b: tf.linalg.matmul(a, b).numpy(), 2, 5)["best_s"]
            measured[f"tf.linalg.matmul {n}"] = 2 * n**3 / t / 1e9
        peak, source = best_peak(measured, out["theoretical"][f"{prec}_gflops"])
        out[prec] = {"measured_gflops": measured, "peak_gflops": peak, "source": source}
    return out


def forward_flops(model) -> int:
    """Multiply-add FLOPs (2 per MAC) of one sample's forward pass over Conv2D,
    SeparableConv2D, DepthwiseConv2D, Conv2DTranspose and Dense layers (like
    ``FlopCounterMode``, normalisation, activations and pooling are left out)."""
    total, stack = 0, list(model.layers)
    while stack:
        layer = stack.pop(0)
        if getattr(layer, "layers", None):  # nested model
            stack[:0] = list(layer.layers)
            continue
        cls = layer.__class__.__name__
        if cls not in ("Conv2D", "SeparableConv2D", "DepthwiseConv2D", "Conv2DTranspose",
                       "Dense"):
            continue
        ins, outs = tuple(layer.input.shape), tuple(layer.output.shape)
        if cls == "Dense":
            total += 2 * int(np.prod(outs[1:-1] or (1,))) * ins[-1] * outs[-1]
            continue
        kh, kw = layer.kernel_size
        cin, (ho, wo) = ins[-1], outs[1:3]
        if cls == "Conv2D":
            total += 2 * ho * wo * outs[-1] * kh * kw * cin // getattr(layer, "groups", 1)
        elif cls == "Conv2DTranspose":
            total += 2 * ins[1] * ins[2] * cin * outs[-1] * kh * kw
        else:
            dm = getattr(layer, "depth_multiplier", 1)
            total += 2 * ho * wo * cin * dm * kh * kw
            if cls == "SeparableConv2D":
                total += 2 * ho * wo * cin * dm * outs[-1]
    return int(total)


# ----------------------------------------------------------------------------- recipes
def _crater_cfg(quick: bool) -> dict:
    from crater_resunet.config import load_config

    cfg = load_config("quick" if quick else "paper")
    if quick:
        cfg["data"]["image_size"] = [32, 32]
    return cfg


def _crater_model(cfg: dict, quick: bool):
    """The profile's model; ``--quick`` runs it eagerly (graph tracing would dominate)."""
    from crater_resunet.model import build_resunet, compile_model

    size = tuple(int(v) for v in cfg["data"]["image_size"])
    m, t = cfg["model"], cfg["train"]
    model = build_resunet((*size, 3), int(m["base_filters"]),
                          bn_momentum=float(m.get("bn_momentum", 0.99)))
    return compile_model(model, float(t["learning_rate"]), float(t["weight_decay"]),
                         float(t["threshold"]), jit_compile=t.get("jit_compile", "auto"),
                         run_eagerly=quick)


def crater_recipe(args: argparse.Namespace):
    """(cfg, model factory, batch, batch iterator factory, notes)."""
    from crater_resunet.data import index_split, make_dataset
    from crater_resunet.data.synthetic import write_dataset

    cfg = _crater_cfg(args.quick)
    d, t = cfg["data"], cfg["train"]
    size = int(d["image_size"][0])
    batch = min(int(t["batch_size"]), args.batch_cap)
    root = WORK_DIR / "crater_resunet" / f"synthetic{size}"
    write_dataset(root, n_train=8, n_valid=1, size=size, seed=0)
    index = index_split(root, "train", warn=False)

    def batches():
        ds = make_dataset(index, image_size=(size, size), batch_size=batch,
                          mask_shape=d["mask_shape"], shuffle=True, seed=int(cfg["seed"]),
                          cache=bool(d.get("cache", False)), channel_order=d["channel_order"],
                          augment=bool(d.get("augment", False)))
        return iter(ds.repeat())

    return (cfg, lambda: _crater_model(cfg, args.quick), batch, int(t["batch_size"]),
            f"{size}x{size}x3", batches,
            f"ResNet-UNet base {cfg['model']['base_filters']}, BCE+Dice, AdamW lr "
            f"{t['learning_rate']}, tf.data from crater_resunet.data.make_dataset")


def ice_recipe(args: argparse.Namespace):
    from ice_patch_cnn.chunk import ChunkSpec, chunk_image
    from ice_patch_cnn.config import load_config
    from ice_patch_cnn.data.sequence import ChunkBatches
    from ice_patch_cnn.data.synthetic import generate_scenes
    from ice_patch_cnn.model import compile_model, model_from_config
    from ice_patch_cnn.train import load_chunk

    cfg = load_config("quick" if args.quick else "paper")
    d, t = cfg["data"], cfg["train"]
    size = 32 if args.quick else int(d["chunk_size"])
    # batch >= 2: the trainer never forms a one-chunk batch (degenerate BatchNorm statistics)
    batch = max(2, min(int(t["batch_size"]), args.batch_cap))
    root = WORK_DIR / "ice_patch_cnn" / f"chunks{size}"
    scenes = generate_scenes(root / "scenes", 1, (3 * size, 3 * size),
                             cfg["synthetic"]["train_kinds"], seed=0, progress=False)
    chunk_image(root / "scenes" / scenes[0]["image"], root / "chunks", ChunkSpec(size=size))
    files = sorted(str(p) for p in (root / "chunks").rglob("*.png"))
    if len(files) < batch:
        raise ValueError(f"{root}: {len(files)} chunks kept, fewer than a batch of {batch}")
    files = files[:len(files) // batch * batch]  # whole batches only
    labels = (np.arange(len(files)) % 2).astype(np.float32)  # the cost ignores the labels

    def batches():
        seq = ChunkBatches(files, labels, batch, lambda p: load_chunk(p, size),
                           cache={} if t.get("cache", False) else None)
        while True:  # epochs over the kept chunks, each a fresh pass of the sequence
            for k in range(len(seq)):
                yield seq[k]

    def model():
        m = compile_model(model_from_config(cfg, size), float(t["learning_rate"]))
        m.run_eagerly = bool(args.quick)  # --quick: no graph tracing (as ice's tiny tests)
        return m

    return (cfg, model, batch, int(t["batch_size"]), f"{size}x{size}x1", batches,
            f"Xception width {cfg['model']['width_scale']}, BCE, Adam lr {t['learning_rate']}, "
            f"{len(files)} chunks by ice_patch_cnn.chunk, read by data.sequence.ChunkBatches")


RECIPES = {"crater_resunet": crater_recipe, "ice_patch_cnn": ice_recipe}


def loader_vs_memory(model, batches, steps: int) -> dict[str, Any]:
    it = batches()
    cached = [tuple(np.asarray(v) for v in next(it)) for _ in range(2 * steps + 1)]
    del it
    model.train_on_batch(*cached[0])
    mem = iter(cached[1:])

    def memory() -> float:
        t0 = time.perf_counter()
        for _ in range(steps):
            model.train_on_batch(*next(mem))
        return time.perf_counter() - t0

    def disk() -> float:
        it = batches()
        model.train_on_batch(*next(it))
        t0 = time.perf_counter()
        for _ in range(steps):
            model.train_on_batch(*next(it))
        return time.perf_counter() - t0

    return loader_record(steps, *alternate(memory, disk), batches)


def train_entry(name: str):
    def run(args: argparse.Namespace) -> dict[str, Any]:
        import keras

        _threads(name, args.threads)
        peaks = tf_peaks(args.quick, args.threads)
        cfg, make_model, batch, paper_batch, shape, batches, notes = RECIPES[name](args)
        x, y = (np.asarray(v) for v in next(batches()))
        out: dict[str, Any] = {"model": name, "profile": cfg.get("profile"), "notes": notes,
                               "input": shape, "batch": batch, "paper_batch": paper_batch,
                               "peaks": peaks, "variants": {}}
        for prec in ("fp32", "bf16"):
            if prec == "bf16" and (args.quick or not peaks["bf16_native"]):
                out["variants"]["bf16"] = {"skipped": "not in --quick (a second model "
                                           "build)" if args.quick else peaks["bf16_note"]}
                continue
            keras.mixed_precision.set_global_policy("mixed_bfloat16" if prec == "bf16"
                                                    else "float32")
            keras.utils.set_random_seed(0)
            t0 = time.perf_counter()
            model = make_model()
            model.train_on_batch(x, y)  # traces the step
            first = time.perf_counter() - t0
            if "flops_per_step" not in out:
                out["flops_per_step"] = 3 * forward_flops(model) * batch
                out["params"] = int(model.count_params())
            t = time_reps(lambda m=model: m.train_on_batch(x, y), 0, args.reps)
            t.update(build_and_first_step_s=round(first, 1), images_per_s=batch / t["median_s"])
            out["variants"][prec] = t
            if prec == "fp32":
                out["loader"] = loader_vs_memory(model, batches,
                                                 loader_steps(t["median_s"], args.quick))
            del model
            keras.backend.clear_session()
        keras.mixed_precision.set_global_policy("float32")
        out["peaks"] = merge_peaks(peaks, tf_peaks(args.quick, args.threads))
        add_utilisation(name, out["variants"], out["flops_per_step"], out["peaks"])
        return out

    return run


class Recording:
    """The Keras model as ``predict_probability`` uses it (``input_shape``, ``predict``),
    recording the shape of every batch so that the same forwards can be replayed alone."""

    def __init__(self, model):
        self.model, self.shapes = model, []
        self.input_shape = model.input_shape

    def predict(self, x, verbose=0):
        self.shapes.append(tuple(np.shape(x)))
        return self.model.predict(x, verbose=verbose)

    def replay_s(self) -> float:
        rng, total = np.random.default_rng(0), 0.0
        for shape in self.shapes:
            x = rng.random(shape, dtype=np.float32)
            t0 = time.perf_counter()
            self.model.predict(x, verbose=0)
            total += time.perf_counter() - t0
        return total


def tile_crater(args: argparse.Namespace) -> dict[str, Any]:
    from crater_resunet.data.synthetic import make_tile
    from crater_resunet.image_predict import predict_probability

    _threads("crater_resunet", args.threads)
    cfg = _crater_cfg(args.quick)
    th = int(cfg["data"]["image_size"][0])
    size = 4 * th if args.quick else 1024
    overlap = th // 4 if args.quick else int(cfg["predict"]["overlap"])
    gray, _ = make_tile(np.random.default_rng(0), size)
    image = np.repeat(gray[..., None], 3, axis=-1).astype(np.float32) / 255.0
    model = _crater_model(cfg, args.quick)
    rec = Recording(model)

    def tiled() -> float:
        rec.shapes.clear()
        t0 = time.perf_counter()
        predict_probability(rec, image, mode="tile", overlap=overlap)
        return time.perf_counter() - t0

    out = tiled_vs_pure(tiled, rec.replay_s)
    out.update(image=f"{size}x{size} (crater_resunet.data.synthetic.make_tile, grey as RGB)",
               predictor="crater_resunet.image_predict.predict_probability (mode tile, "
                         "shared.engine)", tile=th,
               overlap=overlap, forward_calls=len(rec.shapes),
               windows_predicted=int(sum(s[0] for s in rec.shapes)))
    return out


ENTRIES = {"train": {name: train_entry(name) for name in RECIPES},
           "tiling": {"crater_resunet": tile_crater}}


def main(argv: list[str] | None = None) -> int:
    return child_main(ENTRIES, "Keras child of bench/run.py (one framework per process).",
                      argv)


if __name__ == "__main__":
    sys.exit(main())

