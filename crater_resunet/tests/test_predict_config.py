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


def test_out_over_the_ground_truth_labels_is_refused(tmp_path, capsys):
    """Audit case C10: --out = a split folder would overwrite labels/ before reading them."""
    from crater_resunet.predict import main
    from shared.runs import cli_main

    split = tmp_path / "valid"
    (split / "images").mkdir(parents=True)
    (split / "labels").mkdir()
    (split / "images" / "a.png").write_bytes(b"\x89PNG")
    truth = split / "labels" / "a.txt"
    truth.write_text("0 0.5 0.5 0.2 0.2\n")
    model = tmp_path / "best.keras"
    model.write_bytes(b"PK")
    assert cli_main(main, ["--model", str(model), "--out", str(split), str(split / "images")]) == 2
    assert "would overwrite the ground-truth labels" in capsys.readouterr().err
    assert truth.read_text() == "0 0.5 0.5 0.2 0.2\n"
