import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from mars_cracknet.data.pre import PreprocessError, cut_random_crops, labelme_to_mask, main


def _labelme(tmp_path, shapes, embed=True, size=(40, 60)):
    h, w = size
    img = np.full((h, w, 3), 120, np.uint8)
    doc = {"shapes": shapes, "imageHeight": h, "imageWidth": w}
    if embed:
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG")
        doc["imageData"] = base64.b64encode(buf.getvalue()).decode()
    else:
        Image.fromarray(img).save(tmp_path / "scene.png")
        doc["imagePath"] = "scene.png"
    path = tmp_path / "scene.json"
    path.write_text(json.dumps(doc))
    return path


def test_labelme_polygon_and_line(tmp_path):
    shapes = [{"label": "crack", "shape_type": "polygon",
               "points": [[10, 5], [20, 5], [20, 15], [10, 15]]},
              {"label": "crack", "shape_type": "line", "points": [[0, 30], [59, 30]]},
              {"label": "rock", "shape_type": "rectangle", "points": [[40, 2], [50, 8]]}]
    image, mask = labelme_to_mask(_labelme(tmp_path, shapes), line_width=3, labels={"crack"})
    assert image.shape == (40, 60, 3) and mask.shape == (40, 60)
    assert set(np.unique(mask)) == {0, 255}
    assert mask[10, 15] == 255 and mask[30, 30] == 255 and mask[29, 30] == 255
    assert mask[25, 30] == 0
    assert mask[5, 45] == 0  # the rock label is not a crack
    assert (mask[:, 30] > 0).sum() == 3  # the line is 3 px wide
    assert (mask[:, 15] > 0).sum() == 3 + 11  # the square is 11 px tall
    _, all_labels = labelme_to_mask(_labelme(tmp_path, shapes, embed=False))
    assert all_labels[5, 45] == 255


def test_labelme_errors_name_the_file(tmp_path):
    with pytest.raises(PreprocessError, match="missing.json: file not found"):
        labelme_to_mask(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(PreprocessError, match="bad.json: not valid JSON"):
        labelme_to_mask(bad)
    (tmp_path / "x.json").write_text(json.dumps({"shapes": [], "imagePath": "nope.png"}))
    with pytest.raises(PreprocessError, match="nope.png not found"):
        labelme_to_mask(tmp_path / "x.json")


def test_random_crops_match_their_source(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (100, 120, 3), dtype=np.uint8)
    mask = (rng.random((100, 120)) > 0.8).astype(np.uint8)
    stems = cut_random_crops(image, mask, tmp_path, "big", n=5, size=48,
                             rng=np.random.default_rng(3))
    assert stems == [f"big_crop{k:03d}" for k in range(5)]
    for s in stems:
        crop = np.asarray(Image.open(tmp_path / "imgs" / f"{s}.png"))
        cmask = np.asarray(Image.open(tmp_path / "masks" / f"{s}.png"))
        assert crop.shape == (48, 48, 3) and set(np.unique(cmask)) <= {0, 255}
        # find where the crop came from and check that its mask was cut at the same place
        hits = [(r, c) for r in range(53) for c in range(73)
                if np.array_equal(image[r:r + 48, c:c + 48], crop)]
        assert len(hits) == 1
        r, c = hits[0]
        assert np.array_equal(mask[r:r + 48, c:c + 48] * 255, cmask)
    with pytest.raises(PreprocessError, match="smaller than the crop size"):
        cut_random_crops(image, mask, tmp_path, "big", n=1, size=128)


def test_crops_cli_writes_list(tmp_path, capsys):
    big = tmp_path / "big"
    (big / "imgs").mkdir(parents=True)
    (big / "masks").mkdir()
    Image.fromarray(np.zeros((80, 80, 3), np.uint8)).save(big / "imgs" / "s1.png")
    Image.fromarray(np.zeros((80, 80), np.uint8)).save(big / "masks" / "s1.png")
    out = tmp_path / "data"
    assert main(["crops", "--images", str(big / "imgs"), "--masks", str(big / "masks"),
                 "--out", str(out), "--n", "3", "--size", "32"]) == 0
    assert (out / "lists" / "mars_train.txt").read_text().split() == [
        "s1_crop000", "s1_crop001", "s1_crop002"]
    Image.fromarray(np.zeros((80, 80, 3), np.uint8)).save(big / "imgs" / "s2.png")
    assert main(["crops", "--images", str(big / "imgs"), "--masks", str(big / "masks"),
                 "--out", str(out), "--n", "1", "--size", "32"]) == 2
    assert "s2.png: no mask" in capsys.readouterr().err


@pytest.mark.parametrize("shapes,match", [
    ([{"label": "crack", "points": "oops"}], "points must be a list"),
    ([{"label": "crack", "points": [[1, 2], [3]]}], "points must be a list"),
    ([{"label": "crack", "points": [[1, 2], [3, float("nan")]]}], "finite"),
    (["not a shape"], "shape 0 is not an object"),
    ({"a": 1}, "'shapes' is not a list"),
])
def test_malformed_labelme_shapes_are_one_named_error(tmp_path, shapes, match):
    """Issue 27: malformed points were a ValueError traceback."""
    with pytest.raises(PreprocessError, match=match) as exc:
        labelme_to_mask(_labelme(tmp_path, shapes))
    assert "scene.json" in str(exc.value)


def test_labelme_with_unreadable_image_data_is_one_named_error(tmp_path):
    path = tmp_path / "b64.json"
    path.write_text(json.dumps({"imageData": "!!notb64", "shapes": []}))
    with pytest.raises(PreprocessError, match="imageData is not a readable image"):
        labelme_to_mask(path)
