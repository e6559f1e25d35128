"""``keras-convnext predict``: top-k per image from a saved model or a weights file; bad images reported, the rest
still predicted."""

import json

import numpy as np
import pytest
from PIL import Image

import keras_convnext as kc
from helpers import TINY_ARCH, perturb
from keras_convnext.cli import main
from keras_convnext.imagenet import imagenet_classes, preprocess_image
from keras_convnext.trained_model import IMAGENET_EVAL


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("predict")
    model = perturb(kc.ConvNeXt(**TINY_ARCH, input_shape=(32, 32, 3), classes=4))
    model.save(folder / "tiny.keras")
    images = folder / "images"
    (images / "nested").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("a.png", "nested/b.jpg"):
        Image.fromarray(rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)).save(images / name)
    return model, folder


def test_predict_prints_the_top_k_of_every_image_like_the_model(saved_model, capsys):
    model, folder = saved_model
    assert main(["predict", str(folder / "images"), "--weights", str(folder / "tiny.keras"), "--top-k", "2", "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [record["image"] for record in records] == [str(folder / "images/a.png"), str(folder / "images/nested/b.jpg")]
    for record in records:
        pixels = preprocess_image(record["image"], {**IMAGENET_EVAL, "input_size": 32})
        expected = np.asarray(model.predict(pixels[None], verbose=0))[0]
        assert [entry["index"] for entry in record["top_k"]] == list(np.argsort(-expected)[:2])
        np.testing.assert_allclose([entry["score"] for entry in record["top_k"]], np.sort(expected)[::-1][:2], atol=1e-5)
        assert record["top_k"][0]["class"] == str(record["top_k"][0]["index"])  # no class names: the index


def test_predict_reports_a_bad_image_by_name_and_predicts_the_rest(saved_model, tmp_path, capsys):
    _, folder = saved_model
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(images / "good.png")
    (images / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    assert main(["predict", str(images), "--weights", str(folder / "tiny.keras")]) == 1
    captured = capsys.readouterr()
    assert captured.out.startswith(f"{images / 'good.png'}: ") and captured.out.count("\n") == 1
    assert f"keras-convnext predict: skipped {images / 'broken.jpg'}: " in captured.err


@pytest.mark.parametrize("classes", [1000, pytest.param(21841, marks=pytest.mark.large)])
def test_predict_names_imagenet_classes_for_a_weights_file_of_a_variant(tmp_path, capsys, classes):
    # An ImageNet-22k head (21841 classes, as convnext_*.fb_in22k) is named from the 22k list, not by index.
    model = kc.create_model("convnext_atto", input_shape=(64, 64, 3), classes=classes)
    model.save_weights(tmp_path / "atto.weights.h5")
    Image.fromarray(np.full((80, 70, 3), 128, np.uint8)).save(tmp_path / "grey.png")
    assert main(["predict", str(tmp_path / "grey.png"), "--weights", str(tmp_path / "atto.weights.h5"),
                 "--variant", "convnext_atto", "--top-k", "3", "--json"]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    assert len(record["top_k"]) == 3
    assert all(entry["class"] == imagenet_classes(classes)[entry["index"]] for entry in record["top_k"])


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda root: None, "is neither an image file nor a folder of images"),
        (lambda root: (root.mkdir(), (root / "x.png").write_bytes(b"junk")), "none of the 1 image"),
    ],
    ids=["missing", "only-bad-images"],
)
def test_predict_refuses_with_one_error_line(saved_model, tmp_path, capsys, make, message):
    _, folder = saved_model
    make(tmp_path / "in")
    assert main(["predict", str(tmp_path / "in"), "--weights", str(folder / "tiny.keras")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("keras-convnext predict: error: ") and message in err[0]
