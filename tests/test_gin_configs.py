"""Every shipped gin config parses strictly and builds (paper configs bound to tiny sizes, not run)."""

import pathlib
import subprocess
import sys

import pytest

import gin
import lvst_tf.data  # noqa: F401  (registers configurables)
import lvst_tf.losses  # noqa: F401
import lvst_tf.models  # noqa: F401
import lvst_tf.training  # noqa: F401
from lvst_tf import data, losses, models

REPO = pathlib.Path(__file__).resolve().parents[1]
GIN_DIR = REPO / "gin"
CONFIGS = [
    "paper_mask_pretrain.gin",
    "paper_end2end.gin",
    "paper.gin",
    "quickstart.gin",
    "smoke.gin",
    "demo.gin",
]
# The paper configs use ImageNet VGG (no download here) at 256: build them small, offline.
TINY = ["build_model.vgg_weights = None", "build_model.low_res = 32"]


@pytest.fixture(autouse=True)
def _clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


def _parse(name, bindings=()):
    gin.add_config_file_search_path(str(GIN_DIR))
    gin.parse_config_files_and_bindings([str(GIN_DIR / name)], list(bindings), skip_unknown=False)


@pytest.mark.parametrize("name", CONFIGS)
def test_config_parses_and_builds(name):
    tiny = TINY if name.startswith(("paper", "demo")) else []
    # The demo's corpus need not be built here: its styles come from the samples in this test.
    extra = ["make_train_dataset.style_source = None"] if name == "demo.gin" else []
    _parse(name, tiny + extra)
    model = models.build_model()
    assert model.low_res == (32 if tiny else gin.query_parameter("build_model.low_res"))
    chained = name in ("paper.gin", "demo.gin")
    scopes = gin.query_parameter("train_phases.phases") if chained else None
    for scope in scopes or [None]:
        with gin.config_scope(scope):
            num_steps = gin.get_bindings("train")["num_steps"]
            assert isinstance(num_steps, int) and num_steps > 0
            # The data bindings build a dataset over the shipped samples (nothing is read yet).
            source = data.DavisFolder(str(data.samples_root() / "davis"), split="train")
            ds = data.make_train_dataset(source, seed=0, with_flow=losses.loss_needs_flow())
            spec = ds.element_spec
            assert spec["frames"].shape[2] == spec["frames"].shape[3]


def test_paper_schedule_numbers():
    _parse("paper_mask_pretrain.gin")
    assert gin.query_parameter("train.num_steps") == 20000
    assert gin.query_parameter("train.trainable") == "mask_net"
    assert gin.query_parameter("compute_losses.style_weight") == 0.0
    assert not losses.loss_needs_flow()  # phase 1 needs no optical flow
    gin.clear_config()
    _parse("paper_end2end.gin")
    assert gin.query_parameter("train.num_steps") == 90000
    assert gin.query_parameter("train.trainable") == "all_but_mask_net"
    assert gin.query_parameter("build_model.vgg_weights") == "imagenet"
    assert gin.query_parameter("make_train_dataset.batch_size") == 2
    assert gin.query_parameter("make_train_dataset.clip_length") == 5
    assert gin.query_parameter("train.learning_rate") == 1e-4


def _phase_bindings(name, scope=None):
    with gin.config_scope(scope):
        return {fn: gin.get_bindings(fn) for fn in ("train", "compute_losses", "build_model")}


def test_paper_gin_phases_equal_the_single_phase_configs():
    _parse("paper.gin")
    assert gin.query_parameter("train_phases.phases") == ["mask_pretrain", "end2end"]
    chained = {p: _phase_bindings("paper.gin", p) for p in ("mask_pretrain", "end2end")}
    for phase, single in (
        ("mask_pretrain", "paper_mask_pretrain.gin"),
        ("end2end", "paper_end2end.gin"),
    ):
        gin.clear_config()
        _parse(single)
        alone = _phase_bindings(single)
        # paper.gin chains init_checkpoint itself; the single phase-2 file leaves it for the user.
        alone["train"].pop("init_checkpoint", None)
        assert chained[phase] == alone, phase


def test_end2end_without_init_checkpoint_fails_clearly(tmp_path):
    _parse("paper_end2end.gin", TINY)
    with pytest.raises(ValueError, match="init_checkpoint"):
        lvst_tf.training.train(str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_misspelled_binding_fails_before_any_work(tmp_path):
    workdir = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "tools/train.py",
            "--gin_file=smoke.gin",
            "--gin_bindings=train.num_stepz = 3",
            f"--workdir={workdir}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    assert "num_stepz" in proc.stderr
    assert not workdir.exists()
