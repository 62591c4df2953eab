"""The evaluation behind `tools/eval.py` (docs/method.md#evaluation): timing, quality with K
regions, reports.

- `lvst_tf.evaluation.timing`: the supplement's Table 2 layout (seconds per frame per r and
  resolution), `run_timing`.
- `lvst_tf.evaluation.quality`: warping error, per-region style distance, leakage per ordered region
  pair and gradient SSIM of our model at each r and the baselines, `run_quality`.
- `lvst_tf.evaluation.report`: markdown / CSV tables and contact sheets.
- `lvst_tf.evaluation.parsing`: the `HxW` size parser and integer lists of the tools' flags.
- `lvst_tf.evaluation.evalset`: the held-out evaluation folder built by `tools/make_evalset.py`.

Models come from `lvst_tf.loading.load_model` (a `LoadedModel`). Importing this package does not
import TensorFlow.
"""

from lvst_tf.evaluation.parsing import parse_int_list, parse_size, parse_sizes
from lvst_tf.evaluation.quality import (
    QUALITY_COLUMNS,
    Video,
    load_styles,
    load_videos,
    quality_columns,
    region_names,
    run_quality,
)
from lvst_tf.evaluation.report import colour_regions, contact_sheet, frames_sheet
from lvst_tf.evaluation.timing import (
    DEFAULT_RESOLUTIONS,
    DEFAULT_RS,
    PAPER_TIMING,
    TimingResult,
    run_timing,
    time_model,
)

__all__ = [
    "DEFAULT_RESOLUTIONS",
    "DEFAULT_RS",
    "PAPER_TIMING",
    "QUALITY_COLUMNS",
    "TimingResult",
    "Video",
    "colour_regions",
    "contact_sheet",
    "frames_sheet",
    "load_styles",
    "load_videos",
    "parse_int_list",
    "parse_size",
    "parse_sizes",
    "quality_columns",
    "region_names",
    "run_quality",
    "run_timing",
    "time_model",
]
