"""Tests of lvst_tf.models: Table 1 kernel shapes, parameter count, layer configs, VGG weights, forward
passes (identity head, explicit state, K regions, resolutions), ST-AdaIN against NumPy."""

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from lvst_tf import models, ops
from lvst_tf.models import encoder as encoder_lib

LOW = 64  # low_res of the test models: grid 4x4x8

# Supplement Table 1 as docs/method.md#network reads it: every trainable kernel (kh, kw, in, out).
EXPECTED_KERNELS = {
    "mask_net/m1": (3, 3, 4, 16),
    "mask_net/m2": (3, 3, 16, 8),
    "mask_net/m3": (3, 3, 8, 1),
    "guide/g1": (3, 3, 3, 16),
    "guide/g2": (3, 3, 16, 1),
    "splatting_1/s1": (3, 3, 64, 8),
    "splatting_1/s2_content": (3, 3, 8, 8),
    "splatting_1/s2_style": (3, 3, 8, 8),
    "splatting_1/s3": (3, 3, 136, 8),
    "splatting_2/s1": (3, 3, 8, 16),
    "splatting_2/s2_content": (3, 3, 16, 16),
    "splatting_2/s2_style": (3, 3, 16, 16),
    "splatting_2/s3": (3, 3, 272, 16),
    "splatting_3/s1": (3, 3, 16, 32),
    "splatting_3/s2_content": (3, 3, 32, 32),
    "splatting_3/s2_style": (3, 3, 32, 32),
    "splatting_3/s3": (3, 3, 544, 32),
    "grid_head/l1": (3, 3, 32, 64),
    "grid_head/l2": (3, 3, 64, 64),
    "grid_head/f": (3, 3, 64, 64),
    "grid_head/gamma": (1, 1, 64, 96),
}
EXPECTED_STRIDES = {
    "splatting_1/s1": 2,
    "splatting_2/s1": 2,
    "splatting_3/s1": 2,
    "grid_head/l1": 2,
}
EXPECTED_PARAMS = 341_432


@pytest.fixture(scope="module")
def model():
    return models.build_model(vgg_weights=None, low_res=LOW)


@pytest.fixture(scope="module")
def identity_model():
    m = models.build_model(vgg_weights=None, low_res=LOW, seed=5)
    m.set_identity_head()
    return m


def _rand(shape, seed=0):
    return np.random.default_rng(seed).uniform(size=shape).astype(np.float32)


def _blocky_masks(shape, seed=0, block=8):
    """Binary masks constant on block x block tiles: `shape` = [..., H, W, C]."""
    *lead, h, w, c = shape
    small = np.random.default_rng(seed).uniform(size=(*lead, h // block, w // block, c)) > 0.5
    return small.repeat(block, -3).repeat(block, -2).astype(np.float32)


# ---------------------------------------------------------------------------------------- structure
def test_kernel_shapes_match_table_1(model):
    kernels = {}
    for v in model.trainable_weights:
        if v.path.endswith("/kernel"):
            kernels[v.path.rsplit("/", 1)[0]] = tuple(v.shape)
    assert kernels == EXPECTED_KERNELS
    convs = {
        layer.path: layer
        for layer in model._flatten_layers()
        if isinstance(layer, keras.layers.Conv2D)
    }
    for name in EXPECTED_KERNELS:
        conv = convs[name]
        assert conv.strides == (EXPECTED_STRIDES.get(name, 1),) * 2, name
        assert conv.padding == "same" and conv.use_bias
    assert convs["grid_head/gamma"].activation.__name__ == "linear"
    assert convs["mask_net/m3"].activation.__name__ == "sigmoid"
    assert convs["guide/g2"].activation.__name__ == "sigmoid"
    assert convs["mask_net/m1"].activation.__name__ == "linear"  # "act -" read as none
    assert convs["splatting_2/s3"].activation.__name__ == "relu"


def test_trainable_parameters_are_exactly_table_1(model):
    trainable = {v.path: tuple(v.shape) for v in model.trainable_weights}
    biases = {k for k in trainable if k.endswith("/bias")}
    scalars = {k for k, s in trainable.items() if s == ()}
    kernels = {k for k in trainable if k.endswith("/kernel")}
    assert kernels | biases | scalars == set(trainable)
    assert {b.rsplit("/", 1)[0] for b in biases} == set(EXPECTED_KERNELS)
    for b in biases:
        assert trainable[b] == (EXPECTED_KERNELS[b.rsplit("/", 1)[0]][-1],)
    assert len(scalars) == 6 and all(s.endswith("blend_logit") for s in scalars)
    expected = sum(np.prod(k) + k[-1] for k in EXPECTED_KERNELS.values()) + 6
    count = models.count_trainable_params(model)
    print(f"\ntrainable parameters of the default model: {count:,}")
    assert count == expected == EXPECTED_PARAMS
    # VGG-19 is frozen: none of its weights are trainable.
    assert not model.encoder.trainable_weights
    assert len(model.encoder.non_trainable_weights) == 18  # 9 convolutions up to block4_conv1
    assert model.grid_shape == (4, 4, 8)


def test_checkpoint_round_trip(model, tmp_path):
    path = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))
    other = models.build_model(vgg_weights=None, low_res=LOW, seed=7)
    tf.train.Checkpoint(model=other).restore(path).assert_existing_objects_matched()
    assert len(other.weights) == len(model.weights)
    for a, b in zip(model.weights, other.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_build_model_argument_validation():
    bad = [
        {"low_res": 100},
        {"low_res": 0},
        {"grid_depth": 0},
        {"l1_stride": 3},
        {"hidden_activation": "banana"},
        {"share_middle_conv": "yes"},
        {"guide_dtype": "int8"},
        {"soft_mask_mode": "fancy"},
        {"vgg_weights": 3},
        {"alpha_init": 1.5},
    ]
    for kwargs in bad:
        with pytest.raises(ValueError, match=next(iter(kwargs)).split("_init")[0]):
            models.build_model(**{"vgg_weights": None, "low_res": LOW, **kwargs})


def test_build_model_is_gin_configurable():
    import gin

    with gin.unlock_config():
        gin.parse_config(["build_model.low_res = 32", "build_model.grid_depth = 4"])
    try:
        m = models.build_model(vgg_weights=None)
    finally:
        gin.clear_config()
    assert m.low_res == 32 and m.grid_shape == (2, 2, 4)


def test_options_change_structure():
    m = models.build_model(
        vgg_weights=None,
        low_res=LOW,
        share_middle_conv=True,
        temporal_blend=False,
        grid_depth=4,
        hidden_activation="relu",
    )
    paths = {v.path for v in m.trainable_weights}
    assert not any("s2_style" in p for p in paths)
    assert not any("blend_logit" in p for p in paths)
    assert m.head.gamma.kernel.shape == (1, 1, 64, 48)
    assert m.grid_shape == (4, 4, 4)
    assert m.mask_net.m1.activation.__name__ == "relu"
    m2 = models.build_model(vgg_weights=None, low_res=LOW, l1_stride=1)
    assert m2.grid_shape == (8, 8, 8)


# ----------------------------------------------------------------------------- get_config round trips
def _copy_and_compare(layer, call):
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    clone.set_weights(layer.get_weights())
    for a, b in zip(tf.nest.flatten(call(layer)), tf.nest.flatten(call(clone))):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_layer_get_config_round_trips():
    x4 = _rand((2, 16, 16, 4))
    x3 = _rand((2, 16, 16, 3))
    mask_net = models.MaskNet(hidden_activation="relu", seed=3)
    mask_net.build()
    _copy_and_compare(mask_net, lambda layer: layer(x4))
    for impl in ("convs", "auto"):
        guide = models.Guide(impl=impl, seed=4)
        _copy_and_compare(guide, lambda layer: layer(x3))
    head = models.GridHead(grid_depth=4, identity_init=False, seed=2)
    head.build()
    _copy_and_compare(head, lambda layer: layer(_rand((2, 8, 8, 32))))
    ada = models.STAdaIN(temporal=True, alpha_init=0.3, epsilon=1e-4)
    ada.build()
    args = (
        _rand((2, 8, 8, 5)),
        _rand((2, 16, 16)),
        _rand((2, 5)),
        _rand((2, 5)),
        _rand((2, 8, 8, 5)),
    )
    _copy_and_compare(ada, lambda layer: layer(*args))
    block = models.SplattingBlock(8, 64, 128, share_middle=False, alpha_init=0.2, seed=9)
    block.build()
    inputs = (_rand((2, 16, 16, 64)), _rand((2, 16, 16, 64), 1), _rand((2, 8, 8, 128), 2))
    inputs += (_rand((2, 8, 8, 128), 3), _rand((2, 16, 16), 4))
    _copy_and_compare(block, lambda layer: layer(*inputs))
    enc = models.VGGEncoder(weights=None, seed=1)
    _copy_and_compare(enc, lambda layer: layer(x3))


def test_model_get_config_round_trip(model):
    config = model.get_config()
    clone = models.LocalizedStyleModel.from_config(config)
    assert clone.get_config() == config
    clone.set_weights(model.get_weights())
    styles = _rand((3, 40, 50, 3), 1)
    a = model.encode_styles(styles)
    b = clone.encode_styles(styles)
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-5)


def test_layers_reject_bad_arguments():
    with pytest.raises(ValueError, match="filters"):
        models.SplattingBlock(0, 64, 128)
    with pytest.raises(ValueError, match="hidden_activation"):
        models.MaskNet(hidden_activation="nope")
    with pytest.raises(ValueError, match="compute_dtype"):
        models.Guide(compute_dtype="float64")
    with pytest.raises(ValueError, match="alpha_init"):
        models.STAdaIN(alpha_init=0.0)
    with pytest.raises(ValueError, match="l1_stride"):
        models.GridHead(l1_stride=4)
    with pytest.raises(ValueError, match="4 channels"):
        models.MaskNet()(_rand((1, 8, 8, 3)))


def test_predict_grids_reads_uint8_masks_like_float_masks(model):
    # uint8 masks (0/255) are resized as they are and divided by 255 at the low resolution: the
    # same grids as the float mask, when shrinking (area) and when enlarging (bilinear).
    rng = np.random.default_rng(8)
    styles = _rand((2, LOW, LOW, 3), 9)
    stats = model.encode_styles(styles)
    for size in [(2 * LOW, LOW + 8), (LOW // 2, LOW // 2)]:
        frames = rng.uniform(size=(1, *size, 3)).astype(np.float32)
        masks8 = rng.integers(0, 256, (1, *size, 1), dtype=np.uint8)
        out8 = model.predict_grids(frames, masks8, stats)
        outf = model.predict_grids(frames, masks8.astype(np.float32) / 255, stats)
        for key in ("grids", "enhanced_masks"):
            np.testing.assert_allclose(out8[key], outf[key], atol=2e-6, err_msg=f"{size} {key}")


def test_guide_stencil_equals_a_numpy_loop_and_the_polyphase_form():
    from lvst_tf.models import guide as guide_module

    rng = np.random.default_rng(5)
    kernel = rng.normal(0, 1, (5, 5, 3)).astype(np.float32)
    for shape in [(2, 7, 13), (1, 1, 1), (1, 3, 16), (1, 9, 4)]:
        x8 = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
        padded = np.pad(x8.astype(np.float64), [(0, 0), (2, 2), (2, 2), (0, 0)])
        ref = np.zeros(shape)
        for dy in range(5):
            for dx in range(5):
                window = padded[:, dy : dy + shape[1], dx : dx + shape[2]]
                ref += np.sum(window * kernel[dy, dx], axis=-1)
        for x in (x8, x8.astype(np.float32)):  # uint8 as it is (cast inside), and float
            out = guide_module.stencil_logits(x, kernel).numpy()
            np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-3, err_msg=str(shape))
    # In the guide: the stencil's parts equal the polyphase convolution's (uint8 with the 1/255
    # folded in, a width that is not a multiple of 8, non-zero biases for the ring).
    layer = models.Guide(seed=3)
    layer.set_weights(
        [w + rng.normal(0, 0.3, w.shape).astype(np.float32) for w in layer.get_weights()]
    )
    x8 = rng.integers(0, 256, (2, 11, 21, 3), dtype=np.uint8)
    logits = [
        models.Guide.assemble_logits(layer.fused_parts(x8, 1 / 255, stencil=s))
        for s in (False, True)
    ]
    # The two forms add the 75 products in different orders: float32 rounding, relative to the
    # logits' size (measured up to 6e-7 relative on logits of ~10).
    np.testing.assert_allclose(logits[1], logits[0], rtol=2e-6, atol=2e-6)
    np.testing.assert_allclose(tf.sigmoid(logits[1]), layer(x8.astype(np.float32) / 255), atol=1e-6)


def test_fused_guide_equals_the_conv_pair():
    rng = np.random.default_rng(0)
    fused = models.Guide(seed=3, impl="fused")
    convs = models.Guide(seed=3, impl="convs")
    weights = [w + rng.normal(0, 0.3, w.shape).astype(np.float32) for w in fused.get_weights()]
    fused.set_weights(weights)  # non-zero biases: the border ring differs if handled wrongly
    convs.set_weights(weights)
    for shape in [(2, 7, 13), (1, 3, 3), (1, 2, 5), (1, 33, 17), (1, 40, 64)]:
        x = rng.uniform(size=(*shape, 3)).astype(np.float32)
        np.testing.assert_allclose(fused(x), convs(x), atol=1e-6, err_msg=str(shape))
    dynamic = tf.function(fused, input_signature=[tf.TensorSpec([None, None, None, 3])])
    for shape in [(2, 9, 21), (1, 2, 21)]:
        x = rng.uniform(size=(*shape, 3)).astype(np.float32)
        np.testing.assert_allclose(dynamic(x), convs(x), atol=1e-6, err_msg=str(shape))
    # Gradients of the fused form equal those of the pair.
    x = rng.uniform(size=(1, 12, 10, 3)).astype(np.float32)
    grads = []
    for layer in (fused, convs):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(layer(x) - 0.3))
        grads.append(tape.gradient(loss, layer.trainable_weights))
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert models.build_model(vgg_weights=None, low_res=LOW).guide.use_fused  # the default
    with pytest.raises(ValueError, match="guide_impl"):
        models.build_model(
            vgg_weights=None, low_res=LOW, guide_impl="fused", hidden_activation="relu"
        )
    assert not models.Guide(hidden_activation="relu").use_fused


# -------------------------------------------------------------------------------------- VGG weights
def _source_encoder():
    return models.VGGEncoder(weights=None, seed=11)


def test_vgg_weights_from_keras3_weights_file(tmp_path):
    source = _source_encoder()
    # A full keras.applications.VGG19 (block5 included) carrying the seeded weights, saved by Keras 3.
    full = keras.applications.VGG19(include_top=False, weights=None, input_shape=(None, None, 3))
    for name in encoder_lib.VGG_CONV_LAYERS:
        full.get_layer(name).set_weights(source.trunk.get_layer(name).get_weights())
    path = tmp_path / "vgg19.weights.h5"
    full.save_weights(path)
    loaded = models.VGGEncoder(weights=str(path))
    images = _rand((2, 32, 48, 3), 7)
    for a, b in zip(source(images), loaded(images)):
        np.testing.assert_array_equal(a, b)
    # The truncated trunk saved by Keras 3 loads too.
    path2 = tmp_path / "trunk.weights.h5"
    source.trunk.save_weights(path2)
    loaded2 = models.VGGEncoder(weights=path2)
    for a, b in zip(source(images), loaded2(images)):
        np.testing.assert_array_equal(a, b)


def test_vgg_weights_from_legacy_h5_file(tmp_path):
    source = _source_encoder()
    # The by-layer-name layout of the keras.applications notop files, written independently with h5py.
    path = tmp_path / "vgg19_notop.h5"
    with h5py.File(path, "w") as f:
        names = list(encoder_lib.VGG_CONV_LAYERS) + ["block4_conv2"]
        f.attrs["layer_names"] = [n.encode() for n in ["input_1", "block1_pool", *names]]
        f.create_group("input_1").attrs["weight_names"] = []
        f.create_group("block1_pool").attrs["weight_names"] = []
        for name in names:
            group = f.create_group(name)
            if name == "block4_conv2":
                arrays = [np.zeros((3, 3, 512, 512), np.float32), np.zeros(512, np.float32)]
            else:
                arrays = source.trunk.get_layer(name).get_weights()
            weight_names = [f"{name}/kernel:0", f"{name}/bias:0"]
            group.attrs["weight_names"] = [w.encode() for w in weight_names]
            for w, a in zip(weight_names, arrays):
                group.create_dataset(w, data=a)
    loaded = models.build_model(vgg_weights=str(path), low_res=LOW)
    images = _rand((1, 32, 32, 3), 8)
    for a, b in zip(source(images), loaded.encoder(images)):
        np.testing.assert_array_equal(a, b)


def test_vgg_weights_bad_files(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        models.VGGEncoder(weights=str(tmp_path / "missing.h5"))
    path = tmp_path / "empty.h5"
    with h5py.File(path, "w") as f:
        f.create_group("something")
    with pytest.raises(ValueError, match="no VGG convolution weights"):
        models.VGGEncoder(weights=str(path))
    not_h5 = tmp_path / "text.h5"
    not_h5.write_text("hello")
    with pytest.raises(ValueError, match="HDF5"):
        models.VGGEncoder(weights=str(not_h5))


def test_offline_imagenet_fails_fast_with_help(tmp_path, monkeypatch):
    # Behaviour, not a timing bound: offline, the only network work is one reachability check with
    # a bounded timeout, and no download is attempted.
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))  # an empty Keras cache
    checks = []

    def unreachable(url, timeout=encoder_lib._NETWORK_TIMEOUT_S):
        checks.append(timeout)
        return False

    monkeypatch.setattr(encoder_lib, "_host_reachable", unreachable)
    monkeypatch.setattr(keras.utils, "get_file", lambda *a, **k: pytest.fail("download attempted"))
    with pytest.raises(ValueError, match="vgg_weights=None") as err:
        models.build_model(vgg_weights="imagenet", low_res=LOW)
    assert checks == [encoder_lib._NETWORK_TIMEOUT_S] and 0 < checks[0] <= 5
    assert "path to a VGG-19 weights .h5 file" in str(err.value)


def test_imagenet_uses_keras_cache(tmp_path, monkeypatch):
    source = _source_encoder()
    cache = tmp_path / "models"
    cache.mkdir()
    source.trunk.save_weights(cache / "trunk.weights.h5")
    (cache / "trunk.weights.h5").rename(cache / encoder_lib.IMAGENET_NOTOP_FILE)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(encoder_lib, "_host_reachable", lambda *a, **k: pytest.fail("no network"))
    loaded = models.VGGEncoder(weights="imagenet")
    images = _rand((1, 16, 16, 3), 9)
    np.testing.assert_array_equal(source(images)[3], loaded(images)[3])


def test_encoder_taps_and_preprocessing(model):
    images = _rand((2, 32, 48, 3), 3)
    feats = model.encoder(images)
    assert [tuple(f.shape) for f in feats] == [
        (2, 32, 48, 64),
        (2, 16, 24, 128),
        (2, 8, 12, 256),
        (2, 4, 6, 512),
    ]
    # relu1_1 = relu(conv(caffe(x))): Keras' own VGG preprocessing on [0, 255] inputs.
    conv = model.encoder.trunk.get_layer("block1_conv1")
    caffe = keras.applications.vgg19.preprocess_input(images * 255.0)
    np.testing.assert_allclose(feats[0], conv(caffe), rtol=1e-5, atol=1e-4)


# ---------------------------------------------------------------------------------------- ST-AdaIN
def _np_masked_adain(x, mask, s_mean, s_std, eps=1e-5):
    n, h, w, c = x.shape
    f = mask.shape[1] // h
    m = mask.reshape(n, h, f, w, f).mean(axis=(2, 4))  # area resize
    out = np.empty_like(x, dtype=np.float64)
    for i in range(n):
        wsum = m[i].sum()
        for ch in range(c):
            mu = (m[i] * x[i, ..., ch]).sum() / wsum
            var = (m[i] * (x[i, ..., ch] - mu) ** 2).sum() / wsum
            out[i, ..., ch] = (
                s_std[i, ch] * (x[i, ..., ch] - mu) / np.sqrt(var + eps) + s_mean[i, ch]
            )
    return out


def test_st_adain_matches_numpy_and_blends_in_time():
    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 3.0, (2, 8, 8, 5)).astype(np.float32)
    mask = (rng.uniform(size=(2, 32, 32)) > 0.4).astype(np.float32)
    s_mean = rng.normal(size=(2, 5)).astype(np.float32)
    s_std = rng.uniform(0.5, 2.0, (2, 5)).astype(np.float32)
    layer = models.STAdaIN(alpha_init=0.3)
    layer.build()
    y0 = layer(x, mask, s_mean, s_std)  # first frame: no state
    ref = _np_masked_adain(x, mask, s_mean, s_std)
    np.testing.assert_allclose(y0, ref, rtol=1e-4, atol=1e-4)
    # The masked content statistics now equal the style statistics.
    small = mask.reshape(2, 8, 4, 8, 4).mean(axis=(2, 4))
    mean, std = models.masked_moments(y0, small)
    np.testing.assert_allclose(mean, s_mean, atol=1e-4)
    np.testing.assert_allclose(std, np.sqrt(s_std**2 + 1e-5), rtol=1e-3)
    # Temporal blend with known alpha = 0.3.
    np.testing.assert_allclose(float(layer.alpha), 0.3, rtol=1e-6)
    x1 = rng.normal(size=x.shape).astype(np.float32)
    y1 = layer(x1, mask, s_mean, s_std, state=y0)
    ref1 = 0.7 * _np_masked_adain(x1, mask, s_mean, s_std) + 0.3 * ref
    np.testing.assert_allclose(y1, ref1, rtol=1e-4, atol=1e-4)
    # A zero-element state means "first frame"; temporal=False ignores the state.
    np.testing.assert_allclose(layer(x, mask, s_mean, s_std, state=tf.zeros([0, 0, 0, 5])), y0)
    plain = models.STAdaIN(temporal=False)
    plain.build()
    np.testing.assert_allclose(
        plain(x1, mask, s_mean, s_std, state=y0),
        _np_masked_adain(x1, mask, s_mean, s_std),
        rtol=1e-4,
        atol=1e-4,
    )
    assert not plain.trainable_weights


def test_masked_moments_empty_mask_falls_back_to_image():
    x = _rand((1, 4, 4, 2))
    mean, std = models.masked_moments(x, np.zeros((1, 4, 4), np.float32))
    np.testing.assert_allclose(mean, x.mean(axis=(1, 2)), rtol=1e-5)
    np.testing.assert_allclose(std, np.sqrt(x.var(axis=(1, 2)) + 1e-5), rtol=1e-5)


def test_encode_styles_are_statistics_of_the_style_path(model):
    styles = _rand((2, 3, 64, 64, 3), 4)
    stats = model.encode_styles(styles)
    assert sorted(stats) == sorted([f"mean_{i}" for i in range(6)] + [f"std_{i}" for i in range(6)])
    for i, c in enumerate(models.st_adain_channels()):
        assert stats[f"mean_{i}"].shape == (2, 3, c) and stats[f"std_{i}"].shape == (2, 3, c)
    # Layer 1 (VGG path of block 1) = moments of relu2_1 of the style image.
    feats = model.encoder(styles[1, 2][None])
    np.testing.assert_allclose(stats["mean_1"][1, 2], feats[1].numpy().mean(axis=(0, 1, 2)), 1e-4)
    np.testing.assert_allclose(
        stats["std_1"][1, 2], np.sqrt(feats[1].numpy().var(axis=(0, 1, 2)) + 1e-5), 1e-3
    )
    # Unbatched form, and a list of differently sized images resized to low_res inside.
    single = model.encode_styles(styles[0])
    np.testing.assert_allclose(single["std_5"], stats["std_5"][:1], rtol=1e-5)
    listed = model.encode_styles([styles[0, 0], _rand((90, 30, 3)), styles[0, 2]])
    np.testing.assert_allclose(listed["mean_4"][0, 0], stats["mean_4"][0, 0], rtol=1e-5)
    with pytest.raises(ValueError, match="styles"):
        model.encode_styles(_rand((2, 3, 8, 8, 4)))


# ------------------------------------------------------------------------------------ forward passes
def test_training_call_shapes_and_identity(identity_model):
    b, t, k = 2, 3, 2
    frames = _rand((b, t, LOW, LOW, 3))
    masks = _rand((b, t, LOW, LOW, k - 1), 1)
    styles = _rand((b, k, 48, 80, 3), 2)
    out = identity_model({"frames": frames, "masks": masks, "styles": styles})
    assert out["output"].shape == (b, t, LOW, LOW, 3)
    assert out["enhanced_masks"].shape == (b, t, LOW, LOW, k - 1)
    assert out["region_masks"].shape == (b, t, LOW, LOW, k)
    assert out["region_grids"].shape == (b, t, k, 4, 4, 8, 12)
    assert out["grids"].shape == (b, t, 4, 4, 8, 12)
    np.testing.assert_allclose(out["output"], frames, atol=1e-5)
    np.testing.assert_allclose(
        out["region_masks"][..., -1], 1.0 - out["enhanced_masks"][..., 0], atol=1e-6
    )


def test_predict_grids_and_render_identity_at_any_size(identity_model):
    frames = _rand((1, 300, 500, 3), 3)
    masks = _blocky_masks((1, 300, 500, 1), block=20)
    stats = identity_model.encode_styles(_rand((2, 70, 70, 3)))
    pred = identity_model.predict_grids(frames, masks, stats)
    assert pred["enhanced_masks"].shape == (1, LOW, LOW, 1)
    np.testing.assert_allclose(pred["grids"], models_identity(1), atol=1e-6)
    out = identity_model.render(pred["grids"], frames)
    assert out.shape == (1, 300, 500, 3)
    np.testing.assert_allclose(out, frames, atol=1e-5)
    # uint8 frames and masks are accepted (divided by 255).
    frames8 = np.round(frames * 255).astype(np.uint8)
    out8 = identity_model.render(pred["grids"], frames8)
    np.testing.assert_allclose(out8, frames8 / 255.0, atol=1e-5)


def models_identity(batch):
    from lvst_tf import ops

    return ops.identity_grid(batch, (4, 4, 8))


def test_explicit_state_matches_training_call(model):
    frames = _rand((1, 2, LOW, LOW, 3), 5)
    masks = _rand((1, 2, LOW, LOW, 1), 6)
    styles = _rand((1, 2, LOW, LOW, 3), 7)
    clip = model({"frames": frames, "masks": masks, "styles": styles})
    stats = model.encode_styles(styles)
    first = model.predict_grids(frames[:, 0], masks[:, 0], stats)
    assert models.state_channels() == (8, 8, 16, 16, 32, 32)
    for i, c in enumerate(models.state_channels()):
        size = LOW // 2 ** (i // 2 + 1)
        assert first[f"state_{i}"].shape == (1, 2, size, size, c)
    second = model.predict_grids(frames[:, 1], masks[:, 1], stats, state=first)
    np.testing.assert_allclose(second["grids"], clip["grids"][:, 1], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        model.render(second["grids"], frames[:, 1]), clip["output"][:, 1], rtol=1e-5, atol=1e-5
    )
    # The state matters (alpha = 0.5): without it frame 2 differs.
    fresh = model.predict_grids(frames[:, 1], masks[:, 1], stats)
    assert np.abs(fresh["region_grids"] - second["region_grids"]).max() > 1e-7
    # A zero-element state is a first frame.
    empty = {f"state_{i}": tf.zeros([0, 0, 0, 0, c]) for i, c in enumerate(models.state_channels())}
    again = model.predict_grids(frames[:, 0], masks[:, 0], stats, state=empty)
    np.testing.assert_allclose(again["grids"], first["grids"], rtol=1e-6, atol=1e-6)


def test_three_regions(model):
    frames = _rand((2, LOW, LOW, 3), 8)
    masks = _blocky_masks((2, LOW, LOW, 2), seed=9)
    stats = model.encode_styles(_rand((3, 40, 40, 3), 10))
    pred = model.predict_grids(frames, masks, stats)
    assert pred["region_grids"].shape == (2, 3, 4, 4, 8, 12)
    assert pred["grid_masks"].shape == (2, 3, 4, 4, 8)
    background = 1.0 - np.max(pred["enhanced_masks"], axis=-1)
    np.testing.assert_allclose(pred["region_masks"][..., 2], background, atol=1e-6)
    # The three region grids differ (different masks and styles), and the blend is a convex mix.
    assert np.abs(pred["region_grids"][:, 0] - pred["region_grids"][:, 1]).max() > 1e-6
    lo = np.min(pred["region_grids"], axis=1) - 1e-5
    hi = np.max(pred["region_grids"], axis=1) + 1e-5
    assert np.all((pred["grids"] >= lo) & (pred["grids"] <= hi))
    with pytest.raises(ValueError, match="K = 3"):
        model.predict_grids(frames, masks[..., :1], stats)


def test_full_res_inputs_are_resized_inside(model):
    frames = _rand((1, LOW, LOW, 3), 11)
    masks = _blocky_masks((1, LOW, LOW, 1), seed=12)
    stats = model.encode_styles(_rand((2, LOW, LOW, 3), 13))
    low = model.predict_grids(frames, masks, stats)
    # The same content at 3x the resolution (each pixel a 3x3 tile): area resizing recovers it.
    big_frames = frames.repeat(3, 1).repeat(3, 2)
    big_masks = masks.repeat(3, 1).repeat(3, 2)
    high = model.predict_grids(big_frames, big_masks, stats)
    np.testing.assert_allclose(high["grids"], low["grids"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(high["enhanced_masks"], low["enhanced_masks"], atol=1e-5)


def test_predict_grids_rejects_bad_inputs(model):
    stats = model.encode_styles(_rand((2, 16, 16, 3)))
    frames = _rand((1, 32, 32, 3))
    with pytest.raises(ValueError, match="differ in height"):
        model.predict_grids(frames, _rand((1, 30, 32, 1)), stats)
    with pytest.raises(ValueError, match="frames"):
        model.predict_grids(_rand((1, 32, 32, 4)), _rand((1, 32, 32, 1)), stats)
    with pytest.raises(ValueError, match="style_stats"):
        model.predict_grids(frames, _rand((1, 32, 32, 1)), {"mean_0": stats["mean_0"]})
    with pytest.raises(ValueError, match="state"):
        model.predict_grids(frames, _rand((1, 32, 32, 1)), stats, state={"state_0": None})
    with pytest.raises(ValueError, match="soft_mask_mode"):
        model.predict_grids(frames, _rand((1, 32, 32, 1)), stats, soft_mask_mode="x")
    with pytest.raises(ValueError, match="inputs"):
        model({"frames": _rand((1, 2, 32, 32, 3))})


@pytest.mark.slow
def test_tf_function_with_dynamic_shapes(model):
    channels = models.st_adain_channels()
    stats_spec = {}
    for i, c in enumerate(channels):
        stats_spec[f"mean_{i}"] = tf.TensorSpec([None, None, c], tf.float32)
        stats_spec[f"std_{i}"] = tf.TensorSpec([None, None, c], tf.float32)
    state_spec = {
        f"state_{i}": tf.TensorSpec([None] * 4 + [c], tf.float32)
        for i, c in enumerate(models.state_channels())
    }
    encode = tf.function(
        model.encode_styles,
        input_signature=[tf.TensorSpec([None, None, None, None, 3], tf.float32)],
    )

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, None, None, 3], tf.float32),
            tf.TensorSpec([None, None, None, None], tf.float32),
            stats_spec,
            state_spec,
        ]
    )
    def predict(frames, masks, stats, state):
        return model.predict_grids(frames, masks, stats, state)

    render = tf.function(
        model.render,
        input_signature=[
            tf.TensorSpec([None, *model.grid_shape, 12], tf.float32),
            tf.TensorSpec([None, None, None, 3], tf.float32),
        ],
    )
    styles = _rand((1, 2, 50, 40, 3), 1)
    frames = _rand((1, 96, 80, 3), 2)
    masks = _rand((1, 96, 80, 1), 3)
    empty = {f"state_{i}": tf.zeros([0, 0, 0, 0, c]) for i, c in enumerate(models.state_channels())}
    stats = encode(styles)
    first = predict(frames, masks, stats, empty)
    second = predict(frames[:, ::-1], masks, stats, {k: first[k] for k in empty})
    eager_stats = model.encode_styles(styles)
    eager1 = model.predict_grids(frames, masks, eager_stats)
    eager2 = model.predict_grids(frames[:, ::-1], masks, eager_stats, state=eager1)
    np.testing.assert_allclose(first["grids"], eager1["grids"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(second["grids"], eager2["grids"], rtol=1e-5, atol=1e-5)
    out = render(second["grids"], _rand((1, 30, 70, 3)))
    assert out.shape == (1, 30, 70, 3)


@pytest.mark.slow
def test_gradients_reach_every_trainable_weight(model):
    frames = _rand((1, 2, LOW, LOW, 3), 20)
    masks = _rand((1, 2, LOW, LOW, 1), 21)
    styles = _rand((1, 2, LOW, LOW, 3), 22)
    with tf.GradientTape() as tape:
        out = model({"frames": frames, "masks": masks, "styles": styles}, training=True)
        loss = tf.reduce_mean(tf.square(out["output"] - 0.5)) + tf.reduce_mean(
            out["enhanced_masks"]
        )
    grads = tape.gradient(loss, model.trainable_weights)
    missing = [v.path for v, g in zip(model.trainable_weights, grads) if g is None]
    # The style path's output of the last block feeds nothing (only the statistics of a_s and relu4_1
    # do), so S_3,2 of the style path is the one weight without a gradient (see docs/models.md).
    assert missing == ["splatting_3/s2_style/kernel", "splatting_3/s2_style/bias"]
    grads = [g for g in grads if g is not None]
    assert all(np.isfinite(g.numpy()).all() for g in grads)


# ------------------------------------------------------------- statistics: one owner, explicit options
def _np_moments(x, m, eps=1e-5, empty="image", variance="centered"):
    """Loop reference: x [h, w, C], m [h, w] -> mean, std [C] (float64)."""
    x = x.astype(np.float64)
    m = m.astype(np.float64)
    area = m.sum()
    if empty == "image" and area <= 0:
        return x.mean(axis=(0, 1)), np.sqrt(x.var(axis=(0, 1)) + eps)
    denom = max(area, eps) if empty == "floor" else area
    mean = np.array([(m * x[..., c]).sum() / denom for c in range(x.shape[-1])])
    if variance == "expanded":
        second = np.array([(m * x[..., c] ** 2).sum() / denom for c in range(x.shape[-1])])
        var = np.maximum(second - mean**2, 0.0)
    else:
        var = np.array([(m * (x[..., c] - mean[c]) ** 2).sum() / denom for c in range(x.shape[-1])])
    return mean, np.sqrt(var + eps)


@pytest.mark.parametrize("empty", ["image", "floor"])
@pytest.mark.parametrize("variance", ["centered", "expanded"])
def test_masked_moments_options_match_numpy(empty, variance):
    rng = np.random.default_rng(0)
    x = rng.normal(1.0, 2.0, (2, 6, 5, 3)).astype(np.float32)
    masks = rng.uniform(size=(2, 6, 5, 3)).astype(np.float32)
    masks[1, ..., 2] = 0.0  # an empty region
    mean, std = models.masked_moments(x, masks, empty=empty, variance=variance)
    assert mean.shape == (2, 3, 3) and std.shape == (2, 3, 3)
    for n in range(2):
        for k in range(3):
            ref_mean, ref_std = _np_moments(x[n], masks[n, ..., k], empty=empty, variance=variance)
            np.testing.assert_allclose(mean[n, k], ref_mean, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(std[n, k], ref_std, rtol=1e-4, atol=1e-5)
    # The single-region form [N, h, w] is the K = 1 case.
    single = models.masked_moments(x, masks[..., 0], empty=empty, variance=variance)
    np.testing.assert_allclose(single[0], mean[:, 0], rtol=1e-6)
    with pytest.raises(ValueError, match="empty"):
        models.masked_moments(x, masks, empty="zero")
    with pytest.raises(ValueError, match="variance"):
        models.masked_moments(x, masks, variance="raw")


def test_masked_moments_centered_has_no_cancellation_and_finite_gradients():
    # A channel whose mean is 1e4 times its spread: E[x^2] - E[x]^2 in float32 loses the variance
    # entirely (the "expanded" form's known limit); ST-AdaIN's form, shifted by the image mean,
    # keeps it.
    rng = np.random.default_rng(1)
    x = (1000.0 + rng.normal(0.0, 0.1, (1, 8, 8, 2))).astype(np.float32)
    masks = np.zeros((1, 8, 8, 2), np.float32)
    masks[:, :4, ..., 0] = 1.0
    masks[:, 4:, ..., 1] = rng.uniform(size=(4, 8))
    _, std = models.masked_moments(x, masks, epsilon=1e-8)
    for k in range(2):
        _, ref_std = _np_moments(x[0], masks[0, ..., k], eps=1e-8)
        np.testing.assert_allclose(std[0, k], ref_std, rtol=2e-2)
    # An empty region under the "image" rule: values and gradients stay finite.
    masks[..., 1] = 0.0
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        total = 0.0
        for variance in ("centered", "expanded"):
            mean, std = models.masked_moments(xt, masks, variance=variance)
            total += tf.reduce_sum(mean) + tf.reduce_sum(std)
    assert np.isfinite(tape.gradient(total, xt).numpy()).all()


def test_resize_mask_block_means_and_fallbacks():
    from lvst_tf.models import st_adain

    mask = _rand((2, 12, 8), 3)
    pooled = st_adain.resize_mask(mask, (3, 2)).numpy()
    np.testing.assert_allclose(pooled, mask.reshape(2, 3, 4, 2, 4).mean(axis=(2, 4)), rtol=1e-6)
    four = st_adain.resize_mask(mask[..., None], (3, 2)).numpy()
    np.testing.assert_allclose(four[..., 0], pooled, rtol=1e-6)
    odd = (5, 3)
    area = st_adain.resize_mask(mask, odd, fallback="area").numpy()
    np.testing.assert_allclose(
        area, tf.image.resize(mask[..., None], odd, method="area").numpy()[..., 0], rtol=1e-6
    )
    bilinear = st_adain.resize_mask(mask, odd).numpy()
    assert bilinear.shape == (2, 5, 3) and np.abs(bilinear - area).max() > 1e-4
    with pytest.raises(ValueError, match="fallback"):
        st_adain.resize_mask(mask, odd, fallback="nearest")


def test_st_adain_shared_features_equal_repeated_features():
    rng = np.random.default_rng(1)
    b, k = 2, 3
    x = rng.normal(size=(b, 8, 8, 5)).astype(np.float32)
    mask = rng.uniform(size=(b * k, 16, 16)).astype(np.float32)
    mask[4] = 0.0  # an empty region falls back to the whole image in both forms
    s_mean = rng.normal(size=(b * k, 5)).astype(np.float32)
    s_std = rng.uniform(0.5, 2.0, (b * k, 5)).astype(np.float32)
    state = rng.normal(size=(b * k, 8, 8, 5)).astype(np.float32)
    layer = models.STAdaIN(alpha_init=0.3)
    layer.build()
    repeated = layer(np.repeat(x, k, axis=0), mask, s_mean, s_std, state=state)
    shared = layer(x, mask, s_mean, s_std, state=state, regions=k)
    np.testing.assert_allclose(shared, repeated, rtol=1e-6, atol=1e-6)
    # The whole splatting block: block 1 shares relu1_1 and the VGG tap, later blocks the tap only.
    block = models.SplattingBlock(8, 64, 128, seed=2)
    c = tf.constant(rng.uniform(size=(b, 16, 16, 64)).astype(np.float32))
    vc = tf.constant(rng.uniform(size=(b, 8, 8, 128)).astype(np.float32))
    stats = [
        (s_mean[:, :1].repeat(8, 1), s_std[:, :1].repeat(8, 1)),
        (s_mean[:, :1].repeat(128, 1), s_std[:, :1].repeat(128, 1)),
    ]
    ref, ref_states = block.content_path(tf.repeat(c, k, 0), tf.repeat(vc, k, 0), mask, stats)
    got, got_states = block.content_path(c, vc, mask, stats, regions=k, content_shared=True)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    for g, r in zip(got_states, ref_states):
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("padding", ["zeros", "reflect"])
def test_content_path_equals_the_formula_with_t_formed(padding):
    """The content path never forms t = ST-AdaIN(vc): it convolves vc with S_b3's kernel scaled per
    region and carries S_b3's share of t as the state. Check both against the block's formula with t
    formed and concatenated, over two frames (temporal blend), B = 2 frames x K = 3 regions."""
    rng = np.random.default_rng(4)
    b, k, f = 2, 3, 8
    block = models.SplattingBlock(f, 64, 128, alpha_init=0.3, seed=5, conv_padding=padding)
    c = tf.constant(rng.uniform(size=(b, 16, 16, 64)).astype(np.float32))
    mask = rng.uniform(size=(b * k, 16, 16)).astype(np.float32)
    mask[4] = 0.0  # an empty region: whole-image statistics in both forms
    stats = [
        (rng.normal(size=(b * k, f)), rng.uniform(0.5, 2.0, (b * k, f))),
        (rng.normal(size=(b * k, 128)), rng.uniform(0.5, 2.0, (b * k, 128))),
    ]
    stats = [(tf.constant(m, tf.float32), tf.constant(s, tf.float32)) for m, s in stats]
    kernel = block.s3.kernel.numpy()

    def formula(vc, t_prev):
        vc_rep = tf.repeat(vc, k, axis=0)
        t = block.adain_vgg(vc_rep, mask, *stats[1], state=t_prev)
        a_c = block.adain_block(block.s1(tf.repeat(c, k, 0)), mask, *stats[0])
        out = block.s3(tf.concat([block.s2_content(a_c), t], axis=-1))
        # S_b3's share of t, a plain convolution with its kernel rows for t.
        share = tf.nn.conv2d(
            tf.pad(
                t,
                [[0, 0], [1, 1], [1, 1], [0, 0]],
                "REFLECT" if padding == "reflect" else "CONSTANT",
            ),
            kernel[:, :, f:, :],
            1,
            "VALID",
        )
        return out, t, share

    def grouped(state):
        return tf.function(
            lambda c, vc: block.content_path(
                c, vc, mask, stats, (None, state), regions=k, content_shared=True
            ),
            input_signature=[tf.TensorSpec([None, *x.shape[1:]]) for x in (c, vc)],
            autograph=False,
        )

    t_prev, shared_state, unshared_state = None, None, None
    for frame in range(2):
        vc = tf.constant(rng.uniform(size=(b, 8, 8, 128)).astype(np.float32))
        ref, t_prev, ref_share = formula(vc, t_prev)
        previous = shared_state
        got, (_, shared_state) = block.content_path(
            c, vc, mask, stats, (None, shared_state), regions=k, content_shared=True
        )
        # Unshared inputs (one group per sample) give the same.
        unshared, (_, unshared_state) = block.content_path(
            tf.repeat(c, k, 0), tf.repeat(vc, k, 0), mask, stats, (None, unshared_state)
        )
        # Traced with the frame count unknown: one grouped convolution instead of one per frame.
        got_grouped, (_, grouped_state) = grouped(previous)(c, vc)
        cases = ((got, shared_state), (unshared, unshared_state), (got_grouped, grouped_state))
        for out, state in cases:
            assert state.shape == (b * k, 8, 8, f), frame
            np.testing.assert_allclose(out, ref, rtol=1e-5, atol=2e-5)
            np.testing.assert_allclose(state, ref_share, rtol=1e-5, atol=2e-5)


@pytest.mark.parametrize("padding", ["zeros", "reflect"])
def test_content_path_gradients_equal_the_formula_for_a_batch_of_frames(padding):
    """Training differentiates the folded VGG path for a batch of frames (B = 2, K = 2): its
    gradients (S_b3's kernel, the masks, the style statistics) equal those of the formula with t
    formed. This runs on every CPU: TensorFlow's kernels without oneDNN have no gradient for a
    grouped convolution, so the folded path must not use one when the batch is known."""
    rng = np.random.default_rng(6)
    b, k, f = 2, 2, 8
    block = models.SplattingBlock(f, 64, 128, seed=7, conv_padding=padding)
    c = tf.constant(rng.uniform(size=(b, 16, 16, 64)).astype(np.float32))
    vc = tf.constant(rng.uniform(size=(b, 8, 8, 128)).astype(np.float32))
    mask = tf.constant(rng.uniform(size=(b * k, 16, 16)).astype(np.float32))
    stats = [
        (rng.normal(size=(b * k, f)), rng.uniform(0.5, 2.0, (b * k, f))),
        (rng.normal(size=(b * k, 128)), rng.uniform(0.5, 2.0, (b * k, 128))),
    ]
    stats = [(tf.constant(m, tf.float32), tf.constant(s, tf.float32)) for m, s in stats]
    weights = tf.constant(rng.normal(size=(b * k, 8, 8, f)).astype(np.float32))

    def formula():
        t = block.adain_vgg(tf.repeat(vc, k, axis=0), mask, *stats[1])
        a_c = block.adain_block(block.s1(tf.repeat(c, k, 0)), mask, *stats[0])
        return block.s3(tf.concat([block.s2_content(a_c), t], axis=-1))

    def folded():
        out, _ = block.content_path(
            c, vc, mask, stats, (None, None), regions=k, content_shared=True
        )
        return out

    sources = [block.s3.kernel, mask, stats[1][0], stats[1][1]]
    grads = []
    for fn in (formula, folded):
        with tf.GradientTape() as tape:
            tape.watch(sources[1:])
            loss = tf.reduce_sum(fn() * weights)
        grads.append(tape.gradient(loss, sources))
    for name, want, got in zip(("kernel", "mask", "mean", "std"), *grads):
        scale = float(tf.reduce_max(tf.abs(want)))
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * scale, err_msg=name)


def test_paper_mode_is_the_two_region_blend(model):
    from lvst_tf import ops

    frames = _rand((1, LOW, LOW, 3), 11)
    masks = _blocky_masks((1, LOW, LOW, 1), seed=2)
    stats = model.encode_styles(_rand((2, 32, 32, 3), 12))
    pred = model.predict_grids(frames, masks, stats, soft_mask_mode="paper")
    fg = ops.soft_grid_mask(
        pred["guide_low"], pred["region_masks"][..., 0], model.grid_shape, mode="paper"
    ).numpy()[..., None]
    g = pred["region_grids"].numpy()
    np.testing.assert_allclose(pred["grids"], fg * g[:, 0] + (1 - fg) * g[:, 1], atol=1e-6)
    np.testing.assert_allclose(pred["grid_masks"][:, 0], fg[..., 0], atol=0)
    np.testing.assert_allclose(pred["grid_masks"][:, 1], 1 - fg[..., 0], atol=0)
    # K = 3: the paper gives no rule; the K Algorithm 1 masks are normalised over the regions.
    masks3 = np.concatenate([masks, _blocky_masks((1, LOW, LOW, 1), seed=3)], axis=-1)
    stats3 = model.encode_styles(_rand((3, 32, 32, 3), 13))
    pred3 = model.predict_grids(frames, masks3, stats3, soft_mask_mode="paper")
    regions = tf.transpose(pred3["region_masks"], [0, 3, 1, 2])[0]
    guide = tf.repeat(pred3["guide_low"], 3, axis=0)
    each = ops.soft_grid_mask(guide, regions, model.grid_shape, mode="paper")[None]
    np.testing.assert_allclose(pred3["grid_masks"], each, atol=0)
    # The same under a tf.function with an unknown K (the dynamic branch).
    spec = [tf.TensorSpec([None, None, None, 3]), tf.TensorSpec([None, None, None, None])]
    fn = tf.function(
        lambda f, m: model.predict_grids(f, m, stats, soft_mask_mode="paper")["grids"],
        input_signature=spec,
        autograph=False,
    )
    np.testing.assert_allclose(fn(frames, masks), pred["grids"], atol=1e-6)


def test_state_gradient_switch_stops_gradients_through_time():
    frames = tf.constant(_rand((1, 2, LOW, LOW, 3), 20))
    masks = tf.constant(_blocky_masks((1, 2, LOW, LOW, 1), seed=4))
    styles = tf.constant(_rand((1, 2, LOW, LOW, 3), 21))
    grads, outputs = {}, {}
    for flag in (True, False):
        m = models.build_model(vgg_weights=None, low_res=LOW, seed=7, state_gradient=flag)
        assert m.get_config()["state_gradient"] is flag
        with tf.GradientTape() as tape:
            tape.watch(frames)
            out = m({"frames": frames, "masks": masks, "styles": styles})
            loss = tf.reduce_sum(out["grids"][:, 1])  # the second frame's grid only
        grads[flag] = tape.gradient(loss, frames).numpy()
        outputs[flag] = out["output"].numpy()
    np.testing.assert_array_equal(outputs[True], outputs[False])  # same forward pass
    # Frame 0 reaches frame 1's grid only through the ST-AdaIN states.
    assert np.abs(grads[True][:, 0]).max() > 1e-6
    assert np.abs(grads[False][:, 0]).max() == 0.0
    np.testing.assert_allclose(grads[False][:, 1], grads[True][:, 1], rtol=1e-4, atol=1e-7)


def test_encode_styles_with_style_region_masks(model):
    from lvst_tf.models import st_adain

    styles = _rand((2, LOW, LOW, 3), 30)
    left = np.zeros((2, LOW, LOW), np.float32)
    left[:, :, : LOW // 2] = 1.0
    masked = model.encode_styles(styles, style_masks=left)
    # VGG-path layer 1: masked moments of relu2_1 over the left half (mask pooled by 2).
    feats = model.encoder(styles)[1].numpy()
    for k in range(2):
        half = feats[k][:, : LOW // 4].astype(np.float64)
        np.testing.assert_allclose(
            masked["mean_1"][0, k], half.mean(axis=(0, 1)), rtol=1e-4, atol=1e-6
        )
        np.testing.assert_allclose(
            masked["std_1"][0, k], np.sqrt(half.var(axis=(0, 1)) + 1e-5), rtol=1e-3
        )
    # Whole-image masks (and None entries of the list form) give the unmasked statistics.
    plain = model.encode_styles(styles)
    ones = model.encode_styles(styles, style_masks=np.ones((2, LOW, LOW), np.float32))
    listed = model.encode_styles(list(styles), style_masks=[None, left[1]])
    for key in plain:
        scale = float(np.abs(plain[key]).max())
        np.testing.assert_allclose(ones[key] / scale, plain[key] / scale, atol=1e-5)
        np.testing.assert_allclose(listed[key][0, 0] / scale, plain[key][0, 0] / scale, atol=1e-5)
        np.testing.assert_allclose(listed[key][0, 1], masked[key][0, 1], rtol=1e-5, atol=1e-6)
    assert np.abs(masked["mean_5"] - plain["mean_5"]).max() > 1e-3  # the mask matters
    # An all-zero mask falls back to the whole image (as ST-AdaIN's empty regions).
    empty = model.encode_styles(styles, style_masks=np.zeros((2, LOW, LOW), np.float32))
    np.testing.assert_allclose(empty["std_3"], plain["std_3"], rtol=1e-5)
    with pytest.raises(ValueError, match="style_masks"):
        model.encode_styles(list(styles), style_masks=[left[0]])
    with pytest.raises(ValueError, match="style_masks"):
        model.encode_styles(list(styles), style_masks=[left[0], left[1, :10]])
    with pytest.raises(ValueError, match="style_masks"):
        model.encode_styles(styles, style_masks=left[:, :10])
    assert st_adain.EMPTY_REGION_RULES == ("image", "floor")


@pytest.mark.parametrize("size", [(37, 53), (2, 9), (64, 8)])
def test_render_inference_equals_render_then_clip(model, size):
    from lvst_tf import ops

    rng = np.random.default_rng(sum(size))
    frames8 = rng.integers(0, 256, (2, *size, 3), dtype=np.uint8)
    grids = ops.identity_grid(2, model.grid_shape) + rng.normal(0, 0.3, (2, *model.grid_shape, 12))
    grids = tf.cast(grids, tf.float32)
    ref = np.clip(model.render(grids, frames8.astype(np.float32) / 255.0).numpy(), 0.0, 1.0)
    np.testing.assert_allclose(model.render_inference(grids, frames8), ref, atol=2e-6)
    np.testing.assert_allclose(
        model.render_inference(grids, frames8.astype(np.float32) / 255.0), ref, atol=2e-6
    )
    unclipped = model.render_inference(grids, frames8, clip=False).numpy()
    np.testing.assert_allclose(np.clip(unclipped, 0, 1), ref, atol=2e-6)
    spec = [
        tf.TensorSpec([None, *model.grid_shape, 12]),
        tf.TensorSpec([None, None, None, 3], tf.uint8),
    ]
    fn = tf.function(model.render_inference, input_signature=spec, autograph=False)
    np.testing.assert_allclose(fn(grids, frames8), ref, atol=2e-6)
    with pytest.raises(ValueError, match="frames"):
        model.render_inference(grids, frames8.astype(np.int32))


@pytest.fixture(scope="module")
def plain_guide_model():
    return models.build_model(vgg_weights=None, low_res=LOW, guide_impl="convs", seed=4)


def _strip_bounds(height, rows):
    bounds = list(range(0, height, rows)) + [height]
    return list(zip(bounds[:-1], bounds[1:]))


@pytest.mark.parametrize("guide", ["fused", "plain"])
@pytest.mark.parametrize("size", [(37, 53), (7, 9), (3, 5), (2, 9), (64, 8)])
def test_render_inference_rows_put_together_are_the_whole_render(
    model, plain_guide_model, guide, size
):
    # Strips of 1-3 rows (and uneven ones: H is not a multiple of the strip height) with their
    # halo: the image border behaves as untiled, the cuts are invisible. B = 2, uint8 and float
    # frames, the fused (the guide's XLA stencil) and the plain (conv pair) path, clip on and off.
    m = model if guide == "fused" else plain_guide_model
    assert m.guide.use_fused == (guide == "fused") and m.guide.halo == 2
    rng = np.random.default_rng(sum(size) + 7)
    frames8 = rng.integers(0, 256, (2, *size, 3), dtype=np.uint8)
    grids = ops.identity_grid(2, m.grid_shape) + rng.normal(0, 0.3, (2, *m.grid_shape, 12))
    grids = tf.cast(grids, tf.float32)
    height = size[0]
    # The plain guide's convolutions run on each strip's window and on the whole frame: without
    # oneDNN, TensorFlow's CPU convolution sums in an order that depends on the input size, a few
    # float32 ulps apart (1.2e-6 at values near 1 was seen); the fused stencil sums per pixel.
    atol = 1e-6 if guide == "fused" else 4e-6
    for frames in (frames8, frames8.astype(np.float32) / 255.0):
        for clip in (True, False):
            whole = m.render_inference(grids, frames, clip=clip).numpy()
            for rows in (1, 2, 3, 5):
                parts, from_windows = [], []
                for r in _strip_bounds(height, rows):
                    parts.append(m.render_inference(grids, frames, clip=clip, rows=r).numpy())
                    # The same rows from the window of the frame that the strip reads only.
                    low, high = (int(v) for v in m.strip_window(*r, height))
                    window = frames[:, low:high]
                    got = m.render_window(grids, window, low, r, height, clip=clip).numpy()
                    from_windows.append(got)
                for out in (np.concatenate(parts, axis=1), np.concatenate(from_windows, axis=1)):
                    np.testing.assert_allclose(out, whole, rtol=0, atol=atol, err_msg=f"{rows}")


def test_render_inference_rows_traced_with_any_size(model):
    # One trace for any frame size and strip, rows as tensors (as VideoStylizer calls it).
    spec = [
        tf.TensorSpec([None, *model.grid_shape, 12]),
        tf.TensorSpec([None, None, None, 3], tf.uint8),
        tf.TensorSpec([], tf.int32),
        tf.TensorSpec([], tf.int32),
    ]
    fn = tf.function(
        lambda g, f, a, b: model.render_inference(g, f, rows=(a, b)),
        input_signature=spec,
        autograph=False,
    )
    rng = np.random.default_rng(5)
    for size in ((23, 31), (9, 16)):
        frames8 = rng.integers(0, 256, (1, *size, 3), dtype=np.uint8)
        grids = tf.cast(rng.normal(0.3, 0.4, (1, *model.grid_shape, 12)), tf.float32)
        whole = model.render_inference(grids, frames8).numpy()
        strips = models.LocalizedStyleModel.render_strips(*size, max_pixels=3 * size[1])
        assert len(strips) == -(-size[0] // 3)
        out = np.concatenate([fn(grids, frames8, a, b).numpy() for a, b in strips], axis=1)
        np.testing.assert_allclose(out, whole, rtol=0, atol=1e-6)
    assert fn.experimental_get_tracing_count() == 1
    with pytest.raises(tf.errors.InvalidArgumentError, match="rows"):
        fn(grids, frames8, 5, 5)
    with pytest.raises(ValueError, match="rows"):
        model.render_inference(grids, frames8, rows=(0, 10))
    with pytest.raises(ValueError, match="rows"):
        model.render_inference(grids, frames8, rows=3)
    # render_window: traced once too; a window that misses rows the strip reads is refused.
    spec_window = [spec[0], spec[1], *[tf.TensorSpec([], tf.int32)] * 4]
    window_fn = tf.function(
        lambda g, w, top, a, b, h: model.render_window(g, w, top, (a, b), h),
        input_signature=spec_window,
        autograph=False,
    )
    height = frames8.shape[1]
    whole = model.render_inference(grids, frames8).numpy()
    for a, b in ((0, 3), (3, 6), (6, 9)):
        low, high = (int(v) for v in model.strip_window(a, b, height))
        got = window_fn(grids, frames8[:, low:high], low, a, b, height).numpy()
        np.testing.assert_allclose(got, whole[:, a:b], rtol=0, atol=1e-6)
    assert window_fn.experimental_get_tracing_count() == 1
    with pytest.raises(tf.errors.InvalidArgumentError, match="window"):
        window_fn(grids, frames8[:, 4:9], 4, 3, 6, height)  # strip_window(3, 6) starts at row 1
    with pytest.raises(ValueError, match="window"):
        model.render_window(grids, frames8[0], 0, (0, 3), height)


@pytest.mark.parametrize(
    "height, width, max_pixels, expected",
    [
        (10, 10, 100, [(0, 10)]),  # small frames: one piece, the untiled render
        (10, 10, 99, [(0, 5), (5, 10)]),  # 9 rows fit: 2 strips of equal height
        (11, 10, 30, [(0, 3), (3, 6), (6, 9), (9, 11)]),  # 4 strips, taller first
        (7, 10, 30, [(0, 3), (3, 5), (5, 7)]),
        (3, 10, 5, [(0, 1), (1, 2), (2, 3)]),  # at least one row per strip
    ],
)
def test_render_strips(height, width, max_pixels, expected):
    assert models.LocalizedStyleModel.render_strips(height, width, max_pixels) == expected
    from lvst_tf.models import model as model_module

    assert model_module.RENDER_STRIP_PIXELS == 2_000_000
    assert model_module.render_strips(3000, 4000) == [(500 * i, 500 * (i + 1)) for i in range(6)]
    assert model_module.render_strips(1000, 2000) == [(0, 1000)]  # 2 MP: untiled
    with pytest.raises(ValueError, match="max_pixels"):
        model_module.render_strips(3, 10, 0)


def test_render_inference_with_the_plain_guide():
    m = models.build_model(vgg_weights=None, low_res=LOW, guide_impl="convs", seed=4)
    rng = np.random.default_rng(3)
    frames8 = rng.integers(0, 256, (1, 30, 41, 3), dtype=np.uint8)
    grids = tf.cast(rng.normal(0.3, 0.4, (1, *m.grid_shape, 12)), tf.float32)
    ref = np.clip(m.render(grids, frames8 / 255.0).numpy(), 0.0, 1.0)
    np.testing.assert_allclose(m.render_inference(grids, frames8), ref, atol=2e-6)


# --- conv_padding="reflect" ---------------------------------------------------------------------


def _conv_reference(x, kernel, bias, stride, mode):
    """NumPy 'same'-size convolution with TensorFlow's split of the padding (extra pixel after)."""
    k = kernel.shape[0]
    pads = []
    for size in x.shape[1:3]:
        out = -(-size // stride)
        total = max((out - 1) * stride + k - size, 0)
        pads.append((total // 2, total - total // 2))
    xp = np.pad(x, [(0, 0), pads[0], pads[1], (0, 0)], mode="reflect" if mode else "constant")
    oh, ow = -(-x.shape[1] // stride), -(-x.shape[2] // stride)
    y = np.zeros((x.shape[0], oh, ow, kernel.shape[-1]))
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, i * stride : i * stride + k, j * stride : j * stride + k, :]
            y[:, i, j] = np.einsum("nhwc,hwco->no", patch, kernel) + bias
    return y


@pytest.mark.parametrize("size", [(7, 9), (8, 8), (5, 6)])
@pytest.mark.parametrize("stride", [1, 2])
def test_reflect_conv_matches_a_numpy_reference(size, stride):
    from lvst_tf.models import _common

    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, *size, 3)).astype(np.float32)
    for padding in ("reflect", "zeros"):
        layer = _common.conv(4, 3, "c", seed=1, strides=stride, padding=padding)
        y = layer(x).numpy()
        kernel, bias = (w.numpy() for w in layer.weights)
        expected = _conv_reference(x, kernel, bias, stride, padding == "reflect")
        np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
        assert layer.compute_output_shape((2, *size, 3)) == y.shape
    with pytest.raises(ValueError, match="padding"):
        _common.conv(4, 3, "c", seed=1, padding="edge")


def test_reflect_padding_keeps_a_flat_input_flat():
    """Zero padding marks the border on a flat input; reflect padding leaves nothing to mark it."""
    flat = np.full((1, 16, 16, 32), 0.7, np.float32)
    spreads = {}
    for padding in ("zeros", "reflect"):
        head = models.GridHead(grid_depth=4, identity_init=False, seed=2, conv_padding=padding)
        grid = head(flat).numpy()
        spreads[padding] = np.ptp(grid, axis=(1, 2)).max()  # spatial spread per coefficient
        assert head.get_config()["conv_padding"] == padding
    assert spreads["reflect"] < 1e-5 * max(1.0, spreads["zeros"])
    assert spreads["zeros"] > 1e-3


def test_reflect_vgg_encoder_matches_a_numpy_reference():
    """vgg_padding="reflect": every 3x3 convolution of VGG-19 (to relu4_1) mirrors its input; the
    weights are those of the zero-padded encoder, and a flat frame gives spatially constant taps."""
    from lvst_tf.models import encoder as encoder_lib

    zeros = encoder_lib.VGGEncoder(None, seed=6)
    reflect = encoder_lib.VGGEncoder(None, seed=6, padding="reflect")
    assert reflect.get_config()["padding"] == "reflect"
    assert [w.path for w in zeros.trunk.weights] == [w.path for w in reflect.trunk.weights]
    for a, b in zip(zeros.trunk.weights, reflect.trunk.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    image = np.random.default_rng(4).random((1, 16, 16, 3)).astype(np.float32)
    x = encoder_lib.VGGEncoder.preprocess(image).numpy().astype(np.float64)
    expected = []
    for name in encoder_lib.VGG_CONV_LAYERS:
        if name.endswith("conv1") and name != "block1_conv1":  # a 2x2 max pool before each block
            n, h, w, c = x.shape
            x = x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))
        kernel, bias = reflect.trunk.get_layer(name).get_weights()
        x = np.maximum(_conv_reference(x, kernel, bias, 1, True), 0.0)
        if name in encoder_lib.VGG_TAPS:
            expected.append(x)
    for got, want in zip(reflect(image), expected):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=1e-3 * np.abs(want).max())
    flat = np.full((1, 16, 16, 3), 0.4, np.float32)
    assert max(np.ptp(t.numpy(), axis=(1, 2)).max() for t in reflect(flat)) == 0.0
    assert min(np.ptp(t.numpy(), axis=(1, 2)).max() for t in zeros(flat)) > 0.0
    with pytest.raises(ValueError, match="vgg_padding"):
        models.build_model(vgg_weights=None, low_res=LOW, vgg_padding="same")
    model = models.build_model(vgg_weights=None, low_res=LOW, vgg_padding="reflect")
    assert model.get_config()["vgg_padding"] == "reflect"
    assert model.encoder.padding == "reflect"


def test_conv_padding_model_restores_the_same_weights(tmp_path):
    zeros = models.build_model(vgg_weights=None, low_res=LOW, seed=4)
    reflect = models.build_model(vgg_weights=None, low_res=LOW, seed=5, conv_padding="reflect")
    assert reflect.get_config()["conv_padding"] == "reflect"
    assert isinstance(reflect.splatting_1.s1, keras.layers.Conv2D)
    names = [w.path for w in zeros.weights]
    assert names == [w.path for w in reflect.weights]
    path = tf.train.Checkpoint(model=zeros).save(str(tmp_path / "ckpt"))
    tf.train.Checkpoint(model=reflect).restore(path).assert_existing_objects_matched()
    for a, b in zip(zeros.weights, reflect.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    with pytest.raises(ValueError, match="conv_padding"):
        models.build_model(vgg_weights=None, low_res=LOW, conv_padding="same")
