"""Training (METHOD §7-8): the gin-configurable loop `train`, phase chaining `train_phases`.

See docs/training.md. `train(workdir, num_steps=...)` (gin name `train`) trains one phase;
`train_phases(workdir)` (gin name `train_phases`) runs the phases of gin/paper.gin in sequence.
"""

from lvst_tf.training.checkpoints import latest_step, resolve_checkpoint, restore_submodule
from lvst_tf.training.config import parse_gin_config
from lvst_tf.training.loop import NonFiniteLossError, train, train_phases

__all__ = [
    "NonFiniteLossError",
    "latest_step",
    "parse_gin_config",
    "resolve_checkpoint",
    "restore_submodule",
    "train",
    "train_phases",
]
