"""preprocess_image follows a preset's eval config; decode_predictions names ImageNet-1k, -12k and -22k classes."""

import numpy as np
import pytest
from PIL import Image

import keras_convnext as kc


def test_preprocess_resizes_the_short_side_then_centre_crops(tmp_path):
    # A 300x400 image whose left and right thirds differ: the centre crop must keep only the middle.
    image = np.zeros((300, 400, 3), np.uint8)
    image[:, :100] = 255
    image[:, 300:] = 128
    Image.fromarray(image).save(tmp_path / "picture.png")
    out = kc.preprocess_image(tmp_path / "picture.png", "convnext_tiny.fb_in1k")  # 224 at crop 0.875 -> short side 256
    assert out.shape == (224, 224, 3) and out.dtype == np.float32
    # The short side goes to 256, so 400 -> 341 wide and the crop keeps resized columns 58..281. The white
    # band (0..99 -> 0..85) ends near crop column 27, the grey one (300.. -> 256..) starts near column 198.
    np.testing.assert_allclose(out[:, :24], 255.0, atol=1.0)
    np.testing.assert_allclose(out[:, 32:194], 0.0, atol=1.0)
    np.testing.assert_allclose(out[:, 202:], 128.0, atol=1.0)
    np.testing.assert_array_equal(kc.preprocess_image(image, "convnext_tiny.fb_in1k"), out)


def test_preprocess_uses_the_preset_s_size():
    image = np.random.default_rng(0).uniform(0, 255, (500, 500, 3))
    assert kc.preprocess_image(image, "convnextv2_tiny.fcmae_ft_in22k_in1k_384").shape == (384, 384, 3)


@pytest.mark.parametrize("bad", [np.zeros((32, 32)), np.zeros((32, 32, 4))])
def test_preprocess_rejects_non_rgb_arrays(bad):
    with pytest.raises(ValueError, match=r"Expected an RGB image of shape \(height, width, 3\)"):
        kc.preprocess_image(bad)


def test_preprocess_rejects_unknown_presets():
    with pytest.raises(ValueError, match="Unknown preset 'nope'"):
        kc.preprocess_image(np.zeros((32, 32, 3)), "nope")


def test_decode_predictions_ranks_and_names_classes():
    scores = np.zeros((2, 1000), np.float32)
    scores[0, [1, 207]] = [0.7, 0.2]
    scores[1, 999] = 1.0
    decoded = kc.decode_predictions(scores, top=2)
    assert decoded[0] == [(1, "goldfish", pytest.approx(0.7)), (207, "golden retriever", pytest.approx(0.2))]
    assert decoded[1][0][:2] == (999, "toilet tissue")
    assert len(kc.imagenet_classes()) == 1000 and len(set(kc.imagenet_classes())) >= 998


def test_decode_predictions_names_the_classes_of_12k_and_22k_heads_in_timms_label_order():
    # Label order of timm's imagenet22k_synsets.txt / imagenet12k_synsets.txt (1-based lines 360, 369 and 2265 / 217,
    # 221 and 1506 hold tench n01440764, goldfish n01443537 and golden retriever n02099601).
    for classes, labels in ((21841, (359, 368, 2264)), (11821, (216, 220, 1505))):
        names = kc.imagenet_classes(classes)
        assert len(names) == classes
        assert [names[label] for label in labels] == ["tench", "goldfish", "golden retriever"]
        scores = np.zeros((1, classes), np.float32)
        scores[0, labels[2]] = 1.0
        assert kc.decode_predictions(scores, top=1) == [[(labels[2], "golden retriever", 1.0)]]


def test_decode_predictions_rejects_other_shapes():
    with pytest.raises(ValueError, match=r"ImageNet-1k, -12k or -22k head, of shape \(batch, 1000\), \(batch, 11821\) "
                                         r"or \(batch, 21841\); got shape \(2, 10\)"):
        kc.decode_predictions(np.zeros((2, 10)))
    with pytest.raises(ValueError, match=r"ImageNet heads have 1000, 11821, 21841 classes; got 10"):
        kc.imagenet_classes(10)
