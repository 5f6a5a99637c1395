"""Statistics of results over seeds: mean, standard deviation, 95 % t interval, paired
differences and a verdict for a claimed comparison.

One place for every ``reproduce.py``: ``describe(values)`` for a metric over seeds,
``compare(a, b, direction)`` for a claim "a beats b" measured on the same seeds (paired).
The verdict is ``supports`` when the 95 % confidence interval of the mean paired difference
excludes 0 in the claimed direction, ``contradicts`` when it excludes 0 the other way, and
``inconclusive`` otherwise (always, with fewer than 2 seeds).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

DIRECTIONS = ("greater", "less")
VERDICTS = ("supports", "contradicts", "inconclusive")


def describe(values: Sequence[float], confidence: float = 0.95) -> dict[str, Any]:
    """``{"n", "values", "mean", "std", "ci95": [lo, hi], "half_width"}`` of ``values``.

    ``std`` is the sample standard deviation (ddof 1); the interval is the Student t interval
    ``mean ± t_{(1+c)/2, n-1} * std / sqrt(n)``. With one value, ``std`` and the interval are
    ``None``.
    """
    from scipy import stats

    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("describe() needs at least one value")
    if any(math.isnan(v) for v in vals):
        raise ValueError(f"describe(): NaN among the values {vals}")
    n = len(vals)
    mean = sum(vals) / n
    out: dict[str, Any] = {"n": n, "values": vals, "mean": mean, "std": None, "ci95": None,
                           "half_width": None}
    if n >= 2:
        std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1))
        half = float(stats.t.ppf((1 + confidence) / 2, n - 1)) * std / math.sqrt(n)
        out.update(std=std, ci95=[mean - half, mean + half], half_width=half)
    return out


def verdict(ci: Sequence[float] | None, direction: str = "greater") -> str:
    """Verdict for a claimed difference (a - b) from its confidence interval."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    if ci is None:
        return "inconclusive"
    lo, hi = ci
    if lo > 0:
        return "supports" if direction == "greater" else "contradicts"
    if hi < 0:
        return "supports" if direction == "less" else "contradicts"
    return "inconclusive"


def compare(a: Sequence[float], b: Sequence[float], direction: str = "greater",
            confidence: float = 0.95) -> dict[str, Any]:
    """Paired comparison of ``a`` and ``b`` (same seeds, same order): claim ``a > b``
    (``direction="greater"``) or ``a < b`` (``"less"``).

    Returns ``describe`` of the differences ``a_i - b_i`` plus ``"differences"``,
    ``"direction"`` and ``"verdict"``.
    """
    if len(a) != len(b):
        raise ValueError(f"paired comparison needs equal lengths, got {len(a)} and {len(b)}")
    diffs = [float(x) - float(y) for x, y in zip(a, b, strict=True)]
    out = describe(diffs, confidence)
    out["differences"] = out.pop("values")
    out["direction"] = direction
    out["verdict"] = verdict(out["ci95"], direction)
    return out


def claim(name: str, metric: str, a_label: str, a: Sequence[float], b_label: str,
          b: Sequence[float], direction: str = "greater") -> dict[str, Any]:
    """A claim record for ``summary.json``: what is claimed, both arms and the paired test."""
    return {"claim": name, "metric": metric, "a": a_label, "b": b_label,
            "a_stats": describe(a), "b_stats": describe(b), **compare(a, b, direction)}


def format_mean_ci(d: dict[str, Any], digits: int = 3) -> str:
    """``"0.512 ± 0.034 (n=5)"``; ``"0.512 (n=1)"`` without an interval."""
    if d.get("half_width") is None:
        return f"{d['mean']:.{digits}f} (n={d['n']})"
    return f"{d['mean']:.{digits}f} ± {d['half_width']:.{digits}f} (n={d['n']})"
