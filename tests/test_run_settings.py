"""A run's checkpoint records every setting that shaped it; resuming and every serving command
refuse a run whose config.yaml or region files were edited since, listing the differences
(issue 35 item 1), and a damaged field of trainer.pt is one clear error."""

import re
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from skincls.cli.root import app
from skincls.core.errors import SkinclsError
from skincls.run.load import load_run

from .conftest import resume


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert re.search(old, text, flags=re.M), (old, text)
    path.write_text(re.sub(old, new, text, count=1, flags=re.M))


EDITS = {
    "config value": (
        "config.yaml",
        r"^sampler: sqrt$",
        "sampler: none",
        r"config.yaml: sampler is 'none' \(trained with 'sqrt'\)",
    ),
    "config key deleted": (
        "config.yaml",
        r"^label_smoothing: 0.0\n",
        "",
        r"config.yaml: label_smoothing was deleted \(trained with 0.0\)",
    ),
    "config value mistyped": (
        "config.yaml",
        r"^weight_decay: .*$",
        "weight_decay: 1e-4x",
        r"config.yaml: weight_decay: .*got '1e-4x'",
    ),
    "region resize added": (
        "regions/pore.yaml",
        r"^ordinal: true$",
        "ordinal: true\nresize: pad",
        r"regions/pore.yaml: resize is 'pad' \(not set when trained\)",
    ),
    "region augmentation": (
        "regions/wrinkle.yaml",
        r"p: 0.5",
        "p: 0.9",
        r"regions/wrinkle.yaml: augment.train is .*0.9.* \(trained with .*0.5",
    ),
    "region label map": (
        "regions/pore.yaml",
        r"^label_map: \{\}$",
        "label_map: {'3': '2'}",
        r"regions/pore.yaml: label_map is \{'3': '2'\} \(trained with \{\}\)",
    ),
    "region field deleted": (
        "regions/pore.yaml",
        r"^ordinal: true\n",
        "",
        r"regions/pore.yaml: ordinal was deleted \(trained with True\)",
    ),
}


@pytest.mark.parametrize("case", EDITS)
def test_an_edited_setting_is_refused_on_resume_and_serving(run_copy, case):
    file, old, new, message = EDITS[case]
    edit(run_copy / file, old, new)
    with pytest.raises(SkinclsError, match=message):
        resume(run_copy)
    for checkpoint in ("best", "last"):
        with pytest.raises(SkinclsError, match=message):
            load_run(run_copy, checkpoint)


def test_every_serving_command_refuses_an_edited_run(run_copy, tiny_data, tmp_path):
    edit(run_copy / "config.yaml", r"^sampler: sqrt$", "sampler: none")
    image = next(tiny_data.rglob("*.png"))
    commands = {
        "evaluate": ["evaluate", str(run_copy)],
        "predict": ["predict", str(run_copy), str(image)],
        "export": ["export", str(run_copy), "-o", str(tmp_path / "m.onnx")],
        "explain": [
            "explain",
            str(run_copy),
            str(image),
            "--region",
            "pore",
            "-o",
            str(tmp_path / "cams"),
        ],
        "report": ["report", str(run_copy)],
    }
    runner = CliRunner()
    for name, argv in commands.items():
        result = runner.invoke(app, argv)
        assert result.exit_code == 2, (name, result.output)
        assert "config.yaml: sampler is 'none' (trained with 'sqrt')" in result.output, name
        assert "Traceback" not in result.output, name
    assert not (tmp_path / "m.onnx").exists()


def test_editing_a_title_or_a_resume_option_is_not_a_difference(run_copy):
    edit(run_copy / "regions/pore.yaml", r"^name: pore$", "name: pore\ntitle: Cheek pores")
    edit(run_copy / "config.yaml", r"^workers: 0$", "workers: 1")
    load_run(run_copy)
    assert resume(run_copy).history[-1]["epoch"] == 3


@pytest.mark.parametrize(
    "field, value",
    [
        ("train_state", {"epoch": "two", "updates": 8, "best_metric": 0.5, "best_epoch": 1}),
        ("train_state", {"epoch": 2}),
        ("optimizer", {"state": {}, "param_groups": "lost"}),
        ("scaler", [1, 2]),
        ("rng", {"python": "nonsense"}),
    ],
)
def test_a_damaged_trainer_state_field_is_one_clear_error(run_copy, field, value):
    path = run_copy / "last" / "trainer.pt"
    state = torch.load(path, weights_only=True)
    state[field] = value
    torch.save(state, path)
    with pytest.raises(SkinclsError, match=rf"trainer.pt: damaged trainer state: {field} cannot"):
        resume(run_copy)
