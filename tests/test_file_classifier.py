"""Where the user wants a file's own model (export, predict, evaluate, convert), the classes come from the file: a
different number, or a file without a classifier, is refused before anything is written; never a random classifier."""

import json
import warnings

import keras
import numpy as np
import pytest
from PIL import Image

import keras_convnext as kc
from helpers import perturb
from helpers.image_folders import write_image_folder
from keras_convnext.cli import main
from keras_convnext.imagenet import preprocess_image
from keras_convnext.trained_model import IMAGENET_EVAL, describe_source, load_source

VARIANT = ["--variant", "convnext_atto"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A two-class classifier and a pooled backbone of convnext_atto, saved as .weights.h5, and an image."""
    root = tmp_path_factory.mktemp("file-classifier")
    keras.utils.set_random_seed(0)
    model = perturb(kc.create_model("convnext_atto", input_shape=(32, 32, 3), classes=2), scale=0.2)
    kc.weights.save_weights(model, root / "two_classes.weights.h5")
    backbone = kc.create_model("convnext_atto", input_shape=(32, 32, 3), include_top=False, pooling="avg")
    kc.weights.save_weights(backbone, root / "backbone.weights.h5")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(root / "image.png")
    return {"root": root, "model": model, "two": root / "two_classes.weights.h5", "backbone": root / "backbone.weights.h5"}


def _one_error_line(capsys, command):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"keras-convnext {command}: error: "), err
    return err[0]


def test_the_classes_of_every_kind_of_file_are_read_before_building(files, tmp_path):
    assert kc.weights.checkpoint_classes(files["two"]) == 2
    assert kc.weights.checkpoint_classes(files["backbone"]) is None
    files["model"].save(tmp_path / "two.keras")
    assert kc.weights.checkpoint_classes(tmp_path / "two.keras") == 2
    mlp = kc.ConvNeXt((1, 1), (8, 16), input_shape=(32, 32, 3), classes=7, head_hidden_size=12)
    kc.weights.save_weights(mlp, tmp_path / "mlp.weights.h5")
    assert kc.weights.checkpoint_classes(tmp_path / "mlp.weights.h5") == 7  # the classifier, not head_hidden


def test_a_weights_file_is_rebuilt_with_its_own_classifier(files):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no "keeps its initialisation", no Keras "Skipping nested"
        model = load_source(describe_source(files["two"], None, variant="convnext_atto", image_size=32))
    assert model.output_shape == (None, 2)
    images = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(model.predict(images, verbose=0), files["model"].predict(images, verbose=0))


@pytest.mark.once  # the export itself runs under TensorFlow from every backend
def test_export_without_classes_exports_the_file_s_two_classes(files, tmp_path, capsys):
    import tensorflow as tf

    assert main(["export", str(files["two"]), str(tmp_path / "out"), *VARIANT, "--image-size", "32"]) == 0
    assert "keeps its initialisation" not in capsys.readouterr().err
    images = np.random.default_rng(2).uniform(0, 255, (3, 32, 32, 3)).astype("float32")
    served = tf.saved_model.load(str(tmp_path / "out" / "1")).signatures["serving_default"](images=tf.constant(images))
    np.testing.assert_allclose(served["probabilities"].numpy(), files["model"].predict(images, verbose=0), atol=1e-5)


@pytest.mark.parametrize("command", ["export", "onnx"])
def test_export_with_other_classes_is_refused_naming_both_and_writes_nothing(files, tmp_path, capsys, command):
    fmt = ["--format", "onnx"] if command == "onnx" else []
    status = main(["export", str(files["two"]), str(tmp_path / "out"), *VARIANT, "--image-size", "32",
                   "--classes", "1000", *fmt])
    line = _one_error_line(capsys, "export")
    assert status == 2 and "holds a 2-class classifier, but 1000 classes were asked for" in line
    assert not (tmp_path / "out").exists()


def test_export_of_a_backbone_is_refused_before_anything_is_written(files, tmp_path, capsys):
    assert main(["export", str(files["backbone"]), str(tmp_path / "out"), *VARIANT, "--image-size", "32"]) == 2
    assert "holds no classifier (head_dense)" in _one_error_line(capsys, "export")
    assert not (tmp_path / "out").exists()


def test_predict_gives_the_file_s_classes_with_its_scores(files, capsys):
    assert main(["predict", str(files["root"] / "image.png"), "--weights", str(files["two"]), *VARIANT,
                 "--image-size", "32", "--json"]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    pixels = preprocess_image(files["root"] / "image.png", {**IMAGENET_EVAL, "input_size": 32})
    expected = files["model"].predict(pixels[None], verbose=0)[0]
    assert [entry["index"] for entry in record["top_k"]] == list(np.argsort(-expected))
    np.testing.assert_allclose([entry["score"] for entry in record["top_k"]], np.sort(expected)[::-1], atol=1e-5)


def test_evaluate_on_a_folder_with_other_classes_is_refused_naming_both(files, tmp_path, capsys):
    data = write_image_folder(tmp_path / "data", per_class=1)  # three classes
    status = main(["evaluate", str(data), "--weights", str(files["two"]), *VARIANT, "--image-size", "32",
                   "--output", str(tmp_path / "eval")])
    line = _one_error_line(capsys, "evaluate")
    assert status == 2 and "The model predicts 2 classes, but" in line and "has 3 class folders" in line
    assert not (tmp_path / "eval").exists()


def test_a_run_whose_class_names_disagree_with_its_weights_is_refused(files, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.weights.h5").write_bytes(files["two"].read_bytes())
    config = {"config": {"variant": "convnext_atto", "image_size": 32}, "class_names": ["a", "b", "c"]}
    (run / "train_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="holds a 2-class classifier, but 3 classes were asked for"):
        describe_source(run / "model.weights.h5", None)


def test_converting_into_a_model_with_other_classes_is_refused_and_writes_nothing(files, tmp_path):
    model = kc.create_model("convnext_atto", input_shape=(32, 32, 3), classes=1000)
    before = [keras.ops.convert_to_numpy(v) for v in model.weights]
    with pytest.raises(ValueError, match="holds a 2-class classifier and the model has 1000 classes"):
        kc.weights.convert(files["two"], model, tmp_path / "out.weights.h5")
    assert not (tmp_path / "out.weights.h5").exists()
    for variable, value in zip(model.weights, before):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable), value)


def test_fine_tuning_in_python_still_loads_all_but_the_classifier_with_one_clear_warning(files):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = kc.create_model("convnext_atto", input_shape=(32, 32, 3), classes=5, weights=str(files["two"]))
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert [m for m in messages if "another number of classes (2) than the model" in m]
    assert not [m for m in messages if "Skipping nested container" in m]
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(model.get_layer("stem").conv.kernel),
        keras.ops.convert_to_numpy(files["model"].get_layer("stem").conv.kernel),
    )


def test_classes_that_disagree_with_a_run_s_class_names_are_refused_naming_the_run(files, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    files["model"].save(run / "model.keras")
    (run / "train_config.json").write_text(json.dumps({"config": {"variant": "convnext_atto", "image_size": 32},
                                                       "class_names": ["cat", "dog"]}))
    with pytest.raises(ValueError, match=r"--classes 5 does not match the 2 class names of the run's .*train_config.json"):
        describe_source(run, None, classes=5)
    assert describe_source(run, None)["classes"] == 2
