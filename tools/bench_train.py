r"""Training speed on this machine: steps/s of the training step and clips/s of the input pipeline.

    python tools/bench_train.py                       # the quickstart config
    python tools/bench_train.py --gin_file=smoke.gin --steps=5

Measures, in one run: (1) the input pipeline alone (`make_train_dataset`, clips/s, after a warm-up
batch), (2) the training step alone on one cached batch (steps/s, after the step is traced), with the losses
reusing the VGG taps the model computed and, as the baseline, recomputing them, the two alternated
step by step (median times, and the per-pair ratios), (3) both
together (steps/s end to end, as `train` runs them). Then prints the estimated wall-clock time of the
paper schedule on a V100-class GPU: an ESTIMATE from the VGG-19 work per step (the dominant cost)
and an assumed sustained GPU throughput, beside the paper's reported time (see docs/training.md). Timings are noisy on a shared machine; compare ratios within a run.
"""

import os
import statistics
import time

from absl import app, flags

_GIN_FILE = flags.DEFINE_multi_string("gin_file", ["quickstart.gin"], "Gin config file(s).")
_GIN_BINDINGS = flags.DEFINE_multi_string("gin_bindings", [], "Extra gin bindings.")
_STEPS = flags.DEFINE_integer("steps", 10, "Timed training steps (each of the two step timings).")
_BATCHES = flags.DEFINE_integer("batches", 10, "Timed input-pipeline batches.")

# The paper's schedule (docs/method.md#training) and its cost: "about two days on one V100".
PAPER_STEPS = 20_000 + 90_000
PAPER_DAYS_REPORTED = 2.0


def _time(fn, count):
    start = time.perf_counter()
    for _ in range(count):
        fn()
    return (time.perf_counter() - start) / count


def main(argv):
    del argv
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from lvst_tf.training import config  # noqa: PLC0415

    config.parse_gin_config(_GIN_FILE.value, _GIN_BINDINGS.value)

    import keras  # noqa: PLC0415
    import tensorflow as tf  # noqa: PLC0415

    import gin  # noqa: PLC0415
    from lvst_tf import data, losses, models, training  # noqa: PLC0415
    from lvst_tf.evaluation import timing  # noqa: PLC0415
    from lvst_tf.training import gin_utils  # noqa: PLC0415

    # What `train` would get from this config (its own defaults under the bindings).
    bindings = gin_utils.configured_arguments(training.train)
    source = training.make_source(bindings["data_root"], bindings["train_split"])
    with_flow = losses.loss_needs_flow()
    dataset = data.make_train_dataset(source, seed=0, with_flow=with_flow)
    spec = dataset.element_spec["frames"].shape
    batch_size, clip_length, crop = int(spec[0]), int(spec[1]), int(spec[2])

    iterator = iter(dataset)
    first = next(iterator)  # warm-up: worker start, file reads
    data_s = _time(lambda: next(iterator), _BATCHES.value)
    clips_per_s = batch_size / data_s

    strategy = tf.distribute.get_strategy()
    model = models.build_model()
    variables = training.select_variables(model, bindings["trainable"])
    optimizer = keras.optimizers.Adam(learning_rate=1e-4)
    optimizer.build(variables)

    def traced_step(reuse):
        # compute_losses reads its gin bindings when the step is traced.
        with gin.unlock_config():
            gin.bind_parameter("compute_losses.reuse_model_features", reuse)
        step_fn, _ = training.make_step_functions(model, optimizer, variables, strategy, batch_size)
        step = tf.function(step_fn)
        start = time.perf_counter()
        step(first)
        return step, time.perf_counter() - start

    # The losses' VGG passes with and without reusing the taps the model computed, same run.
    unshared, _ = traced_step(False)
    step, trace_s = traced_step(True)
    # Step by step alternation, so a change of machine load hits both alike; each pair gives a ratio.
    unshared_times, step_times = [], []
    for _ in range(_STEPS.value):
        unshared_times.append(_time(lambda: unshared(first), 1))
        step_times.append(_time(lambda: step(first), 1))
    ratios = sorted(u / s for u, s in zip(unshared_times, step_times))
    unshared_s, step_s = statistics.median(unshared_times), statistics.median(step_times)
    load = os.getloadavg()[0]
    e2e_s = _time(lambda: step(next(iterator)), _STEPS.value)

    print(f"config: {' '.join(_GIN_FILE.value)} {' '.join(_GIN_BINDINGS.value)}")
    print(
        f"batch {batch_size} clips x {clip_length} frames x {crop}x{crop}, low_res "
        f"{model.low_res}, flow={with_flow}, {timing.device_description()}, 1-minute load average "
        f"{load:.1f} after the step timings; step times are medians"
    )
    print("| measurement | value |")
    print("|---|---|")
    print(f"| first step (tracing) | {trace_s:.1f} s |")
    print(
        "| training step alone, losses recompute VGG taps (before) | "
        f"{1 / unshared_s:.2f} steps/s ({unshared_s:.2f} s/step) |"
    )
    print(
        "| training step alone, losses reuse the model's VGG taps (now) | "
        f"{1 / step_s:.2f} steps/s ({step_s:.2f} s/step) |"
    )
    print(
        f"| before / now, per alternated pair of steps ({len(ratios)} pairs) | min "
        f"{ratios[0]:.2f}x, median {statistics.median(ratios):.2f}x, max {ratios[-1]:.2f}x |"
    )
    print(f"| input pipeline alone | {clips_per_s:.2f} clips/s ({data_s:.2f} s/batch) |")
    print(f"| end to end (pipeline + step) | {1 / e2e_s:.2f} steps/s ({e2e_s:.2f} s/step) |")
    if "quickstart" in " ".join(_GIN_FILE.value):
        num_steps = int(bindings["num_steps"])
        total = trace_s + num_steps * max(e2e_s, step_s)
        print(f"| quickstart ({num_steps} steps) estimated wall-clock | {total / 60:.1f} min |")
    num_regions = int(dataset.element_spec["styles"].shape[1])
    flops = step_gflops(crop, batch_size, clip_length, num_regions)
    print(
        f"| VGG-19 work per step (estimated) | {flops:.0f} GFLOP -> {flops / step_s:.0f} GFLOP/s here |"
    )
    print()
    paper = step_gflops(256, 2, 5, 2)
    gpu_s = paper / V100_EFFECTIVE_GFLOPS
    print(
        "Paper schedule on a V100-class GPU: ESTIMATE, not measured. Basis: the VGG-19 work "
        f"(to relu4_1) dominates a step: {paper / 1000:.1f} TFLOP per paper-size step (256x256, "
        f"batch 2 x 5 frames, 2 regions: {_images(2, 5, 2)} image-passes of {VGG_GFLOPS_256:.1f} GFLOP)."
        f" At ~{V100_EFFECTIVE_GFLOPS / 1000:.0f} TFLOP/s sustained fp32 convolution throughput "
        f"(about half a V100's peak) that is ~{gpu_s:.2f} s/step, i.e. ~"
        f"{PAPER_STEPS * gpu_s / 3600:.0f} h for the {PAPER_STEPS:,} steps (20k mask pre-training + "
        "90k end to end; phase 1 still runs the forward pass) if the input pipeline keeps up: it "
        f"must deliver {2 / gpu_s:.1f} clips/s (DIS flow on 4 pairs per clip at 256x256). The paper "
        f"reports about {PAPER_DAYS_REPORTED:g} days on one V100 (~"
        f"{PAPER_DAYS_REPORTED * 86400 / PAPER_STEPS:.1f} s/iteration): plan for between the two."
    )


# VGG-19 up to block4_conv1 at 256x256: 31.6 GFLOP (2 x multiply-adds of the 9 convolutions).
VGG_GFLOPS_256 = 31.6
V100_EFFECTIVE_GFLOPS = 7000.0


def _images(batch, frames, regions):
    # Per frame: VGG of the frame in the model, of the output and of the frame in the losses, and
    # the backward pass through VGG for the output (~2 forward passes); per style: model + loss.
    return batch * frames * 5 + batch * regions * 2


def step_gflops(size, batch, frames, regions):
    """VGG-19 GFLOP of one training step at `size` x `size` (the dominant cost)."""
    return _images(batch, frames, regions) * VGG_GFLOPS_256 * (size / 256.0) ** 2


def cli_main():
    """The command line."""
    app.run(main)


if __name__ == "__main__":
    cli_main()
