"""The training objective on held-out batches, for the model and for reference outputs.

A low training loss only means something if the losses prefer the outputs a person would call a
good photorealistic transfer. `run_objective` draws batches the way the run's own evaluation does
(its data pipeline settings, a split it did not train on), and scores five outputs with the run's
content and style losses (docs/method.md#losses) and the per-region colour term (`losses`; scored
always, weighed by the run's `colour_weight`, 0 unless the run used it), and the model's grids with
its Laplacian:

- ours, as trained: the model's output before clipping (what the losses saw in training);
- ours, clipped: the same output clipped to [0, 1] (what rendering produces);
- input (identity): the content frames themselves (content loss 0 by definition);
- Reinhard per region: per-frame, per-region colour transfer in Lab with the clean masks;
- flat style colour: every pixel of region k set to the mean colour of style k (no content at all).

Every output is scored with the same clean region masks (the model is given them too, so nothing
here measures mask robustness), VGG taps recomputed at the crop size. If Reinhard scores lower than
ours on both terms, the objective already prefers a plain colour transfer to what the model makes,
and the model has not reached its objective's optimum yet (training length or optimisation, not the
loss, limits it); if ours scores lower than Reinhard while looking worse, the loss rewards what
the picture shows. Laplacian and temporal terms are left out: the baselines have no grids, and the
temporal loss needs flow this check does not compute.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import numpy as np

from lvst_tf.evaluation import report

OURS = "ours (unclipped, as trained)"
OURS_CLIPPED = "ours (clipped, as rendered)"
IDENTITY = "input (identity)"
REINHARD = "Reinhard per region"
FLAT = "flat style colour per region"
CANDIDATES = (OURS, OURS_CLIPPED, IDENTITY, REINHARD, FLAT)

# Settings of the run's data pipeline and losses that shape the batches and the two terms.
_DATASET_ARGS = (
    "clip_length",
    "crop_size",
    "num_regions",
    "style_source",
    "foreground",
    "scale_range",
)
_LOSS_ARGS = (
    "content_weight",
    "style_weight",
    "laplacian_weight",
    "style_channel_reduction",
    "laplacian_reduction",
    "min_region_fraction",
    "colour_weight",
)


def run_settings(config: dict[str, dict[str, Any]]) -> tuple[str | None, dict, dict, dict]:
    """The last training phase's settings in an operative config (`loading.read_operative_config`).

    The phase is the last scope whose `compute_losses.style_weight` is bound and positive (the
    end-to-end phase of a two-phase run); a config without scoped losses is read unscoped. Settings
    the config does not bind keep the functions' defaults.

    Returns:
      `(scope, train, dataset, losses)`: the scope name (or None) and the bindings of `train`, of
      `make_train_dataset` (only `_DATASET_ARGS`) and of `compute_losses` (only `_LOSS_ARGS`).
    """
    scope = None
    for key, values in config.items():
        if key.endswith("/compute_losses") and values.get("style_weight", 0) > 0:
            scope = key.split("/", 1)[0]

    def bound(name):
        merged = dict(config.get(name, {}))
        if scope is not None:
            merged.update(config.get(f"{scope}/{name}", {}))
        return merged

    dataset = {k: v for k, v in bound("make_train_dataset").items() if k in _DATASET_ARGS}
    losses = {k: v for k, v in bound("compute_losses").items() if k in _LOSS_ARGS}
    return scope, bound("train"), dataset, losses


def flat_style_colour(clean_masks: np.ndarray, styles: np.ndarray) -> np.ndarray:
    """`[T, S, S, 3]`: region k painted with the mean colour of style k (the background = the rest).

    Args:
      clean_masks: `[T, S, S, K-1]` object masks in [0, 1] (their sum is at most 1 per pixel).
      styles: `[K, hs, ws, 3]` style images, the background's last.
    """
    objects = np.asarray(clean_masks, np.float32)
    regions = np.concatenate([objects, 1.0 - objects.sum(-1, keepdims=True)], axis=-1)
    colours = np.asarray(styles, np.float32).reshape(len(styles), -1, 3).mean(axis=1)  # [K, 3]
    return np.einsum("thwk,kc->thwc", regions, colours).astype(np.float32)


def model_outputs(model, batch) -> dict:
    """The model's training outputs for a batch, given the clean masks (this check is about the
    objective, not about robustness to mask noise)."""
    inputs = {"frames": batch["frames"], "masks": batch["clean_masks"], "styles": batch["styles"]}
    return model(inputs, training=False)


def candidate_outputs(ours: np.ndarray, batch) -> dict[str, np.ndarray]:
    """`{candidate: [B, T, S, S, 3] float32}` for one batch (`CANDIDATES`, in that order), given
    the model's output `ours`."""
    from lvst_tf import metrics  # noqa: PLC0415

    frames = batch["frames"].numpy()
    masks = batch["clean_masks"].numpy()
    styles = batch["styles"].numpy()
    reinhard = np.stack(
        [
            np.stack([metrics.reinhard_transfer(f, m, list(s)) for f, m in zip(fr, ms)])
            for fr, ms, s in zip(frames, masks, styles)
        ]
    )
    flat = np.stack([flat_style_colour(ms, s) for ms, s in zip(masks, styles)])
    return {
        OURS: ours,
        OURS_CLIPPED: np.clip(ours, 0.0, 1.0),
        IDENTITY: frames,
        REINHARD: reinhard,
        FLAT: flat,
    }


def loss_settings(loss_args: dict) -> dict:
    """`loss_args` over `compute_losses`' own defaults (the paper's weights): every `_LOSS_ARGS`
    key, so nothing here repeats a default that `losses` owns."""
    import inspect  # noqa: PLC0415

    from lvst_tf import losses  # noqa: PLC0415

    parameters = inspect.signature(losses.compute_losses).parameters
    return {**{k: parameters[k].default for k in _LOSS_ARGS}, **loss_args}


def score_batches(model, batches, loss_args: dict) -> list[dict]:
    """Mean content, style, colour and (ours only) grid Laplacian loss, unweighted, and the
    weighted sum.

    Args:
      model: a `LocalizedStyleModel`.
      batches: an iterable of training batches (`make_train_dataset` dicts).
      loss_args: `compute_losses` arguments (`_LOSS_ARGS`); the rest take `compute_losses`'
        defaults (`loss_settings`).

    Returns:
      One row per candidate: `{"output", "content", "style", "colour", "laplacian", "total",
      "lab"}`: lab is the evaluation's Lab style distance (`metrics.style_distance`, clipped
      output) divided by the input's, averaged over frames and regions (the quality goal's
      measure, beside the objective that should serve it); total is
      `content_weight * content + style_weight * style + colour_weight * colour` (the colour
      weight 0 unless the run set it), plus `laplacian_weight * laplacian` for
      our two rows (the Laplacian of the model's region grids); the other outputs have no grids
      (laplacian None: a per-region global colour transform written as grids would score 0).
    """
    import tensorflow as tf  # noqa: PLC0415

    from lvst_tf import losses, metrics  # noqa: PLC0415

    kwargs = loss_settings(loss_args)
    content_weight = float(kwargs.pop("content_weight"))
    style_weight = float(kwargs.pop("style_weight"))
    laplacian_weight = float(kwargs.pop("laplacian_weight"))
    laplacian_reduction = kwargs.pop("laplacian_reduction")
    colour_weight = float(kwargs.pop("colour_weight"))
    sums = {name: np.zeros(3) for name in CANDIDATES}
    lab = {name: [] for name in CANDIDATES}  # per (clip, frame, region) Lab style distances
    laplacian = 0.0
    count = 0
    for batch in batches:
        outputs = model_outputs(model, batch)
        laplacian += float(
            losses.bilateral_laplacian_loss(outputs["region_grids"], reduction=laplacian_reduction)
        )
        masks, styles = batch["clean_masks"].numpy(), batch["styles"].numpy()
        for name, output in candidate_outputs(outputs["output"].numpy(), batch).items():
            lab[name] += [
                metrics.style_distance(np.clip(o, 0.0, 1.0), m, list(s))
                for o, m, s in zip(output, masks, styles)
            ]
            _, terms = losses.compute_losses(
                model,
                batch,
                {"output": tf.constant(output, tf.float32)},
                content_weight=1.0,
                style_weight=1.0,
                laplacian_weight=0.0,
                temporal_weight=0.0,
                mask_weight=0.0,
                colour_weight=1.0,
                reuse_model_features=False,
                **kwargs,
            )
            sums[name] += [float(terms[t]) for t in ("content", "style", "colour")]
        count += 1
    if count == 0:
        raise ValueError("batches: no batch to score.")
    rows = []
    reference = np.stack(lab[IDENTITY])
    for name in CANDIDATES:
        content, style, colour = sums[name] / count
        with np.errstate(invalid="ignore", divide="ignore"):
            lab_ratio = float(np.nanmean(np.stack(lab[name]) / reference))
        grid = laplacian / count if name in (OURS, OURS_CLIPPED) else None
        total = content_weight * content + style_weight * style + colour_weight * colour
        if grid is not None:
            total += laplacian_weight * grid
        rows.append(
            {
                "output": name,
                "content": content,
                "style": style,
                "colour": colour,
                "laplacian": grid,
                "total": total,
                "lab": lab_ratio,
            }
        )
    return rows


def objective_markdown(rows: list[dict], header_lines: list[str]) -> str:
    def grid(value):
        return "-" if value is None else f"{value:.2f}"

    body = [
        [r["output"], f"{r['content']:.2f}", f"{r['style']:.2f}", f"{r['colour']:.2f}"]
        + [grid(r["laplacian"]), f"{r['total']:.2f}", f"{r['lab']:.2f}"]
        for r in rows
    ]
    header = ["output", "content", "style", "colour", "grid Laplacian", "weighted total"]
    header += ["Lab style distance / input's"]
    table = report.markdown_table(header, body)
    return "\n".join([*header_lines, "", table, ""])


def objective_csv(rows: list[dict]) -> str:
    lines = ["output,content,style,colour,laplacian,total,lab_ratio"]
    for r in rows:
        grid = "" if r["laplacian"] is None else f"{r['laplacian']:.6g}"
        terms = ",".join(f"{r[t]:.6g}" for t in ("content", "style", "colour"))
        lines.append(f'"{r["output"]}",{terms},{grid},{r["total"]:.6g},{r["lab"]:.6g}')
    return "\n".join(lines) + "\n"


@dataclasses.dataclass
class ObjectivePlan:
    """What `run_objective` draws and how it scores it (from `prepare_objective`)."""

    source: Any  # the clip source of the data root and split
    root: str
    split: str
    seed: int
    scope: str | None
    dataset_args: dict
    loss_args: dict


def prepare_objective(
    config_path: str | pathlib.Path,
    data_root: str | None = None,
    split: str = "val",
    seed: int | None = None,
) -> ObjectivePlan:
    """Reads the run's settings and checks the data, before any model is loaded.

    Args:
      config_path: the run's operative config (data pipeline and loss settings).
      data_root: "corpus", "samples" or a DAVIS folder; None: the run's own `train.data_root`.
      split: the split to draw from ("val", the runs' evaluation split, by default).
      seed: the pipeline's seed; None: the run's `train.eval_seed` (else 1234), so the batches are
        those of the run's own evaluation when the data and split are its own.

    Raises:
      ValueError: naming the config, the data or the split, before anything is read beyond the
        config and the split file.
    """
    from lvst_tf import loading  # noqa: PLC0415
    from lvst_tf.training import inputs  # noqa: PLC0415

    scope, train, dataset_args, loss_args = run_settings(loading.read_operative_config(config_path))
    root = data_root if data_root is not None else train.get("data_root")
    if root is None:
        raise ValueError(
            "data: the run's config binds no train.data_root; name the data ('corpus', 'samples' "
            "or a DAVIS folder)."
        )
    seed = train.get("eval_seed", 1234) if seed is None else seed
    source = inputs.make_source(root, split)
    return ObjectivePlan(source, str(root), split, int(seed), scope, dataset_args, loss_args)


def run_objective(
    loaded, plan: ObjectivePlan, batches: int = 8, output_dir: str | pathlib.Path | None = None
) -> tuple[list[dict], str]:
    """Scores the candidates on `batches` batches drawn as `plan` says, with the run's losses.

    Args:
      loaded: a `LoadedModel` holding an in-process model (a workdir or a shipped model).
      plan: from `prepare_objective`.
      batches: number of batches of one clip (>= 1), fixed by the plan's seed.
      output_dir: where objective.md and objective.csv are written (atomically); None: nowhere.

    Returns:
      `(rows, markdown)` as in `score_batches` / `objective_markdown`.
    """
    from lvst_tf import data, fileio  # noqa: PLC0415

    if loaded.kind == "saved_model":
        raise ValueError(
            "saved_model: the objective needs the model's training call and losses; give a "
            "workdir or a shipped model."
        )
    if isinstance(batches, bool) or not isinstance(batches, int) or batches < 1:
        raise ValueError(f"batches must be an integer >= 1, got {batches!r}.")
    dataset = data.make_train_dataset(
        plan.source, batch_size=1, seed=plan.seed, with_flow=False, **plan.dataset_args
    )
    iterator = iter(dataset)
    drawn = [next(iterator) for _ in range(batches)]
    del iterator
    rows = score_batches(loaded.model, drawn, plan.loss_args)
    args = loss_settings(plan.loss_args)
    header = [
        f"Training objective of {loaded.describe()}",
        f"on {batches} batches of {plan.root!r} split {plan.split!r} (seed {plan.seed}; phase "
        f"{plan.scope or 'unscoped'} settings: {plan.dataset_args or 'defaults'}); clean masks "
        f"for every output; weighted total = {args['content_weight']} x content + "
        f"{args['style_weight']} x style + {args['colour_weight']} x colour "
        f"(+ {args['laplacian_weight']} x grid Laplacian, "
        f"reduction {args['laplacian_reduction']!r}, for ours; the other outputs "
        "have no grids: a per-region global colour transform written as grids would score 0).",
    ]
    markdown = objective_markdown(rows, header)
    if output_dir is not None:
        output_dir = pathlib.Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        fileio.write_atomic(output_dir / "objective.md", markdown)
        fileio.write_atomic(output_dir / "objective.csv", objective_csv(rows))
    return rows, markdown
