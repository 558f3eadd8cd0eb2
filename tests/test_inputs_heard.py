"""Inputs the user should hear about (issue 35 item 10): a column named twice, a median
decision with no ordered grades, files skipped for their extension, prepare's skips without
--json, the right words for validation images and median heads, and Korean class names in the
report's plots."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from typer.testing import CliRunner

from skincls.cli.root import app

from .conftest import tiny_cli_args

runner = CliRunner()


def said(result) -> str:
    return " ".join(result.output.split())


def test_a_csv_column_named_twice_is_an_error_naming_it(tmp_path, tiny_data, tiny_regions):
    manifest = tiny_data / "manifest.csv"
    lines = manifest.read_text().splitlines()
    twice = tmp_path / "twice.csv"
    twice.write_text("\n".join([lines[0] + ",label", *(f"{line},0" for line in lines[1:])]) + "\n")
    shutil.copytree(tiny_data / "images", tmp_path / "images")
    result = runner.invoke(app, ["analyze", str(twice), "--regions-dir", str(tiny_regions)])
    assert result.exit_code == 2
    assert f"{twice} line 1: column 'label' named more than once in the header" in said(result)


def test_median_decision_without_ordinal_regions_is_refused(tmp_path, tiny_data):
    regions = tmp_path / "regions"
    regions.mkdir()
    (regions / "pore.yaml").write_text("name: pore\nclasses: ['0', '1', '2']\n")
    (regions / "wrinkle.yaml").write_text("name: wrinkle\nclasses: ['0', '1', '2', '3']\n")
    argv = ["train", *tiny_cli_args(tiny_data, regions)]
    result = runner.invoke(app, [*argv, "--decision", "median", "-o", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert (
        "--decision median: needs ordered grades, and no region of this run is ordinal (pore, wrinkle)"
        in (said(result))
    )
    assert not (tmp_path / "r").exists()


def test_files_skipped_for_their_extension_are_counted(tmp_path, tiny_data, tiny_regions):
    folder = tmp_path / "folder"
    for region, source in (("pore", "cheek_pore"), ("wrinkle", "forehead_wrinkle")):
        shutil.copytree(tiny_data / "images" / source, folder / region)
    (folder / "pore" / "0" / "notes.txt").write_text("graded by hand")
    (folder / "pore" / "1" / "scan.png.bak").write_bytes(b"old")
    (folder / "pore" / "1" / ".DS_Store").write_bytes(b"hidden")
    result = runner.invoke(app, ["analyze", str(folder), "--regions-dir", str(tiny_regions)])
    assert result.exit_code == 0, result.output
    assert "skipped 2: not an image file name (extension)" in said(result)


def test_prepare_skip_bad_prints_its_counts(tmp_path):
    from skincls.data.synthetic import make_aihub_tree

    make_aihub_tree(tmp_path / "aihub", n_subjects=2, image_size=(96, 120), null_bbox_every=3)
    argv = ["prepare", str(tmp_path / "aihub"), "-o", str(tmp_path / "cache"), "--skip-bad"]
    result = runner.invoke(app, argv)
    assert result.exit_code == 0, result.output
    assert "crops written" in said(result)
    assert "skipped " in said(result) and "(first: " in said(result)


def test_a_bad_validation_image_is_not_called_a_training_image(tmp_path, tiny_data, tiny_regions):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    for png in sorted(data.rglob("*.png"))[::3]:
        png.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    argv = ["train", *tiny_cli_args(data, tiny_regions), "--max-bad-fraction", "0"]
    result = runner.invoke(app, [*argv, "-o", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "training and validation images cannot be decoded" in said(result)


def test_a_median_head_is_not_labelled_most_probable():
    from skincls.model.calibration import apply_serving

    heads = SimpleNamespace(
        region_names=["wrinkle", "pore"],
        decisions={"wrinkle": "median", "pore": "argmax"},
        temperatures={},
        biases={},
        log_shifts={},
        prior_shifts={},
    )
    calibration = {
        n: {"temperature": 1.0, "bias": None, "prior": [0.5, 0.5], "tau": 0.0}
        for n in heads.region_names
    }
    assert apply_serving(heads, calibration, "argmax") == {
        "wrinkle": "median grade",
        "pore": "most probable",
    }
    assert apply_serving(heads, calibration)["wrinkle"] == "median grade (tau 0)"
    calibration["wrinkle"]["tau"] = 1.0
    assert apply_serving(heads, calibration)["wrinkle"] == "prior-corrected, tau 1, median grade"
    assert heads.log_shifts["wrinkle"] is not None and isinstance(
        heads.log_shifts["wrinkle"], torch.Tensor
    )


def test_korean_class_names_are_drawn_or_numbered_with_a_key(tmp_path, tiny_data, tiny_regions):
    """With no font that draws Hangul, the report's plots number the classes and the page gives
    the key; with one, the names are drawn. Either way no missing-glyph warning."""
    from skincls.core.plots import class_key

    regions = tmp_path / "regions"
    shutil.copytree(tiny_regions, regions)
    (regions / "pore.yaml").write_text(
        "name: pore\nclasses: ['없음', '경미', '심함']\nordinal: true\n"
        "label_map: {'0': '없음', '1': '경미', '2': '심함'}\naugment: {train: [], eval: []}\n"
    )
    argv = ["train", *tiny_cli_args(tiny_data, regions, "--epochs", "1")]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = runner.invoke(app, [*argv, "--report", "-o", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert not [w for w in caught if "Glyph" in str(w.message)]
    html = Path(tmp_path / "r" / "report.html").read_text(encoding="utf-8")
    key = class_key(["없음", "경미", "심함"])
    if key is None:
        pytest.skip("a font here draws Hangul: the names are drawn (no key needed)")
    assert key == "0 = 없음, 1 = 경미, 2 = 심함"
    assert f"Classes are numbered in the plots: {key}." in html
