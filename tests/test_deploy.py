import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from skincls.cli.root import app
from skincls.core.errors import SkinclsError
from skincls.run.load import load_run
from skincls.serving.export import ExportOptions, export_onnx
from skincls.serving.onnx_meta import onnx_metadata
from skincls.serving.predict import predict

runner = CliRunner()


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "model.onnx"
    report = export_onnx(tiny_run, out)
    return out, report


def test_export_is_one_file_with_named_outputs_and_metadata(exported, tiny_run):
    path, report = exported
    assert [p.name for p in path.parent.iterdir()] == ["model.onnx"]  # no .data side file
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert [i.name for i in model.graph.input] == ["image"]
    # every head has its decided class (rule baked in) as a third output
    outputs = [o.name for o in model.graph.output]
    assert outputs in (
        [f"{r}_{k}" for r in order for k in ("logits", "probs", "decision")]
        for order in (("pore", "wrinkle"), ("wrinkle", "pore"))
    )
    meta = onnx_metadata(path)
    assert meta["image_size"] == 32 and meta["backbone"] == "test_resnet"
    assert {r["name"]: r["classes"] for r in meta["regions"]} == {
        "wrinkle": ["0", "1", "2", "3"],
        "pore": ["0", "1", "2"],
    }
    assert len(meta["mean"]) == 3 and len(meta["std"]) == 3
    assert meta["source_run"] == str(tiny_run.resolve())
    assert report["max_abs_diff"] < 1e-4


@pytest.mark.parametrize("batch", [1, 5])
def test_onnxruntime_matches_pytorch_at_dynamic_batch_sizes(exported, tiny_run, batch):
    path, _ = exported
    model = load_run(tiny_run).model
    x = np.random.default_rng(batch).standard_normal((batch, 3, 32, 32)).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs = dict(
        zip([o.name for o in session.get_outputs()], session.run(None, {"image": x}), strict=False)
    )
    with torch.inference_mode():
        ref = model(torch.from_numpy(x))
    for name, logits in zip(model.region_names, ref, strict=False):
        assert outputs[f"{name}_logits"].shape == (batch, logits.shape[1])
        np.testing.assert_allclose(outputs[f"{name}_logits"], logits.numpy(), atol=1e-4)
        np.testing.assert_allclose(outputs[f"{name}_probs"].sum(1), 1.0, atol=1e-5)


def test_int8_is_smaller_and_agrees(exported, tiny_run, tmp_path):
    path, _ = exported
    report = export_onnx(tiny_run, tmp_path / "q.onnx", ExportOptions(quantize="int8", data=None))
    assert (tmp_path / "q.onnx").stat().st_size < path.stat().st_size
    assert report["class_agreement"] >= 0.99
    assert onnx_metadata(tmp_path / "q.onnx")["quantize"] == "int8"


def test_export_refuses_to_overwrite(exported, tiny_run):
    path, _ = exported
    with pytest.raises(SkinclsError, match="exists; pass --overwrite"):
        export_onnx(tiny_run, path)


def test_predict_run_and_onnx_agree_and_bad_paths_are_skipped(
    exported, tiny_run, tiny_data, tmp_path
):
    path, _ = exported
    images = sorted((tiny_data / "images").rglob("*.png"))[:6]
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    inputs = [*images, tmp_path / "broken.jpg", tmp_path / "missing.png"]
    a = predict(tiny_run, inputs)
    b = predict(path, inputs)
    assert [p["path"] for p in a["predictions"]] == [str(i) for i in images]
    for pa, pb in zip(a["predictions"], b["predictions"], strict=False):
        for region in pa["regions"]:
            assert pa["regions"][region]["class"] == pb["regions"][region]["class"]
            assert sum(pa["regions"][region]["probs"].values()) == pytest.approx(1.0, abs=1e-4)
    assert {e["path"] for e in a["errors"]} == {
        str(tmp_path / "broken.jpg"),
        str(tmp_path / "missing.png"),
    }
    result = runner.invoke(
        app, ["predict", str(path), str(images[0]), str(tmp_path / "missing.png"), "--json"]
    )
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert len(doc["predictions"]) == 1 and "missing.png" in result.stderr


def test_predict_aihub_json_crops_the_right_region(tmp_path):
    from skincls.core.config import build_config
    from skincls.data.synthetic import make_aihub_tree
    from skincls.training.train import train

    root = tmp_path / "aihub"
    jsons = make_aihub_tree(root, n_subjects=4, image_size=(96, 120))
    run = train(
        build_config(
            dict(
                data=str(root),
                region=["cheek_pore", "lip_dryness"],
                output=str(tmp_path / "run"),
                backbone="test_resnet",
                pretrained="none",
                image_size=32,
                batch_size=8,
                epochs=1,
                workers=0,
                wandb="disabled",
                quiet=True,
                val_fraction=0.25,
                test_fraction=0.25,
                warmup_epochs=0,
            )
        )
    ).run_dir
    right_cheek = next(p for p in jsons if p.name.endswith("_06.json"))
    lips = next(p for p in jsons if p.name.endswith("_07.json"))
    forehead = next(p for p in jsons if p.name.endswith("_01.json"))
    result = predict(run, [right_cheek, lips, forehead])
    assert [list(p["regions"]) for p in result["predictions"]] == [["cheek_pore"], ["lip_dryness"]]
    assert "claimed by no region" in result["errors"][0]["error"]


def test_explain_writes_a_non_constant_heat_map_at_image_size(tiny_run, tiny_data, tmp_path):
    image = sorted((tiny_data / "images").rglob("*.png"))[0]
    big = tmp_path / "big.png"
    Image.open(image).resize((80, 50)).save(big)
    result = runner.invoke(
        app,
        [
            "explain",
            str(tiny_run),
            str(big),
            "--region",
            "wrinkle",
            "-o",
            str(tmp_path / "cam"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    written = json.loads(result.stdout)[0]
    out = Image.open(written["output"])
    assert out.size == (480, 300 + 28)  # 80 x 50 enlarged 6 times (shorter side >= 256), legend
    assert written["heat_std"] > 0.01
    arr = np.asarray(out, np.float32)
    picture, legend = arr[:300], arr[300:312]
    assert picture.std() > 1.0
    assert (picture[::6, ::6] == picture[1::6, 1::6]).all()  # whole pixels, not smeared
    blue, red = legend[:, 2], legend[:, -3]  # the colour map from low (blue) to high (red)
    assert blue[:, 2].mean() > blue[:, 0].mean() and red[:, 0].mean() > red[:, 2].mean()


def test_a_model_that_fails_verification_is_not_left_behind(tiny_run, tmp_path, monkeypatch):
    import skincls.serving.export as E

    def failing(*args, **kwargs):
        raise SkinclsError("verification failed")

    monkeypatch.setattr(E, "verify", failing)
    with pytest.raises(SkinclsError, match="verification failed"):
        export_onnx(tiny_run, tmp_path / "bad.onnx")
    assert not (tmp_path / "bad.onnx").exists()
