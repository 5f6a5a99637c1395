"""GPU benchmark (run it on a machine with a CUDA GPU): training steps at the paper batches.

``python -m bench.gpu_bench all --json OUT`` runs one child process per model (PyTorch models
with ``torch``; the two Keras models under Keras 3's PyTorch backend, since the GPU machine has
no TensorFlow) and writes one JSON record that ``python -m bench.run --attach-gpu OUT`` adds to
``results/bench.json`` and BENCHMARKS.md. Each child measures, in its own process, the GPU's
matrix-multiply peak (fp32 without TF32, TF32, bf16: ``torch.mm`` of 8192^3) and one full
training step (forward, loss, backward, optimiser) of its model at the paper's input size and
batch in several variants; achieved FLOP/s are reported as a fraction of the peak of the same
precision, measured in the same process. Timings synchronise the device around every step.

Variants (PyTorch): ``fp32`` (TF32 off for matmuls and cuDNN), ``tf32`` (TF32 on), ``bf16``
(autocast bf16, TF32 on), ``bf16_cl`` (+ channels-last), ``bf16_cl_compile`` (+
``torch.compile``, its compile time reported apart). Keras: ``fp32`` (Keras's torch-backend
defaults) and ``bf16`` (the ``mixed_bfloat16`` policy).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import ERROR, NOT_BUILT, OK, REPO_ROOT, NotBuilt, need, ratio

TORCH_MODELS = ("reference", "mars_cracknet", "dune_vlm", "s5mars_ssl")
KERAS_MODELS = ("crater_resunet", "ice_patch_cnn")
# the paper batch of each model (per step, labelled part only for the semi-supervised one)
PAPER_BATCH = {"reference": 16, "mars_cracknet": 16, "dune_vlm": 4, "s5mars_ssl": 8,
               "crater_resunet": 16, "ice_patch_cnn": 25}
ORDER = ("reference", "mars_cracknet", "crater_resunet", "dune_vlm", "s5mars_ssl",
         "ice_patch_cnn")
TORCH_VARIANTS = ("fp32", "tf32", "bf16", "bf16_cl", "bf16_cl_compile")
# the seed's figure for the crater model: batch 16 at 256 x 256, 0.54 s per step on a P100
CRATER_SEED = {"device": "NVIDIA Tesla P100", "batch": 16, "input": "256x256x3",
               "s_per_step": 0.54}


DEVICE = "cuda"  # --device cpu: a smoke test of this code on a machine without a GPU


def _sync():
    import torch

    if DEVICE == "cuda":
        torch.cuda.synchronize()


def time_cuda(fn, warmup: int, reps: int) -> dict[str, Any]:
    """Median wall time of ``fn`` with the device synchronised before and after each call."""
    import statistics

    for _ in range(warmup):
        fn()
    _sync()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        _sync()
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "times_s": [round(t, 6) for t in times],
            "warmup": warmup, "reps": reps}


def set_tf32(on: bool) -> None:
    import torch

    if DEVICE != "cuda":
        return
    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on


def gpu_peak(n: int = 8192, reps: int = 10) -> dict[str, Any]:
    """TFLOP/s of an n^3 ``torch.mm`` on the GPU: fp32 (no TF32), TF32 and bf16."""
    import torch

    if DEVICE != "cuda":
        n = 256
    out: dict[str, Any] = {"n": n}
    for name, dtype, tf32 in (("fp32", torch.float32, False), ("tf32", torch.float32, True),
                              ("bf16", torch.bfloat16, True)):
        set_tf32(tf32)
        a = torch.randn(n, n, device=DEVICE).to(dtype)
        b = torch.randn(n, n, device=DEVICE).to(dtype)
        c = torch.empty(n, n, device=DEVICE, dtype=dtype)
        t = time_cuda(lambda a=a, b=b, c=c: torch.mm(a, b, out=c), 3, reps)
        out[f"{name}_tflops"] = 2.0 * n**3 / t["median_s"] / 1e12
        out[f"{name}_times_s"] = t["times_s"]
        del a, b, c
    set_tf32(False)
    _empty_cache()
    return out


def _empty_cache() -> None:
    import torch

    if DEVICE == "cuda":
        torch.cuda.empty_cache()


def _reset_peak() -> None:
    import torch

    if DEVICE == "cuda":
        torch.cuda.reset_peak_memory_stats()


def _peak_mem_gib() -> float | None:
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if DEVICE == "cuda" else None


def device_info() -> dict[str, Any]:
    import torch

    p = torch.cuda.get_device_properties(0)
    info = {"gpu": torch.cuda.get_device_name(0), "capability": f"{p.major}.{p.minor}",
            "memory_gib": round(p.total_memory / 2**30, 1), "sms": p.multi_processor_count,
            "torch": torch.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(), "python": sys.version.split()[0]}
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version,clocks.max.sm",
                              "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=20)
        info["nvidia_smi"] = smi.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            info["host_cpu"] = next((ln.split(":", 1)[1].strip() for ln in fh
                                     if ln.startswith("model name")), None)
    except OSError:
        pass
    info["host_cores"] = os.cpu_count()
    return info


# ------------------------------------------------------------------------------ PyTorch
def _torch_model(name: str, batch: int):
    """(model, batch tensors on the GPU, loss(model, batch), optimiser factory, spec)."""
    import torch.nn.functional as F

    from bench.torch_bench import build_spec

    spec = build_spec(name, quick=False)  # the paper input size
    small = spec.make_batch()

    def tile(t):
        k = -(-batch // t.shape[0])
        return t.repeat(k, *([1] * (t.ndim - 1)))[:batch].contiguous().to(DEVICE)

    tensors = tuple(tile(t) for t in small)
    model = spec.model.to(DEVICE)
    loss = spec.loss
    if name == "dune_vlm":
        text = spec.extra["text"].to(DEVICE)

        def loss(m, b):
            return F.cross_entropy(m(b[0], text), b[1], ignore_index=255)
    elif name == "s5mars_ssl":
        Ohem = need("s5mars_ssl.augseg.utils.loss_helper", "OhemCrossEntropy")
        crit = Ohem(0.7, 100000 * batch // 8)  # the paper's min_kept for 8 crops of 512^2

        def loss(m, b):
            return crit(m(b[0]), b[1])
    elif name == "mars_cracknet":
        crit = need("mars_cracknet.utils.loss", "build_loss")("bce_dice", 0.5).to(DEVICE)

        def loss(m, b):
            return crit(m(b[0]), b[1])
    return model, tensors, loss, spec


def task_torch(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    torch.backends.cudnn.benchmark = True
    peak = gpu_peak(reps=args.reps)
    batch = args.batch or PAPER_BATCH[args.model]
    model, tensors, loss_fn, spec = _torch_model(args.model, batch)
    model.train()
    set_tf32(False)
    with FlopCounterMode(display=False) as counter:
        loss_fn(model, tensors).backward()
    flops = int(counter.get_total_flops())
    model.zero_grad(set_to_none=True)
    opt = spec.optimizer(model)
    variants = args.variants.split(",") if args.variants else list(TORCH_VARIANTS)
    results: dict[str, Any] = {}
    for variant in variants:
        if variant not in TORCH_VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; expected some of {TORCH_VARIANTS}")
        set_tf32(variant != "fp32")
        cl = "_cl" in variant
        fmt = torch.channels_last if cl else torch.contiguous_format
        model.to(memory_format=fmt)
        b = tuple(t.contiguous(memory_format=fmt) if t.ndim == 4 and t.is_floating_point()
                  else t for t in tensors)
        amp = variant.startswith("bf16")
        net = model
        compile_s = None
        if variant.endswith("_compile"):
            net = torch.compile(model)

        def step(net=net, b=b, amp=amp):
            opt.zero_grad(set_to_none=True)
            with torch.autocast(DEVICE, dtype=torch.bfloat16, enabled=amp):
                loss = loss_fn(net, b)
            loss.backward()
            opt.step()

        _reset_peak()
        try:
            if variant.endswith("_compile"):
                t0 = time.perf_counter()
                step()
                _sync()
                compile_s = round(time.perf_counter() - t0, 1)
            t = time_cuda(step, args.warmup, args.reps)
        except Exception as exc:  # one variant failing keeps the others
            results[variant] = {"status": ERROR,
                                "reason": f"{exc.__class__.__name__}: {exc}"[:300]}
            continue
        t["images_per_s"] = batch / t["median_s"]
        t["peak_mem_gib"] = _peak_mem_gib()
        if compile_s is not None:
            t["compile_s"] = compile_s
        results[variant] = t
    model.to(memory_format=torch.contiguous_format)
    return {"model": args.model, "framework": "torch", "kind": spec.kind, "notes": spec.notes,
            "params": int(sum(p.numel() for p in model.parameters())), "batch": batch,
            "input": "x".join(map(str, spec.input_shape)), "paper_input": spec.paper_input,
            "flops_per_step": flops, "flops_method": "torch.utils.flop_counter (fp32 step)",
            "peak": peak, "variants": results}


# ------------------------------------------------------------------------------- Keras
def task_keras(args: argparse.Namespace) -> dict[str, Any]:
    if os.environ.get("KERAS_BACKEND") != "torch":
        raise RuntimeError("run the keras task with KERAS_BACKEND=torch (no TensorFlow here)")
    import numpy as np
    import torch

    from bench.keras_bench import forward_flops

    torch.manual_seed(0)
    torch.backends.cudnn.benchmark = True
    peak = gpu_peak(reps=args.reps)
    set_tf32(False)  # torch defaults: cuDNN TF32 on, matmul TF32 off
    if DEVICE == "cuda":
        torch.backends.cudnn.allow_tf32 = True
    import keras

    batch = args.batch or PAPER_BATCH[args.model]
    variants = args.variants.split(",") if args.variants else ["fp32", "bf16"]
    rng = np.random.default_rng(0)
    results: dict[str, Any] = {}
    info: dict[str, Any] = {}
    for variant in variants:
        if variant not in ("fp32", "bf16"):
            raise ValueError(f"unknown variant {variant!r}; expected fp32 or bf16")
        keras.config.set_dtype_policy("mixed_bfloat16" if variant == "bf16" else "float32")
        keras.utils.set_random_seed(0)
        if args.model == "crater_resunet":
            build = need("crater_resunet.model", "build_resunet")
            compile_model = need("crater_resunet.model", "compile_model")
            model = build((256, 256, 3), base_filters=64)
            compile_model(model, jit_compile=False)
            x = rng.random((batch, 256, 256, 3), dtype=np.float32)
            y = (rng.random((batch, 256, 256, 1)) > 0.7).astype(np.float32)
            info = {"input": "256x256x3", "paper_input": "256x256x3, batch 16",
                    "kind": "dense conv", "notes": "ResNet-UNet, 0.5 BCE + 0.5 (1 - Dice), AdamW"}
        elif args.model == "ice_patch_cnn":
            build = need("ice_patch_cnn.model", "build_xception")
            compile_model = need("ice_patch_cnn.model", "compile_model")
            model = build((1024, 1024, 1), width_scale=1.0)
            compile_model(model)
            x = rng.integers(0, 255, (batch, 1024, 1024, 1)).astype(np.float32)
            y = rng.integers(0, 2, (batch, 1)).astype(np.float32)
            info = {"input": "1024x1024x1", "paper_input": "1024x1024x1 chunks, batch 25",
                    "kind": "separable conv", "notes": "Xception-style chunk classifier, BCE, "
                    "Adam"}
        else:
            raise ValueError(f"unknown Keras model {args.model!r}")
        fwd = forward_flops(model)
        info.update({"params": int(model.count_params()), "forward_flops_per_sample": fwd,
                     "flops_per_step": 3 * fwd["total"] * batch})
        xt = keras.ops.convert_to_tensor(x)
        yt = keras.ops.convert_to_tensor(y)
        _reset_peak()
        t0 = time.perf_counter()
        try:
            model.train_on_batch(xt, yt)  # builds the optimiser state
            _sync()
        except torch.OutOfMemoryError as exc:
            results[variant] = {"status": ERROR, "reason": f"out of GPU memory at batch "
                                f"{batch}: {str(exc)[:200]}"}
            del model, xt, yt
            _empty_cache()
            continue
        first = round(time.perf_counter() - t0, 2)
        try:
            t = time_cuda(lambda m=model, a=xt, b=yt: m.train_on_batch(a, b), args.warmup,
                          args.reps)
        except Exception as exc:
            results[variant] = {"status": ERROR,
                                "reason": f"{exc.__class__.__name__}: {exc}"[:300]}
            continue
        t["images_per_s"] = batch / t["median_s"]
        t["first_step_s"] = first
        t["peak_mem_gib"] = _peak_mem_gib()
        results[variant] = t
        del model, xt, yt
        _empty_cache()
    keras.config.set_dtype_policy("float32")
    rec = {"model": args.model, "framework": f"keras {keras.__version__} (torch backend)",
           "batch": batch, "flops_method": "analytic from layer shapes: 3 x forward",
           **info, "peak": peak, "variants": results}
    if args.model == "crater_resunet":
        rec["seed_reference"] = CRATER_SEED
    return rec


# ------------------------------------------------------------------------- orchestration
def derive_gpu(rec: dict[str, Any]) -> dict[str, Any]:
    """Achieved TFLOP/s of each variant over the same-precision peak of the same process."""
    peak = rec.get("peak", {})
    flops = rec.get("flops_per_step")
    out: dict[str, Any] = {"variants": {}}
    for name, v in rec.get("variants", {}).items():
        if "median_s" not in v:
            continue
        tfl = ratio(flops, v["median_s"] * 1e12) if flops else None
        prec = "bf16" if name.startswith("bf16") else name if name == "tf32" else "fp32"
        if rec.get("framework", "").startswith("keras") and name == "fp32":
            prec = "tf32"  # Keras/torch defaults: cuDNN convolutions use TF32
        out["variants"][name] = {"achieved_tflops": tfl, "vs_peak_of": prec,
                                 "frac_peak": ratio(tfl, peak.get(f"{prec}_tflops")),
                                 "frac_bf16_peak": ratio(tfl, peak.get("bf16_tflops"))}
    med = {k: v["median_s"] for k, v in rec.get("variants", {}).items() if "median_s" in v}
    out["bf16_speedup_vs_fp32"] = ratio(med.get("fp32"), med.get("bf16"))
    out["tf32_speedup_vs_fp32"] = ratio(med.get("fp32"), med.get("tf32"))
    best = min(med, key=med.get, default=None)
    out["best_variant"] = best
    out["best_speedup_vs_fp32"] = ratio(med.get("fp32"), med.get(best)) if best else None
    seed = rec.get("seed_reference")
    if seed and best:
        out["seed_p100_s_per_step"] = seed["s_per_step"]
        out["speedup_vs_seed_p100_fp32"] = ratio(seed["s_per_step"], med.get("fp32"))
        out["speedup_vs_seed_p100_best"] = ratio(seed["s_per_step"], med[best])
    return out


def run_one(task: str, model: str, extra: list[str], timeout: float) -> dict[str, Any]:
    env = dict(os.environ, PYTHONHASHSEED="0")
    if task == "keras":
        env["KERAS_BACKEND"] = "torch"
        if DEVICE == "cpu":
            env["CUDA_VISIBLE_DEVICES"] = ""  # Keras's torch backend picks the GPU otherwise
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rec.json"
        cmd = [sys.executable, "-m", "bench.gpu_bench", task, "--model", model, "--json",
               str(path), *extra]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                                  timeout=timeout)
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
        except subprocess.TimeoutExpired:
            return {"status": ERROR, "reason": f"timed out after {timeout:.0f} s"}
        wall = round(time.perf_counter() - t0, 1)
        if path.is_file():
            rec = json.loads(path.read_text(encoding="utf-8"))
        else:
            rec = {"status": ERROR, "reason": f"exit {proc.returncode}: {' | '.join(tail)}"}
    rec["wall_s"] = wall
    print(f"  {model:16s} {rec.get('status')}  {wall:6.1f} s  {rec.get('reason', '')[:200]}",
          flush=True)
    return rec


def task_all(args: argparse.Namespace) -> dict[str, Any]:
    started = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    t0 = time.perf_counter()
    only = set(args.models.split(",")) if args.models else None
    extra = ["--reps", str(args.reps), "--warmup", str(args.warmup), "--device", DEVICE]
    if args.batch:
        extra += ["--batch", str(args.batch)]
    entries: dict[str, Any] = {}
    for m in ORDER:
        if only is not None and m not in only:
            continue
        left = args.deadline_s - (time.perf_counter() - t0)
        if left < 30:
            entries[m] = {"status": ERROR, "reason": f"not run: the {args.deadline_s:.0f} s "
                          "budget of this GPU run was spent"}
            continue
        if m in KERAS_MODELS:
            entries[m] = run_one("keras", m, extra, min(args.child_timeout, left))
        else:
            v = ["--variants", args.variants] if args.variants else []
            entries[m] = run_one("torch", m, [*extra, *v], min(args.child_timeout, left))
    return {"date": started, "wall_s": round(time.perf_counter() - t0, 1),
            "device": device_info() if DEVICE == "cuda" else {"gpu": None, "smoke_test": "cpu"},
            "command": "python -m bench.gpu_bench " + " ".join(sys.argv[1:]),
            "entries": entries,
            "derived": {k: derive_gpu(r) for k, r in entries.items() if r.get("status") == OK}}


TASKS = {"torch": task_torch, "keras": task_keras, "all": task_all}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("task", choices=sorted(TASKS),
                   help="all: every model, one child each; torch/keras: one model (a child)")
    p.add_argument("--json", type=Path, required=True, help="where to write the JSON record")
    p.add_argument("--model", default=None, help="task torch/keras: which model")
    p.add_argument("--models", default=None, help="task all: comma-separated subset")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                   help="cuda (default); cpu only smoke-tests this code (use --batch 1)")
    p.add_argument("--batch", type=int, default=None, help="override the paper batch")
    p.add_argument("--variants", default=None, help="comma-separated variants to time")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    p.add_argument("--reps", type=int, default=10, help="timed steps (median; default 10)")
    p.add_argument("--child-timeout", type=float, default=240.0,
                   help="task all: seconds before a child is abandoned (default 240)")
    p.add_argument("--deadline-s", type=float, default=540.0,
                   help="task all: children not started within this many seconds are "
                        "reported as not run (default 540)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.reps < 1 or args.warmup < 0:
        print("error: --reps must be >= 1 and --warmup >= 0", file=sys.stderr)
        return 2
    if args.task != "all" and not args.model:
        print(f"error: task {args.task} needs --model", file=sys.stderr)
        return 2
    global DEVICE
    DEVICE = args.device
    try:
        import torch

        if DEVICE == "cpu":
            torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        if DEVICE == "cuda" and not torch.cuda.is_available():
            print("error: no CUDA GPU visible to torch; run this on a GPU machine",
                  file=sys.stderr)
            return 2
    except ImportError:
        print("error: torch is not installed", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    try:
        rec = TASKS[args.task](args)
        rec.setdefault("status", OK)
    except NotBuilt as exc:
        rec = {"status": NOT_BUILT, "reason": str(exc)}
    except Exception as exc:
        import traceback

        traceback.print_exc()
        rec = {"status": ERROR, "reason": f"{exc.__class__.__name__}: {exc}"[:500]}
    rec["child_wall_s"] = round(time.perf_counter() - t0, 2)
    from shared.atomic import atomic_write_json

    atomic_write_json(args.json, rec)
    if args.task == "all":
        print(f"wrote {args.json} ({rec['child_wall_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
