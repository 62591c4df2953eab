"""The held-out evaluation set (lvst_tf.evaluation.evalset), built offline from synthetic media
with known objects (the real media come from a wheel and a .deb: tools/make_evalset.py)."""

import hashlib
import json

import cv2
import numpy as np
import pytest

from lvst_tf import evaluation
from lvst_tf.data import DavisFolder
from lvst_tf.evaluation import evalset

BIKES_SIZE = (68, 160)  # a quarter of bikes.mp4's 272x640
VTEST_SIZE = (192, 256)
TREE_SIZE = (60, 80)


def _texture(shape, seed, low, high):
    rng = np.random.default_rng(seed)
    noise = cv2.GaussianBlur(rng.random(shape, np.float32), (0, 0), 2)
    noise = (noise - noise.min()) / (noise.max() - noise.min())
    return low + noise * (high - low)


def _rect(shape, x0, y0, x1, y1):
    h, w = shape
    m = np.zeros(shape, bool)
    m[round(y0 * h) : round(y1 * h), round(x0 * w) : round(x1 * w)] = True
    return m


def synthetic_media():
    """Videos whose objects are known: returns (media, truth {clip: [object masks [T, H, W]]})."""
    truth = {}
    # bikes: a parked dark-blue van on the left, a red-clad cyclist swaying slightly at 0.62-0.72.
    h, w = BIKES_SIZE
    street = np.dstack([_texture((h, w), s, 120, 170) for s in range(3)])
    van = _rect((h, w), 0.0, 0.12, 0.44, 1.0)
    frames, cyclists = [], []
    for t in range(140):
        frame = street.copy()
        frame[van] = (40, 50, 90)
        shift = 0.01 * np.sin(t / 5)
        body = _rect((h, w), 0.61 + shift, 0.02, 0.72 + shift, 0.95)
        frame[body] = (150, 30, 30)
        frames.append(frame.astype(np.uint8))
        cyclists.append(body)
    start, length = evalset.BIKES_START, evalset.BIKES_LENGTH
    truth["bikes_van"] = [np.stack([van] * length), np.stack(cyclists[start : start + length])]
    bikes = np.stack(frames)
    # vtest: buildings on top, grass bottom-left, paving elsewhere, dark walkers crossing.
    h, w = VTEST_SIZE
    yy, xx = np.mgrid[0:h, 0:w]
    top = yy < 0.25 * h
    grass = ~top & (yy > 0.25 * h + 0.6 * xx)
    paving = ~top & ~grass
    base = np.zeros((h, w, 3), np.float32)
    base[top] = (150, 90, 60)
    base[grass] = (60, 140, 50)
    base[paving] = (175, 175, 180)
    base += _texture((h, w), 7, -8, 8)[..., None]
    frames, walkers = [], []
    for t in range(440):
        frame = base.copy()
        people = np.zeros((h, w), bool)
        for k, (y, speed) in enumerate(((100, 2), (140, 3), (120, 1))):
            x = (20 + 57 * k + speed * t) % (w - 20)
            people[y : y + 24, x : x + 10] = True
        frame[people] = (20, 20, 25)
        frames.append(np.clip(frame, 0, 255).astype(np.uint8))
        walkers.append(people)
    vtest = np.stack(frames)
    ground = slice(evalset.VTEST_GROUND_START, evalset.VTEST_GROUND_START + evalset.VTEST_LENGTH)
    people_range = slice(
        evalset.VTEST_PEOPLE_START, evalset.VTEST_PEOPLE_START + evalset.VTEST_LENGTH
    )
    walkers = np.stack(walkers)
    truth["vtest_ground"] = [grass & ~walkers[ground], paving & ~walkers[ground]]
    truth["vtest_people"] = [walkers[people_range]]
    # tree: bright sky, a green crown in the middle, a dark post on the left edge.
    h, w = TREE_SIZE
    yy, xx = np.mgrid[0:h, 0:w]
    crown = ((xx - 0.55 * w) / (0.3 * w)) ** 2 + ((yy - 0.65 * h) / (0.45 * h)) ** 2 < 1
    post = xx < 0.08 * w
    image = np.zeros((h, w, 3), np.uint8)
    image[:] = (235, 240, 245)
    image[crown] = (70, 150, 60)
    image[post] = (70, 50, 40)
    tree = np.stack([image] * 68)
    truth["tree"] = [np.stack([crown & ~post] * 40), np.stack([post] * 40)]
    rng = np.random.default_rng(5)
    styles = {n: rng.integers(0, 255, (24, 32, 3), dtype=np.uint8) for n in evalset.STYLE_ORDER}
    return evalset.Media(bikes, vtest, tree, styles), truth


def _iou(a, b):
    return (a & b).sum() / max(1, (a | b).sum())


def _digests(folder):
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    media, truth = synthetic_media()
    root = tmp_path_factory.mktemp("evalset")
    summary = evalset.build(root / "evalset", media=media, log=lambda *a: None)
    return {"media": media, "truth": truth, "root": root / "evalset", "summary": summary}


def test_masks_find_the_known_objects(built):
    clips = {c.name: c for c in evalset.make_clips(built["media"])}
    assert list(clips) == ["bikes_van", "vtest_ground", "vtest_people", "tree"]
    for name, objects in built["truth"].items():
        clip = clips[name]
        assert len(clip.objects) == len(objects)
        for index, expected in enumerate(objects, start=1):
            iou = _iou(clip.instances == index, expected)
            assert iou > 0.8, (name, clip.objects[index - 1], iou)


def test_layout_readme_and_splits(built):
    root = built["root"]
    assert json.loads((root / evalset.MARKER).read_text())["tool"] == evalset.MARKER_TOOL
    val = DavisFolder(root, split="val")
    assert val.names == ["bikes_van", "vtest_ground", "vtest_people", "tree"]
    assert [val.num_frames(i) for i in range(4)] == [30, 40, 40, 40]
    assert DavisFolder(root, split="two_objects").names == ["bikes_van", "vtest_ground", "tree"]
    frames, instances = val.load_clip(3, 0, 2)
    assert frames.shape == (2, *TREE_SIZE, 3) and set(np.unique(instances)) == {0, 1, 2}
    readme = (root / "README.md").read_text()
    for text in ("bikes.mp4", "vtest.avi", "tree.avi", "Apache-2.0", "BSD", "apple.jpg"):
        assert text in readme
    assert (root / "styles.txt").read_text().splitlines()[-1] == "styles/home.jpg"
    assert len(list((root / "styles").glob("*.jpg"))) == 10
    assert (root / "contact_sheet.png").is_file()
    assert built["summary"]["clips"] == 4 and built["summary"]["frames"] == 150


def test_quality_loads_the_evalset_with_k2_and_k3(built):
    root = built["root"]
    k3 = evaluation.load_videos(root, "two_objects", regions=3, max_frames=5)
    assert [v.masks.shape[-1] for v in k3] == [2, 2, 2]
    names, styles = evaluation.load_styles(None, regions=3, data=root)
    assert names == ["apple", "butterfly", "home"] and len(styles) == 3
    k2 = evaluation.load_videos(root, "val", regions=2, max_frames=5)
    assert len(k2) == 4 and all(v.masks.shape[-1] == 1 for v in k2)


def test_deterministic_and_refuses_foreign_folders(built, tmp_path):
    media = built["media"]
    again = evalset.build(tmp_path / "again", media=media, log=lambda *a: None)
    assert _digests(tmp_path / "again") == _digests(built["root"])
    # A rebuild over a previous evaluation set replaces it.
    evalset.build(again["output"], media=media, log=lambda *a: None)
    assert _digests(tmp_path / "again") == _digests(built["root"])
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not an evaluation set"):
        evalset.build(foreign, media=media)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a folder"):
        evalset.check_output(tmp_path / "file")


def test_rejects_media_with_a_cut_or_without_an_object(built, tmp_path):
    media = built["media"]
    cut = media.tree.copy()
    cut[20:] = 255 - cut[20:]
    with pytest.raises(RuntimeError, match="scene cut"):
        evalset.make_clips(evalset.Media(media.bikes, media.vtest, cut, media.styles))
    no_post = media.tree.copy()
    no_post[:, :, :10] = (235, 240, 245)
    with pytest.raises(RuntimeError, match="post"):
        evalset.make_clips(evalset.Media(media.bikes, media.vtest, no_post, media.styles))
