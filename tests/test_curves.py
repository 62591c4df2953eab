"""Loss curves: scalar events are read back exactly and drawn into a PNG."""

import numpy as np
import tensorflow as tf

from lvst_tf import curves
from lvst_tf.training import summaries


def test_scalars_round_trip_and_draw(tmp_path):
    writer = tf.summary.create_file_writer(str(tmp_path / "train"))
    for step in range(1, 31):
        summaries.write_scalars(writer, step, {"loss/style": 100.0 / step})
    summaries.write_scalars(writer, 30, {"loss/style": -1.0})  # a resumed run repeats a step
    writer.flush()
    series = curves.read_scalars(tmp_path / "train", offset=5)["loss/style"]
    assert series.steps.tolist() == list(range(6, 36))
    np.testing.assert_allclose(series.values[:-1], 100.0 / np.arange(1, 30), rtol=1e-6)
    assert series.values[-1] == -1.0
    image = curves.draw_curves({"loss/style": series}, {}, ["loss/style", "missing"], columns=2)
    assert image.dtype == np.uint8 and image.shape == (220, 720, 3)
    assert (image[:, :360] != 255).any()  # something was drawn in the first panel
    curves.write_png(tmp_path / "c.png", image)
    assert (tmp_path / "c.png").stat().st_size > 1000
