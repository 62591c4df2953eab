"""The gin-configurable training loop (METHOD §8): a custom TF2 loop with `tf.distribute`.

`train(workdir, ...)` (gin name `train`) trains one phase; `train_phases(workdir, ...)` (gin name
`train_phases`) runs several phases in sequence, each in `workdir/<phase>` under the gin scope
`<phase>`, and hands each phase the previous phase's checkpoint (paper.gin: `mask_pretrain` then
`end2end`). See docs/training.md.

Batches: the dataset yields the **global** batch; `strategy.experimental_distribute_dataset` splits it
over the replicas; each replica scales its (batch-mean) loss by `local_batch / global_batch` and the
optimizer sums the replicas' gradients, so the update equals the single-device update on the global
batch.
"""

import math
import os
import signal
import threading
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

import gin
from lvst_tf import losses as losses_lib
from lvst_tf.fileio import write_atomic
from lvst_tf.training import checkpoints as ckpt_lib
from lvst_tf.training import summaries

TRAINABLE_CHOICES = ("mask_net", "all_but_mask_net", "all")


class NonFiniteLossError(FloatingPointError):
    """A loss term (or the gradient) became NaN/inf; the last good checkpoint is kept."""


class _StopSignal:
    """Turns SIGINT/SIGTERM into a flag the loop checks after each step (then it saves and exits)."""

    def __init__(self):
        self.received = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        del frame
        if self.received is not None:  # a second signal: stop now
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name
        logging.warning(
            "%s received: saving a checkpoint after this step, then exiting.", self.received
        )

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False


def _make_source(data_root, split):
    """A clip source: "samples" (shipped samples/davis), "corpus" (the offline training corpus),
    "tfds", a DAVIS folder path, or None."""
    from lvst_tf import data  # noqa: PLC0415 (heavy, only when training)

    if data_root == "samples":
        return data.DavisFolder(str(data.samples_root() / "davis"), split=split)
    if data_root == "corpus":
        root = data.corpus_root()
        if not (root / "JPEGImages").is_dir():
            raise ValueError(
                f"train.data_root='corpus': no corpus at {str(root)!r}; build it with "
                "`python tools/make_corpus.py` (about a minute, offline packages only)."
            )
        return data.DavisFolder(str(root), split=split)
    if data_root == "tfds":
        return data.TfdsDavis(split=split)
    return data.DavisFolder(data_root, split=split)


def _select_variables(model, trainable):
    """The variables phase `trainable` updates; the VGG encoder is always frozen (METHOD §8)."""
    if trainable not in TRAINABLE_CHOICES:
        raise ValueError(f"train.trainable must be one of {TRAINABLE_CHOICES}, got {trainable!r}.")
    frozen = {id(v) for v in model.encoder.weights}
    mask_ids = {id(v) for v in model.mask_net.weights}
    variables = [v for v in model.trainable_variables if id(v) not in frozen]
    if trainable == "mask_net":
        variables = [v for v in variables if id(v) in mask_ids]
    elif trainable == "all_but_mask_net":
        variables = [v for v in variables if id(v) not in mask_ids]
    if not variables:
        raise ValueError(f"train.trainable={trainable!r} selects no variable of the model.")
    return variables


def _model_inputs(batch):
    return {"frames": batch["frames"], "masks": batch["noisy_masks"], "styles": batch["styles"]}


def _build(model, element_spec):
    """Creates the model's variables with a tiny forward pass (batch 1, 2 frames)."""

    def zeros(key, frames=2):
        shape = list(element_spec[key].shape)
        shape[0] = 1
        if key != "styles":
            shape[1] = min(frames, shape[1])
        return tf.zeros(shape, tf.float32)

    model(
        {"frames": zeros("frames"), "masks": zeros("noisy_masks"), "styles": zeros("styles")},
        training=False,
    )


def _is_chief(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    if resolver.task_type == "chief":
        return True
    cluster = resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in cluster


def _warping_error_hook():
    """`lvst_tf.metrics.video_warping_error` when the metrics module is importable, else None."""
    try:
        from lvst_tf import metrics  # noqa: PLC0415
    except ImportError:  # pragma: no cover - the metrics module is part of the package
        return None
    return getattr(metrics, "video_warping_error", None)


@gin.configurable("train", denylist=["workdir", "strategy"])
def train(
    workdir,
    num_steps=gin.REQUIRED,
    strategy=None,
    trainable="all",
    init_checkpoint=None,
    init_scope="mask_net",
    allow_untrained_mask_net=False,
    data_root="samples",
    train_split="train",
    eval_split="val",
    seed=0,
    eval_seed=1234,
    learning_rate=1e-4,
    beta_1=0.9,
    beta_2=0.999,
    epsilon=1e-8,
    clip_norm=None,
    checkpoint_every=1000,
    max_checkpoints=3,
    log_every=10,
    summary_every=50,
    image_summary_every=1000,
    eval_every=5000,
    eval_batches=4,
    warping_error_in_eval=True,
    jit_compile=False,
    run_eagerly=False,
    eval_run_eagerly=False,
):
    """Trains one phase of the model (METHOD §8) in `workdir`, resuming from its latest checkpoint.

    Args:
      workdir: run folder: `operative_config.gin`, `checkpoints/`, TensorBoard `train/` and `eval/`.
      num_steps: total optimizer steps of this phase (a resumed run continues up to it).
      strategy: a `tf.distribute.Strategy` (None: the default strategy).
      trainable: "mask_net" (phase 1), "all_but_mask_net" (phase 2) or "all"; VGG is always frozen.
      init_checkpoint: a workdir / checkpoint to restore `model.<init_scope>` from before step 0
        (phase 2: the phase-1 run). Ignored when the workdir already has a checkpoint (resume).
      init_scope: the model attribute restored from `init_checkpoint`.
      allow_untrained_mask_net: permit "all_but_mask_net" without `init_checkpoint` (tests only).
      data_root: "samples" (the shipped `samples/davis`), "corpus" (`tools/make_corpus.py`'s
        offline training corpus), "tfds" (TFDS `davis`, already prepared), a
        DAVIS 2017 folder, or None (`$LVST_DAVIS_DIR`). Batches come from `make_train_dataset`
        (gin-configurable: batch size, clip length, crop size, regions, styles, noise).
      train_split, eval_split: DAVIS split names (evaluation never reads the training split).
      seed: seeds the model initialisation and the data stream; a resumed run at step N continues the
        stream at batch N (`make_train_dataset(start_step=N)`).
      eval_seed: fixes the evaluation clips (the same clips at every evaluation).
      learning_rate, beta_1, beta_2, epsilon: Adam (METHOD §8: 1e-4, 0.9, 0.999, 1e-8).
      clip_norm: clip the global gradient norm to this value (None: no clipping).
      checkpoint_every: steps between checkpoints (one is always written at the end and on
        SIGINT/SIGTERM).
      max_checkpoints: checkpoints kept.
      log_every: steps between progress lines.
      summary_every: steps between scalar summaries.
      image_summary_every: steps between image summaries (0: never).
      eval_every: steps between evaluations on `eval_split` (0: never; also runs before the first
        step of a fresh run and at the end).
      eval_batches: batches per evaluation.
      warping_error_in_eval: add `lvst_tf.metrics.video_warping_error` of the outputs (and of the
        input video, its floor) to the evaluation.
      jit_compile: XLA-compile the training step.
      run_eagerly: run the step and the evaluation eagerly (debugging; tiny test runs, where tracing
        the unrolled clip costs more than a few eager steps).
      eval_run_eagerly: run the evaluation / image-summary forward pass eagerly (saves tracing a
        second graph in short CPU runs).

    Returns:
      dict with `step` (the final step) and the last logged scalars.

    Raises:
      NonFiniteLossError: a loss term or the gradient norm is NaN/inf (names the step and term; no
        checkpoint is written after the last good one).
    """
    from lvst_tf import models  # noqa: PLC0415 (heavy, only when training)

    if not isinstance(num_steps, int) or num_steps < 0:
        raise ValueError(f"train.num_steps must be an integer >= 0, got {num_steps!r}.")
    if trainable not in TRAINABLE_CHOICES:
        raise ValueError(f"train.trainable must be one of {TRAINABLE_CHOICES}, got {trainable!r}.")
    for name, value in (
        ("checkpoint_every", checkpoint_every),
        ("log_every", log_every),
        ("summary_every", summary_every),
    ):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"train.{name} must be an integer >= 1, got {value!r}.")
    for name, value in (("image_summary_every", image_summary_every), ("eval_every", eval_every)):
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"train.{name} must be an integer >= 0 (0 = never), got {value!r}.")
    if clip_norm is not None and not clip_norm > 0:
        raise ValueError(f"train.clip_norm must be > 0 or None, got {clip_norm!r}.")
    if trainable == "all_but_mask_net" and init_checkpoint is None and not allow_untrained_mask_net:
        raise ValueError(
            "train.trainable='all_but_mask_net' freezes the mask net, but train.init_checkpoint is None,"
            " so it would stay at its random initialisation: bind train.init_checkpoint to the phase-1"
            " workdir (or run gin/paper.gin, which chains the phases)."
        )
    from lvst_tf import data  # noqa: PLC0415

    # The clip source validates data_root / the split files before anything is built or written.
    source = _make_source(data_root, train_split)
    strategy = strategy or tf.distribute.get_strategy()
    workdir = os.fspath(workdir)
    chief = _is_chief(strategy)
    tf.io.gfile.makedirs(workdir)
    keras.utils.set_random_seed(seed)
    with_flow = losses_lib.loss_needs_flow()

    with strategy.scope():
        # Model bindings are read unscoped, so export can rebuild the model from the operative config
        # with a plain `build_model()` whatever phase scope the run used.
        with gin.config_scope(None):
            model = models.build_model()
        step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        optimizer = keras.optimizers.Adam(
            learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon
        )
        mixed = keras.mixed_precision.global_policy().name == "mixed_float16"
        if mixed:
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)

    # A throwaway dataset object only to learn the element shapes (nothing is read yet).
    probe = data.make_train_dataset(source, seed=seed, with_flow=with_flow)
    element_spec = probe.element_spec
    global_batch = int(element_spec["frames"].shape[0])
    if global_batch % strategy.num_replicas_in_sync:
        raise ValueError(
            f"make_train_dataset.batch_size={global_batch} (the global batch) must be divisible by "
            f"the {strategy.num_replicas_in_sync} replicas."
        )
    with strategy.scope():
        _build(model, element_spec)
        variables = _select_variables(model, trainable)
        optimizer.build(variables)
    checkpoint = ckpt_lib.make_checkpoint(model, optimizer, step)
    ckpt_dir = ckpt_lib.checkpoint_dir(workdir)
    if not chief:  # every worker takes part in the (collective) save; only the chief's is kept
        ckpt_dir = os.path.join(
            workdir, "tmp_workers", f"worker_{strategy.cluster_resolver.task_id}"
        )
    manager = ckpt_lib.make_manager(checkpoint, ckpt_dir, max_to_keep=max_checkpoints)
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        logging.info("Resumed from %s (step %d).", manager.latest_checkpoint, int(step.numpy()))
    elif init_checkpoint is not None:
        prefix = ckpt_lib.restore_submodule(init_checkpoint, model, init_scope)
        logging.info("Restored model.%s from %s.", init_scope, prefix)
    start = int(step.numpy())

    dataset = data.make_train_dataset(source, seed=seed, with_flow=with_flow, start_step=start)
    dist_dataset = strategy.experimental_distribute_dataset(dataset)

    step_fn, forward_fn = make_step_functions(
        model, optimizer, variables, strategy, global_batch, clip_norm=clip_norm, mixed=mixed
    )
    train_step = step_fn if run_eagerly else tf.function(step_fn, jit_compile=jit_compile or None)
    forward = forward_fn if (run_eagerly or eval_run_eagerly) else tf.function(forward_fn)

    train_writer = tf.summary.create_file_writer(os.path.join(workdir, "train"))
    eval_writer = tf.summary.create_file_writer(os.path.join(workdir, "eval"))
    if not chief:
        train_writer = eval_writer = tf.summary.create_noop_writer()
    eval_cache = []
    warping_error = _warping_error_hook() if warping_error_in_eval else None

    def run_eval(at_step):
        if not eval_cache:
            eval_source = _make_source(data_root, eval_split)
            eval_ds = data.make_train_dataset(eval_source, seed=eval_seed, with_flow=with_flow)
            eval_cache.extend(eval_ds.take(eval_batches))
        sums, output_warp, input_warp = {}, [], []
        for i, batch in enumerate(eval_cache):
            outputs, terms = forward(batch)
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v) / len(eval_cache)
            if i == 0 and chief:
                summaries.image_grid_summaries(eval_writer, at_step, batch, outputs)
            if warping_error is not None:
                frames = batch["frames"].numpy()
                out = np.clip(outputs["output"].numpy(), 0.0, 1.0)
                for clip_in, clip_out in zip(frames, out):
                    output_warp.append(warping_error(clip_in, clip_out))
                    input_warp.append(warping_error(clip_in, clip_in))
        scalars = {f"loss/{k}": v for k, v in sums.items()}
        if output_warp:
            scalars["metrics/warping_error"] = float(np.nanmean(output_warp))
            scalars["metrics/warping_error_input"] = float(np.nanmean(input_warp))
        summaries.write_scalars(eval_writer, at_step, scalars)
        logging.info(
            "eval step %d (%s, %d batches): %s",
            at_step,
            eval_split,
            len(eval_cache),
            " ".join(f"{k} {v:.4g}" for k, v in scalars.items()),
        )
        return scalars

    def save(at_step):
        manager.save(checkpoint_number=at_step)
        logging.info("Saved checkpoint at step %d in %s.", at_step, ckpt_dir)

    logging.info(
        "Training %s from step %d to %d: trainable=%s (%d variables), global batch %d on %d "
        "replica(s), flow=%s, workdir %s",
        model.name,
        start,
        num_steps,
        trainable,
        len(variables),
        global_batch,
        strategy.num_replicas_in_sync,
        with_flow,
        workdir,
    )
    last = {}
    current = start
    saved_at = start if manager.latest_checkpoint else None
    wrote_config = False
    window_start, window_steps = time.perf_counter(), 0
    iterator = iter(dist_dataset)
    if eval_every and start == 0 and num_steps > 0:
        run_eval(0)  # the baseline every later evaluation is compared with
    with _StopSignal() as stop:
        while current < num_steps:
            dist_batch = next(iterator)
            results = train_step(dist_batch)
            values = {k: float(v) for k, v in results.items()}
            bad = [k for k, v in values.items() if not math.isfinite(v) and k != "grad_norm_scaled"]
            if bad:
                term = next((k for k in losses_lib.TERMS if k in bad), bad[0])
                raise NonFiniteLossError(
                    f"Non-finite {term} ({values[term]}) at step {current + 1} (terms: "
                    f"{ {k: values[k] for k in bad} }); stopping without saving: the last good "
                    f"checkpoint in {ckpt_dir} is kept."
                )
            current += 1
            step.assign(current)
            window_steps += 1
            last = values
            if not wrote_config and chief:
                _write_operative_config(workdir, train_writer, current)
                wrote_config = True
            if current % summary_every == 0 or current == num_steps:
                elapsed = time.perf_counter() - window_start
                scalars = {
                    (k if k.startswith("grad_norm") else f"loss/{k}"): v for k, v in values.items()
                }
                scalars["learning_rate"] = float(
                    keras.ops.convert_to_numpy(optimizer.learning_rate)
                )
                scalars["steps_per_second"] = window_steps / max(elapsed, 1e-9)
                summaries.write_scalars(train_writer, current, scalars)
            if current == start + 1:
                logging.info(
                    "First step took %.1f s (tracing the step function and the first batch).",
                    time.perf_counter() - window_start,
                )
            if current % log_every == 0 or current == num_steps or current == start + 1:
                elapsed = time.perf_counter() - window_start
                rate = window_steps / max(elapsed, 1e-9)
                shown = {k: v for k, v in values.items() if not k.startswith("grad_norm")}
                logging.info(summaries.progress_line(current, num_steps, shown, rate))
                window_start, window_steps = time.perf_counter(), 0
            if image_summary_every and current % image_summary_every == 0 and chief:
                local = strategy.experimental_local_results(dist_batch)[0]
                outputs, _ = forward(local)
                summaries.image_grid_summaries(train_writer, current, local, outputs)
            if current % checkpoint_every == 0:
                save(current)
                saved_at = current
            if (
                eval_every
                and (current % eval_every == 0 or current == num_steps)
                and not stop.received
            ):
                run_eval(current)
            if stop.received:
                break
        if saved_at != current:
            save(current)
        if not wrote_config and chief:
            _write_operative_config(workdir, train_writer, current)
    train_writer.flush()
    eval_writer.flush()
    if stop.received:
        logging.warning("Stopped by %s at step %d (checkpoint saved).", stop.received, current)
    return {"step": current, "stopped_by": stop.received, **last}


def make_step_functions(
    model, optimizer, variables, strategy, global_batch, clip_norm=None, mixed=False
):
    """The distributed training step and the plain forward pass (used by `train` and the benchmark).

    Args:
      model: the model; optimizer: a built Keras optimizer; variables: the variables to train.
      strategy: the `tf.distribute.Strategy` the variables were created under.
      global_batch: clips per global batch (the dataset's batch size).
      clip_norm: clip the global gradient norm (None: no clipping).
      mixed: the optimizer is a `LossScaleOptimizer` (mixed float16).

    Returns:
      `(step_fn, forward_fn)`: `step_fn(distributed_batch)` applies one update and returns the
      global-batch means of every loss term, `total` and `grad_norm`; `forward_fn(batch)` returns
      `(outputs, terms)` for a plain (local) batch without updating anything.
    """

    def replica_step(batch):
        local_batch = tf.shape(batch["frames"])[0]
        scale = tf.cast(local_batch, tf.float32) / float(global_batch)
        with tf.GradientTape() as tape:
            outputs = model(_model_inputs(batch), training=True)
            total, terms = losses_lib.compute_losses(model, batch, outputs)
            loss = total * scale
            if mixed:
                loss = optimizer.scale_loss(loss)
        grads = tape.gradient(loss, variables)
        pairs = [(g, v) for g, v in zip(grads, variables) if g is not None]
        if len(pairs) < len(variables):
            missing = [v.path for g, v in zip(grads, variables) if g is None]
            # Expected for the style path's last middle convolution, whose output nothing reads.
            logging.log_first_n(
                logging.INFO, "No gradient for %d trained variables: %s", 1, len(missing), missing
            )
        grads = [g for g, _ in pairs]
        if clip_norm is not None:
            ctx = tf.distribute.get_replica_context()
            summed = ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)
            summed, norm = tf.clip_by_global_norm(summed, clip_norm)
            # The optimizer sums the replicas' gradients again: hand each replica its share.
            grads = [g / float(strategy.num_replicas_in_sync) for g in summed]
            norm = norm * scale  # reduced with SUM below -> the global norm
        else:
            norm = tf.linalg.global_norm(grads)
        optimizer.apply_gradients(zip(grads, [v for _, v in pairs]))
        results = {name: value * scale for name, value in terms.items()}
        results["total"] = total * scale
        # With clip_norm: the global norm before clipping; without: the sum over replicas of the
        # replica-local norms (the exact global norm on one device). Under loss scaling the norm
        # is of the scaled gradients, which may legitimately overflow (the step is then skipped).
        results["grad_norm_scaled" if mixed else "grad_norm"] = norm
        return results

    def step_fn(dist_batch):
        per_replica = strategy.run(replica_step, args=(dist_batch,))
        return {
            k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
            for k, v in per_replica.items()
        }

    def forward_fn(batch):
        outputs = model(_model_inputs(batch), training=False)
        total, terms = losses_lib.compute_losses(model, batch, outputs)
        return outputs, dict(terms, total=total)

    return step_fn, forward_fn


def _write_operative_config(workdir, writer, at_step):
    """`workdir/operative_config.gin` (atomic) and a TensorBoard text summary of it."""
    config = gin.operative_config_str()
    write_atomic(os.path.join(workdir, "operative_config.gin"), config)
    with writer.as_default(step=at_step):
        summaries.text("gin/operative_config", summaries.gin_config_markdown(config))
    writer.flush()


@gin.configurable("train_phases", denylist=["workdir", "strategy"])
def train_phases(workdir, phases=None, strategy=None, chain_init_checkpoint=True):
    """Runs `train` once (phases=None) or once per phase in sequence (METHOD §8 schedule).

    Phase `p` trains in `workdir/p` with the gin scope `p` active, so `p/train.num_steps`,
    `p/compute_losses.mask_weight`, ... configure it. With `chain_init_checkpoint`, every phase after
    the first gets `init_checkpoint=<previous phase's workdir>` (phase 2 restores the mask net).
    A finished phase (checkpoint at its `num_steps`) returns at once, so rerunning resumes the sequence.

    Args:
      workdir: the run folder.
      phases: None, or a list of phase names (gin scope names), e.g. ["mask_pretrain", "end2end"].
      strategy: a `tf.distribute.Strategy` or None.
      chain_init_checkpoint: pass each phase the previous phase's workdir as `init_checkpoint`.

    Returns:
      `train`'s result for the last phase.
    """
    if not phases:
        return train(workdir, strategy=strategy)
    if isinstance(phases, str) or not all(isinstance(p, str) and p for p in phases):
        raise ValueError(f"train_phases.phases must be a list of phase names, got {phases!r}.")
    result, previous = None, None
    for phase in phases:
        phase_dir = os.path.join(os.fspath(workdir), phase)
        kwargs = {}
        if chain_init_checkpoint and previous is not None:
            kwargs["init_checkpoint"] = previous
        logging.info("=== phase %s -> %s", phase, phase_dir)
        with gin.config_scope(phase):
            result = train(phase_dir, strategy=strategy, **kwargs)
        if result.get("stopped_by"):
            break
        previous = phase_dir
    return result
