"""Quantitative crack-network analysis of binary crack masks (the paper's second half).

``analyze_mask(mask)`` measures, on one binary crack mask (crack = nonzero):

* ``surface_crack_ratio``: crack pixels / all pixels.
* ``skeleton_length``: length (px) of the pruned crack skeleton (sum of segment lengths).
* ``mean_width``: crack area / skeleton length (px), the usual CIAS definition.
* ``n_junctions``, ``n_endpoints``, ``n_segments``, ``segment_lengths`` (px): the crack graph.
* ``intersection_angles`` (degrees): at each junction, the angle between every pair of
  *adjacent* segments (sorted around the junction), so the angles of one junction sum to 360.
* ``segmentation_ratios``: see below.
* ``n_clods``, ``clod_areas`` (px): the closed cells between cracks (4-connected background
  regions of at least ``min_clod_area`` pixels; ``exclude_border_clods`` drops those cut by the
  image edge).
* ``fractal_dimension``: box-counting dimension of the crack pixels.

Graph construction: the mask is skeletonised (scikit-image) and turned into a pixel graph with
skan. Spurs (junction-to-end segments) shorter than ``prune_factor`` times the local crack width
at their junction are pruned, repeatedly. Junction pixels closer than the local width (an X
crossing often skeletonises into two Y's one pixel apart) are merged into one junction. The
direction of a segment at a junction is the principal axis (line fit) of the segment's skeleton
pixels whose distance from the junction centre lies between ``angle_near`` and ``angle_far``
local widths, oriented away from the junction, so the blob of pixels at the junction itself
does not bias the angles.

Segmentation ratio (our definition; the paper does not spell one out, and ``SEGMENTATION_RATIOS``
keeps it swappable): at a junction of degree 3 the *through-going* crack is the pair of
segments with the largest included angle, provided that angle is at least ``straight_min_deg``
(150 deg by default, i.e. a T-like junction); the abutting third segment divides it into two
parts of lengths L1 and L2 (the two segments' lengths, junction to next node), and the ratio is
``min(L1, L2) / max(L1, L2)`` in (0, 1]. A ratio near 1 means the later crack cut the earlier
one near its middle. ``all_junctions`` is an alternative: shortest / longest incident segment at
every junction.

CLI::

    python -m mars_cracknet.analysis masks/ --out analysis/
    python -m mars_cracknet.analysis --compare edc_masks/ mic_masks/ --labels EDC MIC --out cmp/
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from shared.errors import UserError

LIST_MEASURES = ("intersection_angles", "segmentation_ratios", "segment_lengths", "clod_areas")
SCALAR_MEASURES = ("surface_crack_ratio", "skeleton_length", "mean_width", "n_junctions",
                   "n_endpoints", "n_segments", "n_clods", "fractal_dimension")
MASK_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")


# --------------------------------------------------------------------------- building blocks
def box_counting_dimension(mask: np.ndarray, min_box: int = 2) -> float:
    """Box-counting (Minkowski-Bouligand) dimension of the nonzero pixels; nan if empty."""
    mask = np.asarray(mask) > 0
    if not mask.any():
        return float("nan")
    side = min(mask.shape)
    sizes = []
    s = min_box
    while s <= side // 2:
        sizes.append(s)
        s *= 2
    if len(sizes) < 2:
        return float("nan")
    counts = []
    for s in sizes:
        h, w = (mask.shape[0] // s) * s, (mask.shape[1] // s) * s
        blocks = mask[:h, :w].reshape(h // s, s, w // s, s).any(axis=(1, 3))
        counts.append(max(int(blocks.sum()), 1))
    slope = np.polyfit(np.log(1.0 / np.asarray(sizes, float)), np.log(counts), 1)[0]
    return float(slope)


class _UnionFind:
    def __init__(self):
        self.parent: dict[int, int] = {}

    def find(self, a: int) -> int:
        self.parent.setdefault(a, a)
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _local_width(dist: np.ndarray, rc: np.ndarray) -> float:
    r = np.clip(np.round(rc).astype(int), 0, np.array(dist.shape) - 1)
    return float(max(2.0 * dist[r[0], r[1]] - 1.0, 1.0))


def prune_spurs(skel: np.ndarray, dist: np.ndarray, prune_factor: float = 1.0,
                max_rounds: int = 10) -> np.ndarray:
    """Remove junction-to-end branches shorter than ``prune_factor`` x the local width.

    The skeleton graph is built once (skan) and pruned as a graph, round after round: a round
    removes every spur shorter than the width at its junction; a junction left with two
    branches then joins them into one, which the next round may find to be a spur. The pixels
    of the surviving branches are painted back and thinned once more.
    """
    from skan import Skeleton
    from skimage.morphology import skeletonize

    if skel.sum() < 2:
        return skel.copy()
    sk = Skeleton(skel)
    paths = sk.paths_list()
    lengths = sk.path_lengths()
    # branch id -> [end node, end node, length, path ids]; a branch starts as one skan path
    branches = {i: [p[0], p[-1], float(lengths[i]), [i]] for i, p in enumerate(paths)}
    incident: dict[int, set[int]] = {}
    for b, (u, v, _, _) in branches.items():
        incident.setdefault(u, set()).add(b)
        incident.setdefault(v, set()).add(b)

    def degree(node: int) -> int:  # branch ends at the node (a loop counts twice)
        return sum(2 if branches[b][0] == branches[b][1] else 1 for b in incident[node])

    removed_any = False
    for _ in range(max_rounds):
        remove = []
        for b, (u, v, length, _) in branches.items():
            du, dv = degree(u), degree(v)
            if (du == 1) == (dv == 1) or min(du, dv) == 0:
                continue  # junction-junction, end-end or loop
            junction = u if du > 1 else v
            if length < prune_factor * _local_width(dist, sk.coordinates[junction]):
                remove.append(b)
        if not remove:
            break
        removed_any = True
        touched = set()
        for b in remove:
            u, v = branches.pop(b)[:2]
            for node in (u, v):
                incident[node].discard(b)
                touched.add(node)
        for node in touched:  # a node left with two branch ends joins them into one
            inc = incident[node]
            if len(inc) != 2 or degree(node) != 2:  # (a loop and a branch make a junction)
                continue
            b1, b2 = sorted(inc)
            u1, v1, l1, p1 = branches[b1]
            u2, v2, l2, p2 = branches.pop(b2)
            a = v1 if u1 == node else u1
            c = v2 if u2 == node else u2
            branches[b1] = [a, c, l1 + l2, p1 + p2]
            inc.clear()
            incident[c].discard(b2)
            incident[a].add(b1)
            incident[c].add(b1)
    if not removed_any:
        return skel.copy()
    out = np.zeros(skel.shape, bool)
    for _, _, _, ids in branches.values():
        for i in ids:
            rc = sk.path_coordinates(i).astype(int)
            out[rc[:, 0], rc[:, 1]] = True
    return skeletonize(out)


def _segment_direction(pts: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Unit direction of a segment leaving ``centre``: the principal axis of ``pts`` (a line
    fit, so an off-centre junction blob does not tilt it), oriented away from the junction."""
    away = pts.mean(axis=0) - centre
    if len(pts) >= 3:
        centred = pts - pts.mean(axis=0)
        _, sv, vt = np.linalg.svd(centred, full_matrices=False)
        if sv[0] > 1e-9 and (len(sv) < 2 or sv[0] > 2 * sv[1]):
            u = vt[0]
            return u if np.dot(u, away) >= 0 else -u
    return away / max(float(np.linalg.norm(away)), 1e-9)


# --------------------------------------------------------------------------- segmentation ratio
def ratio_t_junctions(junctions: list[dict[str, Any]], straight_min_deg: float = 150.0
                     ) -> list[float]:
    """Default definition (see the module docstring): T-like junctions of degree 3."""
    out = []
    for j in junctions:
        if j["degree"] != 3:
            continue
        dirs, lengths = j["directions"], j["lengths"]
        best, pair = -1.0, None
        for a in range(3):
            for b in range(a + 1, 3):
                ang = float(np.degrees(np.arccos(np.clip(np.dot(dirs[a], dirs[b]), -1, 1))))
                if ang > best:
                    best, pair = ang, (a, b)
        if pair is None or best < straight_min_deg:
            continue
        la, lb = lengths[pair[0]], lengths[pair[1]]
        if max(la, lb) > 0:
            out.append(min(la, lb) / max(la, lb))
    return out


def ratio_all_junctions(junctions: list[dict[str, Any]], **_: Any) -> list[float]:
    """Alternative: shortest / longest incident segment at every junction."""
    return [min(j["lengths"]) / max(j["lengths"]) for j in junctions
            if j["degree"] >= 3 and max(j["lengths"]) > 0]


SEGMENTATION_RATIOS: dict[str, Callable[..., list[float]]] = {
    "t_junction": ratio_t_junctions, "all_junctions": ratio_all_junctions}


# --------------------------------------------------------------------------- analysis
def analyze_mask(mask: np.ndarray, *, prune_factor: float = 1.0, merge_factor: float = 1.0,
                 angle_near: float = 1.0, angle_far: float = 3.0, min_clod_area: int = 10,
                 exclude_border_clods: bool = False, segmentation_ratio: str = "t_junction",
                 straight_min_deg: float = 150.0) -> dict[str, Any]:
    """Crack-network measures of one binary mask (see the module docstring)."""
    from scipy import ndimage as ndi
    from skan import Skeleton
    from skimage.morphology import skeletonize

    if segmentation_ratio not in SEGMENTATION_RATIOS:
        raise ValueError(f"unknown segmentation ratio {segmentation_ratio!r}; expected one of "
                         f"{sorted(SEGMENTATION_RATIOS)}")
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"expected a 2-D mask, got shape {mask.shape}")
    crack = mask > 0
    area = int(crack.sum())
    out: dict[str, Any] = {
        "height": int(crack.shape[0]), "width": int(crack.shape[1]),
        "surface_crack_ratio": area / crack.size,
        "fractal_dimension": box_counting_dimension(crack),
    }
    # clods
    labels, n = ndi.label(~crack)
    sizes = np.bincount(labels.ravel())[1:] if n else np.zeros(0, int)
    keep = sizes >= min_clod_area
    if exclude_border_clods and n:
        border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
        keep &= ~np.isin(np.arange(1, n + 1), border)
    out["clod_areas"] = [int(s) for s in sizes[keep]]
    out["n_clods"] = len(out["clod_areas"])

    empty = {"skeleton_length": 0.0, "mean_width": float("nan"), "n_junctions": 0,
             "n_endpoints": 0, "n_segments": 0, "segment_lengths": [],
             "intersection_angles": [], "segmentation_ratios": []}
    if area == 0:
        return {**out, **empty}
    dist = ndi.distance_transform_edt(crack)
    skel = prune_spurs(skeletonize(crack), dist, prune_factor)
    if skel.sum() < 2:
        return {**out, **empty}
    sk = Skeleton(skel)
    paths = sk.paths_list()
    lengths = sk.path_lengths()
    deg = sk.degrees
    coords = sk.coordinates.astype(float)

    # merge junction pixels joined by very short junction-junction paths into one junction
    uf = _UnionFind()
    short = set()
    for i, nodes in enumerate(paths):
        a, b = nodes[0], nodes[-1]
        if deg[a] >= 3:
            uf.find(a)
        if deg[b] >= 3:
            uf.find(b)
        if deg[a] >= 3 and deg[b] >= 3 and a != b:
            w = max(_local_width(dist, coords[a]), _local_width(dist, coords[b]))
            if lengths[i] <= merge_factor * w:
                uf.union(a, b)
                short.add(i)
    members: dict[int, list[int]] = {}
    for node in list(uf.parent):
        members.setdefault(uf.find(node), []).append(node)
    centre = {root: coords[nodes].mean(axis=0) for root, nodes in members.items()}
    width_at = {root: max(_local_width(dist, centre[root]), 2.0) for root in members}

    # incident segment ends of every junction
    ends: dict[int, list[tuple[int, np.ndarray]]] = {root: [] for root in members}
    seg_lengths, endpoints = [], set()
    for i, nodes in enumerate(paths):
        if i in short:
            continue
        seg_lengths.append(float(lengths[i]))
        pc = sk.path_coordinates(i).astype(float)
        for end, pts in ((nodes[0], pc), (nodes[-1], pc[::-1])):
            if deg[end] >= 3:
                ends[uf.find(end)].append((i, pts))
            elif deg[end] == 1:
                endpoints.add(int(end))
    junctions = []
    angles: list[float] = []
    for root, incident in ends.items():
        if len(incident) < 3:
            continue
        c, w = centre[root], width_at[root]
        dirs, lens = [], []
        for i, pts in incident:
            arc = np.linalg.norm(pts - c, axis=1)  # distance from the junction centre
            total = float(lengths[i])
            near, far = angle_near * w, angle_far * w
            if total < far:  # short segment: use what there is, beyond the junction blob
                near, far = min(near, 0.5 * total), max(total, 1.0)
            sel = pts[(arc >= near) & (arc <= far)]
            if len(sel) == 0:
                sel = pts[-1:]
            dirs.append(_segment_direction(sel, c))
            lens.append(float(lengths[i]))
        theta = np.arctan2([d[0] for d in dirs], [d[1] for d in dirs])
        order = np.argsort(theta)
        t = theta[order]
        gaps = np.degrees(np.diff(np.concatenate([t, t[:1] + 2 * np.pi])))
        angles += [float(g) for g in gaps]
        junctions.append({"centre": c, "degree": len(incident), "directions": dirs,
                          "lengths": lens})
    skel_len = float(sum(seg_lengths))
    out.update({
        "skeleton_length": skel_len,
        "mean_width": area / skel_len if skel_len > 0 else float("nan"),
        "n_junctions": len(junctions),
        "n_endpoints": len(endpoints),
        "n_segments": len(seg_lengths),
        "segment_lengths": seg_lengths,
        "intersection_angles": angles,
        "segmentation_ratios": SEGMENTATION_RATIOS[segmentation_ratio](
            junctions, straight_min_deg=straight_min_deg),
    })
    return out


# --------------------------------------------------------------------------- calibration patterns
def square_grid_mask(size: int = 256, spacing: int = 40, width: int = 5,
                     offset: int = 17) -> np.ndarray:
    """A rendered square grid of cracks (all intersection angles 90 deg)."""
    mask = np.zeros((size, size), np.uint8)
    for k in range(offset, size, spacing):
        lo, hi = k - width // 2, k - width // 2 + width
        mask[max(lo, 0):hi, :] = 255
        mask[:, max(lo, 0):hi] = 255
    return mask


def honeycomb_mask(size: int = 256, side: float = 24.0, width: int = 4) -> np.ndarray:
    """A rendered honeycomb of cracks (hexagonal cells, all intersection angles 120 deg)."""
    import cv2

    s = 4  # draw supersampled, then downsample, for straight anti-aliased edges
    canvas = np.zeros((size * s, size * s), np.uint8)
    dx, dy = 1.5 * side, np.sqrt(3) * side
    corners = np.array([[np.cos(a), np.sin(a)] for a in np.radians(np.arange(0, 360, 60))])
    for i in range(-1, int(size / dx) + 2):
        for j in range(-1, int(size / dy) + 2):
            cx, cy = i * dx, j * dy + (dy / 2 if i % 2 else 0.0)
            poly = (np.array([cx, cy]) + side * corners) * s
            cv2.polylines(canvas, [np.round(poly).astype(np.int32)], True, 255, width * s)
    small = canvas.reshape(size, s, size, s).mean(axis=(1, 3))
    return ((small > 127) * 255).astype(np.uint8)


# --------------------------------------------------------------------------- folders, plots
def _list_masks(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise UserError(f"{folder}: mask folder not found")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in MASK_SUFFIXES)
    if not files:
        raise UserError(f"{folder}: no mask images ({', '.join(MASK_SUFFIXES)})")
    return files


def read_binary_mask(path: Path) -> np.ndarray:
    from shared.images import read_mask

    return read_mask(path) > 0


def analyze_folder(folder: Path, out: Path | None = None, **kwargs: Any
                   ) -> tuple[list[dict[str, Any]], dict[str, list[float]]]:
    """Analyse every mask of ``folder``; with ``out``, write one CSV per image there."""
    from tqdm import tqdm

    rows, pooled = [], {m: [] for m in LIST_MEASURES}
    from shared.cli import progress_enabled

    for path in tqdm(_list_masks(folder), desc=f"analysis {folder.name}", leave=False,
                     disable=not progress_enabled()):
        res = analyze_mask(read_binary_mask(path), **kwargs)
        rows.append({"image": path.stem, **{k: res[k] for k in SCALAR_MEASURES},
                     "mean_angle": _mean(res["intersection_angles"]),
                     "mean_segmentation_ratio": _mean(res["segmentation_ratios"])})
        for m in LIST_MEASURES:
            pooled[m] += res[m]
        if out is not None:
            _write_image_csv(out / "per_image" / f"{path.stem}.csv", res)
    return rows, pooled


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


def _write_image_csv(path: Path, res: dict[str, Any]) -> None:
    from shared.atomic import atomic_write_text

    lines = ["measure,index,value"]
    for k in SCALAR_MEASURES:
        lines.append(f"{k},,{res[k]}")
    for k in LIST_MEASURES:
        lines += [f"{k},{i},{v:.6g}" for i, v in enumerate(res[k])]
    atomic_write_text(path, "\n".join(lines) + "\n")


def summarize(rows: list[dict[str, Any]], pooled: dict[str, list[float]]) -> dict[str, Any]:
    """Mean/std/median of pooled list measures and of per-image scalars."""
    def stats(v: list[float]) -> dict[str, float]:
        a = np.asarray([x for x in v if np.isfinite(x)], float)
        if a.size == 0:
            return {"n": 0, "mean": float("nan"), "std": float("nan"), "median": float("nan")}
        return {"n": int(a.size), "mean": float(a.mean()), "std": float(a.std()),
                "median": float(np.median(a))}

    summary = {m: stats(pooled[m]) for m in LIST_MEASURES}
    for k in SCALAR_MEASURES:
        summary[k] = stats([r[k] for r in rows])
    summary["n_images"] = len(rows)
    return summary


PLOT_MEASURES = (("intersection_angles", "intersection angle (deg)", (0, 360)),
                 ("segmentation_ratios", "segmentation ratio", (0, 1)),
                 ("segment_lengths", "segment length (px)", None),
                 ("clod_areas", "clod area (px)", None))


def plot_pdfs(sets: dict[str, dict[str, list[float]]], path: Path, title: str = "") -> None:
    """One panel per measure: the histogram-density (PDF) of every set, overlaid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    fig, axes = plt.subplots(1, len(PLOT_MEASURES), figsize=(4 * len(PLOT_MEASURES), 3.3))
    for ax, (m, label, rng) in zip(axes, PLOT_MEASURES):
        for name, pooled in sets.items():
            v = np.asarray(pooled[m], float)
            if v.size == 0:
                continue
            lo, hi = rng if rng else (0.0, float(np.percentile(v, 99)) or 1.0)
            ax.hist(v, bins=36 if m == "intersection_angles" else 20, range=(lo, hi),
                    density=True, histtype="step", linewidth=1.5, label=f"{name} (n={v.size})")
        ax.set(xlabel=label, ylabel="PDF")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    from shared.figures import save_figure

    save_figure(fig, path, dpi=None, fmt=Path(path).suffix.lstrip(".") or "pdf")


def ks_table(a: dict[str, list[float]], b: dict[str, list[float]]) -> list[dict[str, Any]]:
    """Two-sample Kolmogorov-Smirnov statistic and p-value per list measure."""
    from scipy.stats import ks_2samp

    rows = []
    for m in LIST_MEASURES:
        if len(a[m]) and len(b[m]):
            r = ks_2samp(a[m], b[m])
            rows.append({"measure": m, "n_a": len(a[m]), "n_b": len(b[m]),
                         "ks_statistic": float(r.statistic), "p_value": float(r.pvalue)})
        else:
            rows.append({"measure": m, "n_a": len(a[m]), "n_b": len(b[m]),
                         "ks_statistic": float("nan"), "p_value": float("nan")})
    return rows


def _write_rows_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    import csv
    import io

    from shared.atomic import atomic_write_text

    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def run_analysis(folder: Path, out: Path, label: str | None = None, **kwargs: Any
                 ) -> tuple[dict[str, Any], dict[str, list[float]]]:
    """Analyse a folder: ``per_image/*.csv``, ``images.csv``, ``summary.json``, ``pdfs.pdf``."""
    from shared.atomic import atomic_write_json

    label = label or folder.name
    rows, pooled = analyze_folder(folder, out, **kwargs)
    summary = summarize(rows, pooled)
    _write_rows_csv(out / "images.csv", rows)
    atomic_write_json(out / "summary.json", {"label": label, "folder": str(folder),
                                             "settings": kwargs, **summary})
    plot_pdfs({label: pooled}, out / "pdfs.pdf", title=label)
    return summary, pooled


def compare(folder_a: Path, folder_b: Path, out: Path, labels: tuple[str, str] | None = None,
            **kwargs: Any) -> list[dict[str, Any]]:
    """Analyse two sets, overlay their PDFs (``compare.pdf``) and write ``ks.csv``/``ks.json``."""
    from shared.atomic import atomic_write_json

    la, lb = labels or (folder_a.name, folder_b.name)
    if la == lb:
        la, lb = f"{la} (a)", f"{lb} (b)"
    _, pa = run_analysis(folder_a, out / "a", la, **kwargs)
    _, pb = run_analysis(folder_b, out / "b", lb, **kwargs)
    table = ks_table(pa, pb)
    _write_rows_csv(out / "ks.csv", table)
    atomic_write_json(out / "ks.json", {"a": la, "b": lb, "rows": table})
    plot_pdfs({la: pa, lb: pb}, out / "compare.pdf", title=f"{la} vs {lb}")
    return table


def main(argv: list[str] | None = None) -> int:
    from shared.runs import cli_main

    return cli_main(_main, argv)


def _main(argv: list[str] | None = None) -> int:
    from shared.cli import finish_parser

    p = argparse.ArgumentParser(
        prog="cracknet-analysis",
        description="Crack-network analysis of binary crack masks: surface crack ratio, "
                    "intersection angles, segmentation ratios, segment lengths, width, "
                    "clods, fractal dimension; PDFs and a two-sample KS comparison.",
        epilog="Examples: python -m mars_cracknet.analysis masks/ --out analysis/ ;  "
               "python -m mars_cracknet.analysis --compare edc/ mic/ --labels EDC MIC --out cmp/")
    p.add_argument("masks", nargs="?", type=Path, help="folder of binary masks (crack > 0)")
    p.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"),
                   help="analyse two folders and compare them (KS test per measure)")
    p.add_argument("--labels", nargs=2, metavar=("LABEL_A", "LABEL_B"),
                   help="names of the two sets in plots and tables")
    p.add_argument("--out", type=Path, required=True, help="output folder (required)")
    p.add_argument("--prune-factor", type=float, default=1.0,
                   help="prune spurs shorter than this x local width (default 1)")
    p.add_argument("--angle-near", type=float, default=1.0,
                   help="segment direction measured from this many widths ... (default 1)")
    p.add_argument("--angle-far", type=float, default=3.0, help="... to this many (default 3)")
    p.add_argument("--min-clod-area", type=int, default=10,
                   help="smallest clod counted, in pixels")
    p.add_argument("--exclude-border-clods", action="store_true",
                   help="leave out clods touching the image border")
    p.add_argument("--segmentation-ratio", choices=sorted(SEGMENTATION_RATIOS),
                   default="t_junction", help="which junctions the segmentation ratio counts")
    from shared.runs import declare_paths

    # issue 27: figures written into a mask folder would be read as masks next time
    declare_paths(p, inputs=["masks", "compare"], folders=["out"])
    a = finish_parser(p).parse_args(argv)
    if (a.masks is None) == (a.compare is None):
        p.error("give either a mask folder or --compare A B")
    if a.prune_factor < 0 or not 0 <= a.angle_near < a.angle_far:
        p.error("need --prune-factor >= 0 and 0 <= --angle-near < --angle-far")
    kwargs = {"prune_factor": a.prune_factor, "angle_near": a.angle_near,
              "angle_far": a.angle_far, "min_clod_area": a.min_clod_area,
              "exclude_border_clods": a.exclude_border_clods,
              "segmentation_ratio": a.segmentation_ratio}
    if a.compare:
        table = compare(a.compare[0], a.compare[1], a.out,
                        tuple(a.labels) if a.labels else None, **kwargs)
        for r in table:
            print(f"{r['measure']:22s} KS={r['ks_statistic']:.3f} p={r['p_value']:.3g} "
                  f"(n={r['n_a']}/{r['n_b']})")
    else:
        summary, _ = run_analysis(a.masks, a.out, a.labels[0] if a.labels else None, **kwargs)
        ang = summary["intersection_angles"]
        print(f"{summary['n_images']} masks: mean angle {ang['mean']:.1f} deg "
              f"(n={ang['n']}), written to {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
