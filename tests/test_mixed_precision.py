"""Mixed precision ("mixed_float16", what `tools/train.py --mixed_precision` sets) of lvst_tf.models:
the float16 model runs, trains with a LossScaleOptimizer, keeps float32 at its API boundary and agrees
with the float32 model holding the same weights."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from lvst_tf import models
from lvst_tf.models.st_adain import STAdaIN

LOW = 32


@pytest.fixture
def mixed_policy():
    """Sets the global "mixed_float16" policy for one test and always restores "float32"."""
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")


def _clip(seed=0, frames=2):
    rng = np.random.default_rng(seed)
    return {
        "frames": rng.uniform(size=(1, frames, LOW, LOW, 3)).astype(np.float32),
        "masks": (rng.uniform(size=(1, frames, LOW, LOW, 1)) > 0.5).astype(np.float32),
        "styles": rng.uniform(size=(1, 2, LOW, LOW, 3)).astype(np.float32),
    }


def _loss(outputs):
    # Reaches every trained variable: the render (grid head, splatting, ST-AdaIN, guide) and MaskNet.
    return tf.reduce_mean(tf.square(outputs["output"] - 0.5)) + tf.reduce_mean(
        tf.square(outputs["enhanced_masks"] - 0.3)
    )


def test_st_adain_float16_input_computes_in_float32(mixed_policy):
    del mixed_policy
    rng = np.random.default_rng(1)
    x16 = tf.constant(rng.normal(3.0, 40.0, (2, 8, 8, 5)), tf.float16)
    mask = tf.constant(rng.uniform(size=(2, 16, 16)), tf.float32)
    mean = tf.constant(rng.normal(size=(2, 5)), tf.float32)
    std = tf.constant(rng.uniform(0.5, 2.0, (2, 5)), tf.float32)
    state = tf.constant(rng.normal(size=(2, 8, 8, 5)), tf.float32)
    layer = STAdaIN()
    assert layer.compute_dtype == "float32"  # float32 by default even under a mixed policy
    y = layer(x16, mask, mean, std, state)
    assert y.dtype == tf.float32
    # NumPy reference on the float16-rounded input, float64 arithmetic (mask: exact 2x2 block means).
    x = x16.numpy().astype(np.float64)
    m = mask.numpy().reshape(2, 8, 2, 8, 2).mean(axis=(2, 4))[..., None]
    mu = (m * x).sum(axis=(1, 2)) / m.sum(axis=(1, 2))
    var = (m * (x - mu[:, None, None]) ** 2).sum(axis=(1, 2)) / m.sum(axis=(1, 2))
    adain = (x - mu[:, None, None]) / np.sqrt(var + 1e-5)[:, None, None]
    adain = adain * std.numpy()[:, None, None] + mean.numpy()[:, None, None]
    expected = 0.5 * adain + 0.5 * state.numpy()  # alpha_init = 0.5
    np.testing.assert_allclose(y.numpy(), expected, atol=1e-4)
    # An explicit mixed policy is honoured: float32 maths, output in the layer's compute dtype.
    mixed = STAdaIN(dtype="mixed_float16")
    y16 = mixed(x16, mask, mean, std, state)
    assert y16.dtype == tf.float16
    np.testing.assert_allclose(y16.numpy(), expected, atol=2e-2, rtol=2e-3)


def test_mixed_model_matches_float32_and_trains(mixed_policy):
    del mixed_policy
    inputs = _clip()
    # identity_init=False: a Glorot Gamma, so the output really depends on the float16 features.
    keras.mixed_precision.set_global_policy("float32")
    ref = models.build_model(vgg_weights=None, low_res=LOW, identity_init=False)
    with tf.GradientTape() as tape:
        ref_out = ref(inputs, training=True)
        ref_loss = _loss(ref_out)
    ref_grads = tape.gradient(ref_loss, ref.trainable_variables)
    ref_stats = ref.encode_styles(inputs["styles"])

    keras.mixed_precision.set_global_policy("mixed_float16")
    model = models.build_model(vgg_weights=None, low_res=LOW, identity_init=False)
    model.set_weights(ref.get_weights())
    # The convolutions really compute in float16; the boundary layers are float32.
    assert model.blocks[0].s1.compute_dtype == "float16"
    assert model.mask_net.m1.compute_dtype == "float16"
    assert model.encoder.trunk.get_layer("block1_conv1").compute_dtype == "float16"
    assert model.head.gamma.compute_dtype == "float32"
    assert all(v.dtype == "float32" for v in model.weights)

    optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(1e-3))
    with tf.GradientTape() as tape:
        out = model(inputs, training=True)
        loss = _loss(out)
        scaled = optimizer.scale_loss(loss)
    grads = tape.gradient(scaled, model.trainable_variables)
    stats = model.encode_styles(inputs["styles"])

    for key, value in out.items():
        # `content_features` / `style_features` are lists of VGG taps (reused by the losses).
        for tensor in value if isinstance(value, list) else [value]:
            assert tensor.dtype == tf.float32, key
            assert np.isfinite(tensor.numpy()).all(), key
    for key, value in stats.items():
        assert value.dtype == tf.float32, key
    # Tolerances: float16 rounds to 2^-11 ~ 4.9e-4 relative; the ~15 float16 layers accumulate a
    # few of those, while every ST-AdaIN renormalises in float32, so errors do not grow with depth.
    # Measured max errors (low_res 32 / 64): output and grids <= 1.0e-3, masks 6e-4, grid masks
    # 3e-4, style statistics 8e-4 relative; the bounds leave 5-10x headroom.
    np.testing.assert_allclose(out["output"], ref_out["output"], atol=1e-2)
    np.testing.assert_allclose(out["grids"], ref_out["grids"], atol=1e-2)
    np.testing.assert_allclose(out["enhanced_masks"], ref_out["enhanced_masks"], atol=5e-3)
    np.testing.assert_allclose(out["grid_masks"], ref_out["grid_masks"], atol=5e-3)
    for key in ref_stats:
        scale = np.abs(ref_stats[key].numpy()).max()
        np.testing.assert_allclose(stats[key] / scale, ref_stats[key] / scale, atol=5e-3)

    # Unscaled float16 gradients point the same way as the float32 ones (measured cosine > 0.9999).
    pairs = [(g, r) for g, r in zip(grads, ref_grads) if r is not None]
    assert all(g is not None for g, _ in pairs)
    flat = np.concatenate([g.numpy().ravel() for g, _ in pairs]) / float(scaled / loss)
    flat_ref = np.concatenate([r.numpy().ravel() for _, r in pairs])
    assert np.isfinite(flat).all()
    cosine = flat @ flat_ref / (np.linalg.norm(flat) * np.linalg.norm(flat_ref))
    assert cosine > 0.999

    before = [v.numpy() for v in model.trainable_variables]
    used = [v for g, v in zip(grads, model.trainable_variables) if g is not None]
    optimizer.apply_gradients(zip([g for g in grads if g is not None], used))
    after = [v.numpy() for v in model.trainable_variables]
    assert all(np.isfinite(a).all() for a in after)
    assert any(not np.array_equal(a, b) for a, b in zip(after, before))  # the step was not skipped
    # One more forward pass after the step stays finite.
    assert np.isfinite(model(inputs)["output"].numpy()).all()
