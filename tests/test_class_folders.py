"""GTSRB and Tiny-ImageNet folder loaders (CLAD's other data sets) on small trees built here."""
import numpy as np
import pytest
from PIL import Image

from kdal_lib.clad import SCENARIOS, load_scenario
from kdal_lib.data.digits import load_classification_split, load_gtsrb, load_tiny_imagenet


def _img(path, size, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    a = np.full((size[1], size[0], 3), value, np.uint8)
    Image.fromarray(a).save(path)


def _gtsrb(root, train_classes=(0, 1, 9, 12), layout="archive"):
    base = root / "GTSRB" / "Final_Training" / "Images" if layout == "archive" else root / "gtsrb" / "GTSRB" / "Training"
    for c in train_classes:
        for i in range(3):
            _img(base / f"{c:05d}" / f"{c:05d}_{i:05d}.ppm", (20 + i, 25), 10 * c + i)
    top = root / "GTSRB" if layout == "archive" else root / "gtsrb"  # where GT-final_test.csv lies
    test = (root / "GTSRB" if layout == "archive" else root / "gtsrb" / "GTSRB") / "Final_Test" / "Images"
    rows = ["Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"]
    for j, c in enumerate((0, 9, 12, 1, 9)):
        _img(test / f"{j:05d}.ppm", (30, 31), 5 * j)
        rows.append(f"{j:05d}.ppm;30;31;1;1;29;30;{c}")
    (top / "GT-final_test.csv").write_text("\n".join(rows) + "\n")
    return root


def test_gtsrb_groups_cover_every_class_once():
    classes = [c for g in SCENARIOS["gtsrb"].values() for c in g]
    assert sorted(classes) == list(range(43))
    assert set(SCENARIOS["gtsrb"]) == {"SPDL", "INST", "WARN", "DIRC", "SPEC", "REGN"}


@pytest.mark.parametrize("layout", ["archive", "torchvision"])
def test_gtsrb_loads_train_folders_and_labelled_test_images(tmp_path, layout):
    root = _gtsrb(tmp_path, layout=layout)
    X, y = load_gtsrb(root, "train")
    assert X.shape == (12, 3, 32, 32) and X.dtype == np.float32
    assert y.tolist() == [0, 0, 0, 1, 1, 1, 9, 9, 9, 12, 12, 12]
    assert X.min() >= 0 and X.max() <= 1
    np.testing.assert_allclose(X[3], 10 / 255, atol=1 / 255)  # class 1, first image: value 10
    Xt, yt = load_gtsrb(root, "test")
    assert Xt.shape == (5, 3, 32, 32) and yt.tolist() == [0, 9, 12, 1, 9]


def test_gtsrb_scenario_keeps_only_the_group_in_training(tmp_path):
    root = _gtsrb(tmp_path)
    task = load_scenario("gtsrb", "SPDL", data_dir=root)
    assert task.normal_classes == SCENARIOS["gtsrb"]["SPDL"]
    assert set(task.train_classes.tolist()) == {0, 1}
    assert task.y_test.tolist() == [0, 1, 1, 0, 1]
    assert task.describe()["image_size"] == 32


def test_gtsrb_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="GTSRB not found.*benchmark.ini.rub.de"):
        load_gtsrb(tmp_path / "nowhere")
    root = _gtsrb(tmp_path / "a")
    (root / "GTSRB" / "GT-final_test.csv").unlink()
    with pytest.raises(FileNotFoundError, match="GT-final_test.csv"):
        load_gtsrb(root, "test")
    root = _gtsrb(tmp_path / "b")
    bad = root / "GTSRB" / "Final_Training" / "Images" / "00001" / "00001_00001.ppm"
    bad.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="00001_00001.ppm"):
        load_gtsrb(root, "train")


def _tiny(root, wnids=("n01", "n02", "n03")):
    base = root / "tiny-imagenet-200"
    lines = []
    for k, w in enumerate(wnids):
        for i in range(4):
            _img(base / "train" / w / "images" / f"{w}_{i}.JPEG", (64, 64), 40 * k + i)
        for i in range(2):
            name = f"val_{k}_{i}.JPEG"
            _img(base / "val" / "images" / name, (64, 64), 40 * k)
            lines.append(f"{name}\t{w}\t0\t0\t63\t63")
    (base / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return root


def test_tiny_imagenet_loads_only_the_requested_classes(tmp_path):
    root = _tiny(tmp_path)
    X, y = load_tiny_imagenet(root, ["n03", "n01"], "train", image_size=32)
    assert X.shape == (8, 3, 32, 32) and y.tolist() == [0] * 4 + [1] * 4
    Xt, yt = load_tiny_imagenet(root, ["n03", "n01"], "test", image_size=32)
    assert sorted(yt.tolist()) == [0, 0, 1, 1] and Xt.shape[0] == 4
    split = load_classification_split("tiny-imagenet", data_dir=root, classes=["n01", "n02", "n03"])
    assert split.class_names == ["n01", "n02", "n03"] and split.X_train.shape[1:] == (3, 64, 64)
    task = load_scenario("tinyimagenet", [0, 1], data_dir=root, classes=["n01", "n02", "n03"])
    assert int(task.y_test.sum()) == 2 and set(task.train_classes.tolist()) == {0, 1}


def test_tiny_imagenet_errors_name_the_problem(tmp_path):
    root = _tiny(tmp_path)
    with pytest.raises(ValueError, match="n99"):
        load_tiny_imagenet(root, ["n01", "n99"])
    with pytest.raises(ValueError, match="classes="):
        load_classification_split("tinyimagenet", data_dir=root)
    with pytest.raises(FileNotFoundError, match="tiny-imagenet-200.zip"):
        load_tiny_imagenet(tmp_path / "nowhere", ["n01"])
