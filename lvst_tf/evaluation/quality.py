"""Quality evaluation with K regions (docs/method.md#evaluation): our model at each r and two
training-free baselines.

Per video and as the mean over videos: warping error and its input floor, the Lab style distance of
every region to its style, the leakage of every region's style into every other region (ordered
pairs), and gradient SSIM (definitions in `lvst_tf.metrics` and docs/evaluation.md). The baselines
are the input itself ("input (identity)") and per-frame, per-region Reinhard colour transfer.

Regions: a video's annotation holds instance ids (0 = background). With `regions = K`, object k is
the k-th instance id present in the clip for k < K-1, and object K-1 is the union of the remaining
instances; the background is the complement (docs/DESIGN.md). So K = 2 is the union of all
instances as one foreground, and a clip with exactly K-1 instances gets one region per instance.
Styles: one per region, the objects' in order, the background's last.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import time
from collections.abc import Callable, Sequence

import numpy as np
from absl import logging

from lvst_tf import metrics, video_io
from lvst_tf.evaluation import report
from lvst_tf.evaluation.timing import DEFAULT_RS, check_rs
from lvst_tf.fileio import write_atomic

# Preferred shipped sample styles: objects in this order, the background's last. Orange for the
# first object and blue for the background are far apart, so leakage between them is visible.
DEFAULT_OBJECT_STYLES = ("FallenLeaf", "EveningGlow", "coffee", "chelsea")
DEFAULT_BACKGROUND_STYLE = "DarkestHour"
# In a data folder: `styles.txt` lists style files (relative to the folder), one per line; the first
# K-1 lines are the objects' styles and the last line the background's.
STYLE_LIST_FILE = "styles.txt"
IDENTITY = "input (identity)"
REINHARD = "Reinhard per region"


def region_names(k: int) -> list[str]:
    """Short region names for the columns: `fg, bg` for K = 2, else `obj1 .. obj{K-1}, bg`."""
    if k < 2:
        raise ValueError(f"regions must be >= 2 (an object and the background), got {k}.")
    if k == 2:
        return ["fg", "bg"]
    return [f"obj{i}" for i in range(1, k)] + ["bg"]


def quality_columns(k: int, vgg: bool = False) -> tuple[str, ...]:
    """The metric columns for K regions: warping error and floor, Lab style distance per region,
    leakage per ordered region pair (`leak_<i>_into_<j>`: region i's style into region j), their
    mean, gradient SSIM, and the VGG style distance per region when computed."""
    names = region_names(k)
    columns = ["warp_error", "warp_error_input"]
    columns += [f"style_lab_{n}" for n in names]
    columns += [f"leak_{a}_into_{b}" for a in names for b in names if a != b]
    columns += ["leak_mean", "grad_ssim"]
    if vgg:
        columns += [f"style_vgg_{n}" for n in names]
    return tuple(columns)


QUALITY_COLUMNS = quality_columns(2)


@dataclasses.dataclass
class Video:
    """A video to evaluate: `frames [T, H, W, 3]` uint8, `masks [T, H, W, K-1]` float32 in [0, 1]."""

    name: str
    frames: np.ndarray
    masks: np.ndarray

    @property
    def regions(self) -> int:
        return self.masks.shape[-1] + 1


def instance_masks(instances: np.ndarray, regions: int) -> np.ndarray | None:
    """Object masks for K = `regions` from an instance map (see the module doc), or None when the
    clip holds fewer than K-1 instances.

    Args: `instances [T, H, W]` integer ids (0 = background); `regions` K >= 2.
    Returns: `[T, H, W, K-1]` float32 in {0, 1}.
    """
    if regions < 2:
        raise ValueError(f"regions must be >= 2, got {regions}.")
    ids = [int(i) for i in np.unique(instances) if i != 0]
    if len(ids) < regions - 1:
        return None
    masks = [instances == i for i in ids[: regions - 2]]
    masks.append(np.isin(instances, ids[regions - 2 :]))
    return np.stack(masks, axis=-1).astype(np.float32)


def load_videos(
    data: str | os.PathLike | None = None,
    split: str = "val",
    max_frames: int | None = None,
    max_videos: int | None = None,
    resolution: str = "480p",
    regions: int = 2,
) -> list[Video]:
    """Videos with K-region object masks from a DAVIS folder or a video folder.

    Args:
      data: a DAVIS-layout folder (holding `JPEGImages/`; `split` names the split file) or a
        `VideoFolder` (videos or frame folders with `<name>_masks/` beside them). None: the shipped
        samples (`lvst_tf.data.samples_root() / "davis"`).
      split: the DAVIS split ("val" by default).
      max_frames: keep the first `max_frames` frames of each video (None: all).
      max_videos: keep the first `max_videos` usable videos (None: all).
      resolution: DAVIS resolution folder ("480p" or "Full-Resolution").
      regions: K; a video with fewer than K-1 instances is skipped with a warning.
    Raises:
      ValueError naming the argument: a bad count, a missing folder or split, or no usable video.
    """
    from lvst_tf import data as data_lib

    if max_frames is not None and max_frames < 2:
        raise ValueError(
            f"max_frames must be >= 2 (the warping error needs pairs), got {max_frames}."
        )
    if max_videos is not None and max_videos < 1:
        raise ValueError(f"max_videos must be >= 1, got {max_videos}.")
    if regions < 2:
        raise ValueError(f"regions must be >= 2 (an object and the background), got {regions}.")
    root = pathlib.Path(data) if data else data_lib.sample_davis_dir()
    if not root.is_dir():
        raise ValueError(f"data: {str(root)!r} is not a folder (a DAVIS folder or a video folder).")
    if (root / "JPEGImages").is_dir():
        source = data_lib.DavisFolder(root, split=split, resolution=resolution)
    else:
        source = data_lib.VideoFolder(root)
    videos = []
    skipped = []
    for index in range(len(source)):
        if max_videos is not None and len(videos) >= max_videos:
            break
        total = source.num_frames(index)
        length = total if max_frames is None else min(total, max_frames)
        if length < 2:
            logging.warning("video %s: fewer than 2 frames, skipped.", source.names[index])
            continue
        frames, instances = source.load_clip(index, 0, length)
        masks = instance_masks(instances, regions)
        if masks is None:
            skipped.append(source.names[index])
            logging.warning(
                "video %s: fewer than %d instances for K = %d regions, skipped.",
                source.names[index],
                regions - 1,
                regions,
            )
            continue
        videos.append(Video(source.names[index], frames, masks))
    if not videos:
        more = f" ({len(skipped)} with fewer than {regions - 1} instances)" if skipped else ""
        raise ValueError(
            f"data: no video with at least 2 frames and {regions - 1} instance(s) in "
            f"{str(root)!r}{more}."
        )
    return videos


def _image_files(folder: pathlib.Path) -> list[pathlib.Path]:
    return sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in (".jpg", ".jpeg", ".png")
    )


def default_style_paths(
    regions: int = 2, data: str | os.PathLike | None = None
) -> list[pathlib.Path]:
    """The default styles for K regions: objects' first, the background's last.

    With a data folder holding `styles.txt` (one file per line), its first K-1 lines and its last
    line; with a data folder holding `styles/`, its first K-1 images and its last; otherwise the
    shipped samples (`DEFAULT_OBJECT_STYLES`, then `DEFAULT_BACKGROUND_STYLE`).
    """
    from lvst_tf import data as data_lib

    def pick(paths, where):
        if len(paths) < regions:
            raise ValueError(
                f"styles: {where!r} holds {len(paths)} style image(s), K = {regions} regions need "
                f"{regions}; pass --styles."
            )
        return [*paths[: regions - 1], paths[-1]]

    if data:
        root = pathlib.Path(data)
        listing = root / STYLE_LIST_FILE
        if listing.is_file():
            names = [n.strip() for n in listing.read_text().splitlines() if n.strip()]
            return pick([root / n for n in names], str(listing))
        if (root / "styles").is_dir():
            return pick(_image_files(root / "styles"), str(root / "styles"))
    paths = data_lib.sample_style_paths()
    by_stem = {p.stem: p for p in paths}
    wanted = [*DEFAULT_OBJECT_STYLES[: regions - 1], DEFAULT_BACKGROUND_STYLE]
    if regions - 1 <= len(DEFAULT_OBJECT_STYLES) and all(n in by_stem for n in wanted):
        return [by_stem[n] for n in wanted]
    return pick(list(paths), str(data_lib.samples_root() / "styles"))


def load_styles(
    paths: Sequence[str | os.PathLike] | None,
    regions: int = 2,
    data: str | os.PathLike | None = None,
) -> tuple[list[str], list[np.ndarray]]:
    """Reads K style images (uint8 RGB), objects' first, background's last; None -> defaults.

    Returns: `(names, images)`.
    Raises: ValueError naming `styles` and the file when the count is not K or a file is unreadable.
    """
    if paths:
        paths = [pathlib.Path(p) for p in paths]
        if len(paths) != regions:
            raise ValueError(
                f"styles must name K = {regions} images (one per object in order, then the "
                f"background), got {len(paths)}."
            )
    else:
        paths = default_style_paths(regions, data)
    images = [video_io.read_image(p, argument="styles") for p in paths]
    return [p.stem for p in paths], images


def evaluate_output(
    video: Video,
    output: np.ndarray,
    styles: Sequence[np.ndarray],
    flow: np.ndarray,
    valid: np.ndarray,
    floor: float,
    encoder: Callable | None = None,
    vgg_size: int = 256,
) -> dict[str, float]:
    """All metrics of one method's output on one video (means over frames), by column name."""
    k = video.regions
    names = region_names(k)
    lab = metrics.style_distance(output, video.masks, styles)
    leak = metrics.leakage(video.frames, output, video.masks, styles)["matrix"]  # [t, j, i]
    row = {
        "warp_error": metrics.warping_error(output, flow, valid),
        "warp_error_input": floor,
    }
    for j, name in enumerate(names):
        row[f"style_lab_{name}"] = float(metrics.nanmean(lab[:, j]))
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            if i != j:
                row[f"leak_{a}_into_{b}"] = float(metrics.nanmean(leak[:, j, i]))
    row["leak_mean"] = float(metrics.nanmean(leak[:, ~np.eye(k, dtype=bool)]))
    row["grad_ssim"] = float(np.mean(metrics.gradient_ssim(output, video.frames)))
    if encoder is not None:
        vgg = metrics.feature_style_distance(output, video.masks, styles, encoder, size=vgg_size)
        for j, name in enumerate(names):
            row[f"style_vgg_{name}"] = float(metrics.nanmean(vgg[:, j]))
    return row


def method_outputs(video: Video, styles: Sequence[np.ndarray], stylizers: dict) -> dict:
    """`{method: [T, H, W, 3] float32 in [0, 1]}`: the identity, Reinhard, then ours at each r."""
    outputs = {
        IDENTITY: video.frames.astype(np.float32) / 255.0,
        REINHARD: metrics.reinhard_transfer(video.frames, video.masks, styles),
    }
    for r, stylizer in stylizers.items():
        outputs[f"ours r = {r}"] = stylizer.stylize(video.frames, video.masks, list(styles))
    return outputs


def metric_encoder(loaded, vgg_weights: str | None):
    """The VGG-19 of the feature style distance, or None (see :func:`run_quality`)."""
    if vgg_weights is not None and str(vgg_weights).lower() == "none":
        return None
    if vgg_weights:
        from lvst_tf.models import VGGEncoder

        return VGGEncoder(vgg_weights, name="metric_vgg")
    if loaded is not None and loaded.kind != "saved_model" and loaded.vgg_weights is not None:
        return loaded.model.encoder
    return None


def _header(loaded, videos, names, encoder) -> list[str]:
    k = videos[0].regions
    regions = region_names(k)
    styles = ", ".join(f"{region} {name}" for region, name in zip(regions, names))
    header = [
        f"- model: {loaded.describe() if loaded is not None else 'none (baselines only)'}",
        f"- regions: K = {k} ({', '.join(regions)}; objects in instance order, background last)",
        f"- styles: {styles}",
        f"- videos: {len(videos)} ({', '.join(v.name for v in videos)}), frames per video: "
        f"{', '.join(str(len(v.frames)) for v in videos)}",
        "- warp_error: squared RGB difference ([0, 1] scale, summed over channels) between O_t and "
        "the flow-warped O_{t+1} over non-occluded pixels (lower = more stable; warp_error_input is "
        "the input's own, the floor)",
        "- style_lab_<region>: Lab mean/std distance of the region to its style (lower = closer)",
        "- leak_<a>_into_<b>: loss of region b's Lab margin between its own style and region a's "
        "style, relative to the input (0 = identity, > 0 = moved towards a's style, < 0 = moved "
        "towards its own); leak_mean over the ordered pairs",
        "- grad_ssim: SSIM of the luminance gradient magnitudes, output vs input (1 = all edges kept)",
    ]
    if encoder is None:
        header.append("- VGG style distance: not computed (no real VGG-19 weights given)")
    return header


def run_quality(
    loaded,
    videos: Sequence[Video],
    styles: Sequence[np.ndarray],
    rs: Sequence[int] = DEFAULT_RS,
    output_dir: str | os.PathLike | None = None,
    style_names: Sequence[str] | None = None,
    vgg_weights: str | None = None,
    vgg_size: int = 256,
    flow_preset: str = "medium",
    sheet_frames: Sequence[int] | None = None,
) -> tuple[list[dict], str]:
    """Evaluates our model (one method per r) and the baselines on the videos.

    Args:
      loaded: a `lvst_tf.loading.LoadedModel` (its stylizers run in the model's own soft-mask
        mode), or None for the baselines only.
      videos: from :func:`load_videos`, all with the same K.
      styles: K RGB style images (objects in order, background last).
      rs: grid sub-sampling factors; our model is evaluated once per r.
      output_dir: where `quality.csv`, `quality.md`, `contact_sheet.png` (rows = videos, the middle
        frame) and `sheets/<video>.png` (:func:`report.frames_sheet` of the chosen frames: input |
        regions | ours at the first r, or Reinhard without a model) go. None: nothing written.
      style_names: names for the header.
      vgg_weights: the VGG-19 of the feature style distance: "imagenet" or a weights file; "none"
        disables it; None uses the model's own encoder when it has real weights (a random VGG-19
        gives no meaningful style distance, so it is never used by default).
      vgg_size: frames and styles are resized to this longer side for the VGG distance.
      flow_preset: DIS preset of the warping-error flow.
      sheet_frames: frame indices of the per-video sheets (None: first, middle, last); indices past
        a video's end are dropped for that video.
    Returns: `(rows, markdown)`; rows are dicts with `video`, `method`, `frames` and the metric
      columns, the mean rows have `video == "MEAN"`.
    """
    check_rs(rs)
    if not videos:
        raise ValueError("videos must hold at least one video.")
    k = videos[0].regions
    if any(v.regions != k for v in videos):
        raise ValueError(
            f"videos must all have K = {k} regions, got {sorted({v.regions for v in videos})}."
        )
    if len(styles) != k:
        raise ValueError(
            f"styles must hold K = {k} images (one per object in order, then the background), "
            f"got {len(styles)}."
        )
    styles = [np.asarray(s) for s in styles]
    encoder = metric_encoder(loaded, vgg_weights)
    columns = quality_columns(k, vgg=encoder is not None)
    stylizers = {r: loaded.stylizer(r) for r in rs} if loaded is not None else {}
    for stylizer in stylizers.values():
        # Scoring a model in another soft-mask mode than it runs in would be silently wrong.
        mode = getattr(stylizer, "soft_mask_mode", None)
        if mode is not None and mode != loaded.soft_mask_mode:
            raise RuntimeError(
                f"the stylizer runs in soft-mask mode {mode!r}, the model in "
                f"{loaded.soft_mask_mode!r}; LoadedModel.stylizer must use the model's own mode."
            )
    sheet_key = f"ours r = {rs[0]}" if stylizers else REINHARD
    rows: list[dict] = []
    overview = []
    sheets = {}
    for index, video in enumerate(videos):
        start = time.perf_counter()
        flow, valid = metrics.warping_flows(video.frames, preset=flow_preset)
        floor = metrics.warping_error(video.frames, flow, valid)
        outputs = method_outputs(video, styles, stylizers)
        for method, output in outputs.items():
            row = evaluate_output(video, output, styles, flow, valid, floor, encoder, vgg_size)
            rows.append({"video": video.name, "method": method, "frames": len(video.frames), **row})
        mid = len(video.frames) // 2
        tiles = [video.frames[mid], report.colour_regions(video.masks[mid])]
        tiles += [outputs[m][mid] for m in outputs if m != IDENTITY]
        overview.append((f"{video.name} (frame {mid})", tiles))
        if output_dir is not None:
            chosen = (
                report.default_sheet_frames(len(video.frames))
                if sheet_frames is None
                else [t for t in sheet_frames if t < len(video.frames)]
            )
            if chosen:
                sheets[video.name] = report.frames_sheet(
                    video.frames,
                    video.masks,
                    {sheet_key: outputs[sheet_key]},
                    chosen,
                    title=video.name,
                )
        logging.info(
            "quality: video %d/%d %s (%d frames, %dx%d, K = %d) done in %.1f s",
            index + 1,
            len(videos),
            video.name,
            len(video.frames),
            video.frames.shape[2],
            video.frames.shape[1],
            k,
            time.perf_counter() - start,
        )
        del outputs
    methods = list(dict.fromkeys(r["method"] for r in rows))
    for method in methods:
        mine = [r for r in rows if r["method"] == method]
        mean = {c: float(metrics.nanmean(np.array([r[c] for r in mine], float))) for c in columns}
        rows.append(
            {"video": "MEAN", "method": method, "frames": sum(r["frames"] for r in mine), **mean}
        )
    names = list(style_names) if style_names else [f"style {i}" for i in range(k)]
    markdown = report.quality_markdown(rows, columns, _header(loaded, videos, names, encoder))
    if output_dir is not None:
        out = pathlib.Path(output_dir)
        write_atomic(out / "quality.csv", report.quality_csv(rows, columns))
        write_atomic(out / "quality.md", markdown)
        labels = ["input", f"regions (K = {k})", *[m for m in methods if m != IDENTITY]]
        video_io.write_image(out / "contact_sheet.png", report.contact_sheet(overview, labels))
        for name, sheet in sheets.items():
            video_io.write_image(out / "sheets" / f"{name}.png", sheet)
    return rows, markdown
