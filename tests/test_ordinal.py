"""Ordinal grades: ordinal losses against hand-worked values, CORN probabilities, the median
decision, ordinal-only metrics, selection on grade MAE and the ONNX ``_grade`` output."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
from typer.testing import CliRunner

from skincls.cli.root import app
from skincls.model.heads import decide, probabilities
from skincls.model.losses import create_loss

from .conftest import tiny_cli_args, tiny_values

runner = CliRunner()


def softmax(z: list[float]) -> list[float]:
    e = [math.exp(v) for v in z]
    return [v / sum(e) for v in e]


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


# Losses against hand-worked values ----------------------------------------------------------


def test_corn_loss_by_hand():
    z = torch.tensor([[0.5, -1.0], [0.5, -1.0], [2.0, 0.3]])
    y = torch.tensor([1, 0, 2])
    # y=1: tasks 0 (y>0: 1) and 1 (y>1: 0); y=0: task 0 only (0); y=2: tasks 0 and 1 (both 1)
    expected = [
        softplus(-0.5) + softplus(-1.0),
        softplus(0.5),
        softplus(-2.0) + softplus(-0.3),
    ]
    loss = create_loss("corn", [1, 1, 1], reduction="none")
    assert loss(z, y).tolist() == pytest.approx(expected, rel=1e-6)
    assert create_loss("corn", [1, 1, 1])(z, y).item() == pytest.approx(sum(expected) / 3)


def test_sord_loss_by_hand():
    z = [1.0, 0.0, -1.0]
    q = softmax([0.0, -1.0, -4.0])  # true grade 0: exp(-(k - 0)^2), normalised
    expected = -sum(qk * math.log(pk) for qk, pk in zip(q, softmax(z), strict=True))
    got = create_loss("sord", [1, 1, 1])(torch.tensor([z]), torch.tensor([0]))
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_cdw_ce_loss_by_hand():
    z = [0.2, 1.0, -0.5]
    p = softmax(z)
    # true grade 0, alpha 2: distances 0, 1, 4
    expected = -(1 * math.log(1 - p[1]) + 4 * math.log(1 - p[2]))
    got = create_loss("cdw_ce", [1, 1, 1])(torch.tensor([z]), torch.tensor([0]))
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_corn_probabilities_are_a_distribution_with_monotone_tail():
    torch.manual_seed(0)
    z = torch.randn(64, 6) * 3
    p = probabilities(z, "corn")
    assert p.shape == (64, 7) and bool((p >= 0).all())
    assert p.sum(1).tolist() == pytest.approx([1.0] * 64, abs=1e-6)
    tail = 1 - torch.cumsum(p, 1)[:, :-1]  # P(y > k)
    assert bool((tail[:, 1:] <= tail[:, :-1] + 1e-6).all())
    # P(y > k) is the product of the conditional sigmoids
    expected = torch.cumprod(torch.sigmoid(z), 1)
    torch.testing.assert_close(tail, expected, atol=1e-6, rtol=1e-5)


def test_median_decision_on_hand_made_distributions():
    probs = torch.tensor(
        [
            [0.40, 0.05, 0.05, 0.50],  # argmax 3; cumulative 0.40, 0.45, 0.50 -> median 2
            [0.10, 0.30, 0.10, 0.50],  # cumulative reaches 0.5 at grade 2
            [0.60, 0.20, 0.10, 0.10],  # median 0 = argmax
            [0.25, 0.25, 0.25, 0.25],  # cumulative 0.5 exactly at grade 1
        ]
    )
    assert decide(probs, "median").tolist() == [2, 2, 0, 1]
    assert decide(probs, "argmax").tolist() == [3, 3, 0, 0]
    # the median minimises the expected absolute error
    k = torch.arange(4.0)
    cost = (probs[:, None, :] * (k[None, :, None] - k[None, None, :]).abs()).sum(2)
    assert cost.argmin(1).tolist()[:3] == [2, 2, 0]


# Runs: metrics, selection, decisions, export ---------------------------------------------------


@pytest.fixture(scope="module")
def mixed_regions(tmp_path_factory):
    """wrinkle: ordinal, CORN, median decision; pore: nominal (no ordinal figures)."""
    d = tmp_path_factory.mktemp("mixed")
    (d / "wrinkle.yaml").write_text(
        "name: wrinkle\nclasses: ['0', '1', '2', '3']\nordinal: true\nloss: corn\n"
        "decision: median\naugment: {train: [], eval: []}\n"
    )
    (d / "pore.yaml").write_text(
        "name: pore\nclasses: ['0', '1', '2']\naugment: {train: [], eval: []}\n"
    )
    return d


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory, tiny_data, mixed_regions):
    from skincls.core.config import build_config
    from skincls.training.train import train

    out = tmp_path_factory.mktemp("ordinal") / "run"
    train(build_config(tiny_values(tiny_data, mixed_regions, output=str(out), epochs=2, lr=0.01)))
    return out


def test_nominal_regions_carry_no_ordinal_figures(mixed_run):
    result = runner.invoke(app, ["evaluate", str(mixed_run), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    ordinal = {"within1", "grade_mae", "qwk", "corr"}
    assert not ordinal & set(doc["regions"]["pore"])
    assert ordinal <= set(doc["regions"]["wrinkle"])
    assert {k: doc["mean"][k] for k in ordinal} == {
        k: doc["regions"]["wrinkle"][k] for k in ordinal
    }
    header = (mixed_run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "val_wrinkle_grade_mae" in header and "val_pore_grade_mae" not in header
    meta = json.loads((mixed_run / "best" / "meta.json").read_text())
    assert meta["heads"] == {"wrinkle": "corn", "pore": "softmax"}
    assert meta["decisions"] == {"wrinkle": "median", "pore": "argmax"}
    # the default table: "-" for the nominal region, then the data owners' layout
    table = runner.invoke(app, ["evaluate", str(mixed_run)])
    assert table.exit_code == 0, table.output
    assert "ordinal regions (AI Hub baseline layout)" in table.stdout
    assert f"(served checkpoint best/, epoch {meta['epoch']}) on split test" in table.stdout
    line = next(
        ln
        for ln in table.stdout.splitlines()
        if ln.startswith("│ wrinkle") and "%" not in ln and ln.count("│") == 8
    )
    m = doc["regions"]["wrinkle"]
    assert f"{100 * m['accuracy']:.1f}" in line and f"{m['grade_mae']:.2f}" in line


def test_ordinal_options_need_ordinal_regions(tmp_path, tiny_data, mixed_regions):
    for extra, words in (
        (
            ["--select", "grade_mae"],
            "--select grade_mae: defined for ordinal regions only, and pore",
        ),
        (["--loss", "sord"], "--loss sord: needs ordered grades, and pore is not ordinal"),
    ):
        result = runner.invoke(
            app,
            ["train", *tiny_cli_args(tiny_data, mixed_regions), "-o", str(tmp_path / "x"), *extra],
        )
        assert result.exit_code != 0 and words in result.stderr, result.output
        assert "Traceback" not in result.output and not (tmp_path / "x").exists()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "r.yaml").write_text("name: r\nclasses: [a, b]\ndecision: median\n")
    result = runner.invoke(app, ["regions", "validate", str(bad / "r.yaml")])
    assert result.exit_code != 0 and "decision: 'median' needs ordered grades" in result.output


def test_select_grade_mae_keeps_the_epoch_with_the_lowest_mae(tmp_path, tiny_data, tiny_regions):
    out = tmp_path / "run"
    args = tiny_cli_args(
        tiny_data, tiny_regions, "--epochs", "4", "--lr", "0.02", "--select", "grade_mae"
    )
    args += ["--ema-decay", "0", "--serve-epoch", "best", "--quiet"]  # raw figures: the CSV's
    result = runner.invoke(app, ["train", *args, "-o", str(out)])
    assert result.exit_code == 0, result.output
    with open(out / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    maes = [float(r["val_grade_mae"]) for r in rows]
    best = json.loads((out / "run.json").read_text())["best_epoch"]
    assert best == 1 + maes.index(min(maes))
    assert json.loads((out / "best" / "meta.json").read_text())["metric"] == pytest.approx(
        min(maes)
    )


def test_onnx_grade_equals_pytorch_and_predict_agrees(tmp_path, mixed_run, tiny_data):
    import numpy as np
    import onnxruntime as ort

    from skincls.run.load import load_run
    from skincls.serving.export import export_onnx
    from skincls.serving.onnx_meta import onnx_metadata
    from skincls.serving.predict import predict

    path = tmp_path / "m.onnx"
    report = export_onnx(mixed_run, path)
    assert "wrinkle_decision" in report["outputs"] and "pore_decision" in report["outputs"]
    regions = {r["name"]: r for r in onnx_metadata(path)["regions"]}
    assert regions["wrinkle"]["decision"] == "median" and regions["wrinkle"]["head"] == "corn"
    model = load_run(mixed_run).model
    images = sorted((tiny_data / "images").rglob("*.png"))[:24]
    from skincls.data.augment import build_transform
    from skincls.data.images import read_image

    meta = json.loads((mixed_run / "best" / "meta.json").read_text())
    tf = build_transform([], meta["image_size"], tuple(meta["mean"]), tuple(meta["std"]))
    batch = np.stack([tf(image=read_image(str(p)))["image"].transpose(2, 0, 1) for p in images])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    got = dict(zip(names, session.run(None, {"image": batch.astype(np.float32)}), strict=True))
    with torch.inference_mode():
        probs, decided = model.predict(model(torch.from_numpy(batch)))
    wrinkle = model.region_names.index("wrinkle")
    assert got["wrinkle_decision"].tolist() == decided[wrinkle].tolist()
    np.testing.assert_allclose(got["wrinkle_probs"], probs[wrinkle].numpy(), atol=1e-5)
    # predict on the run directory and on the ONNX file give the same classes
    a = predict(mixed_run, [str(p) for p in images])
    b = predict(path, [str(p) for p in images])
    for x, y in zip(a["predictions"], b["predictions"], strict=True):
        assert {n: r["class"] for n, r in x["regions"].items()} == {
            n: r["class"] for n, r in y["regions"].items()
        }
    assert a["predictions"][0]["regions"]["wrinkle"]["decision"] == "median"
