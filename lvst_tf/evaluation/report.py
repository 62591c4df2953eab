"""Reporting of the evaluation: markdown and CSV tables, contact sheets (NumPy / OpenCV only).

- Timing: :func:`timing_markdown` (supplement Table 2 layout plus the split and the paper's numbers),
  :func:`timing_csv`.
- Quality: :func:`quality_markdown` (mean over videos, then per video), :func:`quality_csv`.
- Pictures: :func:`contact_sheet` (one row per video, one column per method) and
  :func:`frames_sheet` (one row per chosen frame: input | regions coloured | outputs), for any
  number of regions K; :func:`colour_regions` paints the regions.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence

import cv2
import numpy as np

from lvst_tf import metrics

# Region colours (RGB) for the mask tiles: objects in order, then the background (dark grey).
OBJECT_COLOURS = (
    (230, 75, 55),
    (60, 150, 250),
    (250, 205, 50),
    (120, 210, 90),
    (200, 100, 220),
    (250, 150, 200),
)
BACKGROUND_COLOUR = (45, 45, 45)

_FONT = cv2.FONT_HERSHEY_SIMPLEX


def fmt_size(hw: tuple[int, int]) -> str:
    return f"{hw[0]}x{hw[1]}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# Timing.


def _cell(value: float | None) -> str:
    return "OOM" if value is None else f"{value:.4f}"


def timing_markdown(result, paper_resolutions, paper_timing) -> str:
    """The timing tables of a `timing.TimingResult` in markdown: ours (Table 2 layout), the split
    into low-res stream and render, and the paper's numbers (labelled as not measured here)."""
    cols = [fmt_size(hw) for hw in result.resolutions]
    lines = [
        "## Timing: seconds per frame (supplement Table 2 layout)",
        "",
        f"- device: {result.device}",
        f"- TensorFlow {result.tf_version}",
        f"- model: {result.model}",
        f"- median of {result.repeats} timed calls after a warm-up; seconds per frame = "
        "low-res stream per keyframe / r + full-res render",
        "",
        markdown_table(
            ["r"] + cols,
            [
                [f"r = {r}"] + [_cell(result.seconds_per_frame(r, hw)) for hw in result.resolutions]
                for r in result.rs
            ],
        ),
        "",
        "### Split: low-res stream (`predict_grids`, per keyframe) and full-res render (per frame)",
        "",
        markdown_table(
            ["part"] + cols,
            [
                ["low-res stream, per keyframe"]
                + [_cell(result.predict.get(hw)) for hw in result.resolutions]
            ]
            + [
                [f"low-res stream / r, r = {r}"]
                + [
                    _cell(None if result.predict.get(hw) is None else result.predict[hw] / r)
                    for hw in result.resolutions
                ]
                for r in result.rs
                if r > 1
            ]
            + [
                ["full-res render, per frame"]
                + [_cell(result.render.get(hw)) for hw in result.resolutions]
            ],
        ),
    ]
    notes = [f"- {fmt_size(hw)}: {note}" for hw, note in result.notes.items()]
    if notes:
        lines += ["", "OOM notes:", *notes]
    lines += [
        "",
        "### For reference: the paper's numbers (supplement Table 2, one NVIDIA V100; NOT measured "
        "here)",
        "",
        markdown_table(
            ["method"] + [fmt_size(hw) for hw in paper_resolutions],
            [[name] + [_cell(v) for v in values] for name, values in paper_timing],
        ),
    ]
    return "\n".join(lines) + "\n"


def timing_csv(result) -> str:
    """One row per (r, resolution): seconds per frame and the split; OOM rows have empty numbers."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(
        [
            "r",
            "resolution",
            "height",
            "width",
            "seconds_per_frame",
            "lowres_stream_per_keyframe_s",
            "render_per_frame_s",
            "status",
            "device",
            "tf_version",
        ]
    )
    for r in result.rs:
        for hw in result.resolutions:
            spf = result.seconds_per_frame(r, hw)
            p, q = result.predict.get(hw), result.render.get(hw)
            writer.writerow(
                [
                    r,
                    fmt_size(hw),
                    hw[0],
                    hw[1],
                    "" if spf is None else f"{spf:.6f}",
                    "" if p is None else f"{p:.6f}",
                    "" if q is None else f"{q:.6f}",
                    "ok" if spf is not None else "OOM",
                    result.device,
                    result.tf_version,
                ]
            )
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------------
# Quality.


def format_value(value: float | None, column: str = "") -> str:
    if value is None or math.isnan(value):
        return "n/a"
    if column.startswith("warp_error"):
        return f"{value:.3e}"  # [0, 1]-scale squared errors: small numbers
    if column == "grad_ssim":
        return f"{value:.4f}"
    return f"{0.0 if abs(value) < 0.005 else value:.2f}"  # Lab / feature units; no "-0.00"


def quality_markdown(rows: list[dict], columns: Sequence[str], header_lines: Sequence[str]) -> str:
    """The mean-over-videos table, then the per-video table (methods in their first-seen order)."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    lines = ["## Quality (definitions in docs/evaluation.md)", "", *header_lines, ""]
    lines += ["### Mean over videos", ""]
    mean_rows = [r for r in rows if r["video"] == "MEAN"]
    lines.append(
        markdown_table(
            ["method", *columns],
            [[r["method"]] + [format_value(r[c], c) for c in columns] for r in mean_rows],
        )
    )
    lines += ["", "### Per video", ""]
    per_video = [r for r in rows if r["video"] != "MEAN"]
    per_video.sort(key=lambda r: (r["video"], methods.index(r["method"])))
    lines.append(
        markdown_table(
            ["video", "method", *columns],
            [
                [r["video"], r["method"]] + [format_value(r[c], c) for c in columns]
                for r in per_video
            ],
        )
    )
    return "\n".join(lines) + "\n"


def quality_csv(rows: list[dict], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["video", "method", "frames", *columns])
    for r in rows:
        writer.writerow(
            [r["video"], r["method"], r["frames"]]
            + ["" if math.isnan(r[c]) else f"{r[c]:.6g}" for c in columns]
        )
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------------
# Pictures.


def region_colours(k: int) -> np.ndarray:
    """`[K, 3]` float RGB in [0, 255]: the K-1 object colours in order, the background last."""
    if k < 2:
        raise ValueError(f"K must be >= 2 regions (an object and the background), got {k}.")
    objects = [OBJECT_COLOURS[i % len(OBJECT_COLOURS)] for i in range(k - 1)]
    return np.array([*objects, BACKGROUND_COLOUR], np.float64)


def colour_regions(masks: np.ndarray) -> np.ndarray:
    """Paints the regions of object masks: `[H, W, K-1]` (or `[H, W]`) in [0, 1] -> `[H, W, 3]`
    uint8 RGB, each pixel the region colours mixed by the region weights (background last)."""
    masks = np.asarray(masks, np.float64)
    if masks.ndim == 2:
        masks = masks[..., None]
    weights = metrics.region_weights(masks, masks.shape[:-1])
    weights = weights / weights.sum(axis=-1, keepdims=True)
    colours = region_colours(weights.shape[-1])
    return np.clip(np.rint(weights @ colours), 0, 255).astype(np.uint8)


def to_uint8(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image
    return np.clip(np.rint(np.asarray(image, np.float64) * 255.0), 0, 255).astype(np.uint8)


def _tile(image: np.ndarray, height: int) -> np.ndarray:
    h, w = image.shape[:2]
    width = max(1, round(w * height / h))
    interp = cv2.INTER_AREA if height < h else cv2.INTER_LINEAR
    return cv2.resize(to_uint8(image), (width, height), interpolation=interp)


def contact_sheet(
    rows: Sequence[tuple[str, Sequence[np.ndarray]]], labels: Sequence[str], tile_height: int = 160
) -> np.ndarray:
    """A grid image: one labelled row per entry, one column per label, with a header line.

    Args:
      rows: `(row name, [images [H, W, 3] RGB (uint8, or float in [0, 1]), one per column])`.
      labels: column titles.
      tile_height: every image is resized to this height (aspect kept).
    Returns: `[H, W, 3]` uint8 RGB.
    """
    if not rows:
        raise ValueError("contact_sheet needs at least one row.")
    pad = 4
    header_h = 24
    built = []
    for name, images in rows:
        tiles = [_tile(img, tile_height) for img in images]
        row = np.concatenate(
            [np.pad(t, ((0, 0), (0, pad), (0, 0)), constant_values=255) for t in tiles], axis=1
        )
        label = np.full((18, row.shape[1], 3), 255, np.uint8)
        cv2.putText(label, name, (2, 13), _FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        built.append((np.concatenate([label, row], axis=0), [t.shape[1] for t in tiles]))
    width = max(r.shape[1] for r, _ in built)
    header = np.full((header_h, width, 3), 255, np.uint8)
    x = 0
    for label, tile_w in zip(labels, built[0][1]):
        cv2.putText(header, label, (x + 2, 17), _FONT, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        x += tile_w + pad
    parts = [header] + [
        np.pad(r, ((0, pad), (0, width - r.shape[1]), (0, 0)), constant_values=255)
        for r, _ in built
    ]
    return np.concatenate(parts, axis=0)


def frames_sheet(
    frames: np.ndarray,
    masks: np.ndarray,
    outputs: Mapping[str, np.ndarray],
    frame_indices: Sequence[int],
    tile_height: int = 200,
    title: str = "",
) -> np.ndarray:
    """Input | regions (coloured) | each output, one row per chosen frame; any K.

    Args:
      frames: `[T, H, W, 3]` RGB input (uint8 or float in [0, 1]).
      masks: `[T, H, W, K-1]` object masks in [0, 1] (the background is their complement).
      outputs: `{column label: [T, H, W, 3]}` RGB (uint8, or float in [0, 1], clipped for display).
      frame_indices: the frames to show, one row each (ValueError if out of range).
      tile_height: tile height in pixels.
      title: prefix of each row's label (e.g. the video name).
    Returns: `[H, W, 3]` uint8 RGB.
    """
    frames = np.asarray(frames)
    masks = np.asarray(masks)
    if masks.ndim == 3:
        masks = masks[..., None]
    count = len(frames)
    if not frame_indices:
        raise ValueError("frame_indices must name at least one frame.")
    for t in frame_indices:
        if not 0 <= int(t) < count:
            raise ValueError(f"frame index {t} is out of range for a video of {count} frames.")
    k = masks.shape[-1] + 1
    rows = []
    for t in frame_indices:
        t = int(t)
        images = [frames[t], colour_regions(masks[t])]
        images += [np.clip(np.asarray(out[t]), 0, None) for out in outputs.values()]
        name = f"{title} frame {t}" if title else f"frame {t}"
        rows.append((name, images))
    labels = ["input", f"regions (K = {k})", *outputs.keys()]
    return contact_sheet(rows, labels, tile_height)


def default_sheet_frames(num_frames: int) -> list[int]:
    """First, middle and last frame (fewer for very short videos)."""
    return sorted({0, num_frames // 2, num_frames - 1})
