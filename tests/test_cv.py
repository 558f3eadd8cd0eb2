"""``skincls cv`` (issue 29 item 4): grouped folds, out-of-fold predictions, resuming."""

from __future__ import annotations

import csv
import json
from collections import Counter

from typer.testing import CliRunner

from skincls.cli.root import app
from skincls.data.regions import discover_regions
from skincls.data.sources import load_data
from skincls.data.split import fold_samples
from skincls.training.cv import fold_splits

runner = CliRunner()


def _cv(data, regions, out, *extra: str):
    args = [
        "cv", str(data), "--regions-dir", str(regions), "--backbone", "test_resnet",
        "--no-pretrained", "--image-size", "32", "--epochs", "1", "--max-steps-per-epoch", "2",
        "--workers", "0", "--wandb", "disabled", "--no-report", "-o", str(out), *extra,
    ]  # fmt: skip
    return runner.invoke(app, args)


def test_folds_hold_every_sample_once_and_no_group_twice(tiny_data, tiny_regions):
    samples = load_data(tiny_data, discover_regions([tiny_regions])).samples
    folds = fold_samples(samples, 4, seed=0)
    assert set(folds) == {s.key for s in samples} and set(folds.values()) == {0, 1, 2, 3}
    group_folds = {}
    for s in samples:
        assert group_folds.setdefault(s.group, folds[s.key]) == folds[s.key]
    sizes = Counter(folds.values())
    assert max(sizes.values()) - min(sizes.values()) <= max(len(samples) // 4, 4)
    splits = fold_splits(samples, 4, seed=0, val_fraction=0.2)
    tested = Counter(k for split in splits for k, part in split.items() if part == "test")
    assert tested == Counter({s.key: 1 for s in samples})  # each sample held out exactly once
    for split in splits:
        val_groups = {s.group for s in samples if split[s.key] == "val"}
        train_groups = {s.group for s in samples if split[s.key] == "train"}
        assert val_groups and not val_groups & train_groups


def test_cv_writes_one_oof_row_per_label_and_resumes_fold_by_fold(
    tiny_data, tiny_regions, tmp_path
):
    out = tmp_path / "cv"
    first = _cv(tiny_data, tiny_regions, out, "--folds", "3", "--json")
    assert first.exit_code == 0, first.output
    result = json.loads(first.stdout)
    samples = load_data(tiny_data, discover_regions([tiny_regions])).samples
    labels = sum(len(s.labels) for s in samples)
    with (out / "oof.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == labels == sum(m["n"] for m in result["regions"].values())
    assert len({(r["key"], r["region"]) for r in rows}) == labels
    for r in rows:
        probs = [float(p) for p in r["probs"].split()]
        assert abs(sum(probs) - 1) < 1e-4
    for i in range(3):  # the run of fold i held out exactly the oof rows of fold i
        with (out / f"fold-{i}" / "split.csv").open(encoding="utf-8") as fh:
            test = {(r["key"], r["region"]) for r in csv.DictReader(fh) if r["part"] == "test"}
        held = {(r["key"], r["region"]) for r in rows if r["fold"] == str(i)}
        assert held == test and test  # one label per sample here: sample key = label key
    assert result["intervals"]["groups"] == len({s.group for s in samples})
    assert set(result["over_folds"]) >= {"balanced_accuracy", "macro_f1"}
    # interrupted: fold 1 stopped before its test, fold 2 never started
    kept = (out / "fold-0" / "evaluation.json").stat().st_mtime_ns
    (out / "fold-1" / "evaluation.json").unlink()
    import shutil

    shutil.rmtree(out / "fold-2")
    again = _cv(tiny_data, tiny_regions, out, "--folds", "3")
    assert again.exit_code == 0, again.output
    assert "fold 1/3: finished earlier, kept" in again.output
    assert "fold 2/3: resuming" in again.output and "fold 3/3: training" in again.output
    assert (out / "fold-0" / "evaluation.json").stat().st_mtime_ns == kept
    assert (out / "fold-1" / "evaluation.json").is_file()
    other = _cv(tiny_data, tiny_regions, out, "--folds", "4")
    assert other.exit_code != 0 and "a cv started with folds = 3, now 4" in other.output


def test_the_exported_fold_ensemble_is_the_mean_of_the_fold_models(
    tiny_data, tiny_regions, tmp_path
):
    import numpy as np
    import onnxruntime as ort
    import torch

    from skincls.run.load import load_run
    from skincls.serving.onnx_meta import onnx_metadata

    out = tmp_path / "cv"
    assert _cv(tiny_data, tiny_regions, out, "--folds", "2").exit_code == 0
    got = runner.invoke(app, ["export", str(out), "--json"])
    assert got.exit_code == 0, got.output
    path = json.loads(got.stdout)["path"]
    meta = onnx_metadata(path)
    assert meta["ensemble"]["folds"] == 2
    images = np.random.default_rng(1).standard_normal((5, 3, 32, 32)).astype(np.float32)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    outputs = dict(
        zip(
            [o.name for o in session.get_outputs()],
            session.run(None, {"image": images}),
            strict=True,
        )
    )
    folds = [load_run(out / f"fold-{i}").model for i in range(2)]
    with torch.inference_mode():
        served = [m.predict(m(torch.from_numpy(images)))[0] for m in folds]
    for i, name in enumerate(folds[0].region_names):
        mean = (served[0][i] + served[1][i]).numpy() / 2
        np.testing.assert_allclose(outputs[f"{name}_probs"], mean, atol=1e-5)
        width = mean.shape[1]
        shifts = [m.log_shifts[name] for m in folds]
        shift = np.mean([np.zeros(width) if s is None else s.numpy() for s in shifts], axis=0)
        moved = mean * np.exp(shift)
        moved /= moved.sum(1, keepdims=True)
        if folds[0].decisions[name] == "argmax":
            expected = moved.argmax(1)
        else:  # the median grade: the first whose cumulative probability reaches 0.5
            expected = np.minimum((np.cumsum(moved, 1) < 0.5).sum(1), width - 1)
        assert (outputs[f"{name}_decision"] == expected).all()
