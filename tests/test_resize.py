"""Issue 19, item 1: the resize policy per region (squash, pad, crop) everywhere it applies."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from skincls.data.augment import RandomResizedCrop, build_transform

from .conftest import tiny_values

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
WHITE = (1.0 - 0.5) / 0.25  # a white pixel after normalisation


def _wide_box_with_edge_markers(h: int = 50, w: int = 100) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[:, :4] = 255  # markers along the left and right edges of the box
    img[:, -4:] = 255
    return img


@pytest.mark.parametrize("policy", ["squash", "pad", "crop"])
def test_shrinking_averages_pixels_instead_of_sampling_a_few(policy):
    """Thin lines (a wrinkle is a pixel or two wide) survive a shrink: a 480 px image with a
    1-pixel white line every 10 rows, shrunk to 48 px, is 10% white in every output pixel
    (uint8 26: (26 / 255 - 0.5) / 0.25 = -1.592 after normalisation); a bilinear shrink
    samples between rows 4 and 5 of each 10 and sees none of the lines (-2.0, black)."""
    img = np.zeros((480, 480, 3), np.uint8)
    img[::10] = 255
    out = build_transform([], 48, MEAN, STD, policy)(image=img)["image"]
    assert out.shape == (48, 48, 3)
    assert np.allclose(out, (26 / 255 - 0.5) / 0.25, atol=1e-3)


@pytest.mark.parametrize("policy", ["squash", "pad", "crop"])
def test_each_policy_gives_the_input_size_and_whole_box_policies_keep_the_edges(policy):
    out = build_transform([], 32, MEAN, STD, policy)(image=_wide_box_with_edge_markers())["image"]
    assert out.shape == (32, 32, 3)
    rows = slice(12, 20)  # the middle rows: inside the box under every policy
    left, right = out[rows, 0].mean(), out[rows, -1].mean()
    if policy == "crop":
        assert left < 0 and right < 0  # the centre square never sees the box's edges
    else:
        assert left == pytest.approx(WHITE, abs=0.3) and right == pytest.approx(WHITE, abs=0.3)
    if policy == "pad":  # a 2:1 box leaves bands above and below, at the mean colour (0)
        one_level = 1 / 255 / 0.25  # the fill is rounded to a uint8 level
        assert np.abs(out[:6]).max() <= one_level and np.abs(out[-6:]).max() <= one_level


def test_the_train_crop_follows_the_box_aspect_under_squash_and_pad():
    from skincls.data.box_crop import BoxAspectCrop

    crop = BoxAspectCrop(scale=(0.8, 1.0), ratio=(0.9, 1.1))
    img = _wide_box_with_edge_markers(60, 120)
    for seed in range(50):
        crop.set_random_seed(seed)
        x1, y1, x2, y2 = crop.get_params_dependent_on_data({"shape": img.shape}, {})["box"]
        aspect = (x2 - x1) / (y2 - y1)
        assert 2.0 * 0.9 - 0.05 <= aspect <= 2.0 * 1.1 + 0.05
        assert 0.8 * 0.95 <= (x2 - x1) * (y2 - y1) / (120 * 60) <= 1.0
    # the same op under the crop policy is albumentations' absolute-ratio crop: near square
    op = RandomResizedCrop(op="RandomResizedCrop", scale=(1.0, 1.0), ratio=(1.0, 1.0))
    whole = build_transform([op], 32, MEAN, STD, "squash")(image=img)["image"]
    assert whole[20:40, 0].mean() == pytest.approx(WHITE, abs=0.3)  # scale 1: the whole box
    square = build_transform([op], 32, MEAN, STD, "crop")(image=img)["image"]
    assert square[:, 0].mean() < 0


@pytest.fixture(scope="module")
def wide_run(tmp_path_factory):
    """A tiny run on 2:1 images: region ``left`` padded, region ``right`` squashed (own
    ``resize:``), and the run's ``--resize crop`` for neither."""
    from skincls.core.config import build_config
    from skincls.training.train import train

    root = tmp_path_factory.mktemp("wide")
    rng = np.random.default_rng(0)
    with (root / "manifest.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "region", "group"])
        for i in range(48):
            img = rng.integers(0, 255, (32, 64, 3), dtype=np.uint8)
            img[:, : 4 + 2 * (i % 3)] = 255  # the class lives at the left edge
            Image.fromarray(img).save(root / f"{i}.png")
            region = "left" if i % 2 else "right"
            w.writerow([f"{i}.png", str(i % 3), region, f"g{i // 2}"])
    regions = tmp_path_factory.mktemp("wide_regions")
    for name, policy in (("left", "pad"), ("right", "squash")):
        (regions / f"{name}.yaml").write_text(
            f"name: {name}\nclasses: ['0', '1', '2']\nresize: {policy}\n"
            "augment: {train: [{op: RandomResizedCrop, scale: [0.8, 1.0], ratio: [0.9, 1.1]}], "
            "eval: []}\n"
        )
    out = tmp_path_factory.mktemp("wide_runs") / "run"
    from rich.console import Console

    text = io.StringIO()
    values = tiny_values(root / "manifest.csv", regions, output=str(out), quiet=False)
    result = train(build_config(values), console=Console(file=text, width=400))
    return result.run_dir, root, text.getvalue()


def test_the_summary_shows_each_regions_policy_and_box_aspect(wide_run):
    _, _, printed = wide_run
    assert "left: 3 classes" in printed and "resize=pad (whole images)" in printed
    assert "resize=squash (whole images)" in printed


def test_evaluate_predict_and_onnx_preprocess_each_policy_alike(wide_run, tmp_path):
    from skincls.data.sources import load_data
    from skincls.model.inference import predict_loader
    from skincls.run.load import load_run
    from skincls.serving.evaluate import eval_loader
    from skincls.serving.export import export_onnx
    from skincls.serving.onnx_meta import onnx_metadata
    from skincls.serving.predict import predict

    run, root, _ = wide_run
    model, config, registry, specs, meta = load_run(run)
    assert meta.resize == {"left": "pad", "right": "squash"}
    onnx = export_onnx(run, tmp_path / "m.onnx")["path"]
    assert {r["name"]: r["resize"] for r in onnx_metadata(onnx)["regions"]} == meta.resize
    for region in ("left", "right"):
        samples = load_data(root / "manifest.csv", registry, [region]).samples[:8]
        loader, _ = eval_loader(specs, meta, samples, 4, 0, torch.device("cpu"))
        p = predict_loader(model, loader, torch.device("cpu"))
        paths = [s.path for s in samples]
        for source in (run, onnx):
            served = predict(source, paths, [region])["predictions"]
            probs = [served[k]["regions"][region]["probs"] for k in p["index"]]
            classes = [served[k]["regions"][region]["index"] for k in p["index"]]
            assert classes == p["pred"].tolist()
            conf = [list(pr.values())[c] for pr, c in zip(probs, classes, strict=True)]
            np.testing.assert_allclose(conf, p["conf"], atol=1e-5)


def test_crops_with_different_policies_are_not_merged_into_one_sample():
    from skincls.data.regions import RegionSpec
    from skincls.data.samples import recipe_key

    a = RegionSpec.model_validate({"name": "a", "classes": ["0", "1"], "resize": "pad"})
    b = RegionSpec.model_validate({"name": "b", "classes": ["0", "1"], "resize": "squash"})
    c = RegionSpec.model_validate({"name": "c", "classes": ["0", "1"], "resize": "pad"})
    assert recipe_key(a) != recipe_key(b) and recipe_key(a) == recipe_key(c)
    assert json.loads(recipe_key(a))[1] == "pad"
