"""Bilateral-grid ops: slice / slice-apply, soft grid masks, grid blending, keyframe interpolation.

Everything here is plain TensorFlow (no custom kernels), `tf.function`-friendly, and gives the same
results with and without `jit_compile=True` (within 1e-5). See docs/ops.md for the spec in prose and
the measured speed.

Slicing convention (docs/method.md#slicing, the HDRNet convention, exactly):
  grid `[B, GH, GW, GD, C]`, guide `[B, H, W]`. Pixel (y, x) sits at continuous grid
  coordinates `gx = (x + 0.5) * GW / W`, `gy = (y + 0.5) * GH / H`, `gz = clip(guide, 0, 1) * GD`;
  grid samples sit at cell centres `i + 0.5`. The value is the trilinear tent-weighted sum over the
  2x2x2 neighbouring cells, `tau(t) = max(0, 1 - |t|)`, with neighbour indices clamped to the grid
  (edge replicate) and weights not clamped (so the weights always sum to 1).

Under XLA the grid becomes a small table of 2x2 (x, depth) corner blocks (`_corner_table`), and
every pixel reads its lower and upper y rows of that table as two contiguous blocks of 4 * C floats,
then XLA writes the sliced `[B, H, W, C]` coefficients (docs/ops.md); a slice/apply of an image
known at trace time to exceed `COEFFICIENT_BUFFER_PIXELS` folds the apply into the corner
reduction instead and writes nothing per pixel but the output. No `[H, W, GD, C]` tensor is ever
built. The non-XLA path interpolates the grid along y for every output row and gathers rows of C
coefficients in bands of rows (`_slice_rows_tf`).
"""

from __future__ import annotations

import typing

import tensorflow as tf

from lvst_tf import regions

__all__ = [
    "bilateral_slice",
    "bilateral_slice_apply",
    "soft_grid_mask",
    "blend_grids",
    "keyframe_indices",
    "interpolate_grids",
    "identity_grid",
    "region_masks",
    "warp",
]

NUM_COEFFS = 12  # a row-major 3x4 affine colour matrix, coefficient index 4 * row + col
SOFT_MASK_MODES = ("normalized", "paper")
INTERPOLATION_MODES = ("linear", "hold")
SLICE_IMPLS = ("auto", "xla", "tf")


# ----------------------------------------------------------------------------------------------
# Argument checks (static shapes are checked in Python; dynamic ones with tf.debugging asserts).


def _as_float(x, name):
    x = tf.convert_to_tensor(x)
    if x.dtype == tf.uint8:
        return tf.cast(x, tf.float32) / 255.0
    if not x.dtype.is_floating:
        raise ValueError(f"`{name}` must be a float tensor (or uint8), got dtype {x.dtype.name}.")
    if x.dtype != tf.float32:
        x = tf.cast(x, tf.float32)
    return x


def _check_rank(x, rank, name, form):
    if x.shape.rank is not None and x.shape.rank != rank:
        raise ValueError(f"`{name}` must have rank {rank} with shape {form}, got shape {x.shape}.")


def _check_static_equal(a, b, what):
    if a is not None and b is not None and a != b:
        raise ValueError(what)


def _check_grid_guide(grid, guide, coeffs=None):
    _check_rank(grid, 5, "grid", "[B, GH, GW, GD, C]")
    _check_rank(guide, 3, "guide", "[B, H, W]")
    if coeffs is not None and grid.shape[-1] is not None and grid.shape[-1] != coeffs:
        raise ValueError(
            f"`grid` must have {coeffs} coefficients in its last axis "
            f"(shape [B, GH, GW, GD, {coeffs}]), got shape {grid.shape}."
        )
    _check_static_equal(
        grid.shape[0],
        guide.shape[0],
        f"`grid` and `guide` must have the same batch size, got {grid.shape} and {guide.shape}.",
    )


def _dynamic_checks(grid, guide, image=None):
    """Asserts for shapes only known at run time (no-ops under XLA, where shapes are static).

    When every shape involved is fully static, the Python checks already covered them, and no assert
    op is added (each eager op costs dispatch time on every frame).
    """
    tensors = [t for t in (grid, guide, image) if t is not None]
    if all(t.shape.is_fully_defined() for t in tensors):
        return []
    checks = [
        tf.debugging.assert_equal(
            tf.shape(grid)[0],
            tf.shape(guide)[0],
            message="`grid` [B, GH, GW, GD, C] and `guide` [B, H, W] must have the same batch size",
        )
    ]
    if image is not None:
        checks.append(
            tf.debugging.assert_equal(
                tf.shape(image)[:3],
                tf.shape(guide),
                message="`image` [B, H, W, 3] and `guide` [B, H, W] must have the same B, H, W",
            )
        )
    return checks


# ----------------------------------------------------------------------------------------------
# Tent-weight helpers.


def _axis_position(size, grid_size, offset=None, total=None):
    """Continuous grid coordinate of every pixel along one axis (cell centres at `i + 0.5`).

    Args:
      size: number of pixels along the axis (scalar int tensor).
      grid_size: number of grid cells along the axis (python int).
      offset, total: for pixels `offset .. offset + size - 1` of an axis of `total` pixels (scalar
        int tensors or ints; None: the whole axis, offset 0 and total `size`). The coordinates are
        the whole axis' ones, exactly (integer pixel indices are exact in float32).

    Returns:
      float32 `[size]`: `(index + 0.5) * grid_size / total - 0.5`, in units of cells.
    """
    if offset is None and total is None:
        index = tf.range(size, dtype=tf.float32)
        total = size
    else:
        offset = 0 if offset is None else offset
        index = tf.cast(tf.range(size) + offset, tf.float32)
    return (index + 0.5) * (grid_size / tf.cast(total, tf.float32)) - 0.5


def _depth_position(guide, grid_depth):
    """Continuous depth coordinate of every pixel: the guide clipped to [0, 1], in cells."""
    return tf.clip_by_value(guide, 0.0, 1.0) * grid_depth - 0.5


def _lower_tap(position):
    """(lower tap index, int32 and not clamped; weight of the upper tap) of grid coordinates."""
    low = tf.floor(position)
    return tf.cast(low, tf.int32), position - low


def _axis_taps(size, grid_size, offset=None, total=None):
    """Lower tap index (clamped), upper tap index (clamped) and upper weight along one axis
    (arguments as in `_axis_position`).

    Returns:
      (i0, i1, w1): int32 `[size]`, int32 `[size]`, float32 `[size]`; the value at pixel p is
      `(1 - w1[p]) * g[i0[p]] + w1[p] * g[i1[p]]`.
    """
    lo, w1 = _lower_tap(_axis_position(size, grid_size, offset, total))
    i0 = tf.clip_by_value(lo, 0, grid_size - 1)
    i1 = tf.clip_by_value(lo + 1, 0, grid_size - 1)
    return i0, i1, w1


def _interp_rows(grid, height, row_offset=None, total_height=None):
    """Interpolates the grid along y for every output row: `[B, GH, ...]` -> `[B, H, ...]`; with
    `row_offset` / `total_height`, for rows `row_offset ..` of an image of `total_height` rows."""
    grid_h = grid.shape[1]
    j0, j1, wy = _axis_taps(height, grid_h, row_offset, total_height)
    g0 = tf.gather(grid, j0, axis=1)
    g1 = tf.gather(grid, j1, axis=1)
    wy = tf.reshape(wy, [1, -1] + [1] * (grid.shape.rank - 2))
    return g0 + wy * (g1 - g0)


def _corner_offsets(grid_shape, guide):
    """Per pixel: flat offsets of its 4 (x, depth) corners in the row table and their weights.

    The row table is `_interp_rows(grid, H)` flattened: `[B * H * GW * GD * C]`, so the offset of
    (b, y, i, k) is `((((b * H + y) * GW + i) * GD + k) * C`. Corner order (di, dk) = (0, 0),
    (0, 1), (1, 0), (1, 1); indices are clamped to the grid, weights are the tent weights (they
    sum to 1).

    Returns:
      (offsets, weights): 4 int32 tensors `[B, H, W, 1]` and 4 float32 tensors broadcastable to
      `[B, H, W, 1]`.
    """
    _, grid_w, grid_d, channels = grid_shape
    shape = tf.shape(guide)
    batch, height, width = shape[0], shape[1], shape[2]
    i0, i1, wx = _axis_taps(width, grid_w)
    low_z, wz = _lower_tap(_depth_position(guide, grid_d))
    wz = wz[..., None]
    k0 = tf.clip_by_value(low_z, 0, grid_d - 1)[..., None] * channels
    k1 = tf.clip_by_value(low_z + 1, 0, grid_d - 1)[..., None] * channels
    row = (tf.range(batch)[:, None] * height + tf.range(height)[None, :]) * (
        grid_w * grid_d * channels
    )
    x0 = row[:, :, None, None] + (i0 * (grid_d * channels))[None, None, :, None]
    x1 = row[:, :, None, None] + (i1 * (grid_d * channels))[None, None, :, None]
    wx = wx[None, None, :, None]
    offsets = [x0 + k0, x0 + k1, x1 + k0, x1 + k1]
    weights = [(1 - wx) * (1 - wz), (1 - wx) * wz, wx * (1 - wz), wx * wz]
    return offsets, weights


def _corner_table(grid):
    """The grid as a table of 2x2 (x, depth) corner blocks: `[B * GH * (GW + 1) * (GD + 1), 4 * C]`.

    The grid is first padded by one cell on both sides of x and of depth, replicating the edge
    cells (the slice's clamping). Row `((b * GH + j) * (GW + 1) + p) * (GD + 1) + q` holds the padded
    cells (p, q), (p, q + 1), (p + 1, q), (p + 1, q + 1) of grid row j, C coefficients each, so a
    pixel whose lower x tap is `lo_x` (from -1 to GW - 1) and lower depth tap `lo_z` reads all four
    of its (x, depth) corners at once, as one contiguous row `p = lo_x + 1`, `q = lo_z + 1`.
    Tiny (GH * 17 * 9 rows of 48 floats for a 16x16x8x12 grid), so it stays in cache.
    """

    def pad(values, axis):
        last = values.shape[axis] - 1
        return tf.concat(
            [tf.gather(values, [0], axis=axis), values, tf.gather(values, [last], axis=axis)], axis
        )

    padded = pad(pad(grid, 2), 3)  # [B, GH, GW + 2, GD + 2, C]
    low_x, high_x = padded[:, :, :-1], padded[:, :, 1:]
    corners = [low_x[:, :, :, :-1], low_x[:, :, :, 1:], high_x[:, :, :, :-1], high_x[:, :, :, 1:]]
    return tf.reshape(tf.stack(corners, axis=4), [-1, 4 * grid.shape[-1]])


# Largest image (pixels, batch included) whose XLA slice/apply writes its per-pixel coefficients
# (48 bytes a pixel) before applying them, when the image's shape is known at trace time; larger
# ones take the fused form, which writes nothing per pixel but the output and takes about 1.6x
# the time of the buffered form (still less than the previous row-table form). Traces with
# unknown shapes (`VideoStylizer`'s render, the SavedModel) always take the buffered form.
COEFFICIENT_BUFFER_PIXELS = 2_000_000


def _corners_and_weights(grid, guide, row_offset=None, total_height=None):
    """Per pixel, its four (x, depth) corners interpolated along y and their tent weights.

    Every pixel reads two rows of `_corner_table` (its lower and upper y taps; each holds its four
    (x, depth) corners): 2 contiguous reads of 4 * C floats, where the previous form built a
    y-interpolated table for every image row and made 4 * C scalar gathers from it. Weights and
    clamping are those of `_axis_taps` (the tent weights, not clamped; taps clamped to the grid),
    so the result equals the row-table form exactly in exact arithmetic, gradients included.

    Returns:
      (corners, weights): `[B, H, W, 4, C]` and `[B, H, W, 4, 1]` float32; the slice is
      `sum(corners * weights, axis=3)`.
    """
    _, grid_h, grid_w, grid_d, channels = grid.shape
    shape = tf.shape(guide)
    batch, height, width = shape[0], shape[1], shape[2]
    j0, j1, wy = _axis_taps(height, grid_h, row_offset, total_height)
    low_x, wx = _lower_tap(_axis_position(width, grid_w))
    low_z, wz = _lower_tap(_depth_position(guide, grid_d))
    # Padded table coordinates: p = lo_x + 1 in [0, GW], q = lo_z + 1 in [0, GD].
    column, depth = low_x + 1, low_z + 1
    table = _corner_table(grid)
    blocks = (grid_w + 1) * (grid_d + 1)

    def row_blocks(j):  # [B, H, W, 4, C]: the pixel's four (x, depth) corners in grid row j
        base = (tf.range(batch)[:, None] * grid_h + j[None, :]) * blocks  # [B, H]
        index = base[:, :, None] + (column * (grid_d + 1))[None, None, :] + depth  # [B, H, W]
        return tf.reshape(tf.gather(table, index), tf.concat([shape, [4, channels]], axis=0))

    low, high = row_blocks(j0), row_blocks(j1)
    corners = low + wy[None, :, None, None, None] * (high - low)  # y done: [B, H, W, 4, C]
    wx = wx[None, None, :, None]
    wz = wz[..., None]
    weights = tf.stack([(1 - wx) * (1 - wz), (1 - wx) * wz, wx * (1 - wz), wx * wz], axis=3)
    return corners, weights


def _sliced_coefficients(grid, guide, row_offset=None, total_height=None):
    """The XLA slice: `[B, H, W, C]`, the grid's tent-weighted interpolation at every pixel.

    XLA writes it as one buffer (4 * C bytes a pixel, e.g. 96 MB for a 2 MP strip at C = 12).
    """
    corners, weights = _corners_and_weights(grid, guide, row_offset, total_height)
    return tf.reduce_sum(corners * weights, axis=3)


def _apply(coefficients, image):
    """`out_r = sum_c A[r, c] * in_c + A[r, 3]` per pixel: coefficients `[..., 12]`, image `[..., 3]`."""
    a = tf.reshape(coefficients, tf.concat([tf.shape(image), [4]], 0))  # [..., 3, 4]
    return tf.reduce_sum(a[..., :3] * image[..., None, :], axis=-1) + a[..., 3]


def _fused_slice_apply(grid, guide, image, row_offset=None, total_height=None):
    """The slice/apply as one reduction over (corner, input channel): `[B, H, W, 3]` and no
    per-pixel buffer (XLA fuses it into one loop); 1.6-2.0x the time of the buffered form."""
    corners, weights = _corners_and_weights(grid, guide, row_offset, total_height)
    corners = tf.reshape(corners, tf.concat([tf.shape(guide), [4, 3, 4]], 0))
    homogeneous = tf.concat([image, tf.ones_like(image[..., :1])], axis=-1)  # [B, H, W, 4]
    factors = weights[..., None] * homogeneous[:, :, :, None, None, :]  # [B, H, W, 4, 1, 4]
    return tf.reduce_sum(corners * factors, axis=[3, 5])


def _slice_apply_core(grid, guide, image, row_offset=None, total_height=None):
    """slice/apply body under XLA: the sliced coefficients, then the affine map; images of more
    than `COEFFICIENT_BUFFER_PIXELS` pixels (batch included) whose shape is known when the
    function is traced take the fused form.

    With unknown static shapes (a trace with a relaxed signature, e.g. `VideoStylizer`'s traced
    render or the SavedModel) the buffered form, whatever the run-time size: the choice cannot
    be a `tf.cond` on the run-time size, because such a cond, recorded on a gradient tape, makes
    XLA return dynamically shaped intermediates that the XLA CPU runtime rejects with a fatal
    check (`ReadDynamicShapesOnCpu`, TensorFlow 2.21).
    """
    if guide.shape.is_fully_defined() and guide.shape.num_elements() > COEFFICIENT_BUFFER_PIXELS:
        return _fused_slice_apply(grid, guide, image, row_offset, total_height)
    return _apply(_sliced_coefficients(grid, guide, row_offset, total_height), image)


_TF_BAND_ROWS = 256  # rows per band of the non-XLA path: bounds its temporaries to ~50 MB per band


def _slice_rows_tf(grid, guide, image=None, band_rows=None):
    """Non-XLA slice (and apply, when `image` is given), processed in bands of rows.

    Without XLA nothing is fused, so the corner-block form of `_sliced_coefficients` would write its
    `[B, H, W, 4 * C]` gathers for the whole image (in bands of 64-256 rows it measured 1.1-1.3x
    this path's time at 1024x1024). Gathering rows of C coefficients makes `[B, rows, W, C]`
    temporaries, so when H is static the image is cut into bands of `band_rows` rows (default
    `_TF_BAND_ROWS`) to keep them small.
    """
    height = guide.shape[1]
    band_rows = band_rows or _TF_BAND_ROWS
    rows = _interp_rows(grid, tf.shape(guide)[1])  # [B, H, GW, GD, C], computed once
    if height is None or height <= band_rows:
        return _slice_band_tf(rows, guide, image)
    bands = []
    for y in range(0, height, band_rows):
        band = slice(y, y + band_rows)
        image_band = None if image is None else image[:, band]
        bands.append(_slice_band_tf(rows[:, band], guide[:, band], image_band))
    return tf.concat(bands, axis=1)


def _slice_band_tf(rows, guide, image):
    """rows `[B, R, GW, GD, C]` (the y-interpolated grid of these R rows), guide `[B, R, W]`."""
    channels = rows.shape[-1]
    table = tf.reshape(rows, [-1, channels])
    offsets, weights = _corner_offsets(rows.shape[1:], guide)
    out = 0.0
    for offset, weight in zip(offsets, weights):
        out += weight * tf.gather(table, offset[..., 0] // channels)
    return out if image is None else _apply(out, image)


def slice_apply_body(grid, guide, image, row_offset=None, total_height=None):
    """The traceable body of `bilateral_slice_apply`, without argument checks.

    For callers that fuse more elementwise work around the slice/apply into one XLA function
    (e.g. the guide's last steps, a uint8 -> float cast and the final clip of an inference render).
    It is only fast under XLA (`jit_compile=True`); shapes as in `bilateral_slice_apply`, the guide
    is clipped to [0, 1] inside.

    A horizontal strip of an image: with `row_offset` and `total_height` (scalar int tensors or
    ints), `guide` and `image` are rows `row_offset .. row_offset + R - 1` of an image of
    `total_height` rows, and the result is exactly those rows of the whole image's slice/apply
    (the grid's y coordinate of a row depends on the image height, docs/method.md#slicing; x and
    depth do not). None (default): the whole image.
    """
    if (row_offset is None) != (total_height is None):
        raise ValueError("`row_offset` and `total_height` go together (both or neither).")
    return _slice_apply_core(grid, guide, image, row_offset, total_height)


_slice_core_xla = tf.function(_sliced_coefficients, jit_compile=True, autograph=False)
_slice_apply_core_xla = tf.function(_slice_apply_core, jit_compile=True, autograph=False)


# ----------------------------------------------------------------------------------------------
# Public ops.


def bilateral_slice(grid, guide, impl="auto"):
    """Slices a bilateral grid with a guide map (docs/method.md#slicing, HDRNet convention).

    Args:
      grid: `[B, GH, GW, GD, C]` float32.
      guide: `[B, H, W]` float32, expected in [0, 1]; values outside are clipped to [0, 1]
        (documented decision: the guide is a sigmoid output in the model, so clipping only matters
        for hand-made guides).
      impl: "auto" (= "xla"), "xla" (the per-pixel part in an XLA-compiled function) or "tf"
        (plain TensorFlow ops). Both agree within 1e-5.

    Returns:
      `[B, H, W, C]` float32: the tent-weighted trilinear interpolation of the grid at every pixel.
    """
    if impl not in SLICE_IMPLS:
        raise ValueError(f"`impl` must be one of {SLICE_IMPLS}, got {impl!r}.")
    grid = _as_float(grid, "grid")
    guide = _as_float(guide, "guide")
    _check_grid_guide(grid, guide)
    if any(d is None for d in grid.shape[1:]):
        raise ValueError(f"`grid` needs static GH, GW, GD, C dimensions, got shape {grid.shape}.")
    checks = _dynamic_checks(grid, guide)
    if checks:
        with tf.control_dependencies(checks):
            guide = tf.identity(guide)
    if impl == "tf":
        return _slice_rows_tf(grid, guide)
    return _slice_core_xla(grid, guide)


def bilateral_slice_apply(grid, guide, image, impl="auto"):
    """Slices an affine-coefficient grid and applies it to the image (docs/method.md#slicing).

    Args:
      grid: `[B, GH, GW, GD, 12]` float32; coefficient `4 * row + col` of a row-major 3x4 matrix A.
      guide: `[B, H, W]` float32 in [0, 1] (clipped to [0, 1]).
      image: `[B, H, W, 3]` float32 (uint8 is divided by 255).
      impl: `"auto"` (the fastest correct path, currently `"xla"`), `"xla"` (the per-pixel corner
        reads and the apply in an XLA-compiled function; see `COEFFICIENT_BUFFER_PIXELS`) or
        `"tf"` (plain TensorFlow ops, no XLA, for callers that must avoid XLA; about 4-5x slower,
        processed in bands of 256 rows). Both agree within 1e-5.

    Returns:
      `[B, H, W, 3]` float32, `out_r = sum_c A[r, c] * in_c + A[r, 3]`, not clipped.
    """
    if impl not in SLICE_IMPLS:
        raise ValueError(f"`impl` must be one of {SLICE_IMPLS}, got {impl!r}.")
    grid = _as_float(grid, "grid")
    guide = _as_float(guide, "guide")
    image = _as_float(image, "image")
    _check_grid_guide(grid, guide, coeffs=NUM_COEFFS)
    _check_rank(image, 4, "image", "[B, H, W, 3]")
    if image.shape[-1] is not None and image.shape[-1] != 3:
        raise ValueError(f"`image` must have 3 channels (shape [B, H, W, 3]), got {image.shape}.")
    for axis, name in ((0, "batch"), (1, "height"), (2, "width")):
        _check_static_equal(
            image.shape[axis],
            guide.shape[axis],
            f"`image` [B, H, W, 3] and `guide` [B, H, W] must have the same {name}, "
            f"got {image.shape} and {guide.shape}.",
        )
    if any(d is None for d in grid.shape[1:]):
        raise ValueError(f"`grid` needs static GH, GW, GD, 12 dimensions, got shape {grid.shape}.")
    checks = _dynamic_checks(grid, guide, image)
    if checks:
        with tf.control_dependencies(checks):
            guide = tf.identity(guide)
    if impl == "tf":
        return _slice_rows_tf(grid, guide, image)
    return _slice_apply_core_xla(grid, guide, image)


def identity_grid(batch, grid_shape=(16, 16, 8)):
    """A grid of identity affine transforms.

    Args:
      batch: B, a python int >= 1.
      grid_shape: (GH, GW, GD).

    Returns:
      `[B, GH, GW, GD, 12]` float32 with A = [I | 0] in every cell.
    """
    batch = _check_positive_int(batch, "batch")
    grid_shape = _check_grid_shape(grid_shape)
    eye = tf.constant([1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0], tf.float32)
    return tf.broadcast_to(eye, [batch, *grid_shape, NUM_COEFFS])


def _check_positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a python int >= 1, got {value!r}.")
    return value


def _check_grid_shape(grid_shape):
    try:
        shape = tuple(int(d) for d in grid_shape)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"`grid_shape` must be (GH, GW, GD) of positive ints, got {grid_shape!r}.")
    return shape


def soft_grid_mask(guide, mask, grid_shape=(16, 16, 8), mode="normalized"):
    """Projects a pixel mask into the bilateral grid (Algorithm 1, docs/method.md#soft-mask).

    Pixel (y, x) belongs to cell (floor(y * GH / H), floor(x * GW / W)); H and W need not be
    multiples of the grid size, and the mask may be soft.

    Modes:
      "normalized" (default, decision): bin k = clip(floor(z * GD), 0, GD - 1); cell (i, j, k) gets
        the mean of the mask over the pixels of cell (i, j) whose bin is k; a bin without pixels
        takes the mean over the whole cell. A fully masked cell gives 1 in every bin.
      "paper" (the printed pseudo-code, made well defined): zD = ceil(z * M * GD) in 0..GD; every
        bin of a cell starts at the count of pixels with zD > 0; each bin d in 1..GD that occurs in
        the cell is set to the count of pixels with zD == d (depth index d - 1); all divided by the
        cell's pixel count. Known flaw: a fully masked cell whose guide spans several bins gets
        values below 1 in them.
    A cell without any pixel (only possible when H < GH or W < GW) gives 0.

    Args:
      guide: `[B, H, W]` float32, clipped to [0, 1].
      mask: `[B, H, W]` float32 in [0, 1].
      grid_shape: (GH, GW, GD).
      mode: "normalized" or "paper".

    Returns:
      `[B, GH, GW, GD]` float32 in [0, 1].
    """
    if mode not in SOFT_MASK_MODES:
        raise ValueError(f"`mode` must be one of {SOFT_MASK_MODES}, got {mode!r}.")
    grid_h, grid_w, grid_d = _check_grid_shape(grid_shape)
    guide = _as_float(guide, "guide")
    mask = _as_float(mask, "mask")
    _check_rank(guide, 3, "guide", "[B, H, W]")
    _check_rank(mask, 3, "mask", "[B, H, W]")
    for axis in range(3):
        _check_static_equal(
            guide.shape[axis],
            mask.shape[axis],
            f"`guide` and `mask` must both be [B, H, W] of the same size, "
            f"got {guide.shape} and {mask.shape}.",
        )
    check = tf.debugging.assert_equal(
        tf.shape(guide), tf.shape(mask), message="`guide` and `mask` must have the same [B, H, W]"
    )
    with tf.control_dependencies([check]):
        guide = tf.clip_by_value(guide, 0.0, 1.0)
    shape = tf.shape(guide)
    batch, height, width = shape[0], shape[1], shape[2]
    # The cell of every pixel, numbered over the batch: (b * GH + row cell) * GW + column cell.
    cell_y = tf.range(height) * grid_h // height
    cell_x = tf.range(width) * grid_w // width
    cell = (tf.range(batch)[:, None, None] * grid_h + cell_y[:, None]) * grid_w + cell_x
    num_cells = batch * grid_h * grid_w

    def cell_sums(values, bins, num_bins):
        """Sums of `values` per (cell, bin): `[B, GH, GW, num_bins]`. A segment sum over the pixels:
        deterministic (sequential on CPU; TensorFlow's GPU kernel is deterministic too)."""
        sums = tf.math.unsorted_segment_sum(
            tf.reshape(values, [-1]),
            tf.reshape(cell * num_bins + bins, [-1]),
            num_cells * num_bins,
        )
        return tf.reshape(sums, tf.stack([batch, grid_h, grid_w, num_bins]))

    ones = tf.ones_like(guide)
    if mode == "normalized":
        bins = tf.clip_by_value(tf.cast(tf.floor(guide * grid_d), tf.int32), 0, grid_d - 1)
        bin_sum = cell_sums(mask, bins, grid_d)
        bin_count = cell_sums(ones, bins, grid_d)
        cell_sum = tf.reduce_sum(bin_sum, axis=-1, keepdims=True)
        cell_count = tf.reduce_sum(bin_count, axis=-1, keepdims=True)
        cell_mean = tf.math.divide_no_nan(cell_sum, cell_count)
        return tf.where(bin_count > 0, tf.math.divide_no_nan(bin_sum, bin_count), cell_mean)
    # 0..GD, 0 = background (clipped: a mask outside [0, 1] must not index another cell's bins).
    z_d = tf.clip_by_value(tf.cast(tf.math.ceil(guide * mask * grid_d), tf.int32), 0, grid_d)
    counts = cell_sums(ones, z_d, grid_d + 1)  # bin 0: the pixels with zD == 0
    bin_count = counts[..., 1:]  # depth index d - 1
    positive = tf.reduce_sum(bin_count, axis=-1, keepdims=True)  # pixels with zD > 0
    cell_count = tf.reduce_sum(counts, axis=-1, keepdims=True)
    return tf.math.divide_no_nan(tf.where(bin_count > 0, bin_count, positive), cell_count)


def region_masks(object_masks):
    """Object masks -> region masks with the background last (TensorFlow).

    The background of K - 1 (soft) object masks is the complement of their union, `1 - max_k m_k`
    (docs/DESIGN.md); the rule itself is `lvst_tf.regions.append_background`, shared with the NumPy
    metrics. The model (on its enhanced masks) and the training loss (on the clean masks) call this.

    Args:
      object_masks: `[..., K-1]` float32 in [0, 1] (K - 1 >= 1).

    Returns:
      `[..., K]`: the K - 1 objects unchanged, then the background.
    """
    object_masks = _as_float(object_masks, "object_masks")
    if object_masks.shape.rank is not None and object_masks.shape.rank < 1:
        raise ValueError("`object_masks` must be [..., K-1], got a scalar.")
    return regions.append_background(object_masks, tf.reduce_max, tf.concat)


def blend_grids(grids, grid_masks):
    """Blends K region grids with their soft grid masks (docs/method.md#data-flow step 5,
    #soft-mask).

    Args:
      grids: `[B, K, GH, GW, GD, 12]` float32.
      grid_masks: `[B, K, GH, GW, GD]` float32 >= 0.

    Returns:
      `[B, GH, GW, GD, 12]`: sum_k w_k * grid_k with w = masks normalised to sum to 1 over K in
      every cell; a cell where all K masks are 0 falls back to equal weights 1 / K (decision).
    """
    grids = _as_float(grids, "grids")
    grid_masks = _as_float(grid_masks, "grid_masks")
    _check_rank(grids, 6, "grids", "[B, K, GH, GW, GD, 12]")
    _check_rank(grid_masks, 5, "grid_masks", "[B, K, GH, GW, GD]")
    if grids.shape[-1] is not None and grids.shape[-1] != NUM_COEFFS:
        raise ValueError(
            f"`grids` must have 12 coefficients (shape [B, K, GH, GW, GD, 12]), got {grids.shape}."
        )
    for axis in range(5):
        _check_static_equal(
            grids.shape[axis],
            grid_masks.shape[axis],
            f"`grids` [B, K, GH, GW, GD, 12] and `grid_masks` [B, K, GH, GW, GD] disagree: "
            f"{grids.shape} vs {grid_masks.shape}.",
        )
    check = tf.debugging.assert_equal(
        tf.shape(grids)[:5],
        tf.shape(grid_masks),
        message="`grids` [B, K, GH, GW, GD, 12] and `grid_masks` [B, K, GH, GW, GD] disagree",
    )
    with tf.control_dependencies([check]):
        total = tf.reduce_sum(grid_masks, axis=1, keepdims=True)
    num_regions = tf.cast(tf.shape(grid_masks)[1], tf.float32)
    weights = tf.where(
        total > 0, tf.math.divide_no_nan(grid_masks, total), tf.ones_like(grid_masks) / num_regions
    )
    return tf.reduce_sum(weights[..., None] * grids, axis=1)


class KeyframeSchedule(typing.NamedTuple):
    """Which frames are keyframes, and how every frame blends its two keyframes
    (docs/method.md#subsampling).

    Attributes:
      keys: `[N_key]` int32 keyframe indices: 0, r, 2r, ... and always the last frame.
      lower: `[T]` int32, position in `keys` of the last keyframe at or before frame t.
      upper: `[T]` int32, position in `keys` of the next keyframe (= lower for keyframes and the end).
      weight: `[T]` float32, w = (t - a) / (b - a) between keyframes a = keys[lower] and
        b = keys[upper]; frame t's grid is (1 - w) G_a + w G_b (0 on keyframes).
    """

    keys: tf.Tensor
    lower: tf.Tensor
    upper: tf.Tensor
    weight: tf.Tensor


def keyframe_schedule(num_frames, r):
    """The keyframe rule of temporal grid sub-sampling, as tensors (docs/method.md#subsampling).

    The one place that defines it: keyframes 0, r, 2r, ... plus the last frame, and linear
    interpolation weights between them. Works on python ints and on int32 scalar tensors (inside a
    `tf.function`, a SavedModel or XLA).

    Args:
      num_frames: int >= 1 (python or scalar tensor).
      r: int >= 1, the sub-sampling rate (1 = every frame is a keyframe).

    Returns:
      A `KeyframeSchedule`.
    """
    if not tf.is_tensor(num_frames):
        num_frames = _check_positive_int(num_frames, "num_frames")
    if not tf.is_tensor(r):
        r = _check_positive_int(r, "r")
    num_frames = tf.cast(num_frames, tf.int32)
    r = tf.cast(r, tf.int32)
    last = num_frames - 1
    # The last frame is appended unless it already is a multiple of r (no tf.cond: XLA friendly).
    extra = tf.cast(tf.not_equal(tf.math.floormod(last, r), 0), tf.int32)
    keys = tf.concat([tf.range(0, num_frames, r), tf.fill([extra], last)], axis=0)
    return KeyframeSchedule(keys, *_blend_positions(keys, num_frames))


def keyframe_indices(num_frames, r):
    """The keyframes of `keyframe_schedule` as a python list (0, r, 2r, ... and the last frame).

    Args:
      num_frames: python int >= 1.
      r: python int >= 1, the sub-sampling rate (1 = every frame).

    Returns:
      A sorted python list of ints, always starting at 0 and ending at num_frames - 1.
    """
    num_frames = _check_positive_int(num_frames, "num_frames")
    r = _check_positive_int(r, "r")
    with tf.init_scope():  # eager even when called while tracing
        return [int(k) for k in keyframe_schedule(num_frames, r).keys.numpy()]


def interpolate_grids(key_grids, key_indices, num_frames, mode="linear"):
    """Grids for every frame from keyframe grids (docs/method.md#subsampling).

    Args:
      key_grids: `[N_key, ...]` float32, one grid (any shape) per keyframe.
      key_indices: N_key strictly increasing frame indices (python ints or a 1-D int tensor), e.g.
        `keyframe_indices(num_frames, r)`.
      num_frames: python int >= 1.
      mode: "linear": frame t between keyframes a < t < b gets (1 - w) * G_a + w * G_b,
        w = (t - a) / (b - a); "hold": the grid of the last keyframe at or before t (causal
        streaming). Frames before the first keyframe take the first keyframe's grid; frames after
        the last keyframe take the last one's.

    Returns:
      `[num_frames, ...]` float32.
    """
    if mode not in INTERPOLATION_MODES:
        raise ValueError(f"`mode` must be one of {INTERPOLATION_MODES}, got {mode!r}.")
    num_frames = _check_positive_int(num_frames, "num_frames")
    key_grids = _as_float(key_grids, "key_grids")
    if key_grids.shape.rank is not None and key_grids.shape.rank < 1:
        raise ValueError(f"`key_grids` must be [N_key, ...], got shape {key_grids.shape}.")
    if isinstance(key_indices, (list, tuple)):
        if not key_indices or any(
            isinstance(k, bool) or not isinstance(k, int) for k in key_indices
        ):
            raise ValueError(
                f"`key_indices` must be a non-empty list of ints, got {key_indices!r}."
            )
        if any(b <= a for a, b in zip(key_indices[:-1], key_indices[1:])):
            raise ValueError(f"`key_indices` must be strictly increasing, got {key_indices!r}.")
        _check_static_equal(
            key_grids.shape[0],
            len(key_indices),
            f"`key_grids` has {key_grids.shape[0]} grids but `key_indices` has "
            f"{len(key_indices)} entries.",
        )
    keys = tf.cast(tf.reshape(tf.convert_to_tensor(key_indices), [-1]), tf.int32)
    lower, upper, w = _blend_positions(keys, num_frames)
    grids_lo = tf.gather(key_grids, lower)
    if mode == "hold":
        return grids_lo
    w = tf.reshape(w, tf.concat([[num_frames], tf.ones([tf.rank(key_grids) - 1], tf.int32)], 0))
    grids_hi = tf.gather(key_grids, upper)
    return grids_lo + w * (grids_hi - grids_lo)


def _blend_positions(keys, num_frames):
    """(lower, upper, weight) of every frame for increasing keyframe indices `keys` `[N_key]`."""
    num_keys = tf.shape(keys)[0]
    frames = tf.range(num_frames, dtype=tf.int32)
    # Position of the last keyframe at or before each frame (a compare-and-count is XLA friendly).
    before = tf.reduce_sum(tf.cast(keys[None, :] <= frames[:, None], tf.int32), axis=1) - 1
    lower = tf.clip_by_value(before, 0, num_keys - 1)
    upper = tf.minimum(lower + 1, num_keys - 1)
    key_lo = tf.cast(tf.gather(keys, lower), tf.float32)
    key_hi = tf.cast(tf.gather(keys, upper), tf.float32)
    weight = tf.math.divide_no_nan(tf.cast(frames, tf.float32) - key_lo, key_hi - key_lo)
    return lower, upper, tf.clip_by_value(weight, 0.0, 1.0)


def warp(image, flow):
    """Bilinear backward warp with border clamp: `out(y, x) = image(y + dy, x + dx)`.

    Args:
      image: `[B, H, W, C]` float32.
      flow: `[B, H, W, 2]` float32, channels (dx, dy) in pixels.

    Returns:
      `[B, H, W, C]` float32. Samples outside the image read the nearest border pixel.
    """
    image = _as_float(image, "image")
    flow = _as_float(flow, "flow")
    _check_rank(image, 4, "image", "[B, H, W, C]")
    _check_rank(flow, 4, "flow", "[B, H, W, 2]")
    if flow.shape[-1] is not None and flow.shape[-1] != 2:
        raise ValueError(f"`flow` must be [B, H, W, 2] with channels (dx, dy), got {flow.shape}.")
    for axis in range(3):
        _check_static_equal(
            image.shape[axis],
            flow.shape[axis],
            f"`image` [B, H, W, C] and `flow` [B, H, W, 2] must have the same B, H, W, "
            f"got {image.shape} and {flow.shape}.",
        )
    check = tf.debugging.assert_equal(
        tf.shape(image)[:3],
        tf.shape(flow)[:3],
        message="`image` [B, H, W, C] and `flow` [B, H, W, 2] must have the same B, H, W",
    )
    with tf.control_dependencies([check]):
        shape = tf.shape(image)
    batch, height, width, channels = shape[0], shape[1], shape[2], shape[3]
    xs = tf.cast(tf.range(width), tf.float32)[None, None, :] + flow[..., 0]
    ys = tf.cast(tf.range(height), tf.float32)[None, :, None] + flow[..., 1]
    x0f, y0f = tf.floor(xs), tf.floor(ys)
    wx, wy = (xs - x0f)[..., None], (ys - y0f)[..., None]
    x0 = tf.cast(x0f, tf.int32)
    y0 = tf.cast(y0f, tf.int32)
    x1 = tf.clip_by_value(x0 + 1, 0, width - 1)
    y1 = tf.clip_by_value(y0 + 1, 0, height - 1)
    x0 = tf.clip_by_value(x0, 0, width - 1)
    y0 = tf.clip_by_value(y0, 0, height - 1)
    flat = tf.reshape(image, [-1, channels])
    base = (tf.range(batch) * height)[:, None, None]

    def tap(y, x):
        return tf.gather(flat, (base + y) * width + x)

    top = tap(y0, x0) + wx * (tap(y0, x1) - tap(y0, x0))
    bottom = tap(y1, x0) + wx * (tap(y1, x1) - tap(y1, x0))
    return top + wy * (bottom - top)
