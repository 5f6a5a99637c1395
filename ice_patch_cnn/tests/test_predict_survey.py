"""predict.py (streaming, resume, shards) and survey.py (rules, scores, contact sheet)."""

import csv
import json

import numpy as np
import pytest

from ice_patch_cnn.chunk import ChunkSpec, chunk_images
from ice_patch_cnn.predict import in_shard, parse_shard, run_predict
from ice_patch_cnn.survey import report_problems, run_survey, score_images
from shared.rasters import write_geotiff


@pytest.fixture(scope="module")
def tiny_model():
    from ice_patch_cnn.model import build_xception

    return build_xception((32, 32, 1), width_scale=0.0625)


def _images(folder, n=3):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        img = rng.integers(30, 200, (64, 64)).astype(np.uint8)
        paths.append(write_geotiff(folder / f"IMG_{i}.tif", img))
    return paths


def test_shards_are_disjoint_and_cover_everything():
    names = [f"ESP_{i:06d}_1234" for i in range(200)]
    shards = [{n for n in names if in_shard(n, (i, 4))} for i in range(4)]
    assert set().union(*shards) == set(names)
    assert sum(len(s) for s in shards) == len(names)
    assert all(len(s) > 20 for s in shards)            # a real split, not all in one
    assert all(in_shard(n, None) for n in names)
    assert parse_shard("3/4") == (3, 4)
    for bad in ("4/4", "-1/2", "x", "1/0"):
        with pytest.raises(ValueError):
            parse_shard(bad)


def test_predict_resume_and_shards(tmp_path, tiny_model):
    paths = _images(tmp_path, 5)
    out = tmp_path / "pred"
    res = run_predict(tiny_model, paths, out, ChunkSpec(size=32), batch_size=3, progress=False)
    assert res["predicted"] == 5 and res["skipped_done"] == 0
    with open(out / "chunks" / "IMG_0.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4 and all(0 < float(r["p"]) < 1 for r in rows)
    info = json.loads((out / "chunks" / "IMG_0.json").read_text())
    assert info["chunks_kept"] == 4 and len(info["top"]) == 4
    again = run_predict(tiny_model, paths, out, ChunkSpec(size=32), progress=False)
    assert again["predicted"] == 0 and again["skipped_done"] == 5
    # shards into separate folders: disjoint, together all images
    got = []
    for i in range(2):
        o = tmp_path / f"shard{i}"
        run_predict(tiny_model, paths, o, ChunkSpec(size=32), shard=(i, 2), progress=False)
        got.append({p.stem for p in (o / "chunks").glob("*.csv")})
    assert not got[0] & got[1] and got[0] | got[1] == {f"IMG_{i}" for i in range(5)}
    with pytest.raises(ValueError, match="does not match"):
        run_predict(tiny_model, paths, tmp_path / "x", ChunkSpec(size=64), progress=False)


def test_chunk_folders_give_the_same_probabilities_as_rasters(tmp_path, tiny_model):
    paths = _images(tmp_path, 2)
    chunk_images(paths, tmp_path / "chunks", ChunkSpec(size=32), progress=False)
    a = run_predict(tiny_model, paths, tmp_path / "a", ChunkSpec(size=32), progress=False)
    b = run_predict(tiny_model, [tmp_path / "chunks"], tmp_path / "b", ChunkSpec(size=32),
                    progress=False)
    assert a["predicted"] == b["predicted"] == 2
    for name in ("IMG_0", "IMG_1"):
        pa = [float(r["p"]) for r in csv.DictReader(open(tmp_path / "a" / "chunks" /
                                                         f"{name}.csv"))]
        pb = [float(r["p"]) for r in csv.DictReader(open(tmp_path / "b" / "chunks" /
                                                         f"{name}.csv"))]
        np.testing.assert_allclose(pa, pb, atol=1e-6)


def _write_preds(folder, image, probs):
    (folder / "chunks").mkdir(parents=True, exist_ok=True)
    with open(folder / "chunks" / f"{image}.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "grid_row", "grid_col", "y", "x", "size", "p"])
        for i, p in enumerate(probs):
            w.writerow([image, 0, i, 0, 32 * i, 32, p])


def test_survey_decisions_scores_and_outputs(tmp_path):
    preds = tmp_path / "pred"
    _write_preds(preds, "A", [0.9, 0.9, 0.9, 0.1])            # good
    _write_preds(preds, "B", [0.7, 0.7, 0.0])                 # hard
    _write_preds(preds, "C", [0.1, 0.0, 0.0, 0.0])            # bad, no icy chunk
    _write_preds(preds, "D", [0.95, 0.0])                     # good (f <= 0.5, m > 0.2)
    truth = tmp_path / "truth.csv"
    truth.write_text("name,truth,has_ice\nA,good,1\nB,good,1\nC,bad,0\nD,bad,1\n")
    ctruth = tmp_path / "ctruth.csv"
    ctruth.write_text("image,grid_row,grid_col,label\nA,0,0,1\nA,0,1,1\nA,0,2,0\nA,0,3,0\n"
                      "C,0,0,-1\n")
    report = run_survey(preds, truth=truth, chunk_truth=ctruth)
    assert report["images"] == 4 and report["chunks"] == 13
    assert (report["images_good"], report["images_hard"], report["images_bad"]) == (2, 1, 1)
    assert report["images_without_icy_chunk"] == 1
    s = report["image_scores"]
    assert s["confusion"] == {"good": {"good": 1, "hard": 1, "bad": 0},
                              "bad": {"good": 1, "hard": 0, "bad": 1}}
    assert s["ice_recognised"] == 1.0 and s["images_correct"] == 0.5
    assert s["images_hard_truly_good"] == 1
    c = report["chunk_scores"]
    assert c["chunks_scored"] == 4 and c["hard_truth_left_out"] == 1
    assert c["accuracy"] == 0.75          # 0.9 on a negative chunk is wrong
    with open(preds / "images.csv", newline="") as fh:
        rows = {r["image"]: r for r in csv.DictReader(fh)}
    assert rows["B"]["decision"] == "hard" and rows["A"]["n_icy"] == "3"
    assert (preds / "all_chunks.csv").is_file()


def test_flat_probabilities_give_no_good_image_and_a_consistent_report(tmp_path):
    # an uncalibrated model (every p ~ 0.205) must not turn into "every image good" while
    # "no image has an icy chunk" (the contradiction of an earlier summary)
    preds = tmp_path / "pred"
    for name in ("A", "B", "C"):
        _write_preds(preds, name, [0.205, 0.204, 0.206])
    truth = tmp_path / "truth.csv"
    truth.write_text("name,truth,has_ice\nA,good,1\nB,bad,0\nC,bad,1\n")
    report = run_survey(preds, truth=truth, sheet=0)
    assert report["images_without_icy_chunk"] == 3 and report["images_bad"] == 3
    assert report["images_good"] == report["images_hard"] == 0
    assert report["image_scores"]["images_scored"] == 3
    assert report_problems(report) == []
    bad = dict(report, images_good=3, images_bad=0)
    assert any("without an icy chunk" in p for p in report_problems(bad))
    assert any("add up" in p for p in report_problems(dict(report, images_hard=1)))
    # images whose every chunk is in the 0.4-0.6 band are hard without an icy chunk
    _write_preds(preds, "D", [0.5, 0.45])
    report = run_survey(preds, sheet=0)
    assert report["images_hard"] == report["images_all_chunks_uncertain"] == 1
    assert report["images_without_icy_chunk"] == 4 and report_problems(report) == []


def test_truth_that_names_no_image_is_an_error(tmp_path):
    preds = tmp_path / "pred"
    _write_preds(preds, "A", [0.9, 0.9])
    truth = tmp_path / "truth.csv"
    truth.write_text("name,truth,has_ice\nZ,good,1\n")
    with pytest.raises(ValueError, match="no image of the predictions"):
        run_survey(preds, truth=truth, sheet=0)


def test_score_images_ratios_like_the_paper():
    rows = ([{"image": f"g{i}", "decision": "good"} for i in range(31)]
            + [{"image": f"h{i}", "decision": "hard"} for i in range(39)])
    truth = {f"g{i}": {"truth": "good" if i < 18 else "bad", "has_ice": i < 29}
             for i in range(31)}
    truth |= {f"h{i}": {"truth": "good" if i < 11 else "bad", "has_ice": True}
              for i in range(39)}
    s = score_images(rows, truth)
    assert s["ice_recognised"] == round(29 / 31, 4) and s["images_correct"] == round(18 / 31, 4)
    assert s["images_hard_truly_good"] == 11


def test_survey_contact_sheet_and_cli(tmp_path, tiny_model):
    from ice_patch_cnn.survey import main

    paths = _images(tmp_path, 2)
    run_predict(tiny_model, paths, tmp_path / "p", ChunkSpec(size=32), progress=False)
    assert main([str(tmp_path / "p"), "--sheet", "6"]) == 0
    report = json.loads((tmp_path / "p" / "survey_report.json").read_text())
    assert report["contact_sheet_chunks"] == 6
    assert (tmp_path / "p" / "contact_sheet.png").stat().st_size > 2000
    assert main([str(tmp_path / "nothing")]) == 2


def test_predict_keeps_the_source_and_fails_when_every_input_is_skipped(tmp_path, tiny_model,
                                                                        capsys):
    from ice_patch_cnn.predict import main

    paths = _images(tmp_path, 1)
    run_predict(tiny_model, paths, tmp_path / "p", ChunkSpec(size=32), progress=False)
    with open(tmp_path / "p" / "chunks" / "IMG_0.csv", newline="") as fh:
        assert {r["source"] for r in csv.DictReader(fh)} == {str(paths[0])}
    model = tmp_path / "m.keras"
    tiny_model.save(model)
    broken = tmp_path / "broken.tif"
    broken.write_bytes(paths[0].read_bytes()[:300])
    bands = write_geotiff(tmp_path / "emb.tif", np.ones((64, 32, 32), np.float32))
    rc = main([str(broken), str(bands), "--model", str(model), "--out", str(tmp_path / "q"),
               "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "every input was skipped" in err
    assert "64 bands" in err
    assert main([str(paths[0]), "--model", str(model), "--out", str(tmp_path / "q2"),
                 "--quiet"]) == 0


def _georeferenced(folder, name="ESP_GEO"):
    from rasterio.crs import CRS
    from rasterio.transform import Affine

    crs = CRS.from_string("IAU_2015:49900")          # Mars, the body's geographic CRS
    # 0.25 m/px expressed in degrees would be tiny; use a slightly rotated affine to test it
    transform = Affine(0.001, 0.0002, 150.0, 0.0001, -0.001, -55.0)
    img = np.random.default_rng(3).integers(30, 200, (64, 96)).astype(np.uint8)
    return write_geotiff(folder / f"{name}.tif", img, crs=crs, transform=transform), transform, crs


def test_footprints_cover_exactly_the_chunk_windows(tmp_path):
    from rasterio.transform import Affine

    from ice_patch_cnn.chunk import iter_chunks

    path, transform, _ = _georeferenced(tmp_path)
    chunks = [c for c in iter_chunks(path, ChunkSpec(size=32)) if c.pixels is not None]
    assert len(chunks) == 6
    for c in chunks:
        ring = np.array(c.footprint)
        assert c.source == str(path) and ring.shape == (5, 2)
        expected = np.array([transform * (c.x + dx, c.y + dy)
                             for dx, dy in ((0, 0), (32, 0), (32, 32), (0, 32), (0, 0))])
        np.testing.assert_allclose(ring, expected, rtol=0, atol=1e-12)
        # back through the inverse transform: exactly the pixel window
        inv = ~Affine(*transform[:6])
        px = np.array([inv * tuple(p) for p in ring])
        np.testing.assert_allclose(px[:4], [[c.x, c.y], [c.x + 32, c.y], [c.x + 32, c.y + 32],
                                            [c.x, c.y + 32]], atol=1e-9)
    # neighbouring chunks share edges and together tile the image's footprint
    import shapely

    union = shapely.union_all([shapely.Polygon(c.footprint) for c in chunks])
    image = shapely.Polygon([transform * p for p in ((0, 0), (96, 0), (96, 64), (0, 64))])
    assert abs(union.area - image.area) < 1e-12 and union.symmetric_difference(image).area < 1e-12
    # a plain PNG has no footprint
    plain = tmp_path / "plain.png"
    from PIL import Image

    Image.fromarray(np.full((32, 32), 90, np.uint8)).save(plain)
    (c,) = iter_chunks(plain, ChunkSpec(size=32))
    assert c.footprint is None and c.footprint_wkt == ""


def test_survey_writes_icy_chunks_geopackage_in_the_image_crs(tmp_path, tiny_model):
    import pyogrio
    import shapely

    path, transform, crs = _georeferenced(tmp_path)
    chunk_images([path], tmp_path / "chunks", ChunkSpec(size=32), progress=False)
    with open(tmp_path / "chunks" / "index.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert all(r["footprint"].startswith("POLYGON") and r["source"] == str(path) for r in rows)
    for kind, inputs in (("raster", [path]), ("chunks", [tmp_path / "chunks"])):
        out = tmp_path / f"p_{kind}"
        run_predict(tiny_model, inputs, out, ChunkSpec(size=32), progress=False)
        with open(out / "chunks" / "ESP_GEO.csv", newline="") as fh:
            preds = list(csv.DictReader(fh))
        # make two chunks icy so that the layer has features
        preds[0]["p"], preds[3]["p"] = "0.9", "0.75"
        with open(out / "chunks" / "ESP_GEO.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(preds[0]))
            w.writeheader()
            w.writerows(preds)
        report = run_survey(out, sheet=0)
        assert report["icy_chunks_gpkg"] == {"layers": 1, "features": 2}
        gpkg = out / "icy_chunks.gpkg"
        info = pyogrio.read_info(gpkg, layer="icy_chunks")
        assert info["features"] == 2 and info["geometry_type"] == "Polygon"
        from rasterio.crs import CRS

        assert CRS.from_user_input(info["crs"]) == crs
        meta, _, geoms, fields = pyogrio.raw.read(gpkg, layer="icy_chunks")
        got = dict(zip(meta["fields"], fields))
        assert sorted(got["p"].tolist()) == [0.75, 0.9]
        with open(out / "images.csv", newline="") as fh:
            (call,) = list(csv.DictReader(fh))
        assert set(got["image_decision"]) == {call["decision"]}
        for g, x, y in zip(shapely.from_wkb(geoms), got["x"], got["y"]):
            ring = np.array(g.exterior.coords)
            np.testing.assert_allclose(ring[0], transform * (int(x), int(y)), atol=1e-12)
