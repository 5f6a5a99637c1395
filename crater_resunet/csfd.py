"""Crater size-frequency distribution (CSFD) of a catalogue, binned as craterstats does.

    python -m crater_resunet.csfd runs/crater_resunet/wac/craters.csv --area-km2 3.79e7 \
        --out runs/crater_resunet/wac/csfd.png [--truth named.csv] [--diam craters.diam]

The binning is a reimplementation of craterstats 3.2.1 (``Cratercount.generate_bins`` and
``getplotdata``; Michael, BSD licence): ``pseudo-log`` bins (the craterstats default: 1, 1.1,
1.2, 1.3, 1.4, 1.5, 1.7, 2, 2.5, 3, 3.5, 4, 4.5, 5, 6, 7, 8, 9 x 10^k) or ``root-2``, ``x2``,
``4th root-2``, ``10/decade``, ``20/decade`` geometric bins; counts by ``np.histogram`` (a
diameter on a boundary falls in the upper bin). The figure has two panels:

* cumulative: N(>= D) / area at each occupied bin's lower edge, error N / area / sqrt(N);
* R-plot: R = D_mean^3 n / (area (D_max - D_min)) at the bin's geometric mean, error
  R / sqrt(n).

craterstats itself is not a dependency: 3.2.1 (the newest release) installs on Python 3.11,
but does not import with SciPy >= 1.14 (it imports ``scipy.integrate.simps``, removed there).

``write_diam_file`` writes a catalogue as a craterstats ``.diam`` crater list (``area = ...``
km^2, ``crater = {diameter, fraction, lon, lat`` ... ``}``), which craterstats reads.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from shared.errors import UserError

PSEUDO_LOG = (1., 1.1, 1.2, 1.3, 1.4, 1.5, 1.7, 2., 2.5, 3., 3.5, 4., 4.5, 5., 6., 7., 8., 9.)
BINS_PER_DECADE = {"x2": 1. / np.log10(2.), "root-2": 2. / np.log10(2.),
                   "4th root-2": 4. / np.log10(2.), "10/decade": 10., "20/decade": 20.}
BINNINGS = ("pseudo-log", *BINS_PER_DECADE)


def generate_bins(d: Sequence[float], binning: str = "pseudo-log") -> np.ndarray:
    """Bin boundaries covering the diameters ``d`` (craterstats ``generate_bins``, expand:
    one boundary beyond the largest diameter)."""
    d = np.asarray(d, np.float64)
    if d.size == 0 or not np.all(d > 0):
        raise ValueError("diameters must be > 0 and at least one is needed")
    r10 = np.log10([d.min(), d.max()])
    r10[1] += 0.001
    if binning == "pseudo-log":
        decades = [10. ** e for e in range(int(np.floor(r10[0])), int(np.ceil(r10[1] + .1)))]
        bins = np.outer(decades, PSEUDO_LOG).flatten()
    elif binning in BINS_PER_DECADE:
        k = BINS_PER_DECADE[binning]
        lo, hi = np.floor(r10[0] * k), np.ceil(r10[1] * k)
        bins = 10 ** (np.arange(lo, hi + 1) / k)
    else:
        raise ValueError(f"binning must be one of {', '.join(BINNINGS)}, got {binning!r}")
    q = np.searchsorted(bins, 10 ** r10)
    return bins[max(q[0] - 1, 0):q[1] + 1]


def bin_counts(d: Sequence[float], binning: str = "pseudo-log") -> dict:
    """``d_min``, ``d_max``, ``d_mean`` (geometric), ``width``, ``n`` and ``ncum`` (N >= d_min)
    per bin."""
    bins = generate_bins(d, binning)
    n, bins = np.histogram(np.asarray(d, np.float64), bins=bins)
    return {"d_min": bins[:-1], "d_max": bins[1:], "d_mean": np.sqrt(bins[1:] * bins[:-1]),
            "width": bins[1:] - bins[:-1], "n": n, "ncum": np.flip(np.cumsum(np.flip(n)))}


def csfd_points(d: Sequence[float], area: float = 1.0, binning: str = "pseudo-log") -> dict:
    """Plotted values of the occupied bins: ``cumulative`` and ``R`` as (D, y, err) arrays."""
    b = bin_counts(d, binning)
    q = b["n"] > 0
    cum = b["ncum"][q] / area
    r = b["d_mean"][q] ** 3 * b["n"][q] / b["width"][q] / area
    return {"bins": b,
            "cumulative": (b["d_min"][q], cum, cum / np.sqrt(b["ncum"][q])),
            "R": (b["d_mean"][q], r, r / np.sqrt(b["n"][q]))}


def read_diameters(path: str | Path) -> tuple[np.ndarray, str, dict]:
    """Diameters of a catalogue CSV (``diameter_km`` when present, else ``diameter`` in px),
    their unit (``km``/``px``) and the other columns (``lon``, ``lat`` when present)."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            fields = reader.fieldnames or []
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"{path}: cannot read the catalogue ({exc})") from None
    col, unit = ("diameter_km", "km") if "diameter_km" in fields else ("diameter", "px")
    if col not in fields:
        raise UserError(f"{path}: expected a diameter_km or diameter column; found "
                        f"{', '.join(fields) or 'none'}")
    try:
        d = np.array([float(r[col]) for r in rows if r[col] not in ("", None)], np.float64)
        extra = {c: np.array([float(r[c]) for r in rows if r[col] not in ("", None)])
                 for c in ("lon", "lat") if c in fields}
    except ValueError as exc:
        raise UserError(f"{path}: non-numeric value ({exc})") from None
    if not np.all(np.isfinite(d) & (d > 0)):
        raise UserError(f"{path}: every diameter must be finite and > 0")
    return d, unit, extra


def write_csfd_figure(catalogue_csv: str | Path, png: str | Path, *, area: float | None = None,
                      binning: str = "pseudo-log", truth_csv: str | Path | None = None,
                      title: str | None = None, truth_label: str = "true") -> Path:
    """Cumulative and R-plot panels of a catalogue (and of a true one, ``truth_csv``, in the
    other colour). ``area`` in km^2 (or px^2 for pixel catalogues); without it densities are
    per unit area of 1 and the axis says so."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    sets = [("predicted", *read_diameters(catalogue_csv)[:2], "tab:red")]
    if truth_csv is not None:
        sets.append((truth_label, *read_diameters(truth_csv)[:2], "tab:blue"))
    unit = sets[0][2]
    if any(s[2] != unit for s in sets):
        raise UserError(f"{truth_csv}: diameters in {sets[1][2]}, {catalogue_csv} in {unit}")
    sets = [s for s in sets if len(s[1])]
    a = float(area) if area else 1.0
    aunit = f"{unit}$^2$" if area else f"area 1 {unit}$^2$ (area unknown)"
    if not sets:  # nothing to plot: one panel saying so, not two empty ones
        fig, ax = plt.subplots(figsize=(5, 2))
        ax.axis("off")
        ax.text(0.5, 0.5, f"no craters in {Path(catalogue_csv).name}", ha="center",
                va="center")
    else:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4.4))
        for label, d, _, color in sets:
            pts = csfd_points(d, a, binning)
            for ax, key in zip(axes, ("cumulative", "R")):
                x, y, e = pts[key]
                ax.errorbar(x, y, yerr=e, fmt="o", ms=4, color=color, capsize=2,
                            label=f"{label} ({len(d)} craters)")
        axes[0].set_ylabel(f"cumulative N(≥D) per {aunit}")
        axes[1].set_ylabel("R = D³ n / (A ΔD)")
        from matplotlib.ticker import NullFormatter

        for ax, name in zip(axes, ("cumulative", "R-plot")):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel(f"diameter D ({unit})")
            ax.set_title(f"{name} ({binning} bins)", fontsize=10)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    from shared.figures import save_figure

    return save_figure(fig, png, dpi=110, fmt="png")


def write_diam_file(catalogue_csv: str | Path, path: str | Path, area_km2: float) -> Path:
    """The catalogue as a craterstats crater list (``.diam``): area in km^2, diameters in km
    (a catalogue without ``diameter_km`` is refused), fraction 1, lon/lat when present."""
    from shared.atomic import atomic_write_text

    d, unit, extra = read_diameters(catalogue_csv)
    if unit != "km":
        raise UserError(f"{catalogue_csv}: no diameter_km column; craterstats needs km "
                        f"(predict a georeferenced raster)")
    if not area_km2 or area_km2 <= 0:
        raise UserError(f"{path}: the counting area must be > 0 km^2")
    geo = "lon" in extra and "lat" in extra
    lines = ["# Crater list for craterstats (.diam), written by crater_resunet.csfd",
             f"# source: {Path(catalogue_csv).name}", "#", "# area, km^2",
             f"area = {area_km2:.6g}", "#",
             "#              km        -      deg  deg" if geo else "#              km   -",
             "crater = {diameter, fraction, lon, lat" if geo else "crater = {diameter, fraction"]
    for i, di in enumerate(d):
        lines.append(f"{di:.6g} 1. {extra['lon'][i]:.6f} {extra['lat'][i]:.6f}" if geo
                     else f"{di:.6g} 1.")
    lines.append("}")
    atomic_write_text(path, "\n".join(lines) + "\n")
    return Path(path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="craters-csfd",
        description="Crater size-frequency distribution figure (cumulative and R-plot, "
                    "craterstats binning) of a catalogue CSV, and optionally the catalogue as "
                    "a craterstats .diam crater list.")
    parser.add_argument("catalogue", type=Path, help="craters.csv (diameter_km or diameter)")
    parser.add_argument("--out", type=Path, required=True, help="figure (.png)")
    parser.add_argument("--area-km2", type=float, help="counting area (km^2; px^2 for pixel "
                        "catalogues); default: densities per unit area")
    parser.add_argument("--binning", choices=BINNINGS, default="pseudo-log")
    parser.add_argument("--truth", type=Path, help="a true catalogue drawn in another colour")
    parser.add_argument("--diam", type=Path, help="also write a craterstats .diam file "
                        "(needs --area-km2 and diameter_km)")
    args = parser.parse_args(argv)
    if args.area_km2 is not None and not args.area_km2 > 0:
        parser.error("--area-km2 must be > 0")
    write_csfd_figure(args.catalogue, args.out, area=args.area_km2, binning=args.binning,
                      truth_csv=args.truth)
    if args.diam:
        if args.area_km2 is None:
            parser.error("--diam needs --area-km2")
        write_diam_file(args.catalogue, args.diam, args.area_km2)
    print(f"CSFD -> {args.out}" + (f", craterstats list -> {args.diam}" if args.diam else ""))
    return 0


def cli(argv: Sequence[str] | None = None) -> int:
    from shared.runs import cli_main

    return cli_main(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
