"""``--precision auto|fp32|bf16``: the one rule every CLI uses to pick its arithmetic.

``auto`` is bf16 autocast on a CPU whose ``/proc/cpuinfo`` flags name ``avx512_bf16`` or
``amx_bf16`` (native bf16), else fp32 (on a CPU without them bf16 is emulated and slower; on
a GPU, mixed precision stays an explicit ``--precision bf16``, so the paper profiles keep
their fp32 default). Framework-free.
"""

from __future__ import annotations

import functools

PRECISIONS = ("auto", "fp32", "bf16")
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.cache
def cpu_has_native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """True when the CPU flags in ``cpuinfo`` include avx512_bf16 or amx_bf16."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return any(f in flags for f in NATIVE_BF16_FLAGS)
    except OSError:
        return False
    return False


def resolve_precision(choice: str | None, device: object = "cpu") -> str:
    """``fp32`` or ``bf16`` for ``choice`` (auto, fp32, bf16; None means auto) on ``device``
    (a string or a ``torch.device``: its type before any ``:``)."""
    choice = (choice or "auto").lower()
    if choice not in PRECISIONS:
        raise ValueError(f"precision {choice!r}: expected one of {', '.join(PRECISIONS)}")
    if choice != "auto":
        return choice
    kind = str(getattr(device, "type", device)).split(":", 1)[0]
    if kind == "auto":  # the CPU unless an already imported torch sees CUDA
        import sys

        torch = sys.modules.get("torch")
        kind = "cuda" if torch is not None and torch.cuda.is_available() else "cpu"
    if kind == "cpu":
        return "bf16" if cpu_has_native_bf16() else "fp32"
    return "fp32"
