"""Benchmark of `lvst_tf.ops.bilateral_slice_apply`: time, peak memory, and ratios to baselines.

Prints a markdown table. For every size (H x W, batch 1, a 16x16x8x12 grid) it measures, in one
process with the calls interleaved so the ratios share the machine's load:
  - ours: `bilateral_slice_apply` (default `impl="auto"`), ms per frame (median of the repeats);
  - floor: a fused (XLA) elementwise pass `image * guide[..., None] + c` that reads the image and
    the guide and writes 3 channels: the memory-bandwidth floor of any slice/apply on this machine;
  - torch (only if PyTorch is importable): `torch.nn.functional.grid_sample` on the 5-D grid
    `[1, 12, GD, GH, GW]`, bilinear, `padding_mode="border"`, `align_corners=False`, coordinates
    `2(x + .5)/W - 1, 2(y + .5)/H - 1, 2g - 1` (the same slice), followed by the same affine apply.
Peak memory of our op is measured in a fresh subprocess per size: the growth of the peak resident
set (VmHWM, reset after a warm-up call and a malloc_trim through /proc/self/clear_refs, or ru_maxrss
of a cold call where that is not available) during one call, output included.

Usage:
  python tools/bench_ops.py                      # 512x512 1024x1024 2000x2000 3000x4000
  python tools/bench_ops.py --sizes 64x96 --repeats 1
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import subprocess
import sys
import time

DEFAULT_SIZES = ("512x512", "1024x1024", "2000x2000", "3000x4000")
GRID_SHAPE = (16, 16, 8)


def parse_size(text):
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        height = width = 0
    if height < 1 or width < 1:
        raise argparse.ArgumentTypeError(f"a size is HxW with positive ints, got {text!r}")
    return height, width


def _inputs(height, width, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    grid = rng.normal(0.0, 0.3, size=(1, *GRID_SHAPE, 12)).astype(np.float32)
    grid += np.array([1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0], np.float32)
    guide = rng.random((1, height, width), dtype=np.float32)
    image = rng.random((1, height, width, 3), dtype=np.float32)
    return grid, guide, image


def _torch_fn(grid, guide, image):
    """Returns a callable running grid_sample + apply in torch, or None without torch."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(os.cpu_count() or 1)
    _, height, width = guide.shape
    # [1, GH, GW, GD, 12] -> [N=1, C=12, D=GD, H=GH, W=GW]
    volume = torch.from_numpy(grid).permute(0, 4, 3, 1, 2).contiguous()
    guide_t = torch.from_numpy(guide)
    image_t = torch.from_numpy(image)
    xs = (2.0 * (torch.arange(width, dtype=torch.float32) + 0.5) / width - 1.0).expand(
        height, width
    )
    ys = (2.0 * (torch.arange(height, dtype=torch.float32) + 0.5) / height - 1.0)[:, None]
    ys = ys.expand(height, width)

    def run():
        with torch.no_grad():
            coords = torch.stack([xs, ys, 2.0 * guide_t[0] - 1.0], dim=-1)[None, None]
            coeffs = torch.nn.functional.grid_sample(
                volume, coords, mode="bilinear", padding_mode="border", align_corners=False
            )[:, :, 0]  # [1, 12, H, W]
            a = coeffs.view(1, 3, 4, height, width)
            img = image_t.permute(0, 3, 1, 2)  # [1, 3, H, W]
            out = (a[:, :, :3] * img[:, None]).sum(dim=2) + a[:, :, 3]
            return out.permute(0, 2, 3, 1).contiguous().numpy()

    return run


def _median_ms(times):
    times = sorted(times)
    return 1000.0 * times[len(times) // 2]


def time_worker(height, width, repeats, impl="auto"):
    """Times ours, the floor and torch, interleaved; returns a dict of results."""
    import numpy as np
    import tensorflow as tf

    from lvst_tf import ops

    grid, guide, image = _inputs(height, width)
    grid_t, guide_t, image_t = (tf.constant(v) for v in (grid, guide, image))

    def ours():
        return ops.bilateral_slice_apply(grid_t, guide_t, image_t, impl=impl).numpy()

    floor_fn = tf.function(lambda i, g: i * g[..., None] + 0.25, jit_compile=True)

    def floor():
        return floor_fn(image_t, guide_t).numpy()

    runners = {"ours": ours, "floor": floor}
    torch_run = _torch_fn(grid, guide, image)
    if torch_run is not None:
        runners["torch"] = torch_run
    outputs = {name: fn() for name, fn in runners.items()}  # warm-up (and XLA compilation)
    times = {name: [] for name in runners}
    for _ in range(repeats):
        for name, fn in runners.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    result = {name + "_ms": _median_ms(t) for name, t in times.items()}
    if "torch" in outputs:
        result["torch_max_abs_diff"] = float(np.abs(outputs["torch"] - outputs["ours"]).max())
    return result


def _release_free_memory():
    """Returns freed heap pages to the OS (glibc malloc_trim), where available."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def memory_worker(height, width, impl="auto"):
    """Peak resident-memory growth (MB) of one call of our op, output included."""
    import tensorflow as tf

    from lvst_tf import ops
    from lvst_tf.evaluation import timing

    grid, guide, image = (tf.constant(v) for v in _inputs(height, width))
    small = (tf.constant(v) for v in _inputs(8, 8))
    ops.bilateral_slice_apply(*small, impl=impl).numpy()  # import-time and tracing allocations
    try:
        ops.bilateral_slice_apply(grid, guide, image, impl=impl).numpy()  # compile for this size
        _release_free_memory()  # so the next call cannot hide its peak in recycled heap pages
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
        base = timing.process_memory_kb("VmRSS")
        ops.bilateral_slice_apply(grid, guide, image, impl=impl).numpy()
        return {
            "peak_mb": (timing.process_memory_kb("VmHWM") - base) / 1024.0,
            "peak_method": "VmHWM",
        }
    except (OSError, KeyError):
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        ops.bilateral_slice_apply(grid, guide, image, impl=impl).numpy()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return {"peak_mb": (peak - base) / 1024.0, "peak_method": "ru_maxrss"}


def _run_worker(kind, size, repeats, impl):
    cmd = [sys.executable, __file__, "--worker", kind, "--sizes", "x".join(map(str, size))]
    cmd += ["--repeats", str(repeats), "--impl", impl]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {kind} {size} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _load():
    """The machine's 1-minute load average (other jobs inflate absolute times), or None."""
    from lvst_tf.evaluation import timing  # noqa: PLC0415

    return (timing.load_averages() or (None,))[0]


def _fmt(value, spec):
    return "-" if value is None else format(value, spec)


def make_table(rows, have_torch):
    head = "| H x W | ours / floor | ours / torch | ours ms | floor ms | torch ms | peak MB (op) |"
    lines = [head, "|---|---|---|---|---|---|---|"]
    for (height, width), r in rows:
        torch_ms = r.get("torch_ms")
        lines.append(
            f"| {height} x {width} | {r['ours_ms'] / r['floor_ms']:.1f}x | "
            f"{_fmt(r['ours_ms'] / torch_ms if torch_ms else None, '.2f')} | "
            f"{r['ours_ms']:.1f} | {r['floor_ms']:.1f} | {_fmt(torch_ms, '.1f')} | "
            f"{r['peak_mb']:.0f} |"
        )
    if have_torch:
        diffs = [r["torch_max_abs_diff"] for _, r in rows]
        lines.append(f"\nmax |ours - torch| over all sizes: {max(diffs):.2e}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="+", type=parse_size, default=None, help="HxW ...")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per method and size")
    parser.add_argument(
        "--impl", default="auto", choices=("auto", "xla", "tf"), help="bilateral_slice_apply impl"
    )
    parser.add_argument("--worker", choices=("time", "memory"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    sizes = args.sizes or [parse_size(s) for s in DEFAULT_SIZES]
    if args.worker:
        height, width = sizes[0]
        if args.worker == "time":
            result = time_worker(height, width, args.repeats, args.impl)
        else:
            result = memory_worker(height, width, args.impl)
        print(json.dumps(result))
        return 0

    import tensorflow as tf  # only for the machine description

    load_start = _load()
    rows = []
    for i, size in enumerate(sizes):
        print(f"[{i + 1}/{len(sizes)}] {size[0]}x{size[1]} ...", file=sys.stderr, flush=True)
        result = _run_worker("time", size, args.repeats, args.impl)
        result.update(_run_worker("memory", size, args.repeats, args.impl))
        rows.append((size, result))
    have_torch = all("torch_ms" in r for _, r in rows)
    print(
        f"impl={args.impl!r}; TensorFlow {tf.__version__}, {os.cpu_count()} CPU cores, batch 1, "
        f"grid "
        f"{GRID_SHAPE[0]}x{GRID_SHAPE[1]}x{GRID_SHAPE[2]}x12, median of {args.repeats} calls; "
        f"peak memory by {rows[0][1]['peak_method']}"
        + ("" if have_torch else "; torch not installed")
        + f"; 1-minute load average {_fmt(load_start, '.1f')} at the start, "
        f"{_fmt(_load(), '.1f')} at the end"
    )
    print(make_table(rows, have_torch))
    return 0


def cli_main():
    """The command line."""
    sys.exit(main())


if __name__ == "__main__":
    cli_main()
