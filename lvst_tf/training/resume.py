"""Resuming a workdir: does the configuration still describe the run that wrote it?

A workdir's `operative_config.gin` records every gin parameter its run used. Before a run continues
in a workdir that has one, `config_changes` compares it with what the current gin config will give each
configurable, and sorts every difference into one of three kinds:

- **structural** (`build_model.*` but the paddings, `train.trainable`): the model's or the
  optimizer's variables would differ, so the checkpoint cannot continue. Always refused: train in a
  new workdir. (`build_model.conv_padding` and `vgg_padding` change how the same variables are used,
  not which exist: they are settings.)
- **run settings** (`FREE`: how long to train, how often to log, save and evaluate, how fast to
  compute): changing them changes nothing that is learned. Allowed and logged.
- **everything else** (loss weights, learning rate, seeds, data, mask noise, ...): the run would
  continue as a different experiment under the same name. Refused unless the caller allows it
  (`tools/train.py --allow_config_change`); then the old config is kept beside the new one.

The recorded config is read with `lvst_tf.loading.read_operative_config` (parsed, never executed).
"""

from __future__ import annotations

import dataclasses
import os

import gin
from lvst_tf.training import gin_utils

CONFIG_FILE = "operative_config.gin"

# Configurables whose every parameter is structural, and single structural parameters.
STRUCTURAL = {"build_model": None, "train": {"trainable"}}
# Parameters of those configurables that leave the variables as they are (settings, not structure).
NOT_STRUCTURAL = {"build_model": {"conv_padding", "vgg_padding"}}
# Parameters that may change on resume without changing what is learned (None: all of them).
FREE = {
    "train": {
        "num_steps",
        "checkpoint_every",
        "max_checkpoints",
        "log_every",
        "summary_every",
        "image_summary_every",
        "eval_every",
        "eval_batches",
        "warping_error_in_eval",
        "jit_compile",
        "run_eagerly",
        "eval_run_eagerly",
        # Used only by a fresh run (a resumed one restores its own checkpoint).
        "init_checkpoint",
        "init_scope",
        "allow_untrained_mask_net",
    },
    "train_phases": None,
    "make_train_dataset": {"num_parallel_calls", "prefetch"},
    "DavisFolder": {"cache_bytes"},
    "VideoFolder": {"cache_bytes"},
}
# Arguments the trainer passes itself (never taken from gin, so not comparable).
PASSED_BY_TRAINER = {
    "train": {"workdir", "strategy"},
    "make_train_dataset": {"source", "seed", "with_flow", "start_step", "shard"},
    "DavisFolder": {"split"},
    "TfdsDavis": {"split"},
}
# Configurables the trainer calls outside the phase scope.
UNSCOPED = ("build_model", "train_phases")


@dataclasses.dataclass(frozen=True)
class Change:
    """One parameter whose value differs from the workdir's recorded config."""

    name: str  # "configurable.parameter"
    before: object
    after: object
    kind: str  # "structural", "free" or "setting"

    def describe(self) -> str:
        return f"{self.name} {self.before!r} -> {self.after!r}"


def _kind(configurable, parameter):
    structural = STRUCTURAL.get(configurable, ())
    if configurable in STRUCTURAL and (structural is None or parameter in structural):
        if parameter not in NOT_STRUCTURAL.get(configurable, ()):
            return "structural"
    free = FREE.get(configurable, ())
    if configurable in FREE and (free is None or parameter in free):
        return "free"
    return "setting"


def _normal(value):
    """Comparable form: tuples and lists alike, references by their text."""
    if isinstance(value, (list, tuple)):
        return [_normal(v) for v in value]
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    if value is gin.REQUIRED:
        return "<required>"
    if isinstance(value, (str, int, float, bool, type(None))):
        return value
    return repr(value)


def _split_key(key):
    scope, _, name = key.rpartition("/")
    return scope, name


def config_changes(config_path, train_arguments, scope=None):
    """Differences between a workdir's recorded config and the current run.

    Args:
      config_path: the workdir's `operative_config.gin`.
      train_arguments: `{parameter: value}` the current `train` call uses (its real arguments, which
        may come from Python rather than gin).
      scope: the gin scope the current run calls its configurables in (a phase name, or None).

    Returns:
      A list of `Change`, sorted by name.

    Raises:
      ValueError: the recorded config cannot be read (see `lvst_tf.loading.read_operative_config`).
    """
    from lvst_tf import loading  # noqa: PLC0415

    recorded = loading.read_operative_config(config_path)
    by_name = {}
    for key, values in recorded.items():
        key_scope, name = _split_key(key)
        # Prefer the entry of the scope this run uses; an unscoped one otherwise.
        if name not in by_name or key_scope == (scope or ""):
            by_name[name] = values
    changes = []
    for name, before in sorted(by_name.items()):
        skip = PASSED_BY_TRAINER.get(name, set())
        if name == "train":
            after = dict(train_arguments)
            compared = set(before)  # a Python caller's explicit arguments are not recorded
        else:
            if gin_utils.find_configurable(name) is None:
                continue  # no longer exists in this version: nothing will use it
            with gin.config_scope(None):
                with gin.config_scope(None if name in UNSCOPED else scope):
                    after = gin_utils.configured_arguments(name)
                    bound = set(gin.get_bindings(name))
            compared = set(before) | bound
        defaults = gin_utils.signature_defaults(name)
        for parameter in sorted(compared - skip):
            if parameter not in defaults and parameter not in after:
                continue  # removed from the signature: nothing will use it
            old = _normal(before.get(parameter, defaults.get(parameter)))
            new = _normal(after.get(parameter, defaults.get(parameter)))
            if old != new:
                changes.append(Change(f"{name}.{parameter}", old, new, _kind(name, parameter)))
    return changes


def check_resume(workdir, train_arguments, scope=None, allow_config_change=False):
    """Refuses to continue a workdir whose recorded config differs in what it learns.

    Args:
      workdir: the run folder (nothing happens when it has no `operative_config.gin`).
      train_arguments, scope: see `config_changes`.
      allow_config_change: accept changed non-structural settings.

    Returns:
      The list of `Change` accepted (free ones, and the rest with `allow_config_change`).

    Raises:
      ValueError: a structural change (always), another non-free change (unless allowed), or an
        unreadable recorded config; one line naming the workdir and every changed binding.
    """
    path = os.path.join(os.fspath(workdir), CONFIG_FILE)
    if not os.path.isfile(path):
        return []
    try:
        changes = config_changes(path, train_arguments, scope)
    except ValueError as e:
        raise ValueError(
            f"workdir: cannot compare the current config with {path!r} ({e}); resume with the "
            "config the run was started with, or use a new --workdir."
        ) from None
    structural = [c for c in changes if c.kind == "structural"]
    settings = [c for c in changes if c.kind == "setting"]
    if structural:
        raise ValueError(
            f"workdir: {os.fspath(workdir)!r} holds a run of another model or trained part: "
            f"{'; '.join(c.describe() for c in structural)} (recorded -> now). Its checkpoints "
            "cannot continue with these; use a new --workdir (or restore the old bindings)."
        )
    if settings and not allow_config_change:
        raise ValueError(
            f"workdir: the config changed since {os.fspath(workdir)!r} was started: "
            f"{'; '.join(c.describe() for c in settings)} (recorded -> now). Resume with the old "
            "bindings, pass --allow_config_change to continue with the new ones, or use a new "
            "--workdir."
        )
    return changes
