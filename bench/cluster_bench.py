"""Scenes per minute in this process and on Dask ``local:1`` / ``local:2`` (issue 28).

The ice predictor (``ice_patch_cnn.predict``: chunking on the fly, batched forward, the CSV,
JSON and top PNGs of each scene) over the same generated scenes, three ways: in-process (the
model loaded before, as the CLI does), a ``LocalCluster`` of one worker with the same threads,
and one of two workers with half the threads each (this machine's cores shared out). The
clusters are started and their model loaded on every worker before the timed runs
(:func:`shared.cluster.warm_up`), and that start-up is reported on its own: the timed figure is
the per-scene cost of the engine (task submission, the worker reading its scene from the path,
done markers), which the target bounds at 10 % over in-process at ``local:1``. Runs alternate
in-process, local:1, local:2 per repetition; the median is kept.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from typing import Any

from bench.common import WORK_DIR, child_main


def _scenes(folder, n: int, size: int) -> list:
    import numpy as np

    from ice_patch_cnn.data.synthetic import make_scene
    from shared.rasters import write_geotiff

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"ESP_{i:06d}_0000.tif"
        if not path.is_file():
            img = make_scene(np.random.default_rng(i), size, size, "good").image
            write_geotiff(path, np.asarray(img, dtype=np.uint8))
        paths.append(path)
    return paths


def scenes_ice(args: argparse.Namespace) -> dict[str, Any]:
    os.environ.setdefault("PLANETARY_DASK_DASHBOARD", "none")
    from ice_patch_cnn.chunk import ChunkSpec
    from ice_patch_cnn.config import load_config
    from ice_patch_cnn.model import model_from_config, set_threads
    from ice_patch_cnn.predict import run_predict, scene_job, scene_tasks
    from shared.cluster import connect, run_scenes, warm_up

    cfg = load_config("quick")
    chunk = int(cfg["data"]["chunk_size"])
    n, size = (4, 2 * chunk) if args.quick else (8, 2048)
    batch = int(cfg["predict"]["batch_size"])
    work = WORK_DIR / "scenes" / ("quick" if args.quick else "full")
    paths = _scenes(work / f"inputs_{size}", n, size)
    set_threads(args.threads)
    model = model_from_config(cfg, chunk)
    model_path = work / "model.keras"
    model.save(model_path)
    spec = ChunkSpec.from_config(cfg, size=chunk)
    tasks = scene_tasks(paths, spec)
    half = max(1, args.threads // 2)
    times: dict[str, list[float]] = {"in_process": [], "local_1": [], "local_2": []}
    start: dict[str, float] = {}

    def fresh(tag: str, rep: int):
        out = work / f"out_{tag}_{rep}"
        shutil.rmtree(out, ignore_errors=True)
        return out

    def in_process(rep: int) -> None:
        t0 = time.perf_counter()
        res = run_predict(model, paths, fresh("here", rep), spec, batch, progress=False)
        times["in_process"].append(time.perf_counter() - t0)
        assert res["predicted"] == n, res

    with connect("local:1", args.threads) as one, connect("local:2", half) as two:
        clients = {"local_1": (one, args.threads), "local_2": (two, half)}
        for tag, (client, threads) in clients.items():
            t0 = time.perf_counter()
            warm_up(client, scene_job(work / "warm", model_path, batch, threads))
            start[tag] = time.perf_counter() - t0
        for rep in range(args.reps + 1):  # repetition 0 is a warm-up, untimed
            in_process(rep)
            for tag, (client, threads) in clients.items():
                job = scene_job(fresh(tag, rep), model_path, batch, threads)
                t0 = time.perf_counter()
                summary = run_scenes(job, tasks, client=client, progress=False,
                                     echo=lambda _: None)
                times[tag].append(time.perf_counter() - t0)
                assert len(summary.done) == n and not summary.failed, summary.as_dict()
    for v in times.values():
        del v[0]
    med = {k: statistics.median(v) for k, v in times.items()}
    rate = {k: round(60.0 * n / s, 2) for k, s in med.items()}
    return {"predictor": "ice_patch_cnn.predict (quick profile, untrained weights)",
            "scenes": n, "scene": f"{size}x{size} px GeoTIFF, "
                                  f"{(size // chunk) ** 2} chunks of {chunk} px",
            "threads": {"in_process": args.threads, "local_1": args.threads,
                        "local_2": f"{half} per worker"},
            "seconds": {k: round(v, 3) for k, v in med.items()},
            "all_seconds": {k: [round(x, 3) for x in v] for k, v in times.items()},
            "scenes_per_min": rate,
            "cluster_start_s": {k: round(v, 2) for k, v in start.items()},
            "overhead_local_1": round(med["local_1"] / med["in_process"] - 1.0, 4),
            "speedup_local_2": round(med["in_process"] / med["local_2"], 3),
            "cpus": os.cpu_count()}


ENTRIES = {"scenes": {"ice_patch_cnn": scenes_ice}}


def main(argv: list[str] | None = None) -> int:
    return child_main(ENTRIES, "Dask child of bench/run.py (scenes per minute, issue 28).",
                      argv)


if __name__ == "__main__":
    sys.exit(main())
