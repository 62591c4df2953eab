"""The training loop (docs/method.md#training): a public `Trainer`, and the gin entry points
`train`, `train_phases`.

`train(workdir, ...)` (gin name `train`) checks its arguments into a `TrainConfig` and runs one phase
with a `Trainer`; `train_phases(workdir, ...)` (gin name `train_phases`) runs several phases in
sequence, each in `workdir/<phase>` under the gin scope `<phase>`, and hands each phase the previous
phase's checkpoint (paper.gin: `mask_pretrain` then `end2end`). See docs/training.md.

Batches: the dataset yields the **global** batch (split between the workers' input pipelines, then
between each worker's replicas); each replica scales its (batch-mean) loss by `local_batch /
global_batch` and the optimizer sums the replicas' gradients, so the update equals the single-device
update on the global batch.

Stopping: SIGINT/SIGTERM stop the run at the next safe point: at once while setting up, evaluating,
tracing or waiting for data, after the running step otherwise; a step done since the last checkpoint
is saved first. `train` then returns with `stopped_by` set (tools/train.py exits 130 / 143). A
second signal ends the process at once (`os._exit`); the last complete checkpoint stays loadable.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import math
import os
import re
import shutil
import signal
import threading
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

import gin
from lvst_tf import data as data_lib
from lvst_tf import loading
from lvst_tf import losses as losses_lib
from lvst_tf import metrics as metrics_lib
from lvst_tf.data import pipeline as pipeline_lib
from lvst_tf.fileio import write_atomic
from lvst_tf.training import checkpoints as ckpt_lib
from lvst_tf.training import gin_utils, inputs, resume, summaries

TRAINABLE_CHOICES = ("mask_net", "all_but_mask_net", "all")
CONFIG_FILE = resume.CONFIG_FILE


class NonFiniteLossError(FloatingPointError):
    """A loss term (or the gradient norm) became NaN/inf; nothing was saved after the last good step."""


class _Interrupted(BaseException):
    """Raised by the signal handler at a safe point (a BaseException: no `except Exception` eats it)."""


# ------------------------------------------------------------------------------------------------
# Configuration.


def check_trainable(trainable):
    """ValueError unless `trainable` is one of `TRAINABLE_CHOICES`."""
    if trainable not in TRAINABLE_CHOICES:
        raise ValueError(f"train.trainable must be one of {TRAINABLE_CHOICES}, got {trainable!r}.")


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Every setting of one training phase; the arguments of `train` (documented there).

    Construct with `TrainConfig.with_defaults(num_steps=..., ...)` (the defaults are `train`'s);
    construction checks every value and raises ValueError naming the `train.<parameter>` binding.
    """

    num_steps: int
    trainable: str
    init_checkpoint: str | None
    init_scope: str
    allow_untrained_mask_net: bool
    data_root: object
    train_split: str
    eval_split: str
    seed: int
    eval_seed: int
    learning_rate: float
    beta_1: float
    beta_2: float
    epsilon: float
    clip_norm: float | None
    checkpoint_every: int
    max_checkpoints: int
    log_every: int
    summary_every: int
    image_summary_every: int
    eval_every: int
    eval_batches: int
    warping_error_in_eval: bool
    jit_compile: bool
    run_eagerly: bool
    eval_run_eagerly: bool

    @classmethod
    def with_defaults(cls, **overrides):
        """A config with `train`'s defaults for every argument not given."""
        values = gin_utils.signature_defaults(train)
        values = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        values.update(overrides)
        return cls(**values)

    def __post_init__(self):
        if not _is_int(self.num_steps) or self.num_steps < 0:
            raise ValueError(f"train.num_steps must be an integer >= 0, got {self.num_steps!r}.")
        check_trainable(self.trainable)
        for name in ("checkpoint_every", "max_checkpoints", "log_every", "summary_every"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ValueError(f"train.{name} must be an integer >= 1, got {value!r}.")
        for name in ("image_summary_every", "eval_every", "seed", "eval_seed"):
            value = getattr(self, name)
            if not _is_int(value) or value < 0:
                never = " (0 = never)" if name.endswith("every") else ""
                raise ValueError(f"train.{name} must be an integer >= 0{never}, got {value!r}.")
        if not _is_int(self.eval_batches) or self.eval_batches < 1:
            raise ValueError(
                f"train.eval_batches must be an integer >= 1, got {self.eval_batches!r}."
            )
        if not _is_number(self.learning_rate) or not 0 < self.learning_rate < math.inf:
            raise ValueError(
                f"train.learning_rate must be a finite number > 0, got {self.learning_rate!r}."
            )
        for name in ("beta_1", "beta_2"):
            value = getattr(self, name)
            if not _is_number(value) or not 0 <= value < 1:
                raise ValueError(f"train.{name} must be a number in [0, 1), got {value!r}.")
        if not _is_number(self.epsilon) or not 0 < self.epsilon < math.inf:
            raise ValueError(f"train.epsilon must be a finite number > 0, got {self.epsilon!r}.")
        if self.clip_norm is not None and (
            not _is_number(self.clip_norm) or not 0 < self.clip_norm < math.inf
        ):
            raise ValueError(f"train.clip_norm must be > 0 or None, got {self.clip_norm!r}.")
        if self.init_scope not in loading.TRAINED_PARTS:
            raise ValueError(
                f"train.init_scope must be one of {loading.TRAINED_PARTS}, got {self.init_scope!r}."
            )
        for name in ("train_split", "eval_split"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"train.{name} must be a split name, got {value!r}.")
        for name in (
            "allow_untrained_mask_net",
            "warping_error_in_eval",
            "jit_compile",
            "run_eagerly",
            "eval_run_eagerly",
        ):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(
                    f"train.{name} must be True or False, got {getattr(self, name)!r}."
                )
        if (
            self.trainable == "all_but_mask_net"
            and self.init_checkpoint is None
            and not self.allow_untrained_mask_net
        ):
            raise ValueError(
                "train.trainable='all_but_mask_net' freezes the mask net, but train.init_checkpoint "
                "is None, so it would stay at its random initialisation: bind train.init_checkpoint "
                "to the phase-1 workdir (or run gin/paper.gin, which chains the phases)."
            )

    def arguments(self):
        """`{parameter: value}` as `train` received them (for the resume check)."""
        return dataclasses.asdict(self)


# ------------------------------------------------------------------------------------------------
# Pieces shared with tools/bench_train.py.


def select_variables(model, trainable):
    """The variables phase `trainable` updates; the VGG encoder is always frozen
    (docs/method.md#training).

    Args:
      model: a built `LocalizedStyleModel`.
      trainable: one of `TRAINABLE_CHOICES`.

    Returns:
      A list of variables (never empty).
    """
    check_trainable(trainable)
    return _trained_variables(model, trainable)


def _trained_variables(model, trainable):
    """`select_variables` for a choice `TrainConfig` has already checked."""
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


def model_inputs(batch):
    """The model's training inputs from a data batch (noisy masks in, clean masks for the losses)."""
    return {"frames": batch["frames"], "masks": batch["noisy_masks"], "styles": batch["styles"]}


def build_variables(model, element_spec):
    """Creates the model's variables with a tiny training-call forward pass (batch 1, 2 frames)."""

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


def is_chief(strategy):
    """Whether this process writes checkpoints, summaries and the config (one per cluster)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    if resolver.task_type == "chief":
        return True
    cluster = resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in cluster


def make_step_functions(
    model, optimizer, variables, strategy, global_batch, clip_norm=None, mixed=False, step=None
):
    """The distributed training step and the plain forward pass (used by `Trainer` and the benchmark).

    Args:
      model: the model; optimizer: a built Keras optimizer; variables: the variables to train.
      strategy: the `tf.distribute.Strategy` the variables were created under.
      global_batch: clips per global batch (the dataset's batch size).
      clip_norm: clip the global gradient norm (None: no clipping).
      mixed: the optimizer is a `LossScaleOptimizer` (mixed float16).
      step: an int64 variable incremented by every step, inside the same call as the update (so the
        weights and the step always agree, even if the process is interrupted right after a step).

    Returns:
      `(step_fn, forward_fn)`: `step_fn(distributed_batch)` applies one update and returns the
      global-batch means of every loss term, `total` and `grad_norm`; `forward_fn(batch)` returns
      `(outputs, terms)` for a plain (local) batch without updating anything.
    """

    def replica_step(batch):
        local_batch = tf.shape(batch["frames"])[0]
        scale = tf.cast(local_batch, tf.float32) / float(global_batch)
        with tf.GradientTape() as tape:
            outputs = model(model_inputs(batch), training=True)
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
        results = {
            k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
            for k, v in per_replica.items()
        }
        if step is not None:
            step.assign_add(1)
        return results

    def forward_fn(batch):
        outputs = model(model_inputs(batch), training=False)
        total, terms = losses_lib.compute_losses(model, batch, outputs)
        return outputs, dict(terms, total=total)

    return step_fn, forward_fn


# The Python error at the start of a failed element build's message, after TensorFlow's prefix.
_PY_ERROR = re.compile(r"\b(ValueError|OSError|FileNotFoundError|PermissionError): (.+)")


def next_batch(iterator):
    """`next(iterator)`, with an error raised by the Python element builder (an unreadable file,
    a mask that does not fit its frame) turned back into ValueError with its own one-line message."""
    try:
        return next(iterator)
    except tf.errors.OpError as e:
        lines = str(e.message).strip().splitlines()
        match = _PY_ERROR.search(lines[0]) if lines else None
        if match is None:
            raise
        raise ValueError(f"training data: {match.group(2)}") from None


# ------------------------------------------------------------------------------------------------
# Signals.


class _StopSignal:
    """SIGINT/SIGTERM -> stop at a safe point: raises `_Interrupted` at once outside critical
    sections, at the end of one otherwise. A second signal ends the process immediately."""

    def __init__(self):
        self.received = None
        self.signum = None
        self._critical = 0
        self._delivered = False  # `_Interrupted` raised once; the stop itself then runs undisturbed
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        del frame
        name = signal.Signals(signum).name
        if self.received is not None:
            logging.warning("Second signal (%s): exiting now without saving.", name)
            logging.flush()
            os._exit(128 + signum)
        self.received, self.signum = name, signum
        if self._critical or self._delivered:
            logging.warning("%s received: stopping after this step or save.", name)
            return
        logging.warning("%s received: stopping.", name)
        self._delivered = True
        raise _Interrupted(name)

    def owns(self, error: BaseException) -> bool:
        """Whether `error` is this stop: `_Interrupted` itself, or whatever TensorFlow's C++ layer
        made of it when the signal arrived inside a callback (pybind11 can hand it back as a
        RuntimeError "... REPLACED BY _Interrupted")."""
        return isinstance(error, _Interrupted) or (self._delivered and isinstance(error, Exception))

    @contextlib.contextmanager
    def critical(self):
        """A section the first signal does not interrupt (a checkpoint or config write)."""
        self._critical += 1
        try:
            yield
        finally:
            self._critical -= 1
        if self.received is not None and not self._critical and not self._delivered:
            self._delivered = True
            raise _Interrupted(self.received)

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False


# ------------------------------------------------------------------------------------------------
# The trainer.


class _WorkdirLock:
    """An exclusive `flock` on the workdir folder itself (no file is created): a second trainer on the
    same workdir would overwrite the first one's checkpoints and remove its temporary files."""

    def __init__(self, workdir):
        self.workdir = workdir
        self._fd = None

    def __enter__(self):
        self._fd = os.open(self.workdir, os.O_RDONLY)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(self._fd)
            self._fd = None
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                logging.warning(
                    "workdir: cannot lock %s (%s); continuing unlocked.", self.workdir, e
                )
                return self
            raise ValueError(
                f"workdir: {self.workdir!r} is in use by another training process; wait for it to "
                "end or use another --workdir."
            ) from None
        return self

    def __exit__(self, *exc):
        if self._fd is not None:
            os.close(self._fd)  # releases the lock
            self._fd = None
        return False


class Trainer:
    """Trains one phase in one workdir, resuming from its newest intact checkpoint.

    Construction checks everything that can be checked without building the model (the settings,
    the data source, a reused workdir's recorded config and its checkpoints) and raises ValueError
    naming the binding, flag or file; nothing is written until `run()`.

    Args:
      workdir: run folder: `operative_config.gin`, `checkpoints/`, TensorBoard `train/` and `eval/`.
      config: a `TrainConfig`.
      strategy: a `tf.distribute.Strategy` (None: the default strategy).
      allow_config_change: resume even if non-structural settings changed (see `resume`).
      scope: the gin scope the configurables are called in (None: the active one).
    """

    def __init__(self, workdir, config, strategy=None, allow_config_change=False, scope=None):
        self.workdir = os.fspath(workdir)
        self.config = config
        self.strategy = strategy or tf.distribute.get_strategy()
        self.scope = (gin.current_scope_str() or None) if scope is None else scope
        self.chief = is_chief(self.strategy)
        if os.path.exists(self.workdir) and not os.path.isdir(self.workdir):
            raise ValueError(f"workdir: {self.workdir!r} exists and is not a folder.")
        # The clip source validates data_root and the split files before anything is built.
        self.source = inputs.make_source(config.data_root, config.train_split)
        self.with_flow = losses_lib.loss_needs_flow()
        self.ckpt_dir = ckpt_lib.checkpoint_dir(self.workdir)
        self.config_changes = []
        if self.chief:
            self.config_changes = resume.check_resume(
                self.workdir, config.arguments(), self.scope, allow_config_change
            )
            # Fails now, before anything is written, if every checkpoint is unreadable.
            self.resume_step, _ = ckpt_lib.CheckpointStore(
                None, self.ckpt_dir, config.max_checkpoints
            ).find_resumable()
            if self.resume_step is None and config.init_checkpoint is not None:
                ckpt_lib.resolve_checkpoint(config.init_checkpoint)  # exists and reads back
        self.stop = None
        self.model = self.optimizer = self.step = self.store = None
        self._pipelines = []

    # -- setup ----------------------------------------------------------------------------------

    def _build(self):
        from lvst_tf import models  # noqa: PLC0415 (heavy)

        cfg, strategy = self.config, self.strategy
        keras.utils.set_random_seed(cfg.seed)
        with strategy.scope():
            # Model bindings are read unscoped, so export can rebuild the model from the operative
            # config with a plain `build_model()` whatever phase scope the run used.
            with gin.config_scope(None):
                self.model = models.build_model()
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
            optimizer = keras.optimizers.Adam(
                learning_rate=cfg.learning_rate,
                beta_1=cfg.beta_1,
                beta_2=cfg.beta_2,
                epsilon=cfg.epsilon,
            )
            self.mixed = keras.mixed_precision.global_policy().name == "mixed_float16"
            if self.mixed:
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
            self.optimizer = optimizer
        # A throwaway dataset object only to learn the element shapes (nothing is read yet).
        probe = data_lib.make_train_dataset(self.source, seed=cfg.seed, with_flow=self.with_flow)
        self.element_spec = probe.element_spec
        self.global_batch = int(self.element_spec["frames"].shape[0])
        if self.global_batch % strategy.num_replicas_in_sync:
            raise ValueError(
                f"make_train_dataset.batch_size={self.global_batch} (the global batch) must be "
                f"divisible by the {strategy.num_replicas_in_sync} replicas."
            )
        with strategy.scope():
            build_variables(self.model, self.element_spec)
            self.variables = _trained_variables(self.model, cfg.trainable)  # checked in cfg
            self.optimizer.build(self.variables)
        checkpoint = ckpt_lib.make_checkpoint(self.model, self.optimizer, self.step)
        directory = self.ckpt_dir
        if not self.chief:  # every worker takes part in the save; only the chief's is kept
            directory = os.path.join(
                self.workdir, "tmp_workers", f"worker_{self.strategy.cluster_resolver.task_id}"
            )
        self.store = ckpt_lib.CheckpointStore(checkpoint, directory, cfg.max_checkpoints)

    def _restore(self):
        cfg = self.config
        # Every worker restores the chief's checkpoint (a shared workdir).
        reader = ckpt_lib.CheckpointStore(self.store.checkpoint, self.ckpt_dir, cfg.max_checkpoints)
        restored = reader.restore() if self.chief else self._restore_worker(reader)
        if restored is not None:
            logging.info("Resumed from %s (step %d).", reader.prefix(restored), restored)
            if self.config_changes:
                logging.warning(
                    "Resuming with changed settings: %s.",
                    "; ".join(c.describe() for c in self.config_changes),
                )
            return restored
        if cfg.init_checkpoint is not None:
            prefix = ckpt_lib.restore_submodule(cfg.init_checkpoint, self.model, cfg.init_scope)
            logging.info("Restored model.%s from %s.", cfg.init_scope, prefix)
        return None

    def _restore_worker(self, reader):
        step, _ = reader.find_resumable()
        if step is not None:
            reader.restore_step(step)
        return step

    def _make_iterator(self, start):
        dataset_fn = inputs.make_dataset_fn(
            self.source, self.config.seed, self.with_flow, start, self.global_batch
        )
        with pipeline_lib.recording_pipelines() as self._pipelines:
            dist_dataset = self.strategy.distribute_datasets_from_function(dataset_fn)
            return iter(dist_dataset)

    # -- the parts of a step --------------------------------------------------------------------

    def _evaluate(self, at_step, forward, eval_cache, writer):
        cfg = self.config
        if not eval_cache:
            eval_source = inputs.make_source(cfg.data_root, cfg.eval_split)
            with pipeline_lib.recording_pipelines() as created:
                eval_ds = data_lib.make_train_dataset(
                    eval_source, seed=cfg.eval_seed, with_flow=self.with_flow
                )
            eval_iterator = iter(eval_ds)
            eval_cache.extend(next_batch(eval_iterator) for _ in range(cfg.eval_batches))
            pipeline_lib.close_pipelines(created)  # the batches are cached: build no more
            del eval_iterator
        warping_error = metrics_lib.video_warping_error if cfg.warping_error_in_eval else None
        sums, output_warp, input_warp = {}, [], []
        for i, batch in enumerate(eval_cache):
            outputs, terms = forward(batch)
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v) / len(eval_cache)
            if i == 0:
                summaries.image_grid_summaries(writer, at_step, batch, outputs)
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
        summaries.write_scalars(writer, at_step, scalars)
        logging.info(
            "eval step %d (%s, %d batches): %s",
            at_step,
            cfg.eval_split,
            len(eval_cache),
            " ".join(f"{k} {v:.4g}" for k, v in scalars.items()),
        )
        return scalars

    def _weights_finite(self):
        return all(bool(tf.reduce_all(tf.math.is_finite(v))) for v in self.variables)

    def _save(self, at_step):
        """Writes checkpoint `at_step` unless the trained weights hold NaN/inf (never saved)."""
        with self.stop.critical():
            if not self._weights_finite():
                logging.error("Not saving step %d: the trained weights hold NaN/inf.", at_step)
                return False
            self.store.save(at_step)
            if not self.chief:
                shutil.rmtree(self.store.directory, ignore_errors=True)
            else:
                logging.info("Saved checkpoint at step %d in %s.", at_step, self.ckpt_dir)
        return True

    def _write_operative_config(self, writer, at_step, resumed_at):
        """`workdir/operative_config.gin` (atomic; an accepted changed config keeps the old one as
        `operative_config.before_step_<N>.gin`, N = `resumed_at`, the last step trained under it;
        `..._<N>_2.gin`, `_3`, ... when configs were already kept at that step, so none is
        overwritten) and a TensorBoard text summary of it."""
        path = os.path.join(self.workdir, CONFIG_FILE)
        config = gin.operative_config_str()
        with self.stop.critical():
            if any(c.kind != "free" for c in self.config_changes) and os.path.isfile(path):
                stem = os.path.join(self.workdir, f"operative_config.before_step_{resumed_at}")
                kept, copy = f"{stem}.gin", 1
                while os.path.exists(kept):
                    copy += 1
                    kept = f"{stem}_{copy}.gin"
                with open(path, "rb") as f:
                    write_atomic(kept, f.read())
            write_atomic(path, config)
        with writer.as_default(step=at_step):
            summaries.text("gin/operative_config", summaries.gin_config_markdown(config))
        writer.flush()

    def _non_finite(self, values, at_step, saved_at):
        bad = {k: v for k, v in values.items() if not math.isfinite(v) and k != "grad_norm_scaled"}
        if not bad:
            return None
        term = next((k for k in (*losses_lib.TERMS, "total") if k in bad), next(iter(bad)))
        if saved_at is None:
            kept = "no checkpoint had been written yet, so there is nothing to resume from"
        else:
            kept = f"the checkpoint of step {saved_at} in {self.ckpt_dir} is the latest and intact"
        shown = ", ".join(f"{k}={v}" for k, v in bad.items())
        return NonFiniteLossError(
            f"Non-finite {term} loss ({bad[term]}) at step {at_step} ({shown}); stopped without "
            f"saving: {kept}. Lower train.learning_rate or set train.clip_norm, then resume."
        )

    # -- the loop ---------------------------------------------------------------------------------

    def run(self):
        """Trains up to `config.num_steps`; returns `{"step", "stopped_by", <last logged scalars>}`.

        Raises:
          ValueError: a problem found while setting up (workdir in use, checkpoint not fitting).
          NonFiniteLossError: a loss term or the gradient norm is NaN/inf (names the step and term;
            no checkpoint is written after the last good one).
        """
        self._reached = self._saved = None
        with _StopSignal() as self.stop:
            try:
                if not self.chief:
                    return self._run_locked()
                os.makedirs(self.workdir, exist_ok=True)
                with _WorkdirLock(self.workdir):
                    removed = ckpt_lib.clean_stale_temp_files(self.workdir)
                    if removed:
                        logging.warning(
                            "Removed temporary files of an interrupted earlier run: %s", removed
                        )
                    return self._run_locked()
            except BaseException as e:
                if not self.stop.owns(e):
                    raise
                # Outside the loop (setting up the lock, or cleaning up after the last save).
                return {
                    "step": self._reached,
                    "stopped_by": self.stop.received,
                    "saved_step": self._saved,
                }

    def _run_locked(self):
        cfg, strategy, chief = self.config, self.strategy, self.chief
        start = saved_at = None
        current = None
        ready = False
        last = {}
        iterator = None
        try:
            self._build()
            restored = self._restore()
            start = current = int(self.step.numpy())
            saved_at = restored
            self._reached, self._saved = start, saved_at
            ready = True
            iterator = self._make_iterator(start)
            step_fn, forward_fn = make_step_functions(
                self.model,
                self.optimizer,
                self.variables,
                strategy,
                self.global_batch,
                clip_norm=cfg.clip_norm,
                mixed=self.mixed,
                step=self.step,
            )
            if cfg.run_eagerly:
                train_step = step_fn
            else:
                train_step = tf.function(step_fn, jit_compile=cfg.jit_compile or None)
            eager_forward = cfg.run_eagerly or cfg.eval_run_eagerly
            forward = forward_fn if eager_forward else tf.function(forward_fn)
            if chief:
                train_writer = tf.summary.create_file_writer(os.path.join(self.workdir, "train"))
                eval_writer = tf.summary.create_file_writer(os.path.join(self.workdir, "eval"))
            else:
                train_writer = eval_writer = tf.summary.create_noop_writer()
            eval_cache = []
            logging.info(
                "Training %s from step %d to %d: trainable=%s (%d variables), global batch %d on "
                "%d replica(s), flow=%s, workdir %s",
                self.model.name,
                start,
                cfg.num_steps,
                cfg.trainable,
                len(self.variables),
                self.global_batch,
                strategy.num_replicas_in_sync,
                self.with_flow,
                self.workdir,
            )
            wrote_config = False
            window_start, window_steps = time.perf_counter(), 0
            if cfg.eval_every and start == 0 and cfg.num_steps > 0 and chief:
                self._evaluate(0, forward, eval_cache, eval_writer)  # the baseline
            while current < cfg.num_steps:
                dist_batch = next_batch(iterator)
                if cfg.run_eagerly:  # Python between the update and the step increment
                    with self.stop.critical():
                        results = train_step(dist_batch)
                else:
                    results = train_step(dist_batch)
                values = {k: float(v) for k, v in results.items()}
                error = self._non_finite(values, current + 1, saved_at)
                if error is not None:
                    ready = False  # the weights of this step are not saved, even on a signal
                    raise error
                current = int(self.step.numpy())
                window_steps += 1
                last = values
                if not wrote_config and chief:
                    self._write_operative_config(train_writer, current, start)
                    wrote_config = True
                if current % cfg.summary_every == 0 or current == cfg.num_steps:
                    elapsed = time.perf_counter() - window_start
                    scalars = {
                        (k if k.startswith("grad_norm") else f"loss/{k}"): v
                        for k, v in values.items()
                    }
                    scalars["learning_rate"] = float(
                        keras.ops.convert_to_numpy(self.optimizer.learning_rate)
                    )
                    scalars["steps_per_second"] = window_steps / max(elapsed, 1e-9)
                    summaries.write_scalars(train_writer, current, scalars)
                if current == start + 1:
                    logging.info(
                        "First step took %.1f s (tracing the step function and the first batch).",
                        time.perf_counter() - window_start,
                    )
                if current % cfg.log_every == 0 or current == cfg.num_steps or current == start + 1:
                    elapsed = time.perf_counter() - window_start
                    rate = window_steps / max(elapsed, 1e-9)
                    shown = {k: v for k, v in values.items() if not k.startswith("grad_norm")}
                    logging.info(summaries.progress_line(current, cfg.num_steps, shown, rate))
                    window_start, window_steps = time.perf_counter(), 0
                if cfg.image_summary_every and current % cfg.image_summary_every == 0 and chief:
                    local = strategy.experimental_local_results(dist_batch)[0]
                    outputs, _ = forward(local)
                    summaries.image_grid_summaries(train_writer, current, local, outputs)
                self._reached = current
                if current % cfg.checkpoint_every == 0 or current == cfg.num_steps:
                    if self._save(current):
                        saved_at = self._saved = current
                if (
                    cfg.eval_every
                    and chief
                    and (current % cfg.eval_every == 0 or current == cfg.num_steps)
                ):
                    self._evaluate(current, forward, eval_cache, eval_writer)
            if saved_at != current and self._save(current):
                saved_at = self._saved = current
            if not wrote_config and chief:  # no step ran (the run had reached num_steps)
                self._write_operative_config(train_writer, current, start)
            train_writer.flush()
            eval_writer.flush()
            return {"step": current, "stopped_by": None, **last}
        except BaseException as e:
            if not self.stop.owns(e):
                raise
            stopped_by = self.stop.received
            if ready:
                current = self._reached = int(self.step.numpy())
                # Save the steps done since the start (none: the restored checkpoint is the state).
                if current > start and current != saved_at and self._save(current):
                    saved_at = self._saved = current
            where = (
                f"checkpoint of step {saved_at} in {self.ckpt_dir}"
                if saved_at is not None
                else "no checkpoint yet"
            )
            logging.warning(
                "Stopped by %s at step %s (%s).", stopped_by, current if ready else "-", where
            )
            return {
                "step": current if ready else start,
                "stopped_by": stopped_by,
                "saved_step": saved_at,
                **last,
            }
        finally:
            # Drop the iterator now, while Python runs normally: its destructor waits for every
            # element build in flight, so the builders are closed (and idle) first.
            started = time.perf_counter()
            pipeline_lib.close_pipelines(self._pipelines)
            del iterator
            waited = time.perf_counter() - started
            if waited > 1.0:
                logging.info("Closing the input pipeline took %.1f s.", waited)


@gin.configurable("train", denylist=["workdir", "strategy", "allow_config_change"])
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
    allow_config_change=False,
):
    """Trains one phase of the model (docs/method.md#training) in `workdir`, resuming from its
    newest intact checkpoint: `Trainer(workdir, TrainConfig(...), strategy).run()`.

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
        offline training corpus), "tfds" (TFDS `davis`, already prepared), a DAVIS 2017 folder, or
        None (`DavisFolder.root` if bound, else `$LVST_DAVIS_DIR`); `lvst_tf.training.inputs`.
        Batches come from `make_train_dataset` (gin-configurable: batch size, clip length, crop
        size, regions, styles, noise).
      train_split, eval_split: DAVIS split names (evaluation never reads the training split).
      seed: seeds the model initialisation and the data stream; a resumed run at step N continues the
        stream at batch N (`make_train_dataset(start_step=N)`).
      eval_seed: fixes the evaluation clips (the same clips at every evaluation).
      learning_rate, beta_1, beta_2, epsilon: Adam (docs/method.md#training: 1e-4, 0.9, 0.999,
        1e-8).
      clip_norm: clip the global gradient norm to this value (None: no clipping).
      checkpoint_every: steps between checkpoints (one is always written at the end and on
        SIGINT/SIGTERM).
      max_checkpoints: complete checkpoints kept (the previous one survives until the next is
        verified).
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
      allow_config_change: resume a workdir whose recorded config differs in non-structural
        settings (not a gin parameter; `tools/train.py --allow_config_change`).

    Returns:
      dict with `step` (the final step), `stopped_by` (None, "SIGINT" or "SIGTERM") and the last
      logged scalars.

    Raises:
      ValueError: a bad argument or binding, data source, or workdir, before anything is written.
      NonFiniteLossError: a loss term or the gradient norm is NaN/inf (names the step and term; no
        checkpoint is written after the last good one).
    """
    config = TrainConfig(
        num_steps=num_steps,
        trainable=trainable,
        init_checkpoint=init_checkpoint,
        init_scope=init_scope,
        allow_untrained_mask_net=allow_untrained_mask_net,
        data_root=data_root,
        train_split=train_split,
        eval_split=eval_split,
        seed=seed,
        eval_seed=eval_seed,
        learning_rate=learning_rate,
        beta_1=beta_1,
        beta_2=beta_2,
        epsilon=epsilon,
        clip_norm=clip_norm,
        checkpoint_every=checkpoint_every,
        max_checkpoints=max_checkpoints,
        log_every=log_every,
        summary_every=summary_every,
        image_summary_every=image_summary_every,
        eval_every=eval_every,
        eval_batches=eval_batches,
        warping_error_in_eval=warping_error_in_eval,
        jit_compile=jit_compile,
        run_eagerly=run_eagerly,
        eval_run_eagerly=eval_run_eagerly,
    )
    trainer = Trainer(workdir, config, strategy, allow_config_change=allow_config_change)
    return trainer.run()


@gin.configurable("train_phases", denylist=["workdir", "strategy", "allow_config_change"])
def train_phases(
    workdir, phases=None, strategy=None, chain_init_checkpoint=True, allow_config_change=False
):
    """Runs `train` once (phases=None) or once per phase in sequence (the schedule of
    docs/method.md#training).

    Phase `p` trains in `workdir/p` with the gin scope `p` active, so `p/train.num_steps`,
    `p/compute_losses.mask_weight`, ... configure it. With `chain_init_checkpoint`, every phase after
    the first gets `init_checkpoint=<previous phase's workdir>` (phase 2 restores the mask net).
    A finished phase (checkpoint at its `num_steps`) returns at once, so rerunning resumes the sequence.

    Args:
      workdir: the run folder.
      phases: None, or a list of phase names (gin scope names), e.g. ["mask_pretrain", "end2end"].
      strategy: a `tf.distribute.Strategy` or None.
      chain_init_checkpoint: pass each phase the previous phase's workdir as `init_checkpoint`.
      allow_config_change: see `train` (not a gin parameter).

    Returns:
      `train`'s result for the last phase run (the one stopped by a signal, if any).
    """
    if not phases:
        return train(workdir, strategy=strategy, allow_config_change=allow_config_change)
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
            result = train(
                phase_dir, strategy=strategy, allow_config_change=allow_config_change, **kwargs
            )
        if result.get("stopped_by"):
            break
        previous = phase_dir
    return result
