"""Training (docs/method.md#losses, #training): the `Trainer`, its gin entry points `train` and
`train_phases`.

See docs/training.md. `train(workdir, num_steps=...)` (gin name `train`) trains one phase with a
`Trainer`; `train_phases(workdir)` (gin name `train_phases`) runs the phases of gin/paper.gin in
sequence. `inputs.make_source` maps `train.data_root` to a clip source; `checkpoints.CheckpointStore`
writes verified checkpoints; `resume.check_resume` refuses a workdir whose recorded config changed.
"""

from lvst_tf.training.checkpoints import (
    CheckpointStore,
    latest_step,
    resolve_checkpoint,
    restore_submodule,
)
from lvst_tf.training.config import parse_gin_config
from lvst_tf.training.inputs import make_source
from lvst_tf.training.loop import (
    TRAINABLE_CHOICES,
    NonFiniteLossError,
    TrainConfig,
    Trainer,
    make_step_functions,
    select_variables,
    train,
    train_phases,
)
from lvst_tf.training.resume import check_resume, config_changes

__all__ = [
    "TRAINABLE_CHOICES",
    "CheckpointStore",
    "NonFiniteLossError",
    "TrainConfig",
    "Trainer",
    "check_resume",
    "config_changes",
    "latest_step",
    "make_source",
    "make_step_functions",
    "parse_gin_config",
    "resolve_checkpoint",
    "restore_submodule",
    "select_variables",
    "train",
    "train_phases",
]
