"""``keras-convnext pretrain`` on an unlabelled folder the tests write, then ``train --weights RUN_DIR``."""

import json

import keras
import numpy as np
import pytest
from PIL import Image

import keras_convnext as kc
from helpers.image_folders import write_image_folder
from keras_convnext.cli import main
from keras_convnext.pretraining.runner import PretrainConfig, pretrained_encoder_weights
from keras_convnext.training import read_history
from keras_convnext.weights.loading import canonical_key

SMALL = ["--variant", "convnextv2_atto", "--image-size", "64", "--batch-size", "4", "--decoder-dim", "32",
         "--verbose", "0"]


@pytest.mark.large  # two fits (~45 s on TensorFlow); the fast tier's test_fcmae.py fits the same model
@pytest.mark.once  # on every backend: FCMAE's fit (test_fcmae) and the train CLI's (test_train_cli)
def test_pretrain_writes_the_run_and_train_fine_tunes_its_encoder(tmp_path, capsys):
    data = write_image_folder(tmp_path / "unlabelled" / "nested", per_class=3, size=72)
    run = tmp_path / "run"
    assert main(["pretrain", str(tmp_path / "unlabelled"), *SMALL, "--epochs", "2", "--output", str(run)]) == 0
    for name in ("encoder.weights.h5", "fcmae.weights.h5", "history.csv", "training_curves.png",
                 "reconstruction_epoch_1.png", "reconstruction_epoch_2.png", "pretrain_config.json"):
        assert (run / name).stat().st_size > 0, name
    assert not (run / "backup").exists()
    saved = json.loads((run / "pretrain_config.json").read_text())
    assert saved["images"] == 9 and saved["summary"]["epochs"] == 2
    assert [row["epoch"] for row in read_history(run / "history.csv")] == [0, 1]
    assert np.isfinite([row["loss"] for row in read_history(run / "history.csv")]).all()
    with Image.open(run / "reconstruction_epoch_2.png") as figure:
        assert figure.size[0] > 200

    assert main(["pretrain", str(tmp_path / "unlabelled"), *SMALL, "--epochs", "2", "--output", str(run), "--resume"]) == 0
    assert "nothing to resume" in capsys.readouterr().out

    # The encoder the FCMAE trained is what a classifier of the variant starts from.
    fcmae = kc.pretraining.FCMAE("convnextv2_atto", decoder_dim=32, image_size=64)
    fcmae.load_weights(run / "fcmae.weights.h5")
    classifier = kc.create_model("convnextv2_atto", weights=pretrained_encoder_weights(str(run), "convnextv2_atto"),
                                 input_shape=(64, 64, 3), classes=3)
    slots = {canonical_key(v.path): v for v in classifier.weights}
    for variable in fcmae.encoder.weights:
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(slots[canonical_key(variable.path)]),
                                      keras.ops.convert_to_numpy(variable))
    labelled = write_image_folder(tmp_path / "labelled", per_class=4, size=40)
    assert main(["train", str(labelled), "--variant", "convnextv2_atto", "--weights", str(run), "--image-size", "64",
                 "--batch-size", "4", "--epochs", "1", "--verbose", "0", "--output", str(tmp_path / "fine-tuned")]) == 0
    assert "layer decay 0.9" in capsys.readouterr().out
    assert data.exists()


def test_bad_runs_end_in_one_error_line_before_anything_is_written(tmp_path, capsys):
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    two = write_image_folder(tmp_path / "two", per_class=1, size=40, classes={"a": (1, 2, 3), "b": (4, 5, 6)})
    cases = [
        ([str(two), "--batch-size", "4"], "The 2 images make no whole batch of 4; lower --batch-size."),
        ([str(tmp_path / "missing")], "is not a folder; expected a folder of images"),
        ([str(empty)], "No images (.bmp, .gif, .jpeg, .jpg, .png) found anywhere under"),
        ([str(empty), "--image-size", "80"], "image_size must be a multiple of 32"),
        ([str(empty), "--image-size", "32"], "keep at least one of the 1 patches"),
        ([str(empty), "--variant", "convnextv2_tinyy"], "convnextv2_tiny"),
    ]
    for arguments, message in cases:
        assert main(["pretrain", *arguments, "--output", str(tmp_path / "out")]) == 2
        line = capsys.readouterr().err.strip().splitlines()[-1]
        assert line.startswith("keras-convnext pretrain: error: ") and message in line, line
    assert not (tmp_path / "out").exists()

    pretrained = tmp_path / "pretrained"
    pretrained.mkdir()
    (pretrained / "pretrain_config.json").write_text(json.dumps({"config": {"variant": "convnextv2_atto"}}))
    with pytest.raises(ValueError, match="fine-tune it with --variant convnextv2_atto, not convnext_tiny"):
        pretrained_encoder_weights(str(pretrained), "convnext_tiny")
    with pytest.raises(ValueError, match="holds no encoder.weights.h5: the pretraining run has not finished"):
        pretrained_encoder_weights(str(pretrained), "convnextv2_atto")


def test_the_recipe_defaults_follow_the_official_pretraining():
    config = PretrainConfig(data_dir="d", batch_size=512, epochs=1600)
    assert config.resolved() == {"learning_rate": pytest.approx(3e-4), "warmup_epochs": 80}
    assert (config.mask_ratio, config.decoder_dim, config.decoder_depth, config.weight_decay) == (0.6, 512, 1, 0.05)
    assert config.norm_pix_loss


@pytest.mark.large  # pretrains on the 1438 training digits: a minute or two
@pytest.mark.once  # the experiment's bookkeeping; FCMAE and fine-tuning on each backend are test_fcmae's and above
def test_the_digits_experiment_reports_both_classifiers_on_the_held_out_split(tmp_path):
    assert main(["pretrain-demo", "--pretrain-epochs", "1", "--fine-tune-epochs", "1", "--label-fraction", "0.05",
                 "--image-size", "64",
                 "--json", str(tmp_path / "result.json")]) == 0
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["labelled"] == 70 and result["held_out"] == 359 and len(result["pretraining_loss"]) == 1
    for key in ("scratch_accuracy", "scratch_layer_decay_accuracy", "pretrained_accuracy"):
        assert len(result[key]) == 3 and all(0.0 <= value <= 1.0 for value in result[key])
