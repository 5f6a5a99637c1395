"""``make bench-vs-original``: one training step of our model against the original public
code's model, on the same inputs, loss and optimiser, timed side by side.

The original code is never part of this repository: pass the path of your own checkout per
entry (``--original mars_cracknet=/path/Mars-CrackNet``); the model class (and, for the crater
notebook, the cells that define the model builder, its loss and metrics) is loaded from that
path at run time. An entry without a path is reported "not run". ice_patch_cnn has no public
original code.

Each framework runs in its own child process (torch for mars_cracknet, dune_vlm, s5mars_ssl;
Keras/TensorFlow for crater_resunet), both models of an entry in the same child: one untimed
step each, then R repetitions alternating ours/original (ABBA order), fp32 for both. Headline:
median original step / median our step (> 1: ours is faster), with a 95 % interval of the
paired per-repetition ratios (t interval of their logarithms). Where the CPU has native bf16,
our step is also timed under bf16 autocast (an extra column). Writes
``results/bench_vs_original.json`` and section 5 of ``BENCHMARKS.md`` (sections 1-4 are left
as they are); ``--quick`` runs tiny inputs, 2 repetitions, 1 thread (a test of the bench: its
numbers say nothing about speed).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import importlib.util
import json
import math
import os
import sys
import time
import types
from pathlib import Path
from typing import Any

from bench.common import (
    ERROR,
    OK,
    REPO_ROOT,
    RUN_DIR,
    cpu_flags,
    cpu_mhz,
    native_bf16,
    run_child_process,
)
from shared.atomic import atomic_write_json, atomic_write_text

NOT_RUN, NO_ORIGINAL = "not_run", "no_original"
# entry -> framework of its child (None: no public original code)
FRAMEWORK = {"mars_cracknet": "torch", "dune_vlm": "torch", "s5mars_ssl": "torch",
             "crater_resunet": "keras", "ice_patch_cnn": None}
REPOS = {"mars_cracknet": "https://github.com/haozhangcn/Mars-CrackNet",
         "dune_vlm": "https://github.com/Keiyoo0102/MADS",
         "s5mars_ssl": "https://github.com/JHang2020/S5Mars_SSL",
         "crater_resunet": "https://github.com/scifre/crater-detection"}
FORMAT = 1
JSON_DEFAULT = REPO_ROOT / "results" / "bench_vs_original.json"
MD_DEFAULT = REPO_ROOT / "BENCHMARKS.md"
SECTION_TITLE = "## 5. Training step against the original code"


# ------------------------------------------------------------------------- statistics
def ratio_stats(ours_s: list[float], original_s: list[float]) -> dict[str, Any]:
    """Medians, the headline ratio median(original) / median(ours) and a 95 % interval of the
    paired per-repetition ratios original_i / ours_i (Student t interval of their logarithms,
    back-transformed: an interval of their geometric mean); ``at_least_1x`` is ``yes`` when
    the whole interval lies above 1.0, ``no`` when it lies below, else ``undecided``."""
    import statistics

    if len(ours_s) != len(original_s) or not ours_s:
        raise ValueError(f"paired times needed, got {len(ours_s)} and {len(original_s)}")
    ratios = [o / u for o, u in zip(original_s, ours_s, strict=True)]
    out: dict[str, Any] = {
        "ours_median_s": statistics.median(ours_s),
        "original_median_s": statistics.median(original_s),
        "paired_ratios": [round(r, 4) for r in ratios],
        "geo_mean_ratio": math.exp(sum(math.log(r) for r in ratios) / len(ratios)),
        "ci95": None, "interval": "t interval (95 %) of log(original_i / ours_i), "
                                  "back-transformed"}
    out["ratio"] = out["original_median_s"] / out["ours_median_s"]
    if len(ratios) >= 2:
        from shared.stats import describe

        d = describe([math.log(r) for r in ratios])
        out["ci95"] = [math.exp(d["ci95"][0]), math.exp(d["ci95"][1])]
    ci = out["ci95"]
    out["at_least_1x"] = ("undecided" if ci is None else "yes" if ci[0] > 1.0
                          else "no" if ci[1] < 1.0 else "undecided")
    return out


def paired_times(ours, original, reps: int) -> tuple[list[float], list[float]]:
    """One untimed step each, then ``reps`` timed repetitions alternating the order (ours,
    original on even repetitions; original, ours on odd ones: a drift weighs on both)."""
    ours()
    original()
    t_ours: list[float] = []
    t_orig: list[float] = []
    for r in range(reps):
        order = ((ours, t_ours), (original, t_orig))
        for fn, times in (order if r % 2 == 0 else order[::-1]):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return t_ours, t_orig


# ------------------------------------------------------------------- loading originals
def load_file_module(path: Path, name: str) -> types.ModuleType:
    """A module from one file of the original checkout, under a private name."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found in the original checkout")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_package_module(folder: Path, package: str, module: str) -> types.ModuleType:
    """``folder/<module>.py`` imported as ``<package>.<module>`` so that its relative imports
    (``from .segformer import ...``) resolve inside ``folder``."""
    if not (folder / f"{module}.py").is_file():
        raise FileNotFoundError(f"{folder / module}.py: not found in the original checkout")
    pkg = types.ModuleType(package)
    pkg.__path__ = [str(folder)]
    sys.modules[package] = pkg
    return importlib.import_module(f"{package}.{module}")


NOTEBOOK_BUILDER = "create_deeper_resnet_unet"
NOTEBOOK_LOSS = "dice_bce_loss"
NOTEBOOK_METRICS = ("f1_score", "precision", "recall", "dice_coefficient")


def notebook_cells(path: Path) -> tuple[Path, list[tuple[int, str]]]:
    """The code cells of the crater notebook that define the model builder and its metrics
    (the loss is defined in the builder's cell): ``(notebook, [(cell index, source)])``.
    Nothing else of the notebook (data loading, training, plots) is executed."""
    books = [path] if path.suffix == ".ipynb" else sorted(path.glob("*.ipynb"))
    for book in books:
        cells = [(i, "".join(c.get("source", "")))
                 for i, c in enumerate(json.loads(book.read_text(encoding="utf-8"))["cells"])
                 if c.get("cell_type") == "code"]
        picked = []
        for name in (NOTEBOOK_BUILDER, NOTEBOOK_METRICS[-1]):
            hit = next(((i, s) for i, s in cells if f"def {name}(" in s), None)
            if hit and hit not in picked:
                picked.append(hit)
        if picked and f"def {NOTEBOOK_BUILDER}(" in picked[0][1]:
            return book, [(i, "\n".join(ln for ln in s.splitlines()
                                        if not ln.lstrip().startswith(("%", "!"))))
                          for i, s in picked]
    raise FileNotFoundError(f"{path}: no notebook with a cell defining {NOTEBOOK_BUILDER}()")


def load_notebook(path: Path) -> tuple[dict[str, Any], str]:
    """Execute the picked cells in a namespace holding the names the notebook's first cell
    imports (tf, layers, models, the optimiser and callbacks, numpy, os)."""
    import numpy as np
    import tensorflow as tf
    from tensorflow.keras import callbacks, layers, models
    from tensorflow.keras.optimizers import AdamW

    book, cells = notebook_cells(path)
    ns: dict[str, Any] = {"__name__": "_vsorig_crater_notebook", "np": np, "os": os, "tf": tf,
                          "layers": layers, "models": models, "AdamW": AdamW,
                          **{k: getattr(callbacks, k) for k in (
                              "LearningRateScheduler", "EarlyStopping", "ModelCheckpoint",
                              "ReduceLROnPlateau")}}
    for i, src in cells:
        exec(compile(src, f"{book}[cell {i}]", "exec"), ns)  # noqa: S102
    for name in (NOTEBOOK_BUILDER, NOTEBOOK_LOSS):
        if name not in ns:
            raise KeyError(f"{book}: the picked cells define no {name}")
    return ns, f"{book.name} cells {', '.join(str(i) for i, _ in cells)}"


# ------------------------------------------------------------------------- torch child
class TorchSide:
    """A model, its optimiser and ``loss(model)`` on fixed inputs: one training step."""

    def __init__(self, model, optimizer, loss):
        self.model, self.optimizer, self.loss = model, optimizer, loss
        model.train()

    def step(self, bf16: bool = False) -> None:
        import torch

        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = self.loss(self.model)
        loss.backward()
        self.optimizer.step()

    def params(self) -> int:
        return int(sum(p.numel() for p in self.model.parameters()))


def _last(out):
    return out[-1] if isinstance(out, tuple | list) else out


def pair_mars_cracknet(path: Path, quick: bool) -> dict[str, Any]:
    import torch
    from torch import nn

    from mars_cracknet.models import build_model

    mod = load_file_module(path / "models" / "resunet.py", "_vsorig_mars_cracknet_resunet")
    n, s = 2, (32 if quick else 224)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 3, s, s, generator=g)
    y = (torch.rand(n, 1, s, s, generator=g) > 0.9).float()
    bce_logits, bce = nn.BCEWithLogitsLoss(), nn.BCELoss()

    def adam(m):
        return torch.optim.Adam(m.parameters(), lr=1e-4, weight_decay=5e-4)

    torch.manual_seed(0)
    ours = build_model("resunet", num_classes=1)
    torch.manual_seed(0)
    orig = mod.Res_UNet(1)
    # the original's model ends in a sigmoid (its last output) and trains with nn.BCELoss on
    # the flattened probabilities (train.py, --ratio 0); ours outputs logits: the same BCE
    # computed from them
    return {"ours": TorchSide(ours, adam(ours), lambda m: bce_logits(m(x), y)),
            "original": TorchSide(orig, adam(orig),
                                  lambda m: bce(_last(m(x)).reshape(-1), y.reshape(-1))),
            "input": f"{n} x 3 x {s} x {s}",
            "loss": "BCE (ours: BCEWithLogitsLoss on logits; original: BCELoss on its sigmoid "
                    "output, as its train.py with --ratio 0)",
            "optimizer": "Adam lr 1e-4, weight decay 5e-4 (both)",
            "loaded": "models/resunet.py: Res_UNet(1) (torchvision resnet18 encoder, "
                      "pretrained=False)",
            "ours_built": "mars_cracknet.models.build_model('resunet')"}


def pair_dune_vlm(path: Path, quick: bool) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F

    from dune_vlm.models.fusion import build_model
    from dune_vlm.utils.config import load_run_config

    fusion = load_package_module(path / "models", "_vsorig_dune_models", "fusion")
    cfg = load_run_config("paper")
    d, t = cfg["data"], cfg["train"]
    classes, chans = int(d["num_classes"]), int(d["in_chans"])
    n, s, dim = 1, (32 if quick else 512), 512
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, chans, s, s, generator=g)
    y = torch.randint(0, classes, (n, s, s), generator=g)
    text = F.normalize(torch.randn(classes, dim, generator=g), dim=1)
    text_batch = text.unsqueeze(0).expand(n, -1, -1)  # the original's loader yields (B, N, D)
    ce = torch.nn.CrossEntropyLoss(ignore_index=255)

    def adamw(m):
        return torch.optim.AdamW(m.parameters(), lr=6e-5, weight_decay=0.01)

    torch.manual_seed(0)
    ours = build_model("fusion", classes, dim, chans,
                       **dict(cfg["model"].get("fusion_arch") or {}))
    torch.manual_seed(0)
    orig = fusion.get_fusion_model(num_classes=classes)

    def orig_loss(m):
        out = m(x, text_batch)
        if out.shape[-2:] != y.shape[-2:]:  # its head upsamples to a fixed 512 x 512 (quick)
            out = F.interpolate(out, size=y.shape[-2:], mode="bilinear", align_corners=False)
        return ce(out, y)

    return {"ours": TorchSide(ours, adamw(ours), lambda m: ce(m(x, text), y)),
            "original": TorchSide(orig, adamw(orig), orig_loss),
            "input": f"{n} x {chans} x {s} x {s}, {classes} x {dim} text embeddings",
            "loss": "CrossEntropyLoss(ignore_index=255) (both)",
            "optimizer": f"AdamW lr 6e-5, weight decay 0.01 (both; ours' paper profile: lr "
                         f"{t['lr']}, weight decay {t['weight_decay']})",
            "loaded": "models/fusion.py: get_fusion_model(num_classes=10) (as its train.py), "
                      "text embeddings batched (B, N, 512) as its loader yields them"
                      + ("; --quick: its fixed 512 x 512 output resized to the labels"
                         if quick else ""),
            "ours_built": "dune_vlm.models.fusion.build_model('fusion', paper profile)"}


def _s5mars_original_cfg(path: Path) -> tuple[dict, Path]:
    import yaml

    exps = path / "exps"
    found = (sorted(exps.rglob("config_supervised.yaml")) + sorted(exps.rglob("config_semi.yaml"))
             + sorted(exps.rglob("*.yaml")))
    for f in found:
        cfg = yaml.safe_load(f.read_text(encoding="utf-8"))
        if isinstance(cfg, dict) and "net" in cfg:
            return cfg, f
    raise FileNotFoundError(f"{exps}: no config with a 'net' section")


def pair_s5mars_ssl(path: Path, quick: bool) -> dict[str, Any]:
    import copy

    import torch

    from bench.torch_bench import _s5mars_cfg
    from s5mars_ssl.augseg.models.model_helper import DeepLabV3Plus
    from s5mars_ssl.augseg.utils.loss_helper import OhemCrossEntropy
    from s5mars_ssl.augseg.utils.lr_helper import build_optimizer

    if str(path) not in sys.path:  # its builder imports "augseg.models.resnet" by name
        sys.path.insert(0, str(path))
    if "augseg" in sys.modules and not str(getattr(sys.modules["augseg"], "__file__", "")
                                           ).startswith(str(path)):
        raise ImportError(f"a module 'augseg' from elsewhere is already imported: "
                          f"{sys.modules['augseg']}")
    helper = importlib.import_module("augseg.models.model_helper")
    losses = importlib.import_module("augseg.utils.loss_helper")
    ocfg, cfg_file = _s5mars_original_cfg(path)
    net = copy.deepcopy(ocfg["net"])
    # CPU, from scratch: no SyncBatchNorm (its trainer converts only when sync_bn is true) and
    # no ImageNet file (its encoder loads ./pretrain/resnet50.pth when pretrained)
    net["sync_bn"] = False
    net["encoder"]["pretrain"] = None
    net["encoder"].setdefault("kwargs", {})["pretrained"] = False
    ours_cfg = _s5mars_cfg(False)
    t, ohem = ours_cfg["trainer"], ours_cfg["criterion"]["ohem"]
    classes = int(net["num_classes"])
    n, s = 2, (32 if quick else 512)
    # min_kept is per batch: scaled from the profile's batch and crop to the one timed here
    kept = max(1, int(ohem["min_kept"] * n * s**2
                      / (int(t["batch_labeled"]) * int(ours_cfg["dataset"]["crop_size"]) ** 2)))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, s, s, generator=g)
    y = torch.randint(0, classes, (n, s, s), generator=g)
    torch.manual_seed(0)
    ours = DeepLabV3Plus(num_classes=int(ours_cfg["net"]["num_classes"]))
    torch.manual_seed(0)
    orig = helper.ModelBuilder(net)
    crit_ours = OhemCrossEntropy(float(ohem["thresh"]), kept)
    crit_orig = losses.CriterionOhem(0, thresh=float(ohem["thresh"]), min_kept=kept,
                                     ignore_index=255)
    okw = dict((ocfg.get("trainer", {}).get("optimizer") or {}).get("kwargs")
               or {"lr": t["lr"], "momentum": t["momentum"], "weight_decay": t["weight_decay"]})
    # the original's trainer: one parameter group for the encoder, one for the decoder (same
    # lr outside Pascal VOC)
    opt_orig = torch.optim.SGD([{"params": orig.encoder.parameters()},
                                {"params": orig.decoder.parameters()}], **okw)
    return {"ours": TorchSide(ours, build_optimizer(ours, t), lambda m: crit_ours(m(x), y)),
            "original": TorchSide(orig, opt_orig, lambda m: crit_orig(_first(m(x)), y)),
            "input": f"{n} x 3 x {s} x {s}",
            "loss": f"OHEM cross-entropy, thresh {ohem['thresh']}, min_kept {kept} (each code's "
                    "own OHEM: ours OhemCrossEntropy, the original's CriterionOhem)",
            "optimizer": f"SGD lr {t['lr']}, momentum {t['momentum']}, weight decay "
                         f"{t['weight_decay']} (original: {okw})",
            "loaded": f"augseg/models/model_helper.py: ModelBuilder(net of "
                      f"{cfg_file.relative_to(path)}); augseg/utils/loss_helper.py: "
                      "CriterionOhem",
            "patched": "configuration only, in the child: net.sync_bn false (BatchNorm2d "
                       "instead of SyncBatchNorm, which needs multi-GPU CUDA), encoder "
                       "pretrained false (no ImageNet file); no code changed",
            "ours_built": "s5mars_ssl.augseg.models.model_helper.DeepLabV3Plus(9), "
                          "lr_helper.build_optimizer"}


def _first(out):
    return out[0] if isinstance(out, tuple | list) else out


TORCH_PAIRS = {"mars_cracknet": pair_mars_cracknet, "dune_vlm": pair_dune_vlm,
               "s5mars_ssl": pair_s5mars_ssl}


def torch_entry(name: str, path: Path, args: argparse.Namespace) -> dict[str, Any]:
    import torch

    torch.set_num_threads(args.threads)
    pair = TORCH_PAIRS[name](path, args.quick)
    ours, orig = pair.pop("ours"), pair.pop("original")
    rec: dict[str, Any] = {**pair, "params_ours": ours.params(),
                           "params_original": orig.params()}
    t_ours, t_orig = paired_times(ours.step, orig.step, args.reps)
    rec["fp32"] = {"ours_s": [round(v, 5) for v in t_ours],
                   "original_s": [round(v, 5) for v in t_orig]}
    rec["bf16"] = _bf16(lambda: ours.step(bf16=True), args)
    return rec


def _bf16(step, args: argparse.Namespace) -> dict[str, Any]:
    """Our step under bf16 (extra column), after the fp32 pairs: one untimed, then reps."""
    from bench.common import time_reps

    ok, note = native_bf16()
    if not ok:
        return {"skipped": note}
    t = time_reps(step, 1, args.reps)
    return {"ours_s": t["times_s"], "ours_median_s": t["median_s"]}


# ------------------------------------------------------------------------- Keras child
def keras_entry(name: str, path: Path, args: argparse.Namespace) -> dict[str, Any]:
    import gc

    import keras
    import numpy as np

    from crater_resunet.config import load_config
    from crater_resunet.model import build_resunet, compile_model
    from crater_resunet.train import set_threads

    if name != "crater_resunet":
        raise KeyError(name)
    set_threads(args.threads)
    ns, loaded = load_notebook(path)
    cfg = load_config("paper")
    m, t = cfg["model"], cfg["train"]
    n, s = 2, (32 if args.quick else int(cfg["data"]["image_size"][0]))
    rng = np.random.default_rng(0)
    x = rng.random((n, s, s, 3), dtype=np.float32)
    y = (rng.random((n, s, s, 1)) > 0.8).astype(np.float32)
    lr, wd = 1e-3, 0.004  # the notebook: AdamW(learning_rate=1e-3), Keras' default decay

    def ours_model():
        model = build_resunet((s, s, 3), int(m["base_filters"]),
                              bn_momentum=float(m.get("bn_momentum", 0.99)))
        return compile_model(model, lr, wd, float(t["threshold"]),
                             jit_compile=t.get("jit_compile", "auto"), run_eagerly=args.quick)

    keras.utils.set_random_seed(0)
    ours = ours_model()
    keras.utils.set_random_seed(0)
    orig = ns[NOTEBOOK_BUILDER]((s, s, 3))
    metrics = ["accuracy", *(ns[k] for k in NOTEBOOK_METRICS if k in ns)]
    orig.compile(optimizer=keras.optimizers.AdamW(learning_rate=lr), loss=ns[NOTEBOOK_LOSS],
                 metrics=metrics, run_eagerly=args.quick)
    rec: dict[str, Any] = {
        "input": f"{n} x {s} x {s} x 3",
        "loss": "0.5 BCE + 0.5 (1 - Dice) on sigmoid output (each code's own: ours "
                "crater_resunet.losses.bce_dice_loss, the original's dice_bce_loss)",
        "optimizer": f"AdamW lr {lr}, weight decay {wd} (the notebook's AdamW(learning_rate="
                     f"1e-3), Keras' default decay; ours the same values); each compiled with "
                     f"its own metrics, jit_compile {t.get('jit_compile', 'auto')!r} / Keras "
                     f"default{'; run eagerly (--quick)' if args.quick else ''}",
        "loaded": f"{loaded}: {NOTEBOOK_BUILDER}, {NOTEBOOK_LOSS} and its metrics, executed "
                  "in a namespace (no data, training or plotting cell)",
        "ours_built": "crater_resunet.model.build_resunet(paper base_filters) + compile_model",
        "params_ours": int(ours.count_params()), "params_original": int(orig.count_params())}
    t_ours, t_orig = paired_times(lambda m=ours: m.train_on_batch(x, y),
                                  lambda m=orig: m.train_on_batch(x, y), args.reps)
    rec["fp32"] = {"ours_s": [round(v, 5) for v in t_ours],
                   "original_s": [round(v, 5) for v in t_orig]}
    del ours, orig
    keras.backend.clear_session()
    gc.collect()
    ok, note = native_bf16()
    if args.quick or not ok:
        rec["bf16"] = {"skipped": "not in --quick (a second model build)" if ok else note}
    else:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
        try:
            ours16 = ours_model()
            rec["bf16"] = _bf16(lambda: ours16.train_on_batch(x, y), args)
        finally:
            keras.mixed_precision.set_global_policy("float32")
    return rec


# ------------------------------------------------------------------------- child / parent
def child(args: argparse.Namespace, originals: dict[str, Path]) -> int:
    from bench.common import measure_entries, set_threads

    set_threads(args.threads)
    if args.child == "keras":
        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    run = torch_entry if args.child == "torch" else keras_entry
    measure_entries(args.entries, lambda name: run(name, originals[name], args), args.out,
                    "vs_original")
    return 0


def run_child(framework: str, entries: list[str], originals: dict[str, Path], out: Path,
              args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    out.mkdir(parents=True, exist_ok=True)
    log = out / f"vs_original.{framework}.log"
    cmd = [sys.executable, "-m", "bench.vs_original", "--child", framework,
           "--entries", ",".join(entries), "--out", str(out), "--reps", str(args.reps),
           "--threads", str(args.threads), *(["--quick"] if args.quick else []),
           *[a for e in entries for a in ("--original", f"{e}={originals[e]}")]]
    return run_child_process(cmd, log, {e: out / f"vs_original.{e}.json" for e in entries},
                             args.child_timeout)


def finish(rec: dict[str, Any]) -> dict[str, Any]:
    """Add the statistics of an ``ok`` record."""
    if rec.get("status") == OK:
        rec["fp32"].update(ratio_stats(rec["fp32"]["ours_s"], rec["fp32"]["original_s"]))
        b = rec.get("bf16", {})
        if "ours_median_s" in b:
            b["original_fp32_over_ours_bf16"] = rec["fp32"]["original_median_s"] / \
                b["ours_median_s"]
    return rec


def splice_section(text: str, section: str) -> str:
    """``text`` with its section 5 replaced by ``section`` (appended when absent); every
    other line is kept as it is."""
    lines = text.rstrip("\n").split("\n")
    start = next((i for i, ln in enumerate(lines) if ln.startswith(SECTION_TITLE)), None)
    if start is None:
        return "\n".join(lines) + "\n\n" + section.rstrip("\n") + "\n"
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")),
               len(lines))
    tail = lines[end:]
    return "\n".join([*lines[:start], *section.rstrip("\n").split("\n"),
                      *([""] + tail if tail else [])]) + "\n"


def parse_originals(items: list[str]) -> dict[str, Path]:
    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        name = name.strip()
        if not sep or not path:
            raise ValueError(f"--original {item!r}: expected NAME=PATH")
        if name not in FRAMEWORK:
            raise ValueError(f"--original {item!r}: unknown entry {name!r}; expected one of "
                             f"{sorted(REPOS)}")
        if FRAMEWORK[name] is None:
            raise ValueError(f"--original {item!r}: {name} has no public original code")
        p = Path(path).expanduser().resolve()
        if not p.exists():
            raise ValueError(f"--original {item!r}: {p} does not exist")
        out[name] = p
    return out


def build_parser() -> argparse.ArgumentParser:
    clones = "; ".join(f"{k}: git clone {v}" for k, v in REPOS.items())
    p = argparse.ArgumentParser(
        prog="python -m bench.vs_original", description=__doc__.split("\n\n")[0],
        epilog=f"Get the originals (never copied into this repository): {clones}. Example: "
               "python -m bench.vs_original --original mars_cracknet=/src/Mars-CrackNet "
               "--original dune_vlm=/src/MADS --original s5mars_ssl=/src/S5Mars_SSL "
               "--original crater_resunet=/src/crater-detection")
    p.add_argument("--original", action="append", default=[], metavar="NAME=PATH",
                   help=f"the original checkout of an entry ({', '.join(REPOS)}); repeat per "
                        "entry; an entry without one is reported 'not run'")
    p.add_argument("--only", default=None,
                   help="comma-separated entries (default: all; one without --original is "
                        "reported 'not run')")
    p.add_argument("--quick", action="store_true",
                   help="tiny inputs, 2 repetitions, 1 thread: a test of the bench (its "
                        "numbers say nothing about speed)")
    p.add_argument("--reps", type=int, default=None,
                   help="timed repetitions per model, alternating (default 7; quick 2)")
    p.add_argument("--threads", type=int, default=None,
                   help="threads per child (default 2; quick 1)")
    p.add_argument("--child-timeout", type=float, default=3600.0,
                   help="seconds before a child is killed and reported (default 3600)")
    p.add_argument("--json", type=Path, default=None,
                   help="output JSON (default results/bench_vs_original.json; quick: "
                        "runs/bench/vs_original_quick.json)")
    p.add_argument("--markdown", type=Path, default=None,
                   help="markdown whose section 5 is written or replaced, the rest kept "
                        "(default BENCHMARKS.md; quick: runs/bench/vs_original_quick.md)")
    p.add_argument("--child", choices=("torch", "keras"), default=None, help=argparse.SUPPRESS)
    p.add_argument("--entries", default="", help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.reps is None:
        args.reps = 2 if args.quick else 7
    if args.threads is None:
        args.threads = 1 if args.quick else 2
    if args.reps < 1 or args.threads < 1:
        print("error: --reps and --threads must be >= 1", file=sys.stderr)
        return 2
    try:
        originals = parse_originals(args.original)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.child:
        return child(args, originals)
    only = [e.strip() for e in args.only.split(",") if e.strip()] if args.only else \
        list(FRAMEWORK)
    if bad := [e for e in only if e not in FRAMEWORK]:
        print(f"error: --only: unknown entr(ies) {bad}; expected some of {list(FRAMEWORK)}",
              file=sys.stderr)
        return 2
    from bench.report import render_vs_original
    from shared.results import machine_info
    from shared.runs import check_output_dir

    tag = "vs_original_quick" if args.quick else "vs_original"
    json_out = args.json or (RUN_DIR / f"{tag}.json" if args.quick else JSON_DEFAULT)
    md_out = args.markdown or (RUN_DIR / f"{tag}.md" if args.quick else MD_DEFAULT)
    check_output_dir(json_out.parent)  # under a regular file: one line (cli_main)
    check_output_dir(md_out.parent)
    started = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    t0 = time.perf_counter()
    records: dict[str, dict[str, Any]] = {}
    for name in only:
        if FRAMEWORK[name] is None:
            records[name] = {"status": NO_ORIGINAL,
                             "reason": "no public original code (the paper only)"}
        elif name not in originals:
            records[name] = {"status": NOT_RUN, "reason": "not run: no --original path"}
    for fw in ("torch", "keras"):  # one child per framework, one after the other
        entries = [e for e in only if FRAMEWORK[e] == fw and e in originals]
        if entries:
            print(f"vs_original: {fw} child for {', '.join(entries)} (log in "
                  f"{RUN_DIR / tag})", flush=True)
            records.update(run_child(fw, entries, originals, RUN_DIR / tag, args))
    records = {e: finish(records[e]) for e in only}
    flags = cpu_flags()
    meta = {"format": FORMAT, "quick": args.quick, "date": started,
            "wall_s": round(time.perf_counter() - t0, 1),
            "machine": {**machine_info(), "cpu_mhz": cpu_mhz(), "bf16": native_bf16(flags)[1],
                        "cpu_flags": sorted(f for f in flags if f.startswith(("avx", "amx",
                                                                              "fma")))},
            "threads": args.threads, "reps": args.reps, "repos": REPOS,
            "command": "python -m bench.vs_original " + " ".join(
                sys.argv[1:] if argv is None else argv)}
    result = {"meta": meta, "entries": records}
    atomic_write_json(json_out, result)
    section = "\n".join(render_vs_original(result))
    if md_out.is_file():
        text = splice_section(md_out.read_text(encoding="utf-8"), section)
    else:
        text = "# Benchmarks\n\n" + section.rstrip("\n") + "\n"
    atomic_write_text(md_out, text)
    for name, rec in records.items():
        f = rec.get("fp32", {})
        extra = (f"ours {f['ours_median_s']:.3g} s, original {f['original_median_s']:.3g} s, "
                 f"ratio {f['ratio']:.2f}" if rec["status"] == OK else rec.get("reason", ""))
        print(f"  {name:15s} {rec['status']:11s} {extra[:200]}", flush=True)
    print(f"wrote {json_out} and {md_out} ({meta['wall_s']} s)")
    return 1 if any(r["status"] == ERROR for r in records.values()) else 0


if __name__ == "__main__":
    from shared.runs import cli_main

    sys.exit(cli_main(main))  # a user error: one line, exit 2
