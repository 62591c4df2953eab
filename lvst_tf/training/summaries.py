"""TensorBoard summaries and the progress line of the training loop.

`tensorflow-cpu` does not depend on the `tensorboard` package, whose plugins implement
`tf.summary.scalar/image/text`; these writers use the core `tf.summary.write` with the plugins' metadata
instead, so event files are written without TensorBoard installed and read by TensorBoard unchanged
(`pip install tensorboard` only to view them).
"""

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2


def _metadata(plugin, content=b""):
    meta = summary_pb2.SummaryMetadata()
    meta.plugin_data.plugin_name = plugin
    meta.plugin_data.content = content
    return meta.SerializeToString()


def scalar(name, value, step=None):
    """A scalar summary (TensorBoard's "scalars" plugin) on the default writer."""
    return tf.summary.write(
        name, tf.constant(float(value), tf.float32), step=step, metadata=_metadata("scalars")
    )


def image(name, images, step=None, max_outputs=4):
    """An image summary ("images" plugin): `[N, H, W, C]` float in [0, 1], C = 1 or 3.

    The plugin's tensor is `[width, height, png_1, ..., png_n]` as strings.
    """
    images = np.asarray(images, np.float32)[:max_outputs]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"images must be [N, H, W, 1 or 3], got {images.shape}.")
    pixels = np.clip(np.round(images * 255.0), 0, 255).astype(np.uint8)
    encoded = [tf.io.encode_png(p).numpy() for p in pixels]
    height, width = images.shape[1:3]
    tensor = tf.constant([str(width).encode(), str(height).encode(), *encoded])
    return tf.summary.write(name, tensor, step=step, metadata=_metadata("images"))


def text(name, value, step=None):
    """A text summary ("text" plugin, markdown)."""
    return tf.summary.write(name, tf.constant(value), step=step, metadata=_metadata("text"))


def gin_config_markdown(config_str):
    """Formats a gin config for TensorBoard's text plugin (markdown: code lines, comments as text)."""
    lines = []
    for line in config_str.splitlines():
        if line.startswith("#"):
            lines.append(line.lstrip("# ") or "&nbsp;")
        else:
            lines.append("    " + line)
    return "\n".join(lines)


def write_scalars(writer, step, scalars):
    """Writes a dict of name -> float at `step`."""
    with writer.as_default(step=step):
        for name, value in scalars.items():
            scalar(name, value)


def image_grid_summaries(writer, step, batch, outputs, max_outputs=4, prefix="images"):
    """Image summaries of one batch: content, noisy / clean / enhanced masks, styles and output.

    Args:
      writer: a summary writer.
      step: the global step.
      batch: the data batch (`frames [B,T,S,S,3]`, `noisy_masks`, `clean_masks [B,T,S,S,K-1]`,
        `styles [B,K,S,S,3]`).
      outputs: the model outputs (`output [B,T,S,S,3]`, `enhanced_masks [B,T,l,l,K-1]`).
    """

    def first_frames(x):  # [B, T, h, w, C] -> [B, h, w, C] (frame 0 of each clip)
        return np.asarray(x)[:, 0]

    def masks(x):  # first object mask as a grey image
        return first_frames(x)[..., :1]

    styles = np.asarray(batch["styles"])
    images = {
        "content": first_frames(batch["frames"]),
        "noisy_mask": masks(batch["noisy_masks"]),
        "clean_mask": masks(batch["clean_masks"]),
        "enhanced_mask": masks(outputs["enhanced_masks"]),
        # One row per region (last = background) of the first clip.
        "styles": styles[0],
        "output": np.clip(first_frames(outputs["output"]), 0.0, 1.0),
    }
    with writer.as_default(step=step):
        for name, value in images.items():
            image(f"{prefix}/{name}", value, max_outputs=max_outputs)


def format_duration(seconds):
    """`3725` -> `'1h02m05s'`."""
    if not np.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def progress_line(step, num_steps, scalars, steps_per_second):
    """`step 120/400 | total 1.234 content 0.5 ... | 2.10 steps/s | ETA 2m13s`."""
    terms = " ".join(f"{k} {v:.4g}" for k, v in scalars.items())
    eta = (num_steps - step) / steps_per_second if steps_per_second > 0 else float("inf")
    return (
        f"step {step}/{num_steps} | {terms} | {steps_per_second:.2f} steps/s | "
        f"ETA {format_duration(eta)}"
    )
