"""Reference best_model.pth files (random values in the layout of tests/data/
reference_checkpoints.json: the key names, shapes and dtypes of the authors' two files, vendored
so that these tests run from a clone with nothing beside it) load strictly, convert, run through
the CLIs; bad files give one-line errors."""

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from dune_vlm.checkpoint import OURS, REF_BASELINE, REF_FUSION, load_model, resolve_weights
from shared.errors import UserError

SPEC = Path(__file__).resolve().parent / "data" / "reference_checkpoints.json"


def reference_state_dict(name, seed=0):
    """Random tensors with the reference's key names, shapes and dtypes, in its order."""
    layout = json.loads(SPEC.read_text())[name]["state_dict"]
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for key, shape, dtype in layout:
        if dtype == "int64":
            sd[key] = torch.tensor(7, dtype=torch.int64).reshape(shape)
        elif key.endswith("running_var") or key.endswith("norm.weight") or "norm1" in key \
                or "norm2" in key:
            sd[key] = 0.5 + torch.rand(shape, generator=g)
        else:
            sd[key] = 0.05 * torch.randn(shape, generator=g)
    return sd


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("ref")
    torch.save(reference_state_dict("dune_vlm_fusion"), d / "best_model.pth")
    torch.save(reference_state_dict("dune_vlm_baseline"), d / "baseline.pth")
    text = torch.nn.functional.normalize(torch.randn(10, 512, generator=torch.Generator()
                                                     .manual_seed(1)), dim=1)
    np.save(d / "text.npy", text.numpy())
    return d


def test_reference_files_load_strictly(files):
    fus = load_model(files / "best_model.pth")
    assert fus.checkpoint_format == REF_FUSION and not fus.training
    assert sum(p.numel() for p in fus.parameters()) == 22_021_834
    ref = reference_state_dict("dune_vlm_fusion")
    ours = fus.state_dict()
    assert torch.equal(ours["align.q_proj.weight"], ref["alignment_module.vis_proj_q.weight"])
    assert torch.equal(ours["head.fuse.1.running_var"], ref["decode_head.batch_norm.running_var"])
    base = load_model(files / "baseline.pth")
    assert base.checkpoint_format == REF_BASELINE
    assert sum(p.numel() for p in base.parameters()) == 3_811_082
    assert torch.equal(base.state_dict()["linear_c.3.weight"],
                       reference_state_dict("dune_vlm_baseline")["linear_c4.weight"])


def test_module_prefix_accepted(files, tmp_path):
    sd = {f"module.{k}": v for k, v in reference_state_dict("dune_vlm_baseline").items()}
    torch.save(sd, tmp_path / "dp.pth")
    assert load_model(tmp_path / "dp.pth").checkpoint_format == REF_BASELINE


def test_convert_then_load_gives_equal_outputs_baseline(files, tmp_path):
    from dune_vlm.convert_checkpoint import main

    assert main([str(files / "baseline.pth"), str(tmp_path / "b.pt")]) == 0
    ck = torch.load(tmp_path / "b.pt", weights_only=True)
    assert ck["provenance"]["format"] == REF_BASELINE
    assert ck["provenance"]["source"] == "baseline.pth" and len(ck["provenance"]["sha256"]) == 64
    assert resolve_weights(tmp_path / "b.pt")[2] == OURS
    x = torch.randn(1, 64, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(load_model(files / "baseline.pth")(x),
                           load_model(tmp_path / "b.pt")(x))


@pytest.mark.slow
def test_convert_then_load_gives_equal_outputs_fusion(files, tmp_path):
    from dune_vlm.checkpoint import load_model_for_inference
    from dune_vlm.convert_checkpoint import main

    assert main([str(files / "best_model.pth"), str(tmp_path / "ours.pt"),
                 "--text_embed_path", str(files / "text.npy")]) == 0
    ck = torch.load(tmp_path / "ours.pt", weights_only=True)
    assert ck["provenance"]["format"] == REF_FUSION
    x = torch.randn(1, 64, 64, 64, generator=torch.Generator().manual_seed(2))
    m1, t1, _ = load_model_for_inference(files / "best_model.pth", files / "text.npy")
    m2, t2, _ = load_model_for_inference(tmp_path / "ours.pt")
    with torch.no_grad():
        assert torch.equal(m1(x, t1), m2(x, t2))


def test_text_rules(files, tmp_path, capsys):
    from rasterio.crs import CRS
    from rasterio.transform import from_origin

    from dune_vlm.checkpoint import load_model_for_inference
    from dune_vlm.inference_tile import main as tile_main
    from shared.rasters import write_geotiff

    img = np.random.default_rng(1).normal(size=(64, 32, 32)).astype(np.float32)
    write_geotiff(tmp_path / "s.tif", img, crs=CRS.from_epsg(32611),
                  transform=from_origin(5e5, 4e6, 10, 10))
    assert tile_main(["--input_tif", str(tmp_path / "s.tif"), "--tile_size", "32",
                      "--overlap", "0", "--no_progress", "--output_tif", str(tmp_path / "m.tif"),
                      "--weights", str(files / "best_model.pth"), "--text_embed_path",
                      str(files / "text.npy")]) == 0
    with pytest.raises(UserError, match="holds no text embeddings.*--text_embed_path"):
        load_model_for_inference(files / "best_model.pth")
    with pytest.raises(UserError, match="takes no text; drop --text_embed_path"):
        load_model_for_inference(files / "baseline.pth", files / "text.npy")


def test_bad_files_one_line(files, tmp_path):
    sd = reference_state_dict("dune_vlm_fusion")
    partial = {k: v for k, v in sd.items() if not k.startswith("blocks.3.2.mlp.fc2")}
    torch.save(partial, tmp_path / "partial.pth")
    with pytest.raises(UserError, match=r"partial.pth: .*2 missing \(first: "
                                        r"encoder.stages.3.2.mlp.fc2") as e:
        load_model(tmp_path / "partial.pth")
    assert "\n" not in str(e.value)
    sd2 = dict(sd)
    sd2["alignment_module.extra.weight"] = torch.zeros(3)
    torch.save(sd2, tmp_path / "extra.pth")
    with pytest.raises(UserError, match=r"unexpected \(first: alignment_module.extra.weight"):
        load_model(tmp_path / "extra.pth")
    data = (files / "best_model.pth").read_bytes()
    (tmp_path / "trunc.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="trunc.pth: not a readable checkpoint"):
        load_model(tmp_path / "trunc.pth")
    torch.save({"encoder.weight": torch.zeros(2)}, tmp_path / "foreign.pth")
    with pytest.raises(UserError, match="foreign.pth: neither a dune_vlm checkpoint"):
        load_model(tmp_path / "foreign.pth")


class Evil:
    def __reduce__(self):
        return (Path.touch, (Path(EVIL_MARK),))


EVIL_MARK = "/tmp/dune_vlm_evil_pickle_ran"


def test_malicious_pickle_refused(tmp_path):
    Path(EVIL_MARK).unlink(missing_ok=True)
    with open(tmp_path / "evil.pth", "wb") as fh:
        pickle.dump({"model": Evil()}, fh)
    torch.save({"x": Evil()}, tmp_path / "evil2.pth")
    for name in ("evil.pth", "evil2.pth"):
        with pytest.raises(UserError, match=f"{name}: not a readable checkpoint"):
            load_model(tmp_path / name)
    assert not Path(EVIL_MARK).exists()


def test_clis_take_reference_files(files, tmp_path, capsys):
    from rasterio.crs import CRS
    from rasterio.transform import from_origin

    from dune_vlm.inference import main as infer_main
    from dune_vlm.inference_tile import main as tile_main
    from dune_vlm.tests.conftest import make_separable_dataset
    from shared.rasters import write_geotiff

    img = np.random.default_rng(1).normal(size=(64, 40, 40)).astype(np.float32)
    write_geotiff(tmp_path / "s.tif", img, crs=CRS.from_epsg(32611),
                  transform=from_origin(5e5, 4e6, 10, 10))
    common = ["--input_tif", str(tmp_path / "s.tif"), "--tile_size", "32", "--overlap", "16",
              "--no_progress"]
    assert tile_main([*common, "--output_tif", str(tmp_path / "m.tif"), "--weights",
                      str(files / "baseline.pth")]) == 0
    capsys.readouterr()
    assert tile_main([*common, "--output_tif", str(tmp_path / "m3.tif"), "--weights",
                      str(files / "baseline.pth"), "--text_embed_path",
                      str(files / "text.npy")]) == 2
    assert "takes no text" in capsys.readouterr().err
    assert tile_main([*common, "--output_tif", str(tmp_path / "s.tif"), "--weights",
                      str(files / "baseline.pth")]) == 2
    assert "would overwrite the input" in capsys.readouterr().err
    root = make_separable_dataset(tmp_path / "d", n=(0, 0, 1), size=32)
    assert infer_main(["--data_root", str(root), "--weights", str(files / "baseline.pth"),
                       "--out", str(tmp_path / "ev")]) == 0
