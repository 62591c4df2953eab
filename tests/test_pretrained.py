"""The model shipped with the package loads bit for bit and reproduces its reference frames."""

import numpy as np
import pytest

from lvst_tf import assets, loading

_ENCODER = assets.HED_VGG16_WEIGHTS.default_path()
_SHIPPED = loading.PRETRAINED_DIR / loading.DEFAULT_PRETRAINED


def test_shipped_model_files_are_complete():
    folder = loading.pretrained_dir()
    config = loading.model_bindings(folder / loading.CONFIG_FILE)
    assert config["vgg_weights"] == "hed-vgg16" and config["low_res"] == 256
    with np.load(folder / loading.WEIGHTS_FILE) as weights:
        total = sum(weights[k].size for k in weights.files)
    assert total == 341_432  # the trainable parameters of Table 1 plus six ST-AdaIN blend scalars
    with np.load(folder / loading.REFERENCE_FILE) as reference:
        assert reference["frames"].shape == (loading.REFERENCE_FRAMES, 144, 176, 3)


@pytest.mark.skipif(
    not _ENCODER.is_file(),
    reason=f"{_ENCODER} absent: `python tools/fetch_weights.py` fetches it (CI does)",
)
def test_shipped_model_reproduces_its_reference_frames():
    model = loading.load_pretrained()
    with np.load(_SHIPPED / loading.WEIGHTS_FILE) as stored:
        loaded = loading.trained_weights(model)
        assert sorted(loaded) == sorted(stored.files)
        for key in stored.files:  # bit for bit
            np.testing.assert_array_equal(loaded[key], stored[key], err_msg=key)
    with np.load(_SHIPPED / loading.REFERENCE_FILE) as reference:
        expected = reference["frames"].astype(np.float32)
    frames = loading.reference_outputs(model)
    # float16 storage (~5e-4 near 1) plus float rounding of any later refactor of the computation.
    np.testing.assert_allclose(frames, expected, rtol=0, atol=3e-3)
    inputs = loading.reference_inputs()[0].astype(np.float32) / 255
    assert np.abs(frames - inputs).mean() > 0.02  # it stylizes: not the identity
