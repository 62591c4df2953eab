"""The training losses of docs/method.md#losses: content, localized style, bilateral-grid Laplacian,
temporal, mask; and an optional per-region colour term that the paper does not have (off by default).

Every loss is a small pure function of tensors that returns a float32 scalar; `compute_losses` (gin name
`compute_losses`) assembles them for one training batch with the weights of docs/method.md#losses
and returns the weighted total plus every unweighted term, so the trainer can log each one
separately.

Reductions (the paper does not state them; each is a gin choice, see docs/training.md):
- content: mean over every element of the squared relu4_1 difference (JBL's MSE).
- style: per layer, the squared L2 distance of the per-channel means plus that of the stds, divided by the
  number of channels (`style_channel_reduction="mean"`, AdaIN's reference MSE) or not (`"sum"`); summed
  over relu1_1..relu4_1; averaged over the regions of each frame whose clean region covers at least
  `min_region_fraction` of the crop (an absent region has no statistics to match), then over frames and
  clips (a plain batch mean, so replicas of a distributed batch agree with one device).
- Laplacian: per grid axis (x, y, depth) the mean over cells and coefficients of the squared forward
  difference between neighbours, summed over the three axes (`laplacian_reduction="mean"`); this is the
  six-connected sum per cell divided by 2 * cells * coefficients, up to the grid boundary. `"sum"` sums
  instead (JBL's literal form): on one 16x16x8x12 grid of independent values it is about 2.3x10^4
  times the mean (67,584 neighbour differences / 3 axes = 22,528; measured 22,528-22,531), and it
  grows with the number of grids in the batch, which the mean does not.
- temporal: mean over pixels and channels of the visibility-weighted L1 (Lai et al. 2018 divide by the
  pixel count, not by the weight sum).
- mask: mean binary cross-entropy over pixels.
- colour (not in the paper; `colour_weight`, default 0): the style term's form applied to the output's
  RGB pixels on the loss network's input scale (0-255) instead of a VGG tap: per region, the squared
  differences of the channel means and stds against those of the region's style image, channel mean,
  with the same region rule. The VGG terms barely see a region's mean colour (docs/training.md).
"""

import tensorflow as tf

import gin
from lvst_tf import ops
from lvst_tf.models import st_adain

_EPS = 1e-5  # In the sqrt of masked variances, as in ST-AdaIN (docs/method.md#st-adain).
_BCE_EPS = 1e-6

TERMS = ("content", "style", "laplacian", "temporal", "mask", "colour")

# The loss network's input scale: the colour term measures RGB moments in these units.
COLOUR_SCALE = 255.0


def _f32(x):
    return tf.cast(tf.convert_to_tensor(x), tf.float32)


def _check_rank(x, rank, name, form):
    if x.shape.rank is not None and x.shape.rank != rank:
        raise ValueError(f"`{name}` must be {form} (rank {rank}), got shape {x.shape}.")


# The background rule has one owner, `ops.region_masks`; this is its name in the losses' API.
region_masks_from_objects = ops.region_masks


def content_loss(output_features, content_features):
    """Content loss (docs/method.md#losses): mean squared error of VGG relu4_1 features.

    Args:
      output_features: `[N, h, w, C]` features of the output.
      content_features: `[N, h, w, C]` features of the content frames.

    Returns:
      float32 scalar, the mean over every element of the squared difference.
    """
    output_features = _f32(output_features)
    content_features = _f32(content_features)
    if output_features.shape.is_fully_defined() and content_features.shape.is_fully_defined():
        if output_features.shape != content_features.shape:
            raise ValueError(
                "`output_features` and `content_features` must have the same [N, h, w, C] shape, "
                f"got {output_features.shape} and {content_features.shape}."
            )
    return tf.reduce_mean(tf.square(output_features - content_features))


def masked_mean_std(features, masks, eps=_EPS):
    """Per-region, per-channel statistics of features over soft masks (docs/method.md#losses,
    localized style).

    The loss's reading of the one owner of masked statistics, `st_adain.masked_moments`: masks are
    resized to the feature resolution by `st_adain.resize_mask` with the "area" fallback (exact
    block means for the integer factors of training), `empty="floor"` (an empty region gets mean 0
    and std sqrt(eps), and sums are divided by max(area, eps)) and `variance="expanded"`
    (E[x^2] - E[x]^2, no `[N, h, w, K, C]` temporary). These keep the loss a training run depends
    on unchanged; the model's ST-AdaIN uses the same function with `empty="image"`, "centered".

    Args:
      features: `[N, h, w, C]`.
      masks: `[N, H, W, K]` in [0, 1], any resolution.
      eps: added to the variance inside the sqrt, and bounds the mask area from below.

    Returns:
      `(mean, std)`, each `[N, K, C]`. A region with zero area gets mean 0 and std sqrt(eps).
    """
    features = _f32(features)
    _check_rank(features, 4, "features", "[N, h, w, C]")
    masks = _f32(masks)
    _check_rank(masks, 4, "masks", "[N, H, W, K]")
    static = tuple(features.shape[1:3])
    size = tf.shape(features)[1:3] if None in static else static
    masks = st_adain.resize_mask(masks, size, fallback="area")
    return st_adain.masked_moments(features, masks, eps, empty="floor", variance="expanded")


def localized_style_loss(
    output_features,
    region_masks,
    style_means,
    style_stds,
    channel_reduction="mean",
    min_region_fraction=0.01,
):
    """Localized style loss (docs/method.md#losses): per-region masked statistics vs each region's
    style.

    Args:
      output_features: list of L tensors `[N, h_i, w_i, C_i]` (VGG relu1_1..relu4_1 of the output).
      region_masks: `[N, H, W, K]` clean region masks in [0, 1] (objects then background), any
        resolution; area-resized to each layer.
      style_means: list of L tensors `[N, K, C_i]`, the style image of region k's channel means.
      style_stds: list of L tensors `[N, K, C_i]`.
      channel_reduction: "mean" (squared L2 / C_i) or "sum" (squared L2).
      min_region_fraction: a (sample, region) pair counts only if its region covers at least this
        fraction of the image; the loss is the mean over samples of the mean over the sample's
        counted regions (a sample without any counts 0).

    Returns:
      float32 scalar.
    """
    if channel_reduction not in ("mean", "sum"):
        raise ValueError(f'`channel_reduction` must be "mean" or "sum", got {channel_reduction!r}.')
    if not (len(output_features) == len(style_means) == len(style_stds)) or not output_features:
        raise ValueError(
            "`output_features`, `style_means` and `style_stds` must be non-empty lists of the same "
            f"length, got {len(output_features)}, {len(style_means)}, {len(style_stds)}."
        )
    region_masks = _f32(region_masks)
    _check_rank(region_masks, 4, "region_masks", "[N, H, W, K]")
    reduce = tf.reduce_mean if channel_reduction == "mean" else tf.reduce_sum
    per_pair = 0.0
    for features, s_mean, s_std in zip(output_features, style_means, style_stds):
        o_mean, o_std = masked_mean_std(features, region_masks)
        per_pair += reduce(tf.square(o_mean - _f32(s_mean)), axis=-1) + reduce(
            tf.square(o_std - _f32(s_std)), axis=-1
        )  # [N, K]
    fraction = tf.reduce_mean(region_masks, axis=[1, 2])  # [N, K]
    valid = tf.cast(fraction >= min_region_fraction, tf.float32)
    # Mean over the valid regions of each sample, then over samples: a plain mean over the batch,
    # so splitting the batch over replicas (and averaging) gives the same value.
    per_sample = tf.reduce_sum(valid * per_pair, axis=-1) / tf.maximum(
        tf.reduce_sum(valid, axis=-1), 1.0
    )
    return tf.reduce_mean(per_sample)


def localized_colour_loss(output, region_masks, style_means, style_stds, min_region_fraction=0.01):
    """Per-region colour statistics vs each region's style image (not in the paper; see the module
    docstring): `localized_style_loss` with the RGB pixels (times `COLOUR_SCALE`) as the one tap.

    Args:
      output: `[N, H, W, 3]` output frames in [0, 1] (unclipped is fine).
      region_masks: `[N, H, W, K]` clean region masks (objects then background).
      style_means, style_stds: `[N, K, 3]`, the RGB channel means and stds of region k's style image,
        times `COLOUR_SCALE` (`style_targets` of the styles times `COLOUR_SCALE`).
      min_region_fraction: see `localized_style_loss`.

    Returns:
      float32 scalar.
    """
    return localized_style_loss(
        [COLOUR_SCALE * _f32(output)],
        region_masks,
        [style_means],
        [style_stds],
        channel_reduction="mean",
        min_region_fraction=min_region_fraction,
    )


def style_targets(style_features, num_clips, num_frames):
    """The style statistics each output frame is compared with.

    Args:
      style_features: `[B*K, h, w, C]`, one map per clip and region (clip-major).
      num_clips: B.
      num_frames: T, the frames of each clip (all share their clip's styles).

    Returns:
      `(means, stds)`, each `[B*T, K, C]` (no gradient flows to the styles).
    """
    mean, std = st_adain.feature_moments(tf.stop_gradient(style_features), _EPS)
    channels = tf.shape(mean)[-1]
    out = []
    for moment in (mean, std):
        moment = tf.reshape(moment, [num_clips, -1, channels])  # [B, K, C]
        out.append(_merge_bt(tf.repeat(moment[:, None], num_frames, axis=1)))
    return tuple(out)


def bilateral_laplacian_loss(grids, reduction="mean"):
    """Six-connected Laplacian smoothness of bilateral grids (docs/method.md#losses, JBL's grid
    regulariser).

    Args:
      grids: `[..., GH, GW, GD, C]` (e.g. region grids `[B, T, K, GH, GW, GD, 12]`).
      reduction: "mean": per axis, mean over all neighbour pairs and coefficients of the squared
        difference, summed over the three axes; "sum": the plain sum of squared differences over every
        six-connected neighbour pair (each pair once).

    Returns:
      float32 scalar; 0 for a grid constant along x, y and depth (e.g. the identity grid).
    """
    if reduction not in ("mean", "sum"):
        raise ValueError(f'`reduction` must be "mean" or "sum", got {reduction!r}.')
    grids = _f32(grids)
    if grids.shape.rank is not None and grids.shape.rank < 4:
        raise ValueError(f"`grids` must be [..., GH, GW, GD, C] (rank >= 4), got {grids.shape}.")
    reduce = tf.reduce_mean if reduction == "mean" else tf.reduce_sum
    total = 0.0
    for axis in (-4, -3, -2):  # y, x, depth
        n = tf.shape(grids)[axis]
        upper = tf.gather(grids, tf.range(1, n), axis=axis)
        lower = tf.gather(grids, tf.range(0, n - 1), axis=axis)
        total += reduce(tf.square(upper - lower))
    return total


def visibility_weight(frames_t, warped_prev_frames, alpha=50.0):
    """Lai et al. (2018) visibility weight exp(-alpha * ||I_t - warp(I_{t-1})||^2), squared L2 over RGB.

    Args:
      frames_t, warped_prev_frames: `[N, H, W, 3]` in [0, 1].

    Returns:
      `[N, H, W, 1]` in (0, 1].
    """
    diff = _f32(frames_t) - _f32(warped_prev_frames)
    return tf.exp(-alpha * tf.reduce_sum(tf.square(diff), axis=-1, keepdims=True))


def _flatten_pairs(video):
    """`[B, T, H, W, C]` -> (frames 1..T-1, frames 0..T-2), each `[B*(T-1), H, W, C]`."""
    shape = tf.shape(video)
    tail = tf.concat([[-1], shape[2:]], axis=0)
    current = tf.reshape(video[:, 1:], tail)
    previous = tf.reshape(video[:, :-1], tail)
    return current, previous


def temporal_loss(output, frames, flow, flow_valid=None, alpha=50.0, warp_fn=None):
    """Flow-warped temporal loss (docs/method.md#losses, Lai et al. 2018).

    mean over pixels and channels of `V * flow_valid * |O_t - warp(O_{t-1}, flow[t-1])|` with the
    visibility weight `V = exp(-alpha * ||I_t - warp(I_{t-1}, flow[t-1])||^2)` (no gradient).

    Args:
      output: `[B, T, H, W, 3]` stylized frames (not clipped).
      frames: `[B, T, H, W, 3]` input frames in [0, 1].
      flow: `[B, T-1, H, W, 2]`; `flow[:, i]` is the backward flow of frame i+1 (DESIGN.md), so
        `warp(frame_i, flow[:, i]) ~ frame_{i+1}`.
      flow_valid: optional `[B, T-1, H, W]` in {0, 1}; None means everywhere valid.
      alpha: visibility sharpness (50 for images in [0, 1]).
      warp_fn: `(image [N,H,W,C], flow [N,H,W,2]) -> [N,H,W,C]`; default `lvst_tf.ops.warp`.

    Returns:
      float32 scalar; 0 for a static scene (zero flow) whose output equals its input.
    """
    output, frames, flow = _f32(output), _f32(frames), _f32(flow)
    _check_rank(output, 5, "output", "[B, T, H, W, 3]")
    _check_rank(frames, 5, "frames", "[B, T, H, W, 3]")
    _check_rank(flow, 5, "flow", "[B, T-1, H, W, 2]")
    if warp_fn is None:
        warp_fn = ops.warp
    flow_flat = tf.reshape(flow, tf.concat([[-1], tf.shape(flow)[2:]], axis=0))
    out_t, out_prev = _flatten_pairs(output)
    in_t, in_prev = _flatten_pairs(frames)
    weight = tf.stop_gradient(visibility_weight(in_t, warp_fn(in_prev, flow_flat), alpha))
    if flow_valid is not None:
        flow_valid = _f32(flow_valid)
        _check_rank(flow_valid, 4, "flow_valid", "[B, T-1, H, W]")
        weight *= tf.reshape(flow_valid, tf.concat([[-1], tf.shape(flow_valid)[2:], [1]], 0))
    return tf.reduce_mean(weight * tf.abs(out_t - warp_fn(out_prev, flow_flat)))


def frame_difference_loss(output, frames):
    """Flow-free temporal loss (docs/method.md#losses): mean |(O_t - O_{t-1}) - (I_t - I_{t-1})|.

    Args:
      output, frames: `[B, T, H, W, 3]`.

    Returns:
      float32 scalar; 0 whenever the output changes exactly like the input (e.g. output = input + c).
    """
    output, frames = _f32(output), _f32(frames)
    _check_rank(output, 5, "output", "[B, T, H, W, 3]")
    _check_rank(frames, 5, "frames", "[B, T, H, W, 3]")
    d_out = output[:, 1:] - output[:, :-1]
    d_in = frames[:, 1:] - frames[:, :-1]
    return tf.reduce_mean(tf.abs(d_out - d_in))


def mask_loss(enhanced_masks, clean_masks):
    """Mask loss (docs/method.md#losses): binary cross-entropy of the enhanced masks against the
    clean masks.

    Args:
      enhanced_masks: `[B, T, l, l, K-1]` in (0, 1) (MaskNet output at the low resolution).
      clean_masks: `[B, T, S, S, K-1]` in [0, 1]; area-resized to l when S != l.

    Returns:
      float32 scalar, the mean BCE (predictions clipped to [1e-6, 1 - 1e-6]).
    """
    pred, target = _f32(enhanced_masks), _f32(clean_masks)
    _check_rank(pred, 5, "enhanced_masks", "[B, T, l, l, K-1]")
    _check_rank(target, 5, "clean_masks", "[B, T, S, S, K-1]")
    if pred.shape[-1] is not None and target.shape[-1] is not None:
        if pred.shape[-1] != target.shape[-1]:
            raise ValueError(
                f"`enhanced_masks` and `clean_masks` must have the same K-1, got {pred.shape} "
                f"and {target.shape}."
            )
    if tuple(pred.shape[2:4]) != tuple(target.shape[2:4]) or None in pred.shape[2:4]:
        shape = tf.shape(target)
        flat = tf.reshape(target, tf.concat([[-1], shape[2:]], 0))
        flat = tf.image.resize(flat, tf.shape(pred)[2:4], method="area")
        target = tf.reshape(flat, tf.concat([shape[:2], tf.shape(flat)[1:]], 0))
    pred = tf.clip_by_value(pred, _BCE_EPS, 1.0 - _BCE_EPS)
    bce = -(target * tf.math.log(pred) + (1.0 - target) * tf.math.log(1.0 - pred))
    return tf.reduce_mean(bce)


def _same_spatial(a, b):
    """Two static (h, w) shapes that are known and equal."""
    a, b = tuple(a), tuple(b)
    return None not in a and a == b


def _merge_bt(x):
    shape = tf.shape(x)
    return tf.reshape(x, tf.concat([[-1], shape[2:]], axis=0))


@gin.configurable("compute_losses", denylist=["model", "batch", "outputs"])
def compute_losses(
    model,
    batch,
    outputs,
    content_weight=0.5,
    style_weight=1.0,
    laplacian_weight=0.15,
    temporal_weight=10.0,
    mask_weight=1.0,
    temporal_mode="flow",
    temporal_alpha=50.0,
    style_channel_reduction="mean",
    laplacian_reduction="mean",
    min_region_fraction=0.01,
    reuse_model_features=True,
    colour_weight=0.0,
):
    """All training losses for one batch (docs/method.md#losses). Terms with weight 0 are not
    computed.

    Args:
      model: the `LocalizedStyleModel` (its frozen `encoder` gives the VGG features).
      batch: the training batch (DESIGN.md, `make_train_dataset`): `frames [B,T,S,S,3]`,
        `clean_masks [B,T,S,S,K-1]`, `styles [B,K,S,S,3]`, `flow [B,T-1,S,S,2]`,
        `flow_valid [B,T-1,S,S]` (flow only for `temporal_mode="flow"`).
      outputs: the model's training outputs: `output [B,T,S,S,3]`, `enhanced_masks [B,T,l,l,K-1]`,
        `region_grids [B,T,K,GH,GW,GD,12]`, and optionally the VGG taps the model computed,
        `content_features` (`[B,T,l/2^i,l/2^i,C]`) and `style_features` (`[B,K,l/2^i,l/2^i,C]`).
      content_weight, style_weight, laplacian_weight, temporal_weight, mask_weight: the weights of
        docs/method.md#losses (0.5, 1, 0.15, 10, 1).
      temporal_mode: "flow" (warped L1 with visibility weight), "frame_difference" (flow-free), or
        "none".
      temporal_alpha: visibility sharpness of the flow mode.
      style_channel_reduction: "mean" or "sum", see `localized_style_loss`.
      laplacian_reduction: "mean" or "sum", see `bilateral_laplacian_loss`.
      min_region_fraction: see `localized_style_loss`.
      colour_weight: weight of the per-region colour term (`localized_colour_loss`; not in the
        paper, so 0 by default).
      reuse_model_features: take VGG taps the model already computed instead of running the frozen
        encoder again: the content taps when the model's low resolution equals the crop (the
        paper's training, where they are the same computation), the style taps always (the style
        statistics are then those of the styles at the low resolution, where the model reads
        them). False recomputes both at the crop size.

    Returns:
      `(total, terms)`: the weighted sum (float32 scalar) and a dict of the unweighted terms that were
      computed (keys from `TERMS`).
    """
    if temporal_mode not in ("flow", "frame_difference", "none"):
        raise ValueError(
            f'`temporal_mode` must be "flow", "frame_difference" or "none", got {temporal_mode!r}.'
        )
    weights = {
        "content": content_weight,
        "style": style_weight,
        "laplacian": laplacian_weight,
        "temporal": 0.0 if temporal_mode == "none" else temporal_weight,
        "mask": mask_weight,
        "colour": colour_weight,
    }
    for name, value in weights.items():
        if value < 0:
            raise ValueError(f"`{name}_weight` must be >= 0, got {value}.")
    frames = _f32(batch["frames"])
    output = _f32(outputs["output"])
    num_clips, num_frames = tf.shape(frames)[0], tf.shape(frames)[1]
    terms = {}
    if weights["style"] > 0 or weights["colour"] > 0:
        styles = _f32(batch["styles"])
        regions = region_masks_from_objects(_merge_bt(_f32(batch["clean_masks"])))

    if weights["content"] > 0 or weights["style"] > 0:
        out_feats = model.encoder(_merge_bt(output))
        if weights["content"] > 0:
            shared = outputs.get("content_features") if reuse_model_features else None
            if shared is not None and _same_spatial(
                shared[-1].shape[2:4], out_feats[-1].shape[1:3]
            ):
                content_tap = _merge_bt(_f32(shared[-1]))
            else:
                content_tap = model.encoder(_merge_bt(frames))[-1]
            terms["content"] = content_loss(out_feats[-1], tf.stop_gradient(_f32(content_tap)))
        if weights["style"] > 0:
            shared = outputs.get("style_features") if reuse_model_features else None
            if shared is not None:
                style_feats = [_merge_bt(_f32(f)) for f in shared]  # [B*K, ...]
            else:
                style_feats = model.encoder(_merge_bt(styles))
            s_means, s_stds = [], []
            for feats in style_feats:
                mean, std = style_targets(feats, num_clips, num_frames)
                s_means.append(mean)
                s_stds.append(std)
            terms["style"] = localized_style_loss(
                out_feats,
                regions,
                s_means,
                s_stds,
                channel_reduction=style_channel_reduction,
                min_region_fraction=min_region_fraction,
            )
    if weights["colour"] > 0:
        means, stds = style_targets(COLOUR_SCALE * _merge_bt(styles), num_clips, num_frames)
        terms["colour"] = localized_colour_loss(
            _merge_bt(output), regions, means, stds, min_region_fraction=min_region_fraction
        )
    if weights["laplacian"] > 0:
        terms["laplacian"] = bilateral_laplacian_loss(
            outputs["region_grids"], reduction=laplacian_reduction
        )
    if weights["temporal"] > 0:
        if temporal_mode == "flow":
            if "flow" not in batch:
                raise ValueError(
                    'compute_losses.temporal_mode="flow" needs `flow` in the batch: build the '
                    'dataset with with_flow=True or use temporal_mode="frame_difference".'
                )
            terms["temporal"] = temporal_loss(
                output, frames, batch["flow"], batch.get("flow_valid"), alpha=temporal_alpha
            )
        else:
            terms["temporal"] = frame_difference_loss(output, frames)
    if weights["mask"] > 0:
        terms["mask"] = mask_loss(outputs["enhanced_masks"], batch["clean_masks"])
    if not terms:
        raise ValueError("compute_losses: every loss weight is 0, nothing to train.")
    total = tf.add_n([weights[name] * value for name, value in terms.items()])
    return total, terms


def loss_needs_flow():
    """Whether `compute_losses`, as gin will call it in the active scope, reads optical flow.

    True for the flow temporal term with a weight > 0; the data pipeline computes flow only then.
    The two arguments are what gin gives `compute_losses` (its own defaults under its bindings,
    `lvst_tf.training.gin_utils.configured_arguments`), so no default is repeated here.
    """
    from lvst_tf.training import gin_utils  # noqa: PLC0415 (training imports this module)

    args = gin_utils.configured_arguments("compute_losses")
    return args["temporal_mode"] == "flow" and args["temporal_weight"] > 0
