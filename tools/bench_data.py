"""Throughput of the training input pipeline on the shipped samples: clips per second.

    python tools/bench_data.py [--batches 10] [--crop_size 256] [--davis_dir DIR]

Prints a table for the pipeline with and without optical flow (and the NumPy element builder alone,
single-threaded, for reference). Only ratios measured in one run are meaningful on a shared machine.
"""

import time

from absl import app, flags

from lvst_tf import data

_BATCHES = flags.DEFINE_integer("batches", 10, "Batches timed per setting (after one warm-up).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 2, "Clips per batch.")
_CROP_SIZE = flags.DEFINE_integer("crop_size", 256, "Crop side.")
_CLIP_LENGTH = flags.DEFINE_integer("clip_length", 5, "Frames per clip.")
_DAVIS_DIR = flags.DEFINE_string("davis_dir", None, "DAVIS folder (default: samples/davis).")


def _time_dataset(source, with_flow):
    dataset = data.make_train_dataset(
        source,
        batch_size=_BATCH_SIZE.value,
        clip_length=_CLIP_LENGTH.value,
        crop_size=_CROP_SIZE.value,
        seed=0,
        with_flow=with_flow,
    )
    iterator = iter(dataset)
    next(iterator)  # warm-up: tracing, first decode
    start = time.perf_counter()
    for _ in range(_BATCHES.value):
        next(iterator)
    return _BATCHES.value * _BATCH_SIZE.value / (time.perf_counter() - start)


def _time_sampler(source, with_flow):
    sampler = data.ClipSampler(
        source,
        clip_length=_CLIP_LENGTH.value,
        crop_size=_CROP_SIZE.value,
        seed=0,
        with_flow=with_flow,
    )
    sampler.element(0)
    count = _BATCHES.value * _BATCH_SIZE.value
    start = time.perf_counter()
    for index in range(1, count + 1):
        sampler.element(index)
    return count / (time.perf_counter() - start)


def main(argv):
    del argv
    source = data.DavisFolder(_DAVIS_DIR.value or data.sample_davis_dir(), split="train")
    rows = []
    for with_flow in (False, True):
        rows.append(("tf.data pipeline", with_flow, _time_dataset(source, with_flow)))
        rows.append(("ClipSampler, 1 thread", with_flow, _time_sampler(source, with_flow)))
    base = rows[0][2]
    print(f"\nclips of {_CLIP_LENGTH.value}x{_CROP_SIZE.value}x{_CROP_SIZE.value}, source {source}")
    print(f"| {'setting':<22} | flow  | clips/s | vs pipeline without flow |")
    print(f"|{'-' * 24}|-------|---------|--------------------------|")
    for name, with_flow, rate in rows:
        print(f"| {name:<22} | {str(with_flow):<5} | {rate:7.2f} | {rate / base:24.2f} |")


def cli_main():
    """The command line."""
    app.run(main)


if __name__ == "__main__":
    cli_main()
