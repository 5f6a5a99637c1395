"""YOLO labels -> masks (box and ellipse), malformed labels, the split index, tf.data."""

import numpy as np
import pytest

from crater_resunet.data import (
    LabelError,
    LabelWarning,
    index_split,
    labels_to_mask,
    load_labels,
    parse_yolo_text,
    read_yolo_labels,
    yolo_to_pixel_boxes,
)
from shared.errors import UserError


def test_box_mask_by_hand():
    lab = parse_yolo_text("0 0.5 0.5 0.5 0.25\n")
    # x: 4 +- 2 -> [2, 6); y: 4 +- 1 -> [3, 5)
    expected = np.zeros((8, 8), np.uint8)
    expected[3:5, 2:6] = 1
    assert np.array_equal(labels_to_mask(lab, 8, 8, "box"), expected)
    assert yolo_to_pixel_boxes(lab, 8, 8).tolist() == [[2, 3, 6, 5]]


def test_box_mask_truncates_and_clips_at_the_edges():
    # x1 = int(10 * (0.05 - 0.1)) = int(-0.5) = 0; x2 = int(1.5) = 1; same for y at 10x10
    lab = parse_yolo_text("0 0.05 0.05 0.2 0.2\n0 0.97 0.5 0.1 0.3")
    boxes = yolo_to_pixel_boxes(lab, 10, 10)
    assert boxes.tolist() == [[0, 0, 1, 1], [9, 3, 10, 6]]  # second: x2 = int(10.2) -> clipped
    mask = labels_to_mask(lab, 10, 10, "box")
    assert mask.sum() == 1 + 3
    assert mask[0, 0] == 1 and mask[3:6, 9].all()


def test_empty_and_zero_size_labels_give_empty_masks():
    assert labels_to_mask(np.zeros((0, 5)), 16, 16).sum() == 0
    assert labels_to_mask(parse_yolo_text("0 0.5 0.5 0 0"), 16, 16, "box").sum() == 0


def test_ellipse_is_inscribed_in_the_box_and_covers_tiny_craters():
    lab = parse_yolo_text("0 0.5 0.5 0.5 0.25")
    box = labels_to_mask(lab, 200, 200, "box")
    ell = labels_to_mask(lab, 200, 200, "ellipse")
    assert np.all(ell <= box)  # inside the box
    ratio = ell.sum() / box.sum()
    assert abs(ratio - np.pi / 4) < 0.02  # area of the inscribed ellipse
    assert ell[100, 100] == 1 and ell[100, 51] == 1 and ell[76, 51] == 0  # corner excluded
    tiny = parse_yolo_text("0 0.5 0.5 0.001 0.001")  # 0.2 px at 200
    assert labels_to_mask(tiny, 200, 200, "ellipse").sum() >= 1


@pytest.mark.parametrize("text, fragment", [
    ("0 0.5 0.5 0.1\n", "expected 5 fields"),
    ("0 0.5 0.5 0.1 0.1 0.3\n", "expected 5 fields"),
    ("0 0.5 1.5 0.1 0.1\n", "y_center=1.5 outside [0, 1]"),
    ("0 0.5 0.5 -0.1 0.1\n", "negative box size"),
    ("0 0.5 0.5 abc 0.1\n", "non-numeric"),
    ("-1 0.5 0.5 0.1 0.1\n", "class must be"),
])
def test_malformed_label_lines_name_file_and_line(tmp_path, text, fragment):
    p = tmp_path / "a.txt"
    p.write_text("0 0.1 0.1 0.05 0.05\n" + text)
    with pytest.raises(LabelError) as err:
        read_yolo_labels(p)
    assert f"{p}:2" in str(err.value)
    assert fragment in str(err.value)


def test_rounding_excess_is_clipped_with_a_warning_naming_the_file(tmp_path):
    p = tmp_path / "r.txt"
    p.write_text("0 1.0000004 0.5 0.1 0.1\n0 0.5 -0.000001 0.1 0.1\n0 0.5 0.5 -1e-7 0.2\n")
    with pytest.warns(LabelWarning, match=f"{p}: 3 coordinate"):
        arr = read_yolo_labels(p)
    assert arr[0, 1] == 1.0 and arr[1, 2] == 0.0 and arr[2, 3] == 0.0
    p.write_text("0 1.000002 0.5 0.1 0.1\n")  # beyond the tolerance: still an error
    with pytest.raises(LabelError, match="x_center=1.000002 outside"):
        read_yolo_labels(p)


def test_detections_with_confidence_are_accepted_when_asked():
    arr = parse_yolo_text("0 0.5 0.5 0.1 0.1 0.7\n0 0.2 0.2 0.1 0.1\n", with_confidence=True)
    assert arr.shape == (2, 6) and arr[0, 5] == pytest.approx(0.7) and arr[1, 5] == 1.0


def _layout(tmp_path):
    import cv2

    root = tmp_path / "ds"
    for split in ("train", "valid"):
        (root / split / "images").mkdir(parents=True)
        (root / split / "labels").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(4):
        cv2.imwrite(str(root / "train" / "images" / f"t{i}.png"),
                    rng.integers(0, 255, (40, 48, 3), dtype=np.uint8))
    (root / "train" / "labels" / "t0.txt").write_text("0 0.5 0.5 0.25 0.5\n")
    (root / "train" / "labels" / "t1.txt").write_text("0 0.2 0.3 0.2 0.2\n0 0.7 0.7 0.3 0.1\n")
    (root / "train" / "labels" / "t2.txt").write_text("")
    # t3 has no label file; orphan.txt has no image
    (root / "train" / "labels" / "orphan.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    cv2.imwrite(str(root / "valid" / "images" / "v0.png"), np.zeros((32, 32, 3), np.uint8))
    return root


def test_index_pairs_images_and_labels(tmp_path, capsys):
    root = _layout(tmp_path)
    idx = index_split(root, "train")
    assert [p.name for p in idx.images] == ["t0.png", "t1.png", "t2.png", "t3.png"]
    assert idx.labels[3] is None  # no label file: an empty image
    assert [p.name for p in idx.orphan_labels] == ["orphan.txt"]
    assert "orphan.txt" in capsys.readouterr().err
    labels = load_labels(idx)
    assert [len(x) for x in labels] == [1, 2, 0, 0]
    with pytest.raises(UserError, match="image folder not found"):
        index_split(root, "test")


def test_tf_dataset_masks_match_numpy_and_shuffle_is_seeded(tmp_path):
    import cv2

    from crater_resunet.data import make_dataset

    root = _layout(tmp_path)
    idx = index_split(root, "train", warn=False)
    labels = load_labels(idx)
    for shape in ("box", "ellipse"):
        ds = make_dataset(idx, image_size=(32, 64), batch_size=4, mask_shape=shape,
                          labels=labels)
        images, masks = next(iter(ds))
        assert images.shape == (4, 32, 64, 3) and masks.shape == (4, 32, 64, 1)
        for i, lab in enumerate(labels):
            assert np.array_equal(masks[i, ..., 0].numpy(), labels_to_mask(lab, 32, 64, shape))
    # BGR like OpenCV, resized, / 255
    ref = cv2.resize(cv2.imread(str(idx.images[0])).astype(np.float32), (64, 32)) / 255.0
    assert np.allclose(images[0].numpy(), ref, atol=2e-2)

    def orders(seed):
        ds = make_dataset(idx, image_size=(32, 32), batch_size=1, shuffle=True, seed=seed,
                          labels=labels)
        return [tuple(round(float(x[0].numpy().sum()), 3) for x, _ in ds) for _ in range(3)]

    a, b = orders(5), orders(5)
    assert a == b  # deterministic from the seed
    assert len(set(a)) > 1  # a new order each epoch
