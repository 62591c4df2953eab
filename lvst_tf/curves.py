"""Loss curves of a training run: read the scalar events of a workdir and draw them as a PNG.

The drawing needs only NumPy and OpenCV (no plotting library): one panel per scalar tag, the training
values as a thin line with a moving average on top, evaluation values as dots, log-scaled y when a
curve spans more than two decades.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
from collections.abc import Sequence

import cv2
import numpy as np

from lvst_tf.fileio import write_atomic


@dataclasses.dataclass
class Series:
    """One scalar tag: `steps` and `values` (numpy arrays of equal length), sorted by step."""

    steps: np.ndarray
    values: np.ndarray


def read_scalars(folder: str | pathlib.Path, offset: int = 0) -> dict[str, Series]:
    """`{tag: Series}` of every scalar in the TensorBoard event files directly under `folder`.

    Args:
      folder: e.g. `workdir/train` or `workdir/eval`.
      offset: added to every step (to draw consecutive phases on one axis).

    A step logged twice (a resumed run repeats the steps after its last checkpoint) keeps the later
    value.
    """
    import tensorflow as tf  # noqa: PLC0415

    folder = pathlib.Path(folder)
    points: dict[str, dict[int, float]] = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(str(path)):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name not in ("", "scalars"):
                    continue
                if value.HasField("tensor"):
                    number = float(tf.make_ndarray(value.tensor))
                elif value.HasField("simple_value"):
                    number = float(value.simple_value)
                else:
                    continue
                points.setdefault(value.tag, {})[int(event.step) + offset] = number
    out = {}
    for tag, by_step in points.items():
        steps = np.array(sorted(by_step), np.int64)
        out[tag] = Series(steps, np.array([by_step[s] for s in steps], np.float64))
    return out


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(values) < window:
        return values
    kernel = np.ones(window) / window
    padded = np.concatenate([np.full(window - 1, values[0]), values])
    return np.convolve(padded, kernel, mode="valid")


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1e4 or abs(value) < 1e-2:
        return f"{value:.0e}"
    return f"{value:.3g}"


def _panel(
    title: str,
    train: Series | None,
    evaluation: Series | None,
    size: tuple[int, int],
    x_range: tuple[float, float],
    marks: Sequence[tuple[int, str]] = (),
) -> np.ndarray:
    width, height = size
    image = np.full((height, width, 3), 255, np.uint8)
    left, right, top, bottom = 62, 10, 26, 30
    plot_w, plot_h = width - left - right, height - top - bottom
    series = [s for s in (train, evaluation) if s is not None and len(s.values)]
    finite = (
        np.concatenate([s.values[np.isfinite(s.values)] for s in series])
        if series
        else np.array([])
    )
    cv2.putText(image, title, (left, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    if finite.size == 0:
        return image
    low, high = float(finite.min()), float(finite.max())
    log = low > 0 and high / low > 100
    if log:
        low, high = math.log10(low), math.log10(high)
    if high - low < 1e-12:  # a constant series: a band of +-10 % around it (+-1 around 0)
        half = 0.1 * abs(low) if low != 0 else 1.0
        low, high = low - half, high + half
    pad = 0.05 * (high - low)
    low, high = low - pad, high + pad
    x0, x1 = x_range

    def to_px(steps, values):
        v = np.log10(np.maximum(values, 1e-30)) if log else values
        x = left + (steps - x0) / max(x1 - x0, 1) * plot_w
        y = top + (high - v) / (high - low) * plot_h
        return np.stack([x, y], axis=-1).round().astype(np.int32)

    cv2.rectangle(image, (left, top), (left + plot_w, top + plot_h), (160, 160, 160), 1)
    for frac in (0.0, 0.5, 1.0):
        level = low + pad + frac * (high - low - 2 * pad)
        y = int(round(top + (high - level) / (high - low) * plot_h))
        label = _fmt(10**level if log else level)
        cv2.line(image, (left - 3, y), (left, y), (0, 0, 0), 1)
        cv2.putText(image, label, (2, y + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 1)
    for frac in (0.0, 0.5, 1.0):
        step = x0 + frac * (x1 - x0)
        x = int(round(left + frac * plot_w))
        cv2.putText(
            image, f"{step:.0f}", (max(0, x - 18), height - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.38,
            (0, 0, 0), 1,
        )  # fmt: skip
    for step, text in marks:
        x = int(round(left + (step - x0) / max(x1 - x0, 1) * plot_w))
        cv2.line(image, (x, top), (x, top + plot_h), (200, 200, 200), 1)
        cv2.putText(image, text, (x + 3, top + 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (90, 90, 90), 1)
    if train is not None and len(train.values):
        keep = np.isfinite(train.values)
        steps, values = train.steps[keep], train.values[keep]
        cv2.polylines(image, [to_px(steps, values)], False, (170, 200, 235), 1, cv2.LINE_AA)
        window = max(1, len(values) // 40)
        cv2.polylines(
            image, [to_px(steps, _smooth(values, window))], False, (20, 90, 180), 2, cv2.LINE_AA
        )
    if evaluation is not None and len(evaluation.values):
        for point in to_px(evaluation.steps, evaluation.values):
            cv2.circle(image, tuple(int(c) for c in point), 3, (200, 40, 40), -1, cv2.LINE_AA)
    if log:
        cv2.putText(
            image, "log", (width - 34, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (120, 120, 120), 1
        )
    return image


def draw_curves(
    train: dict[str, Series],
    evaluation: dict[str, Series],
    tags: Sequence[str],
    columns: int = 3,
    panel_size: tuple[int, int] = (360, 220),
    title: str = "",
    marks: Sequence[tuple[int, str]] = (),
) -> np.ndarray:
    """A grid of panels, one per tag: training line (smoothed on top), evaluation dots.

    Returns:
      `[H, W, 3]` uint8 RGB.
    """
    if not tags:
        raise ValueError("tags: at least one scalar tag is needed.")
    steps = [
        s.steps for d in (train, evaluation) for t, s in d.items() if t in tags and len(s.steps)
    ]
    if not steps:
        raise ValueError(f"tags: none of {list(tags)} has any value in the events.")
    all_steps = np.concatenate(steps)
    x_range = (float(all_steps.min()), float(all_steps.max()))
    panels = [
        _panel(tag, train.get(tag), evaluation.get(tag), panel_size, x_range, marks) for tag in tags
    ]
    while len(panels) % columns:
        panels.append(np.full_like(panels[0], 255))
    rows = [np.concatenate(panels[i : i + columns], axis=1) for i in range(0, len(panels), columns)]
    sheet = np.concatenate(rows, axis=0)
    if title:
        band = np.full((30, sheet.shape[1], 3), 255, np.uint8)
        cv2.putText(band, title, (10, 21), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
        legend = "line: training (smoothed dark)   dots: held-out evaluation"
        cv2.putText(
            band,
            legend,
            (sheet.shape[1] - 430, 21),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.42,
            (90, 90, 90),
            1,
        )
        sheet = np.concatenate([band, sheet], axis=0)
    return sheet


def write_png(path: str | pathlib.Path, image: np.ndarray) -> None:
    """Writes an RGB uint8 image as PNG, atomically."""
    ok, data = cv2.imencode(".png", np.ascontiguousarray(image[..., ::-1]))
    if not ok:
        raise ValueError(f"output: could not encode {str(path)!r} as PNG.")
    write_atomic(path, data.tobytes())
