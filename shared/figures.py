"""The figure code every subproject shares: ``save_figure`` (the one save tail: savefig into a
temporary file, rename, close), ``plot_curves`` (the one learning-curve plotter) and a map
scale bar. Framework-free, matplotlib only when called."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | os.PathLike, *, dpi: float | None = 100,
                fmt: str | None = None) -> Path:
    """Write ``fig`` to ``path`` atomically (a temporary file beside it, renamed on success; a
    failed save leaves ``path`` as it was) and close the figure, also on error. The format
    comes from the suffix (``.png``, ``.pdf``, ...) unless ``fmt`` names it."""
    from shared.atomic import atomic_path

    path = Path(path)
    fmt = fmt or path.suffix.lstrip(".").lower() or "png"
    try:
        with atomic_path(path, suffix=f".{fmt}") as tmp:
            fig.savefig(tmp, dpi=dpi, format=fmt)
    finally:
        pyplot().close(fig)
    return path


def plot_curves(path: str | os.PathLike, panels: Sequence[Mapping[str, Any]], *,
                title: str = "", ncols: int | None = None,
                panel_size: tuple[float, float] = (5.5, 4.2), xlabel: str = "epoch",
                dpi: float = 100, legend_size: float = 9) -> Path:
    """Learning curves, one axis per panel, saved with :func:`save_figure`.

    A panel is a mapping: ``lines``, a list of mappings with ``x``, ``y`` and optionally
    ``fmt`` (default ``"o-"``) and any ``Axes.plot`` keyword (``label``, ``color``, ``lw``,
    ``ms``; markers default to size 3); ``title``, ``xlabel`` (default ``xlabel``),
    ``ylabel``, ``ylim``; ``legend`` (``True``, ``False`` or a legend title; default
    ``True``: a legend when a line has a label); ``vline`` (``(x, label)``: a dashed marker,
    e.g. the best epoch); ``empty`` (the text shown when the panel has no line). The x axis
    shows whole numbers (epochs, iterations). ``ncols`` defaults to one row.
    """
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    n = max(1, len(panels))
    ncols = min(ncols or n, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, squeeze=False,
                             figsize=(panel_size[0] * ncols, panel_size[1] * nrows))
    flat = list(axes.ravel())
    for ax, panel in zip(flat, panels):
        lines = panel.get("lines") or []
        for line in lines:
            kw = dict(line)
            x, y, fmt = kw.pop("x"), kw.pop("y"), kw.pop("fmt", "o-")
            kw.setdefault("ms", 3)
            ax.plot(list(x), list(y), fmt, **kw)
        if not lines:
            ax.text(0.5, 0.5, panel.get("empty", "not recorded"), ha="center", va="center",
                    transform=ax.transAxes, fontsize=10, color="grey")
        if panel.get("vline") is not None:
            vx, vlabel = panel["vline"]
            ax.axvline(vx, color="grey", ls="--", lw=1, label=vlabel)
        if panel.get("title"):
            ax.set_title(panel["title"], fontsize=10)
        ax.set_xlabel(panel.get("xlabel", xlabel))
        if panel.get("ylabel"):
            ax.set_ylabel(panel["ylabel"])
        if panel.get("ylim") is not None:
            ax.set_ylim(*panel["ylim"])
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        legend = panel.get("legend", True)
        labelled = [h for h in ax.get_lines() if not str(h.get_label()).startswith("_")]
        if legend and labelled:
            ax.legend(fontsize=legend_size, title=legend if isinstance(legend, str) else None,
                      title_fontsize=legend_size)
    for ax in flat[len(panels):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return save_figure(fig, path, dpi=dpi)


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
