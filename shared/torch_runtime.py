"""The one torch runtime of the three torch trainers (Mars-CrackNet, dunes, S5Mars) and their
predictors: which device, which arithmetic, and the distributed set-up under ``torchrun``.

* **Device** (:func:`pick_device`): ``auto`` is CUDA when torch sees it, else the CPU; ``cpu``,
  ``cuda``, ``cuda:N`` and ``mps`` are taken as named, and a device that is not there is a
  ``UserError`` (one line, exit code 2), never a silent fall-back. MPS is used only when named
  (its kernels are neither bit-reproducible nor complete for bf16, so ``auto`` never picks it).
  Under ``torchrun`` each process on CUDA takes ``cuda:LOCAL_RANK`` and makes it current.
* **Precision** (:func:`resolve_precision`, :class:`Precision`): ``auto|fp32|bf16`` through
  ``shared.precision`` (``auto`` = bf16 on a CPU with native bf16, else fp32). On CUDA ``auto``
  is the paper profile's mixed precision where the original allows it (``cuda_mixed``; none of
  our three originals trains with AMP, so fp32 there); ``bf16`` on a GPU without bf16 runs fp16
  autocast with a ``GradScaler`` (the only case that needs one). :meth:`Precision.autocast` and
  :meth:`Precision.grad_scaler` are the one autocast factory and the one scaler rule.
* **Distributed** (:func:`setup`, :func:`teardown`): ``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` from
  ``torchrun``; gloo on the CPU, NCCL on CUDA; nothing at all in a plain single process.

Why our own ~150 lines and not Lightning Fabric: resume must equal an uninterrupted run bit for
bit, and our trainers get there by saving and restoring exactly the weights, optimiser, RNG and
position they own (the resume tests of each trainer compare the weights); Fabric's launcher,
precision plugins and its own checkpoint format would sit between the recipe and that state
and would have to be proven bit-identical again, and it is a new dependency (lightning and
its pins) for three small rules.

torch is imported inside the functions, so importing this module costs nothing (a CLI's
``--help`` never pays for torch).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from shared.errors import UserError

RESOLVED = ("fp32", "bf16", "fp16")


# --------------------------------------------------------------------------- device
def pick_device(name: str | None = "auto", local_rank: int | None = None) -> Any:
    """The ``torch.device`` for ``--device name`` (see the module doc); ``local_rank`` (under
    torchrun) puts each process on its own GPU and makes it the current CUDA device."""
    import torch

    spec = str(name or "auto").strip().lower()
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(spec)
    except (RuntimeError, ValueError):
        raise UserError(f"--device {name}: not a device (expected auto, cpu, cuda, cuda:N "
                        "or mps)") from None
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise UserError(f"--device {name}: no CUDA device on this machine; use --device "
                            "cpu or auto")
        if local_rank is not None and dev.index is None:
            dev = torch.device("cuda", int(local_rank))
        if dev.index is not None and dev.index >= n:
            raise UserError(f"--device {name}: this machine has {n} CUDA device(s) "
                            f"(cuda:0..cuda:{n - 1})")
        if dev.index is not None:
            torch.cuda.set_device(dev)
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if not (mps and mps.is_available()):
            raise UserError(f"--device {name}: no MPS device on this machine; use --device "
                            "cpu or auto")
    elif dev.type != "cpu":
        raise UserError(f"--device {name}: not supported here (expected auto, cpu, cuda, "
                        "cuda:N or mps)")
    return dev


# --------------------------------------------------------------------------- precision
def resolve_precision(choice: str | None, device: Any = "cpu", *, cuda_mixed: bool = False
                      ) -> str:
    """``fp32``, ``bf16`` or ``fp16`` (CUDA without bf16 only) for ``choice`` (auto, fp32, bf16;
    None = auto; the legacy ``amp`` booleans too: True = bf16, False = fp32) on ``device``.

    ``cuda_mixed``: whether the paper profile's original trains with mixed precision on a GPU
    (then ``auto`` on CUDA is bf16, else fp32). A bad name is a ``UserError``."""
    from shared import precision as shared_precision

    if isinstance(choice, bool):
        choice = "bf16" if choice else "fp32"
    if str(choice).lower() == "fp16":  # resolved before, on a GPU without bf16
        return "fp16"
    kind = str(getattr(device, "type", device)).split(":", 1)[0].lower()
    try:
        name = shared_precision.resolve_precision(choice, kind)
    except ValueError as exc:
        raise UserError(f"precision: {exc}") from None
    if kind == "auto":
        import sys

        torch = sys.modules.get("torch")
        kind = "cuda" if torch is not None and torch.cuda.is_available() else "cpu"
    if kind == "cuda":
        if str(choice or "auto").lower() == "auto":
            name = "bf16" if cuda_mixed else "fp32"
        if name == "bf16":
            import torch

            if not torch.cuda.is_bf16_supported():
                name = "fp16"
    return name


@dataclass(frozen=True)
class Precision:
    """A resolved precision on a device type: the one autocast factory and scaler rule."""

    name: str  # fp32 | bf16 | fp16
    device_type: str = "cpu"

    def __post_init__(self) -> None:
        if self.name not in RESOLVED:
            raise UserError(f"precision {self.name!r}: expected one of {', '.join(RESOLVED)}")

    @property
    def enabled(self) -> bool:
        return self.name != "fp32"

    @property
    def dtype(self) -> Any:
        import torch

        return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[self.name]

    def autocast(self) -> Any:
        """``torch.autocast`` for the forward pass (a no-op context in fp32)."""
        import torch

        return torch.autocast(self.device_type, dtype=self.dtype, enabled=self.enabled)

    def grad_scaler(self) -> Any:
        """A ``GradScaler`` that scales only for fp16 (bf16 and fp32 need none); call its
        ``scale(loss).backward()``, ``step(opt)``, ``update()`` unconditionally."""
        import torch

        dev = "cuda" if self.device_type == "cuda" else "cpu"
        return torch.amp.GradScaler(dev, enabled=self.name == "fp16")


def precision_for(choice: str | bool | None, device: Any, *, cuda_mixed: bool = False
                  ) -> Precision:
    """:class:`Precision` of ``choice`` (auto, fp32, bf16; or an already resolved name) on
    ``device`` (a ``torch.device`` or its name)."""
    kind = str(getattr(device, "type", device)).split(":", 1)[0].lower()
    if choice in RESOLVED and not (choice == "bf16" and kind == "cuda"):
        return Precision(str(choice), kind)
    return Precision(resolve_precision(choice, device, cuda_mixed=cuda_mixed), kind)


def fold_legacy_amp(section: dict, key: str = "precision", default: str = "fp32") -> dict:
    """The config's precision: ``section[key]``, else the legacy ``amp`` switch (true = bf16,
    false = fp32), else ``default`` (the paper profile's). ``amp`` is set to None once folded,
    so config.yaml records one answer; a ``precision`` that is not auto/fp32/bf16 (or an
    already resolved fp16) is a ``UserError`` naming the key."""
    amp = section.get("amp")
    value = section.get(key)
    if amp is not None:
        if not isinstance(amp, bool):
            raise UserError(f"config value amp={amp!r} is invalid: expected true or false "
                            f"(the old spelling of {key}: true = bf16)")
        value = "bf16" if amp else "fp32"
    if value is None:
        value = default
    if not isinstance(value, str) or value.lower() not in (*RESOLVED, "auto"):
        raise UserError(f"config value {key}={value!r} is invalid: expected auto, fp32 or bf16")
    section[key] = value.lower()
    if "amp" in section:
        section["amp"] = None
    return section


def machine_record() -> dict[str, Any]:
    """What ``auto`` resolved against, for config.yaml and summary.json: the CPU model and
    generation, its bf16 flags, and the GPU when torch (already imported) sees one."""
    from shared.precision import NATIVE_BF16_FLAGS
    from shared.results import machine_info

    info = machine_info()
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    return {"cpu": info.get("cpu"), "cpu_id": info.get("cpu_id"),
            "native_bf16": bool(info.get("native_bf16")),
            "bf16_flags": sorted(f for f in NATIVE_BF16_FLAGS if f in flags),
            "gpu": info.get("gpu")}


# --------------------------------------------------------------------------- distributed
@dataclass(frozen=True)
class DistEnv:
    """Rank and world of this process (``torchrun``'s environment; 0 of 1 otherwise)."""

    world: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def dist_env() -> DistEnv:
    """``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` as ``torchrun`` sets them."""
    try:
        return DistEnv(int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0")),
                       int(os.environ.get("LOCAL_RANK", "0")))
    except ValueError as exc:
        raise UserError(f"torchrun environment: {exc}") from None


def setup(device_name: str | None = "auto") -> tuple[Any, DistEnv]:
    """``(device, env)``: the device of this process and, under torchrun, the process group
    (gloo on the CPU, NCCL on CUDA; joined once)."""
    env = dist_env()
    device = pick_device(device_name, env.local_rank if env.enabled else None)
    if env.enabled:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device, env


def teardown() -> None:
    """Leave the process group if one was joined (a no-op otherwise)."""
    import sys

    if "torch" not in sys.modules:
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
