"""Tests of lvst_tf.ops against independent float64 NumPy per-pixel references
(docs/method.md#slicing, #soft-mask, #subsampling)."""

import itertools
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from lvst_tf import ops

IMPLS = ("tf", "xla")


# ------------------------------------------------------------------------------------------------
# NumPy references, written straight from the spec in docs/ops.md (loops, float64).


def ref_slice(grid, guide):
    """Per pixel: tent weights tau(g - (i + .5)) over the 2x2x2 neighbours, indices clamped."""
    grid = np.asarray(grid, np.float64)
    guide = np.clip(np.asarray(guide, np.float64), 0.0, 1.0)
    batch, gh, gw, gd, channels = grid.shape
    _, height, width = guide.shape
    out = np.zeros((batch, height, width, channels))
    tau = lambda t: max(0.0, 1.0 - abs(t))  # noqa: E731
    for b, y, x in itertools.product(range(batch), range(height), range(width)):
        gx = (x + 0.5) * gw / width
        gy = (y + 0.5) * gh / height
        gz = guide[b, y, x] * gd
        i_lo = math.floor(gx - 0.5)
        j_lo = math.floor(gy - 0.5)
        k_lo = math.floor(gz - 0.5)
        for j in (j_lo, j_lo + 1):
            for i in (i_lo, i_lo + 1):
                for k in (k_lo, k_lo + 1):
                    w = tau(gx - (i + 0.5)) * tau(gy - (j + 0.5)) * tau(gz - (k + 0.5))
                    jc, ic, kc = (
                        min(max(j, 0), gh - 1),
                        min(max(i, 0), gw - 1),
                        min(max(k, 0), gd - 1),
                    )
                    out[b, y, x] += w * grid[b, jc, ic, kc]
    return out


def ref_slice_apply(grid, guide, image):
    coeffs = ref_slice(grid, guide)
    image = np.asarray(image, np.float64)
    out = np.zeros(image.shape)
    for r in range(3):
        out[..., r] = coeffs[..., 4 * r + 3]
        for c in range(3):
            out[..., r] += coeffs[..., 4 * r + c] * image[..., c]
    return out


def ref_soft_mask(guide, mask, grid_shape, mode):
    guide = np.clip(np.asarray(guide, np.float64), 0.0, 1.0)
    mask = np.asarray(mask, np.float64)
    gh, gw, gd = grid_shape
    batch, height, width = guide.shape
    out = np.zeros((batch, gh, gw, gd))
    for b, i, j in itertools.product(range(batch), range(gh), range(gw)):
        ys = [y for y in range(height) if y * gh // height == i]
        xs = [x for x in range(width) if x * gw // width == j]
        z = np.array([guide[b, y, x] for y in ys for x in xs])
        m = np.array([mask[b, y, x] for y in ys for x in xs])
        if z.size == 0:
            continue
        if mode == "normalized":
            bins = np.clip(np.floor(z * gd).astype(int), 0, gd - 1)
            for k in range(gd):
                sel = bins == k
                out[b, i, j, k] = m[sel].mean() if sel.any() else m.mean()
        else:
            z_d = np.ceil(z * m * gd).astype(int)
            values = np.full(gd, float((z_d > 0).sum()))
            for d in range(1, gd + 1):
                if (z_d == d).any():
                    values[d - 1] = (z_d == d).sum()
            out[b, i, j] = values / z.size
    return out


def ref_warp(image, flow):
    image = np.asarray(image, np.float64)
    batch, height, width, _ = image.shape
    out = np.zeros(image.shape)
    for b, y, x in itertools.product(range(batch), range(height), range(width)):
        sx = min(max(x + flow[b, y, x, 0], 0.0), width - 1.0)
        sy = min(max(y + flow[b, y, x, 1], 0.0), height - 1.0)
        x0, y0 = int(math.floor(sx)), int(math.floor(sy))
        x1, y1 = min(x0 + 1, width - 1), min(y0 + 1, height - 1)
        fx, fy = sx - x0, sy - y0
        out[b, y, x] = (1 - fy) * ((1 - fx) * image[b, y0, x0] + fx * image[b, y0, x1]) + fy * (
            (1 - fx) * image[b, y1, x0] + fx * image[b, y1, x1]
        )
    return out


def _random(shape, seed, low=0.0, high=1.0):
    return np.random.default_rng(seed).uniform(low, high, size=shape).astype(np.float32)


# ------------------------------------------------------------------------------------------------
# Slicing.


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("size", [(37, 53), (5, 300)])
def test_slice_matches_reference(impl, size):
    grid = _random((2, 4, 5, 3, 2), 0, -1, 1)
    guide = _random((2, *size), 1, -0.1, 1.1)  # also exercises the clipping of the guide
    got = ops.bilateral_slice(grid, guide, impl=impl).numpy()
    np.testing.assert_allclose(got, ref_slice(grid, guide), atol=1e-5)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("size", [(37, 53), (5, 300)])
def test_slice_apply_matches_reference(impl, size):
    grid = _random((2, 16, 16, 8, 12), 2, -1, 1)
    guide = _random((2, *size), 3)
    image = _random((2, *size, 3), 4)
    got = ops.bilateral_slice_apply(grid, guide, image, impl=impl).numpy()
    np.testing.assert_allclose(got, ref_slice_apply(grid, guide, image), atol=2e-5)


@pytest.mark.parametrize("rows", [1, 2, 3, 8])
def test_slice_apply_body_of_row_strips_is_the_whole_image(rows):
    # Strips at their global y coordinates (row_offset, total_height) put together = the whole
    # image's slice/apply, and the float64 reference; odd H (37) not divisible by the strip height.
    grid = tf.constant(_random((2, 16, 16, 8, 12), 40, -1, 1))
    guide = tf.constant(_random((2, 37, 53), 41, -0.1, 1.1))
    image = tf.constant(_random((2, 37, 53, 3), 42))
    body = tf.function(ops.slice_apply_body, jit_compile=True, autograph=False)
    whole = body(grid, guide, image).numpy()
    strips = [
        body(grid, guide[:, y : y + rows], image[:, y : y + rows], y, 37).numpy()
        for y in range(0, 37, rows)
    ]
    np.testing.assert_allclose(np.concatenate(strips, axis=1), whole, rtol=0, atol=1e-6)
    np.testing.assert_allclose(whole, ref_slice_apply(grid, guide, image), atol=2e-5)
    with pytest.raises(ValueError, match="row_offset"):
        ops.slice_apply_body(grid, guide, image, row_offset=0)


def test_large_images_take_the_fused_form_with_the_same_values(monkeypatch):
    # Above COEFFICIENT_BUFFER_PIXELS (here lowered to 1000) the XLA slice/apply of an image whose
    # shape is known at trace time writes no per-pixel coefficients: the fused form, whole images
    # and strips, and its gradients equal the buffered form's. Unknown shapes: the buffered form.
    monkeypatch.setattr(ops, "COEFFICIENT_BUFFER_PIXELS", 1000)
    traced = []
    real_fused = ops._fused_slice_apply
    monkeypatch.setattr(ops, "_fused_slice_apply", lambda *a: traced.append(1) or real_fused(*a))
    grid = tf.constant(_random((2, 16, 16, 8, 12), 43, -1, 1))
    guide = tf.constant(_random((2, 37, 53), 44, -0.1, 1.1))  # 3922 pixels: fused
    image = tf.constant(_random((2, 37, 53, 3), 45))
    reference = ref_slice_apply(grid, guide, image)
    body = tf.function(ops.slice_apply_body, jit_compile=True, autograph=False)  # traced here
    np.testing.assert_allclose(body(grid, guide, image), reference, atol=2e-5)
    assert len(traced) == 1
    strip = body(grid, guide[:, 10:30], image[:, 10:30], 10, 37)  # 2120 pixels: fused
    np.testing.assert_allclose(strip, reference[:, 10:30], atol=2e-5)
    small = body(grid, guide[:, :4], image[:, :4], 0, 37)  # 424 pixels: buffered
    np.testing.assert_allclose(small, reference[:, :4], atol=2e-5)
    assert len(traced) == 2
    dynamic = tf.function(
        ops.slice_apply_body,
        jit_compile=True,
        input_signature=[
            tf.TensorSpec([None, 16, 16, 8, 12]),
            tf.TensorSpec([None, None, None]),
            tf.TensorSpec([None, None, None, 3]),
        ],
    )
    np.testing.assert_allclose(dynamic(grid, guide, image), reference, atol=2e-5)
    assert len(traced) == 2  # unknown shapes: buffered

    def grads(fn):
        with tf.GradientTape() as tape:
            tape.watch([grid, guide, image])
            loss = tf.reduce_sum(fn(grid, guide, image) ** 2)
        return tape.gradient(loss, [grid, guide, image])

    fused = tf.function(real_fused, jit_compile=True, autograph=False)
    buffered = tf.function(
        lambda g, z, x: ops._apply(ops._sliced_coefficients(g, z), x), jit_compile=True
    )
    for a, b in zip(grads(fused), grads(buffered)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


_TAPE_AFTER_RELAXED_TRACE = """
import tensorflow as tf
from lvst_tf import ops
g = tf.random.normal([2, 16, 16, 8, 12]); z = tf.random.uniform([2, 9, 11])
x = tf.random.uniform([2, 9, 11, 3])
specs = [tf.TensorSpec([None, 16, 16, 8, 12]), tf.TensorSpec([None, None, None]),
         tf.TensorSpec([None, None, None, 3])]
tf.function(ops.bilateral_slice_apply, input_signature=specs)(g, z, x)
body = tf.function(ops.slice_apply_body, jit_compile=True, input_signature=specs)
for fn in (ops.bilateral_slice_apply, body):
    with tf.GradientTape() as tape:
        tape.watch([g, z, x])
        loss = tf.reduce_sum(fn(g, z, x))
    assert all(t is not None for t in tape.gradient(loss, [g, z, x]))
print("ok")
"""


def test_gradient_tape_over_a_relaxed_trace_does_not_abort():
    # An eager call under a tape reuses a trace with unknown shapes. A tf.cond on the run-time size
    # inside the XLA function made the XLA CPU runtime abort the process there (TF 2.21), so this
    # runs in a subprocess: a regression fails this test instead of killing the test run.
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(
        [sys.executable, "-c", _TAPE_AFTER_RELAXED_TRACE],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-2000:]


def test_non_xla_row_bands_match_reference():
    # impl="tf" cuts tall images into bands of rows; use tiny bands to exercise the seams.
    grid = _random((2, 16, 16, 8, 12), 37, -1, 1)
    guide = _random((2, 37, 53), 38)
    image = _random((2, 37, 53, 3), 39)
    got = ops._slice_rows_tf(tf.constant(grid), tf.constant(guide), tf.constant(image), band_rows=7)
    np.testing.assert_allclose(got.numpy(), ref_slice_apply(grid, guide, image), atol=2e-5)
    coeffs = ops._slice_rows_tf(tf.constant(grid), tf.constant(guide), band_rows=10)
    np.testing.assert_allclose(coeffs.numpy(), ref_slice(grid, guide), atol=2e-5)


@pytest.mark.parametrize("impl", IMPLS)
def test_identity_grid_returns_image(impl):
    image = _random((2, 37, 53, 3), 5)
    guide = _random((2, 37, 53), 6)
    out = ops.bilateral_slice_apply(ops.identity_grid(2), guide, image, impl=impl)
    np.testing.assert_allclose(out.numpy(), image, atol=1e-6)


@pytest.mark.parametrize("impl", IMPLS)
def test_guide_at_cell_centre_reads_that_depth_cell(impl):
    gd = 8
    grid = _random((1, 3, 4, gd, 5), 7, -1, 1)
    grid = np.broadcast_to(grid[:, :1, :1], grid.shape).copy()  # constant over x and y
    for k in range(gd):
        guide = np.full((1, 9, 11), (k + 0.5) / gd, np.float32)
        out = ops.bilateral_slice(grid, guide, impl=impl).numpy()
        np.testing.assert_allclose(out, np.broadcast_to(grid[0, 0, 0, k], out.shape), atol=1e-6)


@pytest.mark.parametrize("impl", IMPLS)
def test_constant_grid_gives_constant_affine_map(impl):
    matrix = _random((12,), 8, -1, 1)
    grid = np.broadcast_to(matrix, (2, 16, 16, 8, 12))
    image = _random((2, 23, 31, 3), 9)
    guide = _random((2, 23, 31), 10)
    out = ops.bilateral_slice_apply(grid, guide, image, impl=impl).numpy()
    a = matrix.reshape(3, 4)
    np.testing.assert_allclose(out, image @ a[:, :3].T + a[:, 3], atol=1e-5)


def test_guide_outside_unit_range_is_clipped():
    grid = _random((1, 4, 4, 8, 12), 11, -1, 1)
    image = _random((1, 13, 17, 3), 12)
    guide = _random((1, 13, 17), 13, -2, 3)
    out = ops.bilateral_slice_apply(grid, guide, image)
    clipped = ops.bilateral_slice_apply(grid, np.clip(guide, 0, 1), image)
    np.testing.assert_array_equal(out.numpy(), clipped.numpy())


@pytest.mark.parametrize("fn_name", ["bilateral_slice", "bilateral_slice_apply"])
def test_jit_matches_no_jit(fn_name):
    grid = _random((2, 16, 16, 8, 12), 14, -1, 1)
    guide = _random((2, 37, 53), 15)
    image = _random((2, 37, 53, 3), 16)
    args = (grid, guide, image) if fn_name == "bilateral_slice_apply" else (grid, guide)
    fn = getattr(ops, fn_name)
    eager_tf = fn(*args, impl="tf")
    jitted = tf.function(lambda *a: fn(*a), jit_compile=True)(*args)
    graph_tf = tf.function(lambda *a: fn(*a, impl="tf"))(*args)
    np.testing.assert_allclose(jitted.numpy(), eager_tf.numpy(), atol=1e-5)
    np.testing.assert_allclose(graph_tf.numpy(), eager_tf.numpy(), atol=1e-5)


def test_unknown_batch_and_size_in_graph():
    fn = tf.function(
        ops.bilateral_slice_apply,
        input_signature=[
            tf.TensorSpec([None, 16, 16, 8, 12]),
            tf.TensorSpec([None, None, None]),
            tf.TensorSpec([None, None, None, 3]),
        ],
    )
    image = _random((2, 19, 27, 3), 17)
    out = fn(ops.identity_grid(2), _random((2, 19, 27), 18), image)
    np.testing.assert_allclose(out.numpy(), image, atol=1e-6)


# Gradient checks. The tent is piecewise linear: it is not differentiable where a coordinate crosses
# a cell centre (a knot), nor where the guide is clipped at 0 or 1. The guides below keep
# guide * GD - 0.5 at least 0.15 away from any integer, so the central difference (step 1e-3 on a
# float32 guide) never straddles a knot. In float32, the numeric Jacobian carries round-off of about
# eps * |f| / delta ~ 1e-7 * 3 / 1e-3 ~ 3e-4 per entry; 2e-3 leaves a margin while still catching a
# wrong or missing gradient (those give errors of order 0.1 to 1).
GRAD_TOL = 2e-3


def _knot_free_guide(shape, seed, depth):
    rng = np.random.default_rng(seed)
    cell = rng.integers(0, depth - 1, size=shape)
    frac = rng.uniform(0.15, 0.85, size=shape)
    return ((cell + 0.5 + frac) / depth).astype(np.float32)


@pytest.mark.slow  # ~20 s per impl on a loaded 2-core machine (hundreds of graph calls)
@pytest.mark.parametrize("impl", IMPLS)
def test_gradients(impl):
    gd = 3
    grid = _random((1, 2, 2, gd, 12), 19, -1, 1)
    guide = _knot_free_guide((1, 3, 4), 20, gd)
    image = _random((1, 3, 4, 3), 21)

    for wrt in range(3):
        # A tf.function keeps the hundreds of finite-difference evaluations cheap.
        @tf.function
        def f(x, wrt=wrt):
            args = [tf.constant(grid), tf.constant(guide), tf.constant(image)]
            args[wrt] = x
            return ops.bilateral_slice_apply(*args, impl=impl)

        theoretical, numerical = tf.test.compute_gradient(
            f, [[grid, guide, image][wrt]], delta=1e-3
        )
        assert np.abs(theoretical[0]).max() > 0.05  # the gradient really reaches this input
        np.testing.assert_allclose(theoretical[0], numerical[0], atol=GRAD_TOL)


def test_slice_gradient_wrt_guide_general_channels():
    gd = 3
    grid = _random((1, 2, 2, gd, 2), 22, -1, 1)
    guide = _knot_free_guide((1, 2, 3), 23, gd)
    f = tf.function(lambda g: ops.bilateral_slice(tf.constant(grid), g))
    theoretical, numerical = tf.test.compute_gradient(f, [guide], delta=1e-3)
    np.testing.assert_allclose(theoretical[0], numerical[0], atol=GRAD_TOL)


@pytest.mark.parametrize(
    "args, match",
    [
        ((np.zeros((16, 16, 8, 12)), np.zeros((1, 4, 4)), np.zeros((1, 4, 4, 3))), "grid"),
        ((np.zeros((1, 16, 16, 8, 9)), np.zeros((1, 4, 4)), np.zeros((1, 4, 4, 3))), "12"),
        ((np.zeros((1, 16, 16, 8, 12)), np.zeros((4, 4)), np.zeros((1, 4, 4, 3))), "guide"),
        ((np.zeros((1, 16, 16, 8, 12)), np.zeros((1, 4, 4)), np.zeros((1, 4, 5, 3))), "image"),
        ((np.zeros((1, 16, 16, 8, 12)), np.zeros((1, 4, 4)), np.zeros((1, 4, 4, 4))), "image"),
        ((np.zeros((2, 16, 16, 8, 12)), np.zeros((1, 4, 4)), np.zeros((1, 4, 4, 3))), "batch"),
    ],
)
def test_slice_apply_bad_inputs(args, match):
    with pytest.raises(ValueError, match=match):
        ops.bilateral_slice_apply(*[a.astype(np.float32) for a in args])


def test_slice_bad_impl_and_runtime_size_mismatch():
    grid, guide, image = ops.identity_grid(1), tf.zeros([1, 4, 4]), tf.zeros([1, 4, 4, 3])
    with pytest.raises(ValueError, match="impl"):
        ops.bilateral_slice_apply(grid, guide, image, impl="cuda")
    with pytest.raises(ValueError, match="grid"):
        ops.bilateral_slice(tf.zeros([1, 2, 2]), guide)
    fn = tf.function(
        ops.bilateral_slice_apply,
        input_signature=[
            tf.TensorSpec([None, 16, 16, 8, 12]),
            tf.TensorSpec([None, None, None]),
            tf.TensorSpec([None, None, None, 3]),
        ],
    )
    with pytest.raises(tf.errors.InvalidArgumentError, match="image"):
        fn(grid, guide, tf.zeros([1, 4, 5, 3]))


# ------------------------------------------------------------------------------------------------
# Soft grid masks.


@pytest.mark.parametrize("mode", ["normalized", "paper"])
@pytest.mark.parametrize("size", [(37, 53), (5, 300), (64, 64)])
def test_soft_grid_mask_matches_reference(mode, size):
    grid_shape = (4, 5, 6) if size != (5, 300) else (2, 16, 8)
    guide = _random((2, *size), 24, -0.05, 1.05)
    mask = _random((2, *size), 25)
    mask[0, : size[0] // 2] = 1.0  # hard and soft regions
    mask[1, :, : size[1] // 3] = 0.0
    got = ops.soft_grid_mask(guide, mask, grid_shape=grid_shape, mode=mode).numpy()
    np.testing.assert_allclose(got, ref_soft_mask(guide, mask, grid_shape, mode), atol=1e-6)


def test_soft_grid_mask_full_and_empty():
    guide = _random((1, 32, 32), 26)
    full = ops.soft_grid_mask(guide, np.ones_like(guide), (4, 4, 8)).numpy()
    empty = ops.soft_grid_mask(guide, np.zeros_like(guide), (4, 4, 8)).numpy()
    np.testing.assert_array_equal(full, 1.0)
    np.testing.assert_array_equal(empty, 0.0)


def test_paper_soft_mask_flaw():
    """docs/method.md#soft-mask: a fully masked cell whose guide spans two bins gets values below 1.

    One 8x8 cell, GD = 8, mask = 1 everywhere; half the pixels have guide 0.1 (zD = 1), half 0.3
    (zD = 3). "paper" writes 32/64 = 0.5 into bins 0 and 2 (where the object's pixels are!) and
    64/64 = 1 elsewhere, so the background style would leak into the object; "normalized" gives 1.
    """
    guide = np.full((1, 8, 8), 0.1, np.float32)
    guide[:, 4:] = 0.3
    mask = np.ones_like(guide)
    paper = ops.soft_grid_mask(guide, mask, (1, 1, 8), mode="paper").numpy()[0, 0, 0]
    normalized = ops.soft_grid_mask(guide, mask, (1, 1, 8), mode="normalized").numpy()[0, 0, 0]
    np.testing.assert_allclose(paper, [0.5, 1, 0.5, 1, 1, 1, 1, 1])
    assert paper.min() < 1.0
    np.testing.assert_array_equal(normalized, 1.0)


def test_soft_grid_mask_edge_follows_guide():
    # Left half of the cell is the object (bright guide), right half the background (dark guide).
    guide = np.full((1, 8, 8), 0.2, np.float32)
    guide[:, :, :4] = 0.9
    mask = np.zeros_like(guide)
    mask[:, :, :4] = 1.0
    out = ops.soft_grid_mask(guide, mask, (1, 1, 8)).numpy()[0, 0, 0]
    assert out[7] == 1.0 and out[1] == 0.0 and out[4] == 0.5  # empty bins take the cell mean


def _dense_soft_mask(guide, mask, grid_shape):
    """The "normalized" soft mask by one-hot pooling matrices (an independent TF reference)."""
    gh, gw, gd = grid_shape
    h, w = guide.shape[1], guide.shape[2]
    cell_y = tf.one_hot(np.arange(h) * gh // h, gh)
    cell_x = tf.one_hot(np.arange(w) * gw // w, gw)
    onehot = tf.one_hot(tf.clip_by_value(tf.cast(tf.floor(guide * gd), tf.int32), 0, gd - 1), gd)

    def pool(v):
        return tf.einsum("yi,xj,byxd->bijd", cell_y, cell_x, v)

    bin_sum, bin_count = pool(onehot * mask[..., None]), pool(onehot)
    cell_mean = tf.math.divide_no_nan(pool(mask[..., None]), pool(tf.ones_like(mask)[..., None]))
    return tf.where(bin_count > 0, tf.math.divide_no_nan(bin_sum, bin_count), cell_mean)


def test_soft_grid_mask_gradient_and_out_of_range_masks():
    # The mask gradient (the model trains MaskNet through the soft grid mask) equals that of the
    # dense one-hot form; B = 2, cells of unequal size.
    guide = tf.constant(_random((2, 13, 19), 31))
    mask = tf.constant(_random((2, 13, 19), 32))
    weights = tf.constant(_random((2, 3, 4, 5), 33))
    grads = []
    for fn in (
        lambda m: ops.soft_grid_mask(guide, m, (3, 4, 5)),
        lambda m: _dense_soft_mask(guide, m, (3, 4, 5)),
    ):
        with tf.GradientTape() as tape:
            tape.watch(mask)
            value = fn(mask)
            loss = tf.reduce_sum(value * weights)
        grads.append((value.numpy(), tape.gradient(loss, mask).numpy()))
    np.testing.assert_allclose(grads[0][0], grads[1][0], atol=1e-6)
    np.testing.assert_allclose(grads[0][1], grads[1][1], atol=1e-6)
    # "paper" on a mask outside [0, 1]: depth indices are clipped, so no pixel of one cell lands in
    # another cell's bins: the right cells do not depend on the left cells' mask.
    paper_guide = _random((1, 8, 16), 35)
    results = []
    for left in (-0.5, 0.0, 1.7):
        paper_mask = _random((1, 8, 16), 34)
        paper_mask[..., :8] = left
        out = ops.soft_grid_mask(paper_guide, paper_mask, (2, 2, 4), mode="paper").numpy()
        assert out.min() >= 0.0 and out.max() <= 1.0
        results.append(out[:, :, 1])
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_array_equal(results[2], results[1])


def test_soft_grid_mask_bad_inputs():
    guide = np.zeros((1, 8, 8), np.float32)
    with pytest.raises(ValueError, match="mode"):
        ops.soft_grid_mask(guide, guide, mode="median")
    with pytest.raises(ValueError, match="mask"):
        ops.soft_grid_mask(guide, np.zeros((1, 8, 9), np.float32))
    with pytest.raises(ValueError, match="guide"):
        ops.soft_grid_mask(guide[0], guide[0])
    with pytest.raises(ValueError, match="grid_shape"):
        ops.soft_grid_mask(guide, guide, grid_shape=(4, 4))


# ------------------------------------------------------------------------------------------------
# Blending, keyframes, temporal interpolation.


def test_blend_grids_matches_reference():
    grids = _random((2, 3, 2, 3, 4, 12), 27, -1, 1)
    masks = _random((2, 3, 2, 3, 4), 28)
    masks[0, :, 0, 0, 0] = 0.0  # all-zero cell: equal weights
    want = np.zeros((2, 2, 3, 4, 12))
    for b, i, j, k in itertools.product(range(2), range(2), range(3), range(4)):
        m = masks[b, :, i, j, k].astype(np.float64)
        w = m / m.sum() if m.sum() > 0 else np.full(3, 1 / 3)
        want[b, i, j, k] = (w[:, None] * grids[b, :, i, j, k]).sum(0)
    np.testing.assert_allclose(ops.blend_grids(grids, masks).numpy(), want, atol=1e-6)


def test_blend_grids_bad_inputs():
    with pytest.raises(ValueError, match="grid_masks"):
        ops.blend_grids(np.zeros((1, 2, 2, 2, 2, 12)), np.zeros((1, 3, 2, 2, 2)))
    with pytest.raises(ValueError, match="12"):
        ops.blend_grids(np.zeros((1, 2, 2, 2, 2, 3)), np.zeros((1, 2, 2, 2, 2)))
    with pytest.raises(ValueError, match="grids"):
        ops.blend_grids(np.zeros((2, 2, 2, 2, 12)), np.zeros((1, 2, 2, 2, 2)))


def test_keyframe_indices():
    assert ops.keyframe_indices(1, 8) == [0]
    assert ops.keyframe_indices(10, 1) == list(range(10))
    assert ops.keyframe_indices(10, 4) == [0, 4, 8, 9]
    assert ops.keyframe_indices(9, 4) == [0, 4, 8]
    assert ops.keyframe_indices(5, 16) == [0, 4]
    for bad in [(0, 1), (5, 0), (5, -2), (5.0, 2), (5, 1.5)]:
        with pytest.raises(ValueError, match="num_frames|r"):
            ops.keyframe_indices(*bad)


@pytest.mark.parametrize("mode", ["linear", "hold"])
def test_interpolate_grids_matches_reference(mode):
    num_frames = 11
    keys = ops.keyframe_indices(num_frames, 4)  # [0, 4, 8, 10]
    key_grids = _random((len(keys), 2, 2, 3, 12), 29)
    got = ops.interpolate_grids(key_grids, keys, num_frames, mode=mode).numpy()
    assert got.shape == (num_frames, 2, 2, 3, 12)
    for t in range(num_frames):
        a = max(i for i, k in enumerate(keys) if k <= t)
        if mode == "hold" or keys[a] == t:
            want = key_grids[a]
        else:
            w = (t - keys[a]) / (keys[a + 1] - keys[a])
            want = (1 - w) * key_grids[a] + w * key_grids[a + 1]
        np.testing.assert_allclose(got[t], want, atol=1e-6)


def test_interpolate_grids_jit_and_tensor_indices():
    key_grids = _random((3, 2, 2, 2, 12), 30)
    keys = [0, 3, 6]
    fn = tf.function(
        lambda g, k: ops.interpolate_grids(g, k, 7), jit_compile=True, reduce_retracing=True
    )
    got = fn(tf.constant(key_grids), tf.constant(keys))
    np.testing.assert_allclose(
        got.numpy(), ops.interpolate_grids(key_grids, keys, 7).numpy(), atol=1e-6
    )


def test_interpolate_grids_bad_inputs():
    g = np.zeros((2, 2, 2, 2, 12), np.float32)
    with pytest.raises(ValueError, match="num_frames"):
        ops.interpolate_grids(g, [0, 3], 0)
    with pytest.raises(ValueError, match="mode"):
        ops.interpolate_grids(g, [0, 3], 4, mode="cubic")
    with pytest.raises(ValueError, match="increasing"):
        ops.interpolate_grids(g, [3, 0], 4)
    with pytest.raises(ValueError, match="key_indices"):
        ops.interpolate_grids(g, [0, 1, 3], 4)


def test_identity_grid():
    grid = ops.identity_grid(2, (3, 4, 5)).numpy()
    assert grid.shape == (2, 3, 4, 5, 12) and grid.dtype == np.float32
    np.testing.assert_array_equal(grid[1, 2, 3, 4].reshape(3, 4), np.eye(3, 4))
    with pytest.raises(ValueError, match="batch"):
        ops.identity_grid(0)


# ------------------------------------------------------------------------------------------------
# Warp.


def test_warp_integer_shift_and_zero_flow():
    image = _random((2, 9, 12, 3), 31)
    np.testing.assert_array_equal(ops.warp(image, np.zeros((2, 9, 12, 2))).numpy(), image)
    flow = np.zeros((2, 9, 12, 2), np.float32)
    flow[..., 0], flow[..., 1] = 2.0, -1.0  # out(y, x) = image(y - 1, x + 2)
    out = ops.warp(image, flow).numpy()
    np.testing.assert_allclose(out[:, 1:, :-2], image[:, :-1, 2:], atol=1e-6)
    np.testing.assert_allclose(out[:, 0, :-2], image[:, 0, 2:], atol=1e-6)  # clamped to row 0
    np.testing.assert_allclose(out[:, 1:, -1], image[:, :-1, -1], atol=1e-6)  # clamped column


def test_warp_matches_reference_and_jit():
    image = _random((2, 7, 10, 2), 32)
    flow = _random((2, 7, 10, 2), 33, -4, 4)
    want = ref_warp(image, flow)
    np.testing.assert_allclose(ops.warp(image, flow).numpy(), want, atol=1e-5)
    jitted = tf.function(ops.warp, jit_compile=True)(tf.constant(image), tf.constant(flow))
    np.testing.assert_allclose(jitted.numpy(), want, atol=1e-5)


def test_warp_bad_inputs():
    with pytest.raises(ValueError, match="flow"):
        ops.warp(np.zeros((1, 4, 4, 3)), np.zeros((1, 4, 4, 3)))
    with pytest.raises(ValueError, match="flow"):
        ops.warp(np.zeros((1, 4, 4, 3)), np.zeros((1, 4, 5, 2)))
    with pytest.raises(ValueError, match="image"):
        ops.warp(np.zeros((4, 4, 3)), np.zeros((1, 4, 4, 2)))


# ------------------------------------------------------------------------------------------------
# jit_compile=True gives the same results for the remaining ops.


@pytest.mark.parametrize("mode", ["normalized", "paper"])
def test_soft_grid_mask_and_blend_under_jit(mode):
    guide = _random((2, 37, 53), 34)
    mask = _random((2, 37, 53), 35)
    grids = _random((2, 2, 4, 4, 8, 12), 36, -1, 1)

    def fn(guide, mask, grids):
        fg = ops.soft_grid_mask(guide, mask, (4, 4, 8), mode=mode)
        bg = ops.soft_grid_mask(guide, 1.0 - mask, (4, 4, 8), mode=mode)
        return fg, ops.blend_grids(grids, tf.stack([fg, bg], axis=1))

    eager = fn(guide, mask, grids)
    jitted = tf.function(fn, jit_compile=True)(guide, mask, grids)
    for a, b in zip(eager, jitted):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)


@pytest.mark.parametrize("num_frames,r", [(1, 1), (1, 4), (9, 1), (9, 4), (10, 4), (8, 8), (17, 8)])
def test_keyframe_schedule_matches_a_python_reference(num_frames, r):
    keys = list(range(0, num_frames, r))
    if keys[-1] != num_frames - 1:
        keys.append(num_frames - 1)
    for args in ((num_frames, r), (tf.constant(num_frames), tf.constant(r))):
        plan = ops.keyframe_schedule(*args)
        assert plan.keys.numpy().tolist() == keys
        for t in range(num_frames):
            a = max(k for k in keys if k <= t)
            b = min((k for k in keys if k > t), default=a)
            w = 0.0 if b == a else (t - a) / (b - a)
            assert (keys[plan.lower[t]], keys[plan.upper[t]]) == (
                a,
                b if t != a else keys[plan.upper[t]],
            )
            assert float(plan.weight[t]) == pytest.approx(w)
    assert ops.keyframe_indices(num_frames, r) == keys


def test_keyframe_schedule_traces_with_tensor_inputs():
    fn = tf.function(lambda n, r: ops.keyframe_schedule(n, r).keys, jit_compile=False)
    assert fn(tf.constant(10), tf.constant(3)).numpy().tolist() == [0, 3, 6, 9]
    assert fn(tf.constant(11), tf.constant(3)).numpy().tolist() == [0, 3, 6, 9, 10]


def test_region_masks_background_is_the_complement_of_the_union():
    m = np.random.default_rng(3).uniform(size=(2, 5, 4, 3)).astype(np.float32)
    regions = ops.region_masks(m).numpy()
    assert regions.shape == (2, 5, 4, 4)
    np.testing.assert_array_equal(regions[..., :3], m)
    np.testing.assert_allclose(regions[..., 3], 1.0 - m.max(axis=-1), atol=0)
    with pytest.raises(ValueError, match="object_masks"):
        ops.region_masks(np.float32(0.5))
