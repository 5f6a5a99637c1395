"""predict takes its defaults (min_area, mask shape, channel order) from the model's run config."""

import yaml

from crater_resunet.predict import model_run_config


def test_min_area_default_comes_from_the_run_config(tmp_path):
    model = tmp_path / "run" / "best.keras"
    model.parent.mkdir()
    assert model_run_config(model)["predict"]["min_area"] == 4  # paper profile
    (model.parent / "config.yaml").write_text(yaml.safe_dump(
        {"predict": {"min_area": 9}, "data": {"channel_order": "rgb"}}))
    cfg = model_run_config(model)
    assert cfg["predict"]["min_area"] == 9 and cfg["data"]["channel_order"] == "rgb"
    assert cfg["data"]["mask_shape"] == "box"  # not in the run config: the paper's
