"""One seed for every random number generator a process uses.

Frameworks are seeded only when the process has already imported them, so calling this never
pulls torch into a Keras process or the other way round.
"""

from __future__ import annotations

import os
import random
import sys

import numpy as np


def seed_everything(seed: int, deterministic: bool = False) -> int:
    """Seed Python, NumPy and, if already imported, torch and TensorFlow/Keras.

    ``deterministic=True`` also asks torch for deterministic algorithms and TensorFlow for
    deterministic ops (slower; use it in tests and for bit-for-bit resumes).
    Returns the seed so it can be recorded.
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        torch.manual_seed(seed)
        if deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
    if "keras" in sys.modules:
        sys.modules["keras"].utils.set_random_seed(seed)
    elif "tensorflow" in sys.modules:
        sys.modules["tensorflow"].random.set_seed(seed)
    if deterministic and "tensorflow" in sys.modules:
        sys.modules["tensorflow"].config.experimental.enable_op_determinism()
    return seed
