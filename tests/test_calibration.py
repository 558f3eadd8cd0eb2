"""Issue 15: calibrated probabilities, a decision rule chosen on validation, serving = evaluation."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from skincls.core.errors import SkinclsError
from skincls.model.calibration import (
    apply_serving,
    calibration_figures,
    fit_temperature,
    log_shift,
    parse_target_prior,
)
from skincls.model.heads import decide, probabilities

from .conftest import tiny_values

HAM = Path(__file__).resolve().parents[2] / "shared" / "data" / "ham10000"


def test_temperature_fitting_recovers_a_known_temperature():
    g = torch.Generator().manual_seed(0)
    true_logits = torch.randn(20000, 5, generator=g) * 1.5
    labels = torch.multinomial(torch.softmax(true_logits, 1), 1, generator=g)[:, 0]
    overconfident = true_logits * 2.5  # a model whose logits are 2.5x too sharp
    t = fit_temperature(overconfident, labels, "softmax")
    assert abs(t - 2.5) / 2.5 < 0.05
    assert abs(fit_temperature(true_logits, labels, "softmax") - 1.0) < 0.05


def test_ece_brier_and_nll_on_a_hand_made_case():
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.4, 0.6]])
    labels = np.array([0, 1, 1, 1])
    f = calibration_figures(probs, labels)
    # bin of 0.9: accuracy 1/2, gap 0.4, weight 1/2; bin of 0.6: accuracy 1, gap 0.4, weight 1/2
    assert f["ece"] == pytest.approx(0.4)
    brier = (0.01 + 0.01 + 0.81 + 0.81 + 0.16 + 0.16 + 0.16 + 0.16) / 4
    assert f["brier"] == pytest.approx(brier)
    assert f["nll"] == pytest.approx(-(math.log(0.9) + math.log(0.1) + 2 * math.log(0.6)) / 4)


def test_tau_zero_reproduces_argmax_and_the_prior_correction_follows_the_formula():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(500, 4, generator=g)
    prior = [0.7, 0.2, 0.05, 0.05]
    probs = probabilities(logits, "softmax")
    assert torch.equal(decide(probs, "argmax", log_shift(prior, 0.0)), logits.argmax(1))
    expected = (logits - torch.log(torch.tensor(prior))).argmax(1)  # tau 1, uniform target
    assert torch.equal(decide(probs, "argmax", log_shift(prior, 1.0)), expected)


def test_target_prior_moves_decisions_towards_the_deployment_mix():
    probs = torch.tensor([[0.5, 0.4, 0.1], [0.2, 0.5, 0.3], [0.6, 0.3, 0.1]])
    trained = [1 / 3] * 3
    plain = decide(probs, "argmax", log_shift(trained, 1.0))
    assert plain.tolist() == [0, 1, 0]
    rare_first = decide(probs, "argmax", log_shift(trained, 1.0, [0.1, 0.1, 0.8]))
    assert rare_first.tolist() == [2, 2, 2]  # 0.1*0.8 > 0.5*0.1: class 2 wins everywhere
    common_first = decide(probs, "argmax", log_shift(trained, 1.0, [0.8, 0.1, 0.1]))
    assert common_first.tolist() == [0, 0, 0]


def test_the_rule_chosen_for_balanced_accuracy_corrects_calibrated_probabilities_by_bayes():
    """Calibrated probabilities on data where class 0 is 8x as common: the argmax favours class
    0; for balanced accuracy validation chooses a tau near 1 (the Bayes rule argmax p / prior),
    which raises balanced accuracy; on balanced data it leaves the argmax alone (tau 0)."""
    from skincls.core.metrics import region_metrics
    from skincls.model.calibration import choose_tau

    g = torch.Generator().manual_seed(5)
    logits = torch.randn(6000, 3, generator=g)
    prior = [0.8, 0.1, 0.1]
    probs = torch.softmax(logits + torch.log(torch.tensor(prior)), 1)  # calibrated by design
    labels = torch.multinomial(probs, 1, generator=g)[:, 0]
    tau, figures = choose_tau(
        probs, labels, "argmax", prior, ["a", "b", "c"], False, "balanced_accuracy"
    )
    assert 0.7 <= tau <= 1.3 and figures[tau] > figures[0.0] + 0.05
    even = torch.softmax(logits, 1)
    even_labels = torch.multinomial(even, 1, generator=g)[:, 0]
    tau0, _ = choose_tau(
        even, even_labels, "argmax", [1 / 3] * 3, ["a", "b", "c"], False, "balanced_accuracy"
    )
    assert tau0 == 0.0
    plain = region_metrics(labels.tolist(), probs.argmax(1).tolist(), ["a", "b", "c"])
    assert plain["balanced_accuracy"] == pytest.approx(figures[0.0])


def test_ba_f1_is_the_mean_of_balanced_accuracy_and_macro_f1_by_hand():
    """y = 0,0,0,1 decided 0,0,1,1: recalls 2/3 and 1 (balanced accuracy 5/6); F1 of class 0 is
    2 * 1 * 2/3 / (1 + 2/3) = 0.8 and of class 1 2 * 1/2 * 1 / (3/2) = 2/3 (macro F1 11/15)."""
    from skincls.core.metrics import region_metrics

    m = region_metrics([0, 0, 0, 1], [0, 0, 1, 1], ["a", "b"])
    assert m["balanced_accuracy"] == pytest.approx(5 / 6)
    assert m["macro_f1"] == pytest.approx(11 / 15)
    assert m["ba_f1"] == pytest.approx((5 / 6 + 11 / 15) / 2)


def test_the_default_rule_weighs_false_alarms_on_rare_classes_too():
    """Chosen for ``ba_f1`` (the default), tau stops where more rare-class decisions cost more
    macro F1 (precision) than they gain balanced accuracy: a tau no larger than the one chosen
    for balanced accuracy alone, whose ba_f1 figure is the best of the grid."""
    from skincls.model.calibration import TAU_GRID, choose_tau

    g = torch.Generator().manual_seed(5)
    prior = [0.8, 0.1, 0.1]
    probs = torch.softmax(torch.randn(6000, 3, generator=g) + torch.log(torch.tensor(prior)), 1)
    labels = torch.multinomial(probs, 1, generator=g)[:, 0]
    args = (probs, labels, "argmax", prior, ["a", "b", "c"], False)
    tau_ba, ba = choose_tau(*args, "balanced_accuracy")
    tau_f1, f1 = choose_tau(*args, "macro_f1")
    tau, mixed = choose_tau(*args, "ba_f1")
    assert all(mixed[t] == pytest.approx((ba[t] + f1[t]) / 2) for t in TAU_GRID)
    assert mixed[tau] == max(mixed.values()) and tau_f1 <= tau <= tau_ba
    assert tau < tau_ba and f1[tau] > f1[tau_ba]


def test_target_prior_option_parsing_and_errors(tmp_path):
    regions = {"pore": ["0", "1", "2"]}
    assert parse_target_prior(["pore=1,1,2"], regions) == {"pore": [0.25, 0.25, 0.5]}
    f = tmp_path / "mix.yaml"
    f.write_text("pore: {'0': 0.2, '2': 0.8}\n")
    assert parse_target_prior([str(f)], regions) == {"pore": [0.2, 0.0, 0.8]}
    with pytest.raises(SkinclsError, match=r"pore: expected 3 non-negative shares"):
        parse_target_prior(["pore=1,2"], regions)
    with pytest.raises(SkinclsError, match=r"'lip' is not a region of the model"):
        parse_target_prior(["lip=1,1"], regions)
    f.write_text("pore: {'9': 1}\n")
    with pytest.raises(SkinclsError, match=r"'9' is not a class of the region"):
        parse_target_prior([str(f)], regions)


# Trained runs ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sigmoid_run(tmp_path_factory, tiny_data):
    """A tiny run whose pore head is trained with the sigmoid CB loss and whose wrinkle region
    has a deterministic evaluation op (CLAHE, always, fixed clip limit)."""
    from skincls.core.config import build_config
    from skincls.training.train import train

    regions = tmp_path_factory.mktemp("regions15")
    (regions / "wrinkle.yaml").write_text(
        "name: wrinkle\nclasses: ['0', '1', '2', '3']\nordinal: true\n"
        "augment: {train: [], eval: [{op: CLAHE, p: 1.0, clip_limit: [2.0, 2.0]}]}\n"
    )
    (regions / "pore.yaml").write_text(
        "name: pore\nclasses: ['0', '1', '2']\nloss: cb_sigmoid\naugment: {train: [], eval: []}\n"
    )
    out = tmp_path_factory.mktemp("runs15") / "run"
    values = tiny_values(tiny_data, regions, output=str(out), epochs=2, lr=3e-3, seed=0)
    return train(build_config(values)).run_dir


def test_the_run_stores_a_temperature_and_rule_per_head(sigmoid_run):
    meta = json.loads((sigmoid_run / "best" / "meta.json").read_text())
    cal = meta["calibration"]
    assert set(cal) == {"wrinkle", "pore"}
    assert cal["pore"]["head"] == "sigmoid" and cal["wrinkle"]["head"] == "softmax"
    for c in cal.values():
        assert c["temperature"] > 0 and c["tau"] in [round(0.1 * i, 1) for i in range(21)]
        assert sum(c["prior"]) == pytest.approx(1.0)
        assert c["val"]["nll_after"] <= c["val"]["nll_before"] + 1e-9  # T minimises NLL


def test_sigmoid_heads_are_served_as_sigmoid_from_the_run_and_the_onnx_file(
    sigmoid_run, tiny_data, tmp_path
):
    from skincls.run.load import load_run
    from skincls.serving.export import export_onnx
    from skincls.serving.predict import predict

    images = sorted((Path(tiny_data) / "images").rglob("*.png"))[:6]
    model, *_, meta = load_run(sigmoid_run)
    t = meta.calibration["pore"]["temperature"]
    bias = torch.tensor(meta.calibration["pore"]["bias"])
    run_pred = predict(sigmoid_run, images)["predictions"]
    onnx = export_onnx(sigmoid_run, tmp_path / "m.onnx")["path"]
    onnx_pred = predict(onnx, images)["predictions"]
    from skincls.serving.predict import eval_transforms, open_model

    backend = open_model(sigmoid_run)
    transform = eval_transforms(backend)["pore"]
    from skincls.data.images import read_image

    for path, a, b in zip(images, run_pred, onnx_pred, strict=True):
        x = transform(image=read_image(str(path)))["image"].transpose(2, 0, 1)[None]
        with torch.no_grad():
            z = model(torch.from_numpy(np.ascontiguousarray(x)))[model.region_names.index("pore")]
        s = torch.sigmoid(z / t + bias)[0]
        expected = (s / s.sum()).numpy()
        got = np.array(list(a["regions"]["pore"]["probs"].values()))
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
        for name in ("pore", "wrinkle"):
            ra, rb = a["regions"][name], b["regions"][name]
            assert ra["class"] == rb["class"]
            np.testing.assert_allclose(
                list(ra["probs"].values()), list(rb["probs"].values()), atol=1e-5
            )


def test_evaluate_and_predict_give_identical_classes_and_probabilities(sigmoid_run, tiny_data):
    """The wrinkle region's CLAHE eval op is applied by predict as by evaluate."""
    from skincls.data.sources import load_data
    from skincls.model.inference import predict_loader
    from skincls.run.load import load_run
    from skincls.serving.evaluate import eval_loader
    from skincls.serving.predict import predict

    model, config, registry, specs, meta = load_run(sigmoid_run)
    samples = load_data(tiny_data, registry, ["wrinkle"]).samples[:10]
    loader, _ = eval_loader(specs, meta, samples, 4, 0, torch.device("cpu"))
    p = predict_loader(model, loader, torch.device("cpu"))
    served = predict(sigmoid_run, [s.path for s in samples], ["wrinkle"])["predictions"]
    assert len(served) == len(samples) == len(p["pred"])
    for k, entry in zip(p["index"], p["pred"], strict=True):
        r = served[k]["regions"]["wrinkle"]
        assert r["index"] == entry
    conf = [served[k]["regions"]["wrinkle"]["probs"] for k in p["index"]]
    chosen = [
        c[served[k]["regions"]["wrinkle"]["class"]] for k, c in zip(p["index"], conf, strict=True)
    ]
    np.testing.assert_allclose(chosen, p["conf"], atol=1e-6)
    # the CLAHE op matters: without it the same model gives other probabilities
    from skincls.data.augment import build_transform
    from skincls.data.images import read_image

    plain = build_transform([], meta.image_size, meta.mean, meta.std)
    x = np.stack([plain(image=read_image(s.path))["image"].transpose(2, 0, 1) for s in samples])
    with torch.no_grad():
        probs, decided = model.predict(model(torch.from_numpy(np.ascontiguousarray(x))))
    wrinkle = probs[model.region_names.index("wrinkle")]
    unclahed = wrinkle.gather(1, torch.tensor(p["pred"])[:, None])[:, 0].numpy()
    assert np.abs(unclahed - p["conf"]).max() > 1e-3


def test_the_decision_baked_into_onnx_equals_pytorch_on_real_images(tiny_run, tmp_path):
    """A strong prior correction (tau 2) is baked into ``_decision``; onnxruntime and the run
    directory decide the same class on real photographs (HAM10000 when present)."""
    import shutil

    from skincls.run.checkpoints import META
    from skincls.serving.export import export_onnx
    from skincls.serving.predict import predict

    if not (HAM / "manifest.csv").is_file():
        pytest.skip(f"HAM10000 not found at {HAM}: no real photographs to decide on")
    images = sorted((HAM / "images").rglob("*.jpg"))[::997][:8]
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    plain = predict(run, images, rule="argmax")["predictions"]
    meta = json.loads((run / "best" / META).read_text())
    rare = {}
    for name, c in meta["calibration"].items():  # make the least-chosen class "rare in training"
        k = len(c["prior"])
        chosen = [p["regions"][name]["index"] for p in plain]
        rare[name] = min(range(k), key=chosen.count)
        c["prior"] = [0.001 if i == rare[name] else 1.0 for i in range(k)]
        c["tau"] = 2.0
    (run / "best" / META).write_text(json.dumps(meta))
    onnx = export_onnx(run, tmp_path / "m.onnx")["path"]
    a = predict(run, images)["predictions"]
    b = predict(onnx, images)["predictions"]
    assert a[0]["regions"]["wrinkle"]["rule"] == "prior-corrected, tau 2"
    for x in plain:  # --rule argmax: the most probable class of the served probabilities
        for r in x["regions"].values():
            assert r["probs"][r["class"]] == max(r["probs"].values())
    for x, y in zip(a, b, strict=True):
        for name in x["regions"]:
            assert x["regions"][name]["index"] == y["regions"][name]["index"]
    onnx_plain = predict(onnx, images, rule="argmax")["predictions"]  # decided again
    for x, y in zip(plain, onnx_plain, strict=True):
        assert {n: r["index"] for n, r in x["regions"].items()} == {
            n: r["index"] for n, r in y["regions"].items()
        }
    for name, c in rare.items():  # the correction is really in the graph
        assert sum(p["regions"][name]["index"] == c for p in b) > sum(
            p["regions"][name]["index"] == c for p in plain
        )


def test_export_refuses_a_random_evaluation_op(tmp_path, tiny_data):
    from skincls.data.regions import RegionSpec
    from skincls.serving.onnx_meta import check_reproducible

    spec = RegionSpec.model_validate(
        {
            "name": "pore",
            "classes": ["0", "1"],
            "augment": {"train": [], "eval": [{"op": "CLAHE", "p": 0.5}]},
        }
    )
    with pytest.raises(SkinclsError, match=r"pore: augment.eval\[0\] CLAHE: p 0.5"):
        check_reproducible([spec])
    spec.augment.eval[0].p = 1.0
    with pytest.raises(SkinclsError, match=r"clip_limit \[1.0, 4.0\] \(a range"):
        check_reproducible([spec])
    spec.augment.eval[0].clip_limit = (2.0, 2.0)
    check_reproducible([spec])


def test_no_calibrate_keeps_plain_softmax_and_argmax(tmp_path, tiny_data, tiny_regions):
    from skincls.core.config import build_config
    from skincls.run.load import load_run
    from skincls.training.train import train

    values = tiny_values(tiny_data, tiny_regions, output=str(tmp_path / "r"), calibrate=False)
    run = train(build_config(values)).run_dir
    model, *_, meta = load_run(run)
    assert "calibration" not in meta
    assert set(meta.serving.values()) == {"uncalibrated"}
    assert all(t == 1.0 for t in model.temperatures.values())
    with pytest.raises(SkinclsError, match="no calibration for this head"):
        apply_serving(model, None, "selected", {"pore": [0.5, 0.3, 0.2]})


def test_bias_corrected_calibration_recovers_a_temperature_and_a_prior_shift():
    """A model trained on a balanced draw, deployed on data where class 0 is 8x as common:
    the fitted bias recovers log(deployment prior) up to its free offset, and the calibrated
    probabilities are far better than a temperature alone gives."""
    from skincls.model.calibration import fit_calibration

    g = torch.Generator().manual_seed(3)
    true_logits = torch.randn(30000, 3, generator=g) * 1.5
    shift = torch.log(torch.tensor([0.8, 0.1, 0.1]))
    labels = torch.multinomial(torch.softmax(true_logits + shift, 1), 1, generator=g)[:, 0]
    model_logits = true_logits * 2.0  # overconfident, and blind to the deployment prior
    t, bias = fit_calibration(model_logits, labels, "softmax")
    assert abs(t - 2.0) / 2.0 < 0.05
    centred = shift - shift.mean()
    assert bias == pytest.approx(centred.tolist(), abs=0.08)
    y = labels.numpy()
    calibrated = probabilities(model_logits, "softmax", t, torch.tensor(bias)).numpy()
    temperature_only = probabilities(
        model_logits, "softmax", fit_temperature(model_logits, labels, "softmax")
    ).numpy()
    assert calibration_figures(calibrated, y)["ece"] < 0.02
    assert (
        calibration_figures(calibrated, y)["nll"] < calibration_figures(temperature_only, y)["nll"]
    )


def test_fp16_export_of_a_calibrated_run_keeps_its_probabilities_in_fp32(sigmoid_run, tmp_path):
    """The fp16 converter once broke the graph at the temperature's division (a traceback):
    everything computed from the logits stays fp32 and the export verifies."""
    from skincls.serving.export import ExportOptions, export_onnx
    from skincls.serving.onnx_meta import onnx_metadata

    report = export_onnx(sigmoid_run, tmp_path / "half.onnx", ExportOptions(quantize="fp16"))
    assert report["method"] == "fp16 (probabilities and decisions computed in fp32)"
    assert report["class_agreement"] >= 0.99
    assert {r["name"] for r in onnx_metadata(tmp_path / "half.onnx")["regions"]} == {
        "pore",
        "wrinkle",
    }


def test_evaluate_reports_calibration_and_writes_reliability_diagrams(sigmoid_run, tmp_path):
    from skincls.serving.evaluate import EvalOptions, Selection, evaluate

    out = tmp_path / "rel"
    options = EvalOptions(Selection("val"), reliability=out, device="cpu")
    result = evaluate(sigmoid_run, options=options)
    for name in ("pore", "wrinkle"):
        c = result["calibration"][name]
        assert 0.0 <= c["after"]["ece"] <= 1.0 and len(c["after"]["bins"]) == 15
        assert sum(b[2] for b in c["after"]["bins"]) == result["regions"][name]["n"]
        png = out / f"{name}_reliability.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    json.dumps(result, allow_nan=False)  # plain JSON for --json (empty bins are null)
    with pytest.raises(SkinclsError, match="--reliability: 2 file\\(s\\) exist"):
        evaluate(sigmoid_run, options=options)
    evaluate(sigmoid_run, options=replace(options, overwrite=True))
    from typer.testing import CliRunner

    from skincls.cli.root import app

    argv = ["evaluate", str(sigmoid_run), "--reliability", str(tmp_path / "cli")]
    printed = " ".join(CliRunner().invoke(app, argv).stdout.split())
    for name in ("pore", "wrinkle"):  # the command says what it wrote
        assert f"reliability diagram: {tmp_path / 'cli' / f'{name}_reliability.png'}" in printed


def test_a_target_prior_moves_the_served_probabilities_by_bayes_rule(tiny_run, tiny_data, tmp_path):
    """--target-prior (issue 35 item 4): the served probabilities are the calibrated ones
    times target / training prior, renormalised, decided as they stand; from the run, from an
    ONNX file asked at predict time, and from one exported for the prior (undone by --rule)."""
    from skincls.serving.export import ExportOptions, export_onnx
    from skincls.serving.predict import predict

    images = sorted(tiny_data.rglob("*.png"))[:6]
    prior = json.loads((tiny_run / "best" / "meta.json").read_text())["calibration"]["pore"][
        "prior"
    ]
    target = np.array([1.0, 1.0, 8.0]) / 10.0
    ask = ["pore=1,1,8"]

    def pore(result):
        rows = [r["regions"]["pore"] for r in result["predictions"]]
        return np.array([[r["probs"][c] for c in ("0", "1", "2")] for r in rows]), [
            r["index"] for r in rows
        ]

    calibrated, _ = pore(predict(tiny_run, images, rule="argmax"))
    by_hand = calibrated * target / np.array(prior)
    by_hand /= by_hand.sum(1, keepdims=True)
    assert np.abs(by_hand - calibrated).max() > 0.05  # the prior really moves them
    moved, decided = pore(predict(tiny_run, images, target_prior=ask))
    np.testing.assert_allclose(moved, by_hand, atol=1e-5)
    assert decided == by_hand.argmax(1).tolist()

    plain_file = export_onnx(tiny_run, tmp_path / "plain.onnx")["path"]
    file_moved, file_decided = pore(predict(plain_file, images, target_prior=ask))
    np.testing.assert_allclose(file_moved, by_hand, atol=1e-5)
    assert file_decided == decided

    baked = export_onnx(tiny_run, tmp_path / "baked.onnx", ExportOptions(target_prior=ask))
    baked_probs, baked_decided = pore(predict(baked["path"], images))
    np.testing.assert_allclose(baked_probs, by_hand, atol=1e-5)
    assert baked_decided == decided
    undone, _ = pore(predict(baked["path"], images, rule="argmax"))
    np.testing.assert_allclose(undone, calibrated, atol=1e-5)
