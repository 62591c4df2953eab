"""The training input pipeline (docs/method.md#losses, #training): clips, clean/noisy masks, styles
and optical flow.

Each element is built in NumPy/OpenCV by :class:`ClipSampler` from its index alone: the element's
random generator is seeded by `(seed, index)`. `tf.data` maps the element indices through
`tf.numpy_function` in parallel with `deterministic=True`, so a seed fixes every batch, and a resumed
run continues with new data by starting at the element index it had reached (`start_step`).

Process exit: tf.data runs the Python builder in its own C++ threads and keeps several elements in
flight (parallel map, prefetch). If a dataset iterator is still alive when the interpreter shuts down
(an iterator held by a module global, or a script that just stops), its destructor runs during
interpreter finalization and waits for those in-flight calls; but once finalization has begun, a
thread that tries to take the GIL is ended by Python (`pthread_exit`), so the call never finishes (a
hang) or its C++ frames are torn down mid-call ("terminate called without an active exception",
exit 134). An `atexit` hook (:func:`close_pipelines`), which runs while threads can still take the
GIL, therefore closes every builder (a later call fails at once instead of building) and waits until
no call is running and none has started for a short quiet period, so that the buffers are full and
nothing calls into Python any more when the iterator is finally destroyed.
"""

from __future__ import annotations

import atexit
import contextlib
import math
import os
import pathlib
import threading
import time
import weakref

import cv2
import numpy as np

import gin
from lvst_tf import flow as flow_lib
from lvst_tf.data import mask_noise as mask_noise_lib
from lvst_tf.data import sources as sources_lib
from lvst_tf.data import styles as styles_lib

_FOREGROUND_MODES = ("subset", "union")
_MAX_ATTEMPTS = 8  # draws of a clip until one shows an object in the crop


def _resolve_source(source):
    if isinstance(source, sources_lib.ClipSource):
        return source
    if isinstance(source, (str, pathlib.Path)):
        root = pathlib.Path(source)
        if (root / "JPEGImages").is_dir():
            return sources_lib.DavisFolder(root, split="train")
        return sources_lib.VideoFolder(root)
    if (
        hasattr(source, "load_clip")
        and hasattr(source, "num_frames")
        and hasattr(source, "__len__")
    ):
        return source
    raise ValueError(
        "source must be a DavisFolder / TfdsDavis / VideoFolder (or a folder path), got "
        f"{type(source).__name__}."
    )


def _resize_instances(instances, size, interp):
    """Resizes instance maps `[T, h, w]` to `[T, size, size]` like the frames: each instance's
    coverage is resampled with the frames' filter and a pixel takes the id that covers most of it
    (nearest-neighbour would shift edges by up to half a pixel against the frames)."""
    ids = np.flatnonzero(np.bincount(instances.ravel(), minlength=1))
    if len(ids) == 1:
        return np.full((len(instances), size, size), ids[0], np.uint8)
    out = np.empty((len(instances), size, size), np.uint8)
    for t, frame_ids in enumerate(instances):
        coverage = np.stack(
            [
                cv2.resize((frame_ids == i).astype(np.float32), (size, size), interpolation=interp)
                for i in ids
            ]
        )
        out[t] = ids[np.argmax(coverage, axis=0)]
    return out


class ClipSampler:
    """Builds training elements in NumPy. See :func:`make_train_dataset` for the arguments."""

    def __init__(
        self,
        source,
        clip_length=5,
        crop_size=256,
        num_regions=2,
        style_source=None,
        seed=None,
        with_flow=True,
        mask_noise=None,
        foreground="subset",
        scale_range=(0.6, 1.0),
        flip=True,
        flow_preset="fast",
    ):
        if not isinstance(clip_length, int) or clip_length < 1:
            raise ValueError(f"clip_length must be an integer >= 1, got {clip_length!r}.")
        if with_flow and clip_length < 2:
            raise ValueError(
                "clip_length must be >= 2 when with_flow=True (flow needs frame pairs)."
            )
        if not isinstance(crop_size, int) or crop_size < 8:
            raise ValueError(f"crop_size must be an integer >= 8, got {crop_size!r}.")
        if not isinstance(num_regions, int) or num_regions < 2:
            raise ValueError(
                f"num_regions must be an integer K >= 2 (K - 1 object masks + background), got "
                f"{num_regions!r}."
            )
        if foreground not in _FOREGROUND_MODES:
            raise ValueError(f"foreground must be one of {_FOREGROUND_MODES}, got {foreground!r}.")
        low, high = scale_range
        if not 0 < low <= high:
            raise ValueError(
                f"scale_range must be (low, high) with 0 < low <= high, got {scale_range}."
            )
        if flow_preset not in flow_lib.PRESETS:
            raise ValueError(
                f"flow_preset must be one of {sorted(flow_lib.PRESETS)}, got {flow_preset!r}."
            )
        if seed is not None and (not isinstance(seed, (int, np.integer)) or seed < 0):
            raise ValueError(f"seed must be None or an integer >= 0, got {seed!r}.")
        if mask_noise is None:
            mask_noise = mask_noise_lib.MaskNoise()
        if not callable(mask_noise):
            raise ValueError(
                "mask_noise must be a MaskNoise (or a callable (masks, rng) -> masks)."
            )
        self.source = _resolve_source(source)
        self.eligible = [
            i for i in range(len(self.source)) if self.source.num_frames(i) >= clip_length
        ]
        if not self.eligible:
            raise ValueError(
                f"source: no sequence has clip_length={clip_length} frames (source has "
                f"{len(self.source)} sequences)."
            )
        self.styles = styles_lib.make_style_source(style_source, self.source)
        self.clip_length, self.crop_size, self.num_regions = clip_length, crop_size, num_regions
        self.seed = int(np.random.SeedSequence().entropy) if seed is None else int(seed)
        self.with_flow, self.mask_noise, self.foreground = with_flow, mask_noise, foreground
        self.scale_range, self.flip, self.flow_preset = (float(low), float(high)), flip, flow_preset

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence([self.seed, int(index)]))

    def _crop(self, frames, instances, rng):
        """Shared random window of all frames, scale jitter, flip; returns `[T,S,S,3]`, `[T,S,S]`."""
        size = self.crop_size
        height, width = frames.shape[1:3]
        short = min(height, width)
        # Scale jitter relative to the native frame, but never below the crop: small frames go up.
        zoom = math.exp(rng.uniform(math.log(self.scale_range[0]), math.log(self.scale_range[1])))
        factor = max(size / short, zoom)
        window = min(short, max(1, round(size / factor)))
        y0 = int(rng.integers(0, height - window + 1))
        x0 = int(rng.integers(0, width - window + 1))
        frames = frames[:, y0 : y0 + window, x0 : x0 + window]
        instances = instances[:, y0 : y0 + window, x0 : x0 + window]
        if window != size:
            interp = cv2.INTER_AREA if window > size else cv2.INTER_LINEAR
            frames = np.stack([cv2.resize(f, (size, size), interpolation=interp) for f in frames])
            instances = _resize_instances(instances, size, interp)
        if self.flip and rng.random() < 0.5:
            frames, instances = frames[:, :, ::-1], instances[:, :, ::-1]
        return np.ascontiguousarray(frames), np.ascontiguousarray(instances)

    def _clean_masks(self, instances, rng):
        """`[T,S,S,K-1]` float32: the foreground instances (random subset or union), split over K-1."""
        # bincount: much cheaper than np.unique on uint8 maps.
        present = np.flatnonzero(np.bincount(instances.ravel(), minlength=1))
        present = present[present != 0].astype(np.uint8)
        masks = np.zeros(instances.shape + (self.num_regions - 1,), np.float32)
        if present.size == 0:
            return masks
        if self.foreground == "subset":
            count = int(rng.integers(1, present.size + 1))
            chosen = rng.choice(present, size=count, replace=False)
        else:
            chosen = rng.permutation(present)
        for position, instance in enumerate(chosen):
            masks[..., position % (self.num_regions - 1)] += instances == instance
        return np.minimum(masks, 1.0)

    def element(self, index: int, stop=None) -> dict[str, np.ndarray]:
        """Element `index`: a dict of float32 arrays (shapes in :func:`make_train_dataset`).

        Args:
          index: the element index (its random generator is seeded by `(seed, index)`).
          stop: None, or a callable checked between the stages of the build; when it returns True
            the build is abandoned with `PipelineClosedError` (a closing pipeline does not wait
            for whole elements nobody will read).
        """

        def check():
            if stop is not None and stop():
                raise PipelineClosedError("the training data pipeline was closed.")

        rng = self.rng(index)
        for _ in range(_MAX_ATTEMPTS):
            check()
            sequence = self.eligible[int(rng.integers(len(self.eligible)))]
            start = int(rng.integers(0, self.source.num_frames(sequence) - self.clip_length + 1))
            frames, instances = self.source.load_clip(sequence, start, self.clip_length)
            frames, instances = self._crop(frames, instances, rng)
            if instances.any():
                break
        clean = self._clean_masks(instances, rng)
        check()
        noisy = self.mask_noise(clean, rng).astype(np.float32)
        check()
        styles = np.stack(
            [
                self.styles.sample(rng, self.crop_size, exclude=sequence)
                for _ in range(self.num_regions)
            ]
        )
        out = {
            "frames": frames.astype(np.float32) / 255.0,
            "clean_masks": clean,
            "noisy_masks": noisy,
            "styles": styles.astype(np.float32) / 255.0,
        }
        if self.with_flow:
            check()
            flow, valid = flow_lib.clip_flow(frames, self.flow_preset)
            out["flow"], out["flow_valid"] = flow, valid
        return out

    def keys(self) -> list[str]:
        keys = ["frames", "clean_masks", "noisy_masks", "styles"]
        return keys + (["flow", "flow_valid"] if self.with_flow else [])

    def shapes(self) -> dict[str, tuple[int, ...]]:
        t, s, k = self.clip_length, self.crop_size, self.num_regions
        shapes = {
            "frames": (t, s, s, 3),
            "clean_masks": (t, s, s, k - 1),
            "noisy_masks": (t, s, s, k - 1),
            "styles": (k, s, s, 3),
            "flow": (t - 1, s, s, 2),
            "flow_valid": (t - 1, s, s),
        }
        return {key: shapes[key] for key in self.keys()}


@gin.configurable(denylist=["shard"])
def make_train_dataset(
    source,
    batch_size=2,
    clip_length=5,
    crop_size=256,
    num_regions=2,
    style_source=None,
    seed=None,
    with_flow=True,
    *,
    mask_noise=None,
    foreground="subset",
    scale_range=(0.6, 1.0),
    flip=True,
    start_step=0,
    flow_preset="fast",
    num_parallel_calls=None,
    prefetch=2,
    shard=None,
):
    """An endless `tf.data.Dataset` of training batches (docs/method.md#losses, #training).

    Args:
      source: a clip source (`DavisFolder`, `TfdsDavis`, `VideoFolder`) or a folder path (DAVIS
        layout -> its train split; otherwise a `VideoFolder`).
      batch_size: clips per batch B.
      clip_length: consecutive frames per clip T.
      crop_size: side S of the square crop shared by all frames of a clip.
      num_regions: K regions = K - 1 object masks + background.
      style_source: None or "sequences" (frames of other sequences of the same source), a folder
        of images, "tfds:NAME[:SPLIT]", a `StyleSource` (`ImageFolderStyles`, ...), or a list of
        these (each style drawn from one of them, chosen uniformly).
      seed: integer >= 0 fixes every batch; None draws a fresh seed.
      with_flow: compute DIS optical flow (keys `flow`, `flow_valid`); without it they are absent.
      mask_noise: a `MaskNoise` (None: `MaskNoise()`, i.e. its gin-bound defaults). The defaults
        apply the paper's erosion/dilation AND, each with a small probability, this project's extra
        corruptions (blur, holes/blobs, shift, empty/full masks): they are ON unless their
        `MaskNoise.*_prob` bindings are 0 (see `MaskNoise`).
      foreground: "subset" (a random non-empty subset of the instances in the clip, the decision of
        docs/method.md#training) or "union" (all of them). With K > 2 the chosen instances are dealt
        in random order over the K - 1 masks.
      scale_range: zoom of the native frames drawn log-uniformly from (low, high) before cropping;
        frames whose short side is below S are first resized up to S.
      flip: random horizontal flip of the whole clip.
      start_step: batches already consumed: the dataset starts at element `start_step * batch_size`.
        A run resumed at step N passes start_step=N with the same seed and sees the batches it has
        not seen yet (exactly those an uninterrupted run would have seen).
      flow_preset: DIS preset ("ultrafast" | "fast" | "medium"); "fast" is about twice as fast as
        "medium" for a slightly higher warping error (docs/data.md).
      num_parallel_calls: parallel element builders (None: two per available CPU core). Order is
        kept. tf.data autotuning is off (see `dataset_from_sampler`).
      prefetch: batches prefetched.
      shard: None, or `(index, count)` for one of `count` input pipelines feeding one global batch
        (multi-worker training; not a gin parameter): see :func:`dataset_from_sampler`.

    Returns:
      A dataset of dicts, all float32: `frames [B,T,S,S,3]` in [0,1], `clean_masks [B,T,S,S,K-1]` and
      `noisy_masks [B,T,S,S,K-1]` in [0,1], `styles [B,K,S,S,3]` in [0,1] (last = background's),
      `flow [B,T-1,S,S,2]` (backward flow of frame i+1 into frame i, pixels, (dx, dy)) and
      `flow_valid [B,T-1,S,S]` in {0,1}.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}.")
    if not isinstance(start_step, (int, np.integer)) or start_step < 0:
        raise ValueError(f"start_step must be an integer >= 0, got {start_step!r}.")
    sampler = ClipSampler(
        source,
        clip_length=clip_length,
        crop_size=crop_size,
        num_regions=num_regions,
        style_source=style_source,
        seed=seed,
        with_flow=with_flow,
        mask_noise=mask_noise,
        foreground=foreground,
        scale_range=scale_range,
        flip=flip,
        flow_preset=flow_preset,
    )
    return dataset_from_sampler(
        sampler, batch_size, start_step, num_parallel_calls, prefetch, shard=shard
    )


class PipelineClosedError(RuntimeError):
    """An element was requested after the process began to exit (see :func:`close_pipelines`)."""


class _ElementBuilder:
    """The Python callable tf.data runs for each element index; counts the calls in flight."""

    def __init__(self, sampler, keys):
        self._sampler, self._keys = sampler, keys
        self._lock = threading.Lock()  # guards the counters only, never held while building
        self._running = 0
        self._last_change = time.monotonic()
        self._closed = False

    def __call__(self, index):
        with self._lock:
            if self._closed:
                raise PipelineClosedError(
                    "the process is exiting: the training data pipeline was closed."
                )
            self._running += 1
            self._last_change = time.monotonic()
        try:
            element = self._sampler.element(int(index), stop=self.closed)
            return tuple(element[key] for key in self._keys)
        finally:
            with self._lock:
                self._running -= 1
                self._last_change = time.monotonic()

    def close(self):
        with self._lock:
            self._closed = True

    def closed(self):
        return self._closed

    def state(self):
        """`(calls running now, seconds since a call last started or ended)`."""
        with self._lock:
            return self._running, time.monotonic() - self._last_change


_BUILDERS = weakref.WeakSet()
_BUILDERS_LOCK = threading.Lock()
_HOOK_REGISTERED = False


def close_pipelines(builders=None, timeout=60.0, quiet=0.25):
    """Closes training data pipelines and waits until none of them runs Python.

    Registered with `atexit` (all pipelines) by the first :func:`dataset_from_sampler` call. A
    closed pipeline's iterators fail on their next element; deleting such an iterator is then quick,
    as no element build is left to wait for.

    Args:
      builders: the pipelines to close (from :func:`recording_pipelines`); None: every one of this
        process.
      timeout: seconds to wait at most for running element builds to finish.
      quiet: seconds without any call starting or ending before the pipelines count as idle.

    Returns:
      True if the pipelines went idle within `timeout`.
    """
    if builders is None:
        with _BUILDERS_LOCK:
            builders = list(_BUILDERS)
    builders = list(builders)
    for builder in builders:
        builder.close()
    deadline = time.monotonic() + timeout
    while True:
        states = [builder.state() for builder in builders]
        if all(running == 0 and idle >= quiet for running, idle in states):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)  # releases the GIL: the running builds can finish


_RECORDERS = []


@contextlib.contextmanager
def recording_pipelines():
    """Collects the pipelines (element builders) created inside the block, for `close_pipelines`.

    Yields:
      A list that receives each builder created while the block runs (in this thread or another).
    """
    created = []
    with _BUILDERS_LOCK:
        _RECORDERS.append(created)
    try:
        yield created
    finally:
        with _BUILDERS_LOCK:
            _RECORDERS.remove(created)


def _track(builder):
    global _HOOK_REGISTERED
    with _BUILDERS_LOCK:
        _BUILDERS.add(builder)
        for created in _RECORDERS:
            created.append(builder)
        if not _HOOK_REGISTERED:
            # Registered after TensorFlow's own hooks, so it runs before them (atexit is LIFO).
            atexit.register(close_pipelines)
            _HOOK_REGISTERED = True


def dataset_from_sampler(
    sampler, batch_size=2, start_step=0, num_parallel_calls=None, prefetch=2, shard=None
):
    """Wraps a :class:`ClipSampler` into the batched, prefetched `tf.data.Dataset`.

    Args:
      sampler: the element builder.
      batch_size: the global batch G; global batch k holds elements `k*G .. k*G+G-1`.
      start_step: global batches already consumed.
      num_parallel_calls, prefetch: see :func:`make_train_dataset`.
      shard: None, or `(index, count)` or `(index, count, replicas)`: this input pipeline's share
        of every global batch when `count` pipelines (one per worker) feed `replicas` replicas
        each. Pipeline `index` keeps the W = G / count elements `k*G + index*W ...` of global batch
        k and yields them as `replicas` consecutive batches of W / replicas (one per local replica,
        as `tf.distribute` hands them out), so the pipelines together see exactly the global
        batches of a single pipeline.
    """
    import tensorflow as tf  # here, so the readers and tools work without importing TensorFlow

    keys, shapes = sampler.keys(), sampler.shapes()
    build = _ElementBuilder(sampler, keys)
    _track(build)

    def to_dict(index):
        values = tf.numpy_function(build, [index], [tf.float32] * len(keys), stateful=False)
        out = {}
        for key, value in zip(keys, values):
            value.set_shape(shapes[key])
            out[key] = value
        return out

    local_batch = batch_size
    first = int(start_step) * batch_size
    dataset = tf.data.Dataset.range(first, np.iinfo(np.int64).max)
    if shard is not None:
        index, count, replicas = (*shard, 1)[:3]
        if not all(isinstance(v, int) for v in (index, count, replicas)):
            raise ValueError(f"shard must be (index, count[, replicas]) integers, got {shard!r}.")
        if not (0 <= index < count and replicas >= 1) or batch_size % (count * replicas):
            raise ValueError(
                f"shard={shard!r}: need 0 <= index < count, replicas >= 1 and batch_size "
                f"({batch_size}) divisible by count * replicas."
            )
        if count > 1:
            share = batch_size // count
            dataset = dataset.filter(lambda i: (i % batch_size) // share == index)
        local_batch = batch_size // (count * replicas)
    dataset = dataset.map(
        to_dict,
        num_parallel_calls=num_parallel_calls or 2 * _available_cores(),
        deterministic=True,
    )
    dataset = dataset.batch(local_batch, drop_remainder=True)
    # No tf.data autotuning: its optimisation thread can hold up the iterator's destructor for
    # tens of seconds once a run has lasted a while (measured 16 s on this machine), which is
    # what delayed the exit of a stopped run. Two parallel builds per available core (a build
    # spends part of its time in OpenCV, outside the GIL) measured 0.98-1.2x the autotuned
    # throughput on the demo config (2 cores, load ~3).
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.prefetch(prefetch).with_options(options)


def _available_cores():
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)
