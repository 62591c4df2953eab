"""The background rule, written once for NumPy and TensorFlow (no TensorFlow import).

The user gives K - 1 (soft) object masks; the background is the complement of their union,
`1 - max_k m_k` (docs/DESIGN.md, "Conventions everywhere"). `append_background` is the only place
that says so: `lvst_tf.ops.region_masks` calls it with TensorFlow's reduction and concatenation (the
model, the training losses), `lvst_tf.metrics.region_weights` with NumPy's (the evaluation).
"""

from __future__ import annotations

import numpy as np


def append_background(object_masks, reduce_max=np.max, concat=np.concatenate):
    """Object masks -> region masks with the background last.

    Args:
      object_masks: `[..., K-1]` in [0, 1] (an array of the library `reduce_max` / `concat` belong
        to; K - 1 >= 1).
      reduce_max: `reduce_max(x, axis=-1, keepdims=True)`, e.g. `np.max` or `tf.reduce_max`.
      concat: `concat([a, b], axis=-1)`, e.g. `np.concatenate` or `tf.concat`.

    Returns:
      `[..., K]`: the K - 1 object masks unchanged, then the background `1 - max_k m_k`.
    """
    background = 1.0 - reduce_max(object_masks, axis=-1, keepdims=True)
    return concat([object_masks, background], axis=-1)
