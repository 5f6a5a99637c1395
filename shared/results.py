"""Per-paper result summaries and the ``RESULTS.md`` table built from them.

Each subproject's reproduce job calls :func:`write_summary`, which writes
``results/<paper>/summary.json``. ``python -m shared.results`` (``make results``) turns every
summary into one table. The paper's reported numbers come from each subproject's own config and
are passed in by the caller, so they are typed once.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shared.atomic import atomic_path, atomic_write_json, atomic_write_text
from shared.stats import format_mean_ci

PAPERS = {
    "mars_cracknet": "Mars-CrackNet (Xu et al., JGR Planets)",
    "dune_vlm": "Mars-analog dunes with a VLM (MADS)",
    "s5mars_ssl": "S5Mars (Zhang et al., IEEE TGRS 2024)",
    "crater_resunet": "Crater ResNet-UNet (Keras)",
    "ice_patch_cnn": "HiRISE ice patches (Gergácz & Kereszturi)",
}
REPO_ROOT = Path(__file__).resolve().parent.parent


def machine_info() -> dict[str, Any]:
    """CPU model, core count, GPU (when a framework already imported sees one), versions."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu,
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
    label = f"{info.get('cpu', '?')}, {info.get('cores', '?')} cores"
    if info.get("gpu"):
        label += f", {info['gpu']}"
    return label


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
        "wall_time_s": round(float(wall_time_s), 1),
        "machine": machine_info(),
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "notes": notes,
        "claims": list(claims),
        **(extra or {}),
    }
    return atomic_write_json(out / "summary.json", summary)


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, dict):  # shared.stats.describe
        digits = 3 if abs(value["mean"]) < 10 else 2
        return format_mean_ci(value, digits)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _claim_line(c: dict[str, Any]) -> str:
    ci = c.get("ci95")
    interval = f"[{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else "no interval (n < 2)"
    sign = ">" if c.get("direction", "greater") == "greater" else "<"
    return (f"**{c['verdict']}** — {c['claim']}: {c['a']} {sign} {c['b']} on {c['metric']}; "
            f"paired difference {c['mean']:+.3f}, 95 % CI {interval}, n={c['n']} seeds")


def plot_seeds(summary: dict[str, Any], path: Path) -> Path | None:
    """One dot per seed and the 95 % interval for every multi-seed row of a summary."""
    rows = [r for r in summary.get("rows", []) if isinstance(r.get("ours"), dict)]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = list(dict.fromkeys(r["metric"] for r in rows))
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics) + 1.5,
                             0.45 * max(len([r for r in rows if r["metric"] == m])
                                        for m in metrics) + 1.2), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        sub = [r for r in rows if r["metric"] == metric]
        for y, row in enumerate(sub):
            d = row["ours"]
            ax.scatter(d["values"], [y] * len(d["values"]), s=14, color="tab:blue", alpha=0.7,
                       zorder=3)
            if d.get("ci95"):
                ax.plot(d["ci95"], [y, y], color="black", lw=2, zorder=2)
            ax.plot([d["mean"]], [y], marker="|", ms=14, color="black", zorder=4)
        ax.set_yticks(range(len(sub)), [r["setting"] for r in sub], fontsize=7)
        ax.set_title(metric, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
        if ax is not axes[0][0]:
            ax.set_yticklabels([])
    fig.suptitle(f"{summary.get('title', '')}: one dot per seed, bar = 95 % CI", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return path


def _load(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SystemExit(f"{path}: not valid JSON ({exc})") from None


def _verdict_cell(c: dict[str, Any]) -> str:
    ci = c.get("ci95")
    interval = f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else ""
    return f"**{c['verdict']}**, {c['mean']:+.3f}{interval} (n={c['n']})"


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
        "Assembled by `make results` from `results/*/summary.json`; every number below comes from",
        "a run of `make reproduce-<paper>` on the machine named in its row; `a ± b (n=N)` is",
        "the mean over N seeds ± the half-width of its 95 % t interval. The paper column is",
        "read from each subproject's config. Synthetic data is named as such: compare methods",
        "within a row group, not our synthetic figures with the paper's real-data figures.",
        "",
        "| paper | setting | metric | paper reports | ours | data | profile | wall time "
        "| machine |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for paper, title in PAPERS.items():
        path = results_root / paper / "summary.json"
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
        for i, row in enumerate(summary["rows"]):
            first = i == 0
            lines.append(
                f"| {title if first else ''} | {row['setting']} | {row['metric']} "
                f"| {_fmt(row['reported'])} | {_fmt(row['ours'])} "
                f"| {summary['data'] if first else ''} | {summary['profile'] if first else ''} "
                f"| {wall if first else ''} | {machine if first else ''} |"
            )
    claim_lines, figures = [], []
    for paper, title in PAPERS.items():
        path = results_root / paper / "summary.json"
        if not path.exists():
            continue
        summary = json.loads(path.read_text(encoding="utf-8"))
        for c in summary.get("claims", []):
            claim_lines.append(f"- {title}: {_claim_line(c)}")
        if figure_dir is not None:
            fig = plot_seeds(summary, results_root / paper / "seeds.png")
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
        path = results_root / paper / "summary.json"
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
        description="Assemble RESULTS.md from results/*/summary.json (one row group per paper).")
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
