"""Per-paper result summaries and the ``RESULTS.md`` table built from them.

Each subproject's reproduce job calls :func:`write_summary`, which writes
``results/<paper>/summary.json``. ``python -m shared.results`` (``make results``) turns every
summary into one table. The paper's reported numbers come from each subproject's own config and
are passed in by the caller, so they are typed once. ``ReproduceLog`` is the one tee of the
reproduce jobs' console output into ``reproduce.log``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import io
import json
import os
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shared.atomic import atomic_write_json, atomic_write_text
from shared.configs import REPO_ROOT
from shared.stats import format_mean_ci

PAPERS = {
    "mars_cracknet": "Mars-CrackNet (Xu et al., JGR Planets)",
    "dune_vlm": "Mars-analog dunes with a VLM (MADS)",
    "s5mars_ssl": "S5Mars (Zhang et al., IEEE TGRS 2024)",
    "crater_resunet": "Crater ResNet-UNet (Keras)",
    "ice_patch_cnn": "HiRISE ice patches (Gergácz & Kereszturi)",
}
LOCAL = "local"  # results/local/<paper>/: a user's reproduce, git-ignored


class ReproduceLog(io.TextIOBase):
    """The one log tee of the reproduce jobs: what they print goes to the console and is kept,
    and :meth:`save` writes it to ``results/<paper>/reproduce.log`` atomically (call it after
    each seed so that a cut-off run keeps its log). Use it as a context manager: ``sys.stdout``
    is the tee inside the block and restored after it.
    """

    def __init__(self, path: str | os.PathLike | None = None, stream: Any = None):
        self.path = Path(path) if path is not None else None
        self.stream = stream
        self.lines: list[str] = []

    def __enter__(self) -> ReproduceLog:
        self.stream = self.stream or sys.stdout
        self._saved, sys.stdout = sys.stdout, self
        return self

    def __exit__(self, *exc: object) -> None:
        sys.stdout = self._saved

    def write(self, s: str) -> int:
        if self.stream is not None:
            self.stream.write(s)
        self.lines.append(s)
        return len(s)

    def flush(self) -> None:
        if self.stream is not None:
            self.stream.flush()

    def isatty(self) -> bool:
        return False

    def text(self) -> str:
        return "".join(self.lines)

    def save(self, path: str | os.PathLike | None = None) -> Path:
        """Write what was printed so far (to ``path``, else the log's own path)."""
        target = Path(path) if path is not None else self.path
        if target is None:
            raise ValueError("ReproduceLog.save: no path")
        atomic_write_text(target, self.text())
        return target


def results_dir(paper: str, record: bool = False, root: str | os.PathLike | None = None
                ) -> Path:
    """Where a reproduce writes: ``results/local/<paper>/`` (git-ignored, the default, so a
    user's ``make reproduce-<paper>`` never rewrites the committed record) or, with
    ``record=True`` (``reproduce.py --record``), the committed record ``results/<paper>/``."""
    if paper not in PAPERS:
        raise ValueError(f"unknown paper {paper!r}; expected one of {sorted(PAPERS)}")
    base = Path(root) if root is not None else REPO_ROOT / "results"
    return base / paper if record else base / LOCAL / paper


RELATIVE_SUFFIXES = (".json", ".yaml", ".yml", ".log", ".txt", ".csv")


def relativize_paths(folder: str | os.PathLike, root: str | os.PathLike | None = None) -> int:
    """Rewrite the text records in ``folder`` (JSON, YAML, logs, CSV) with paths below the
    repository made relative to it, so that a committed record names no machine's absolute
    path. Returns the number of files changed (each rewritten atomically)."""
    prefix = str(Path(root) if root is not None else REPO_ROOT).rstrip("/") + "/"
    changed = 0
    for path in sorted(Path(folder).rglob("*")):
        if not path.is_file() or path.suffix not in RELATIVE_SUFFIXES:
            continue
        text = path.read_text(encoding="utf-8", errors="strict")
        if prefix in text:
            atomic_write_text(path, text.replace(prefix, ""))
            changed += 1
    return changed


def add_results_arguments(parser: argparse.ArgumentParser, paper: str,
                          dest: str = "results") -> None:
    """``--results DIR`` and ``--record`` of every reproduce.py (see :func:`results_dir`)."""
    parser.add_argument("--results", dest=dest, type=Path, default=None, metavar="DIR",
                        help=f"results folder (default: results/{LOCAL}/{paper}/, git-ignored; "
                             f"with --record: the committed record results/{paper}/)")
    parser.add_argument("--record", action="store_true",
                        help=f"write the committed record results/{paper}/ instead of "
                             f"results/{LOCAL}/{paper}/ (default: off)")


def resolve_results(args: argparse.Namespace, paper: str, dest: str = "results") -> Path:
    """The results folder of a reproduce: ``--results`` when given, else :func:`results_dir`."""
    given = getattr(args, dest, None)
    return Path(given) if given is not None else results_dir(paper, bool(args.record))


def machine_info() -> dict[str, Any]:
    """CPU model, core count, GPU (when a framework already imported sees one), versions."""
    from shared.precision import cpu_has_native_bf16

    cpu = platform.processor() or platform.machine()
    ident: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name":
                    cpu = value.strip()
                elif key in ("cpu family", "model", "stepping") and key not in ident:
                    ident[key] = value.strip()
                elif not line.strip():
                    break
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu,
        # family/model/stepping tell CPU generations apart where the model name does not
        # (e.g. "AMD EPYC" on a VM); native bf16 decides what --precision auto runs
        "cpu_id": " ".join(f"{k} {ident[k]}" for k in ("cpu family", "model", "stepping")
                           if k in ident) or None,
        "native_bf16": cpu_has_native_bf16(),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "python": platform.python_version(),
        "gpu": None,
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    tf = sys.modules.get("tensorflow")
    if tf is not None:
        info["tensorflow"] = tf.__version__
        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            info["gpu"] = gpus[0].name
    keras = sys.modules.get("keras")
    if keras is not None:
        info["keras"] = keras.__version__
    return info


def machine_label(info: dict[str, Any]) -> str:
    label = f"{info.get('cpu', '?')}"
    if info.get("cpu_id"):
        label += f" ({info['cpu_id']})"
    label += f", {info.get('cores', '?')} cores"
    if "native_bf16" in info:
        label += ", native bf16" if info["native_bf16"] else ", no native bf16"
    if info.get("gpu"):
        label += f", {info['gpu']}"
    return label


def profile_label(summary: dict[str, Any]) -> str:
    """``quick, bf16``: the profile and the arithmetic its runs trained in (``precision`` of the
    summary; records made before precision was recorded ran in fp32, the only default then)."""
    precision = summary.get("precision")
    return (f"{summary.get('profile', '?')}, "
            + (str(precision) if precision else "fp32 (not recorded; the only default then)"))


def write_summary(
    paper: str,
    rows: Sequence[dict[str, Any]],
    *,
    data: str,
    profile: str,
    wall_time_s: float,
    results_dir: str | os.PathLike | None = None,
    notes: str = "",
    claims: Sequence[dict[str, Any]] = (),
    extra: dict[str, Any] | None = None,
    precision: str | None = None,
) -> Path:
    """Write ``results/<paper>/summary.json``.

    ``rows`` are dicts with ``setting`` (e.g. "mode c (semi)"), ``metric`` (e.g. "Dice"),
    ``reported`` (the paper's figure, ``None`` where the paper gives none) and ``ours``: a number
    (one run) or ``shared.stats.describe(per_seed_values)``. ``claims`` are
    ``shared.stats.claim(...)`` records (paired over seeds, with a verdict).
    """
    if paper not in PAPERS:
        raise ValueError(f"unknown paper {paper!r}; expected one of {sorted(PAPERS)}")
    for i, row in enumerate(rows):
        missing = {"setting", "metric", "reported", "ours"} - set(row)
        if missing:
            raise ValueError(f"row {i} lacks {sorted(missing)}: {row}")
        if isinstance(row["ours"], dict) and not {"n", "mean", "values"} <= set(row["ours"]):
            raise ValueError(f"row {i}: 'ours' must be a number or shared.stats.describe(...)")
    for i, c in enumerate(claims):
        missing = {"claim", "metric", "a", "b", "verdict", "ci95", "differences"} - set(c)
        if missing:
            raise ValueError(f"claim {i} lacks {sorted(missing)} (use shared.stats.claim)")
    out = Path(results_dir) if results_dir is not None else REPO_ROOT / "results" / paper
    summary = {
        "paper": paper,
        "title": PAPERS[paper],
        "rows": list(rows),
        "data": data,
        "profile": profile,
        **({"precision": precision} if precision else {}),
        "wall_time_s": round(float(wall_time_s), 1),
        "machine": machine_info(),
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "notes": notes,
        "claims": list(claims),
        **(extra or {}),
    }
    return atomic_write_json(out / "summary.json", summary)


def significant_decimals(uncertainty: float | None, default: int = 3) -> int:
    """Decimals that show an uncertainty to two significant digits (0.0123 -> 4, 1.76 -> 1,
    23.4 -> 0): a mean and its interval are rounded to what the interval supports."""
    import math

    if uncertainty is None or not math.isfinite(uncertainty) or uncertainty <= 0:
        return default
    return max(0, 1 - math.floor(math.log10(uncertainty)))


def format_claim(c: dict[str, Any]) -> str:
    """``"-0.65, 95 % CI [-2.4, +1.1]"``: a paired difference rounded to its interval."""
    ci = c.get("ci95")
    if not ci:
        return f"{c['mean']:+.3g}, no interval (n < 2)"
    d = significant_decimals(c.get("half_width") or (ci[1] - ci[0]) / 2)
    return f"{c['mean']:+.{d}f}, 95 % CI [{ci[0]:+.{d}f}, {ci[1]:+.{d}f}]"


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, dict):  # shared.stats.describe
        digits = significant_decimals(value.get("half_width"),
                                      3 if abs(value["mean"]) < 10 else 2)
        return format_mean_ci(value, digits)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _claim_line(c: dict[str, Any]) -> str:
    sign = ">" if c.get("direction", "greater") == "greater" else "<"
    return (f"**{c['verdict']}** — {c['claim']}: {c['a']} {sign} {c['b']} on {c['metric']}; "
            f"paired difference {format_claim(c)}, n={c['n']} seeds")


def metric_range(metric: str, values: Sequence[float]) -> tuple[float, float]:
    """The range a metric can take, to clip intervals to: percentages [0, 100], kappa
    [-1, 1], a loss [0, inf), shares and scores whose seeds all lie in [0, 1] [0, 1]."""
    name = metric.lower()
    vals = [float(v) for v in values if v is not None]
    if "%" in metric:
        return 0.0, 100.0
    if "kappa" in name:
        return -1.0, 1.0
    if "loss" in name:
        return 0.0, float("inf")
    if vals and all(0.0 <= v <= 1.0 for v in vals):
        return 0.0, 1.0
    return float("-inf"), float("inf")


def _clip(ci: Sequence[float], lo_hi: tuple[float, float]) -> tuple[float, float]:
    lo, hi = lo_hi
    return max(float(ci[0]), lo), min(float(ci[1]), hi)


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width)) or text


def plot_seeds(summary: dict[str, Any], path: Path) -> Path | None:
    """The spread over seeds of one paper, legible at its saved size (1,100 px wide).

    First one panel per claim: the two arms' per-seed values joined by one line per seed (the
    pairing the claim is tested on), with the paired difference's mean, its 95 % interval and
    the verdict. Then one panel per metric in a grid: one dot per seed (colour = seed, the same
    in every panel), the mean (|) and the 95 % t interval clipped to the metric's range. Panels
    that would repeat another's values exactly are drawn once.
    """
    rows = [r for r in summary.get("rows", []) if isinstance(r.get("ours"), dict)]
    claims = [c for c in summary.get("claims", []) if c.get("a_stats") and c.get("b_stats")]
    if not rows and not claims:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    seeds = list(summary.get("seeds") or range(max(
        [len(r["ours"]["values"]) for r in rows] +
        [len(c["a_stats"]["values"]) for c in claims] or [0])))
    colours = plt.get_cmap("tab10")

    def seed_colour(i: int):
        return colours(i % 10)

    # drop panels whose values repeat another panel's exactly
    seen: set = set()
    claim_panels = []
    for c in claims:
        key = (tuple(c["a_stats"]["values"]), tuple(c["b_stats"]["values"]))
        if key not in seen:
            seen.add(key)
            claim_panels.append(c)
    metric_panels = []
    for metric in dict.fromkeys(r["metric"] for r in rows):
        sub = [r for r in rows if r["metric"] == metric]
        key = tuple(tuple(r["ours"]["values"]) for r in sub)
        if key not in seen:
            seen.add(key)
            metric_panels.append((metric, sub))

    claim_cols, metric_cols = 3, 2
    n_claim_rows = -(-len(claim_panels) // claim_cols)
    n_metric_rows = -(-len(metric_panels) // metric_cols)
    max_settings = max([len(sub) for _, sub in metric_panels] or [1])
    claim_h, metric_h = 3.3 * n_claim_rows, (0.45 * max_settings + 1.3) * n_metric_rows
    fig = plt.figure(figsize=(11, claim_h + metric_h + 1.2), layout="constrained")
    parts = [h for h in (claim_h, metric_h) if h]
    subs = list(fig.subfigures(len(parts), 1, height_ratios=parts)) if len(parts) > 1 else [fig]
    if claim_panels:
        sub_fig = subs.pop(0)
        axes = sub_fig.subplots(n_claim_rows, claim_cols, squeeze=False).ravel()
        sub_fig.suptitle("Claims: both arms' values, one line per seed (the pairs the "
                         "claim is tested on)", fontsize=10)
        for ax in axes[len(claim_panels):]:
            ax.set_axis_off()
        for ax, c in zip(axes, claim_panels):
            a, b = c["a_stats"]["values"], c["b_stats"]["values"]
            for i, (va, vb) in enumerate(zip(a, b)):
                if va is None or vb is None:
                    continue
                ax.plot([0, 1], [va, vb], "-o", color=seed_colour(i), ms=4, lw=1.3)
            ax.set_xticks([0, 1], [_wrap(str(c["a"]), 16), _wrap(str(c["b"]), 16)],
                          fontsize=9)
            ax.set_xlim(-0.25, 1.25)
            ax.tick_params(axis="y", labelsize=9)
            ax.set_ylabel(_wrap(c["metric"], 30), fontsize=9)
            ci = c.get("ci95")
            interval = f"[{ci[0]:+.3g}, {ci[1]:+.3g}]" if ci else "(n < 2)"
            ax.set_title(f"difference {c['mean']:+.3g}, 95 % CI {interval}\n"
                         f"verdict: {c['verdict']}", fontsize=9)
            ax.grid(axis="y", alpha=0.3)
    if metric_panels:
        sub_fig = subs.pop(0)
        axes = sub_fig.subplots(n_metric_rows, metric_cols, squeeze=False).ravel()
        sub_fig.suptitle("Every metric: one dot per seed, | = mean, bar = 95 % t interval "
                         "(clipped to the metric's range)", fontsize=10)
        for ax in axes[len(metric_panels):]:
            ax.set_axis_off()
        for ax, (metric, sub) in zip(axes, metric_panels):
            lo_hi = metric_range(metric, [v for r in sub for v in r["ours"]["values"]])
            for y, row in enumerate(sub):
                d = row["ours"]
                for i, v in enumerate(d["values"]):
                    if v is not None:
                        ax.scatter([v], [y], s=24, color=seed_colour(i), zorder=3,
                                   edgecolors="white", linewidths=0.4)
                if d.get("ci95"):
                    ax.plot(_clip(d["ci95"], lo_hi), [y, y], color="black", lw=2, zorder=2)
                ax.plot([d["mean"]], [y], marker="|", ms=14, color="black", zorder=4)
            ax.set_ylim(len(sub) - 0.4, -0.6)
            ax.set_yticks(range(len(sub)), [_wrap(r["setting"], 34) for r in sub], fontsize=8)
            ax.tick_params(axis="x", labelsize=8)
            ax.set_title(_wrap(metric, 60), fontsize=9)
            ax.grid(axis="x", alpha=0.3)
    handles = [Line2D([], [], marker="o", ls="", color=seed_colour(i), label=f"seed {s}")
               for i, s in enumerate(seeds)]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=9,
               frameon=False)
    fig.suptitle(f"{summary.get('title', '')}: spread over {len(seeds)} seeds", fontsize=11)
    from shared.figures import save_figure

    return save_figure(fig, path, dpi=100)


def _load(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SystemExit(f"{path}: not valid JSON ({exc})") from None


def _verdict_cell(c: dict[str, Any]) -> str:
    return f"**{c['verdict']}**, {format_claim(c)} (n={c['n']})"


def _common_seed_gap(record: dict[str, Any], rerun: dict[str, Any]) -> tuple[int, float | None]:
    """Seeds in both runs and the largest |difference| of a per-seed value over every row."""
    seeds = [s for s in rerun.get("seeds", []) if s in record.get("seeds", [])]
    index_a = {s: i for i, s in enumerate(record.get("seeds", []))}
    index_b = {s: i for i, s in enumerate(rerun.get("seeds", []))}
    rows_a = {(r["setting"], r["metric"]): r["ours"] for r in record.get("rows", [])
              if isinstance(r.get("ours"), dict)}
    gap = None
    for r in rerun.get("rows", []):
        a, b = rows_a.get((r["setting"], r["metric"])), r.get("ours")
        if not isinstance(a, dict) or not isinstance(b, dict):
            continue
        for s in seeds:
            va, vb = a["values"][index_a[s]], b["values"][index_b[s]]
            if va is not None and vb is not None:
                gap = max(gap or 0.0, abs(float(va) - float(vb)))
    return len(seeds), gap


def rerun_section(results_root: Path, rerun_root: Path) -> list[str]:
    """Markdown comparing every claim's verdict in the record with a second run's; the
    section is titled by the first heading of ``rerun_root/README.md`` (which says how that
    run was made)."""
    readme = rerun_root / "README.md"
    heads = [ln[2:].strip() for ln in (readme.read_text(encoding="utf-8").splitlines()
                                        if readme.is_file() else []) if ln.startswith("# ")]
    title = heads[0] if heads else "A second run"
    where = os.path.relpath(rerun_root, results_root.parent)
    lines = ["", f"## {title}", "",
             f"`{where}/<paper>/summary.json` (how it was made: `{where}/README.md`); each "
             "claim's verdict there beside the record's. The per-seed gap is the largest "
             "difference of any reported per-seed value between the two runs over the seeds "
             "both ran (0 when the rerun repeats the record's seeds exactly).", "",
             "| paper | claim (metric) | record | rerun | same verdict |",
             "| --- | --- | --- | --- | --- |"]
    runs = []
    for paper, title in PAPERS.items():
        record = _load(results_root / paper / "summary.json")
        rerun = _load(rerun_root / paper / "summary.json")
        if record is None or rerun is None:
            continue
        by_key = {(c["claim"], c["metric"]): c for c in rerun.get("claims", [])}
        for c in record.get("claims", []):
            r = by_key.get((c["claim"], c["metric"]))
            same = "—" if r is None else "yes" if r["verdict"] == c["verdict"] else "**no**"
            lines.append(f"| {title} | {c['claim']} ({c['metric']}) | {_verdict_cell(c)} | "
                         f"{_verdict_cell(r) if r else 'not in the rerun'} | {same} |")
        n_common, gap = _common_seed_gap(record, rerun)
        runs.append(f"- {title}: rerun {rerun.get('date', '')}, {len(rerun.get('seeds', []))} "
                    f"seeds on {machine_label(rerun.get('machine', {}))} (record: "
                    f"{machine_label(record.get('machine', {}))}); {n_common} seed(s) in both "
                    "runs, per-seed gap " + ("—" if gap is None else f"{gap:.3g}"))
    return [*lines, "", *runs] if runs else []


def summary_path(results_root: Path, paper: str) -> tuple[Path, bool]:
    """``(path, local)``: a user's own run ``results/local/<paper>/summary.json`` when there is
    one, else the committed record ``results/<paper>/summary.json``."""
    local = results_root / LOCAL / paper / "summary.json"
    if local.is_file():
        return local, True
    return results_root / paper / "summary.json", False


def build_results_table(results_root: Path, figure_dir: Path | None = None,
                        rerun_roots: Sequence[Path] = ()) -> str:
    """Markdown for RESULTS.md from every ``results/*/summary.json``.

    Multi-seed rows show mean ± the half-width of the 95 % t interval and n; each claim gets a
    verdict line. With ``figure_dir`` (the folder of the markdown file), a dot-per-seed figure
    per paper is written to ``results/<paper>/seeds.png`` and linked.
    """
    lines = [
        "# Results",
        "",
        "Assembled by `make results` from `results/*/summary.json` (a row group marked *local "
        "run* comes from your own `make reproduce-<paper>` in `results/local/`, not from the "
        "committed record); every number below comes from",
        "a run of `make reproduce-<paper>` on the machine named in its row; `a ± b (n=N)` is",
        "the mean over N seeds ± the half-width of its 95 % t interval. The paper column is",
        "read from each subproject's config. Synthetic data is named as such: compare methods",
        "within a row group, not our synthetic figures with the paper's real-data figures.",
        "",
        "| paper | setting | metric | paper reports | ours | data | profile, precision | wall time "
        "| machine |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for paper, title in PAPERS.items():
        path, local = summary_path(results_root, paper)
        if local:
            title = f"{title} (**local run**, results/{LOCAL}/{paper}/, not the record)"
        if not path.exists():
            lines.append(f"| {title} | not reproduced yet (`make reproduce` writes it) "
                         "| | | | | | | |")
            continue
        try:
            summary = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise SystemExit(f"{path}: not valid JSON ({exc})") from None
        machine = machine_label(summary.get("machine", {}))
        wall = f"{summary.get('wall_time_s', 0) / 60:.1f} min"
        profile = profile_label(summary)
        for i, row in enumerate(summary["rows"]):
            first = i == 0
            lines.append(
                f"| {title if first else ''} | {row['setting']} | {row['metric']} "
                f"| {_fmt(row['reported'])} | {_fmt(row['ours'])} "
                f"| {summary['data'] if first else ''} | {profile if first else ''} "
                f"| {wall if first else ''} | {machine if first else ''} |"
            )
    claim_lines, figures = [], []
    for paper, title in PAPERS.items():
        path, local = summary_path(results_root, paper)
        if not path.exists():
            continue
        if local:
            title = f"{title} (local run)"
        summary = json.loads(path.read_text(encoding="utf-8"))
        for c in summary.get("claims", []):
            claim_lines.append(f"- {title}: {_claim_line(c)}")
        if figure_dir is not None:
            fig = plot_seeds(summary, path.parent / "seeds.png")
            if fig is not None:
                figures.append(f"![{title}]({os.path.relpath(fig, figure_dir)})")
    if claim_lines:
        lines += ["", "## Claims", "",
                  "Each claim is tested on paired per-seed differences (same seeds for both arms): "
                  "`supports` when the 95 % t interval of the mean difference excludes 0 in the "
                  "claimed direction, `contradicts` when it excludes 0 the other way, "
                  "`inconclusive` otherwise.", "", *claim_lines]
    for rerun_root in rerun_roots:
        lines += rerun_section(results_root, rerun_root)
    if figures:
        lines += ["", "## Spread over seeds", "", *figures]
    notes = []
    for paper in PAPERS:
        path, _local = summary_path(results_root, paper)
        if path.exists():
            summary = json.loads(path.read_text(encoding="utf-8"))
            if summary.get("notes"):
                notes.append(f"- **{PAPERS[paper]}** ({summary.get('date', '')}): "
                             f"{summary['notes']}")
    if notes:
        lines += ["", "## Notes", "", *notes]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="planetary-results",
        description="Assemble RESULTS.md from results/*/summary.json (one row group per paper; "
                    "a local run in results/local/<paper>/ is shown instead, marked local).")
    parser.add_argument("--results", type=Path, default=REPO_ROOT / "results",
                        help="folder holding <paper>/summary.json (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "RESULTS.md",
                        help="markdown file to write (default: %(default)s)")
    parser.add_argument("--rerun", type=Path, action="append",
                        help="folder of a second run's <paper>/summary.json to compare verdicts "
                             "with; repeatable (default: every <results>/rerun*/ folder)")
    args = parser.parse_args(argv)
    rerun = args.rerun or sorted(p for p in args.results.glob("rerun*") if p.is_dir())
    atomic_write_text(args.out, build_results_table(args.results, args.out.resolve().parent,
                                                    rerun))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
