"""The training losses reuse the VGG taps the model computed; the gradients must not change."""

import numpy as np
import pytest
import tensorflow as tf

from lvst_tf import losses, models


def _batch(crop, seed=0, clip=2, regions=2):
    rng = np.random.default_rng(seed)
    frames = rng.uniform(size=(1, clip, crop, crop, 3)).astype(np.float32)
    masks = np.zeros((1, clip, crop, crop, regions - 1), np.float32)
    masks[:, :, crop // 4 : 3 * crop // 4, crop // 4 : 3 * crop // 4] = 1.0
    styles = rng.uniform(size=(1, regions, crop, crop, 3)).astype(np.float32)
    styles[:, 0] *= 0.5  # two different styles
    return {
        "frames": tf.constant(frames),
        "clean_masks": tf.constant(masks),
        "noisy_masks": tf.constant(masks),
        "styles": tf.constant(styles),
    }


def _grads(model, batch, reuse):
    variables = [v for v in model.trainable_variables]
    with tf.GradientTape() as tape:
        outputs = model(
            {"frames": batch["frames"], "masks": batch["noisy_masks"], "styles": batch["styles"]}
        )
        total, terms = losses.compute_losses(
            model, batch, outputs, temporal_mode="frame_difference", reuse_model_features=reuse
        )
    grads = tape.gradient(total, variables)
    return total, terms, {v.path: g for v, g in zip(variables, grads) if g is not None}


@pytest.mark.parametrize("crop", [32, 64])
def test_reused_features_give_the_same_losses_and_gradients(crop):
    # low_res 32: with crop 32 the content taps are shared; with crop 64 they are recomputed at 64,
    # while the style taps are always the model's (styles at the low resolution).
    model = models.build_model(vgg_weights=None, low_res=32, seed=3)
    batch = _batch(crop)
    model({"frames": batch["frames"], "masks": batch["noisy_masks"], "styles": batch["styles"]})
    total_a, terms_a, grads_a = _grads(model, batch, reuse=False)
    total_b, terms_b, grads_b = _grads(model, batch, reuse=True)
    assert float(terms_a["content"]) == pytest.approx(float(terms_b["content"]), rel=1e-5)
    assert set(grads_a) == set(grads_b) and len(grads_a) > 20
    if crop == 32:  # the loss network saw the same styles at the same size: identical everything
        assert float(total_a) == pytest.approx(float(total_b), rel=1e-5)
        for name, g in grads_a.items():
            scale = float(tf.reduce_max(tf.abs(g))) + 1e-12
            np.testing.assert_allclose(grads_b[name] / scale, g / scale, atol=1e-4, err_msg=name)
    else:  # styles are measured at 32 instead of 64: the style term may differ, the content not
        assert float(terms_b["style"]) > 0


def test_model_returns_the_taps_it_computed():
    model = models.build_model(vgg_weights=None, low_res=32, seed=0)
    batch = _batch(32, clip=3, regions=3)
    out = model(
        {"frames": batch["frames"], "masks": batch["noisy_masks"], "styles": batch["styles"]}
    )
    content, style = out["content_features"], out["style_features"]
    assert [tuple(f.shape) for f in content] == [
        (1, 3, 32, 32, 64),
        (1, 3, 16, 16, 128),
        (1, 3, 8, 8, 256),
        (1, 3, 4, 4, 512),
    ]
    assert [tuple(f.shape) for f in style] == [
        (1, 3, 32, 32, 64),
        (1, 3, 16, 16, 128),
        (1, 3, 8, 8, 256),
        (1, 3, 4, 4, 512),
    ]
    # Frame 1's taps are the encoder's taps of frame 1; style 2's those of style 2.
    direct = model.encoder(batch["frames"][:, 1])
    np.testing.assert_allclose(content[2][:, 1], direct[2], rtol=1e-5, atol=1e-4)
    direct = model.encoder(batch["styles"][:, 2])
    np.testing.assert_allclose(style[3][:, 2], direct[3], rtol=1e-5, atol=1e-4)
