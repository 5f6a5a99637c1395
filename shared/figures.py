"""Small helpers shared by the figure code: a map scale bar. Framework-free, matplotlib only
when called."""

from __future__ import annotations

import math
from typing import Any


def nice_length(target: float) -> float:
    """The largest 1, 2 or 5 x 10^k not above ``target`` (a round scale-bar length)."""
    if target <= 0:
        return 0.0
    k = math.floor(math.log10(target))
    for m in (5, 2, 1):
        if m * 10 ** k <= target:
            return float(m * 10 ** k)
    return float(10 ** k)


def add_scale_bar(ax: Any, pixel_size_m: float | None, width_px: int, *,
                  fraction: float = 0.25, color: str = "black", fontsize: float = 9) -> None:
    """A scale bar in the lower left of an image axis (pixel coordinates): a round length of
    about ``fraction`` of the width, labelled in m or km. Nothing when the pixel size is not
    known (an image without georeference)."""
    if not pixel_size_m or pixel_size_m <= 0:
        return
    from matplotlib.patches import Rectangle

    length_m = nice_length(fraction * width_px * pixel_size_m)
    length_px = length_m / pixel_size_m
    y0, y1 = ax.get_ylim()
    height = abs(y1 - y0)
    x, y = 0.04 * width_px, max(y0, y1) - 0.06 * height  # image axes: y grows downwards
    ax.add_patch(Rectangle((x - 0.01 * width_px, y - 0.075 * height), length_px + 0.02 * width_px,
                           0.1 * height, facecolor="white", alpha=0.75, edgecolor="none"))
    ax.plot([x, x + length_px], [y, y], color=color, lw=3, solid_capstyle="butt")
    label = f"{length_m / 1000:g} km" if length_m >= 1000 else f"{length_m:g} m"
    ax.text(x + length_px / 2, y - 0.015 * height, label, ha="center", va="bottom",
            fontsize=fontsize, color=color)
