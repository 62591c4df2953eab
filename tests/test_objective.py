"""tools/eval.py --mode=objective and lvst_tf.evaluation.objective: the run's losses on held-out
batches for the model's output and for reference outputs."""

import csv
import shutil

import numpy as np
import pytest
from test_eval import _run_eval, make_davis, make_workdir

from lvst_tf import loading
from lvst_tf.evaluation import objective


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A two-phase-style workdir: scoped data and loss settings like a real run's config."""
    root = tmp_path_factory.mktemp("objective")
    davis = make_davis(root / "davis", names=("clip_a", "clip_b", "clip_c"), num_frames=4)
    workdir = make_workdir(root / "workdir")
    config = workdir / loading.CONFIG_FILE
    config.write_text(
        config.read_text()
        + "\nmask_pretrain/compute_losses.style_weight = 0.0\n"
        + "mask_pretrain/make_train_dataset.crop_size = 48\n"
        + "end2end/compute_losses.style_weight = 2.0\n"
        + "end2end/compute_losses.content_weight = 0.25\n"
        + "end2end/compute_losses.laplacian_weight = 3.0\n"
        + "end2end/compute_losses.laplacian_reduction = 'sum'\n"
        + "end2end/make_train_dataset.crop_size = 32\n"
        + "end2end/make_train_dataset.clip_length = 2\n"
        + f"end2end/train.data_root = '{davis}'\n"
        + "end2end/train.eval_seed = 7\n"
    )
    return {"root": root, "davis": davis, "workdir": workdir, "config": config}


def test_run_settings_take_the_last_phase_that_trains_the_style():
    config = {
        "make_train_dataset": {"crop_size": 64, "batch_size": 4},
        "mask_pretrain/compute_losses": {"style_weight": 0.0, "content_weight": 0.0},
        "mask_pretrain/make_train_dataset": {"crop_size": 16},
        "end2end/compute_losses": {"style_weight": 1.0, "temporal_weight": 10.0},
        "end2end/make_train_dataset": {"num_regions": 3, "style_source": ["corpus"]},
        "end2end/train": {"data_root": "corpus"},
    }
    scope, train, dataset, losses = objective.run_settings(config)
    assert scope == "end2end"
    assert train == {"data_root": "corpus"}
    # Unscoped bindings apply, the phase's override them, and only the batch-shaping ones are kept.
    assert dataset == {"crop_size": 64, "num_regions": 3, "style_source": ["corpus"]}
    assert losses == {"style_weight": 1.0}
    assert objective.run_settings({"compute_losses": {"content_weight": 2.0}})[0] is None


def test_flat_style_colour_matches_a_pixel_loop():
    rng = np.random.default_rng(0)
    masks = rng.random((2, 5, 6, 2)).astype(np.float32) / 2  # two objects, sum <= 1
    styles = rng.random((3, 4, 7, 3)).astype(np.float32)
    out = objective.flat_style_colour(masks, styles)
    colours = [styles[k].reshape(-1, 3).mean(0) for k in range(3)]
    for t, y, x in np.ndindex(2, 5, 6):
        weights = [masks[t, y, x, 0], masks[t, y, x, 1], 1 - masks[t, y, x].sum()]
        expected = sum(w * c for w, c in zip(weights, colours))
        np.testing.assert_allclose(out[t, y, x], expected, rtol=1e-5, atol=1e-6)


def test_objective_table_on_a_tiny_run(run, tmp_path):
    loaded = loading.load_model(workdir=str(run["workdir"]))
    plan = objective.prepare_objective(run["config"])
    assert plan.scope == "end2end" and plan.seed == 7 and plan.root == str(run["davis"])
    assert plan.dataset_args == {"crop_size": 32, "clip_length": 2}
    rows, markdown = objective.run_objective(loaded, plan, batches=2, output_dir=tmp_path / "out")
    assert [r["output"] for r in rows] == list(objective.CANDIDATES)
    by_name = {r["output"]: r for r in rows}
    assert by_name[objective.IDENTITY]["content"] == 0.0  # the content itself
    for r in rows:  # the run's own weights
        grid = 0.0 if r["laplacian"] is None else 3.0 * r["laplacian"]
        assert r["total"] == pytest.approx(0.25 * r["content"] + 2.0 * r["style"] + grid, rel=1e-6)
        assert np.isfinite(r["colour"]) and r["colour"] >= 0  # scored, weight 0 in this run
        assert np.isfinite(r["style"]) and r["style"] >= 0
    assert [r["laplacian"] is None for r in rows] == [False, False, True, True, True]
    assert by_name[objective.OURS]["laplacian"] == by_name[objective.OURS_CLIPPED]["laplacian"] > 0
    # A colour transfer to the styles moves the output's statistics toward them.
    assert by_name[objective.REINHARD]["style"] < by_name[objective.IDENTITY]["style"]
    assert by_name[objective.REINHARD]["colour"] < by_name[objective.IDENTITY]["colour"]
    assert by_name[objective.IDENTITY]["lab"] == 1.0  # the Lab distance in units of the input's
    assert by_name[objective.REINHARD]["lab"] < 0.5
    assert by_name[objective.FLAT]["content"] > 0
    # The Laplacian against a NumPy sum over the same batches (drawn again with the plan's seed).
    from lvst_tf import data

    dataset = data.make_train_dataset(
        plan.source, batch_size=1, seed=plan.seed, with_flow=False, **plan.dataset_args
    )
    expected = []
    for batch, _ in zip(dataset, range(2)):
        g = objective.model_outputs(loaded.model, batch)["region_grids"].numpy().astype(np.float64)
        expected.append(sum(np.sum(np.diff(g, axis=a) ** 2) for a in (3, 4, 5)))
    assert by_name[objective.OURS]["laplacian"] == pytest.approx(np.mean(expected), rel=1e-4)
    # The batches are fixed by the seed: a second run scores the same.
    again, _ = objective.run_objective(loaded, plan, batches=2)
    assert [r["total"] for r in again] == pytest.approx([r["total"] for r in rows], rel=1e-6)
    assert (
        "Reinhard per region" in markdown
        and "0.25 x content + 2.0 x style + 0.0 x colour" in markdown
    )
    assert "+ 3.0 x grid Laplacian, reduction 'sum'" in markdown
    table = list(csv.DictReader((tmp_path / "out" / "objective.csv").open()))
    assert [t["output"] for t in table] == list(objective.CANDIDATES)
    assert (tmp_path / "out" / "objective.md").read_text() == markdown


def test_objective_arguments_are_checked(run, tmp_path):
    with pytest.raises(ValueError, match="nope"):
        objective.prepare_objective(run["config"], split="nope")
    bare = tmp_path / "bare"
    shutil.copytree(run["workdir"], bare)
    text = (bare / loading.CONFIG_FILE).read_text()
    (bare / loading.CONFIG_FILE).write_text(text.split("end2end/train.data_root")[0])
    with pytest.raises(ValueError, match="train.data_root"):
        objective.prepare_objective(bare / loading.CONFIG_FILE)
    with pytest.raises(ValueError, match="config"):
        objective.prepare_objective(tmp_path / "missing.gin")
    loaded = loading.load_model(workdir=str(run["workdir"]))
    plan = objective.prepare_objective(run["config"])
    with pytest.raises(ValueError, match="batches"):
        objective.run_objective(loaded, plan, batches=0)


@pytest.mark.slow
def test_eval_binary_objective(run, tmp_path):
    out = tmp_path / "out"
    proc = _run_eval(
        [f"--workdir={run['workdir']}", "--mode=objective", "--batches=1", f"--output_dir={out}"],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| input (identity) | 0.00 |" in proc.stdout and "| - |" in proc.stdout
    assert sorted(p.name for p in out.iterdir()) == ["objective.csv", "objective.md"]
