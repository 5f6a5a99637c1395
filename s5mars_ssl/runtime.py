"""Process setup that must happen before torch is imported."""

from __future__ import annotations

import os


def passive_openmp() -> None:
    """Let idle OpenMP threads sleep instead of spinning (unless the user chose otherwise).

    On a shared CPU with more runnable threads than cores, spinning workers burned about 4x the
    CPU time per training step in our measurement (2 threads, 6 other processes on 2 cores);
    passive waiting costs little on an idle machine. Only effective before ``import torch``.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
