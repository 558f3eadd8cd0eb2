"""``skincls compare`` (issue 29 item 3): paired differences with intervals, the verdict, and
runs that cannot be compared."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from skincls.cli.root import app
from skincls.serving.compare import verdict

runner = CliRunner()


def _compare(*args: str) -> dict:
    got = runner.invoke(app, ["compare", *args, "--json", "--bootstrap", "500"])
    assert got.exit_code == 0, got.output
    return json.loads(got.stdout)


def test_a_run_against_itself_differs_by_nothing(tiny_run):
    result = _compare(str(tiny_run), str(tiny_run), "--split", "all")
    assert result["verdict"] == "not distinguishable"
    for figures in [*result["regions"].values(), result["mean"]]:
        for d in figures.values():
            assert d["difference"] == 0 and d["interval"] == [0.0, 0.0] and d["p"] == 1.0
    assert result["b_trained_on"] == 0


@pytest.fixture
def inverted_run(tiny_run, tmp_path):
    """A copy of the tiny run whose heads are negated: it prefers the least likely grade."""
    from safetensors.torch import load_file, save_file

    run = tmp_path / "inverted"
    shutil.copytree(tiny_run, run)
    weights = run / "best" / "model.safetensors"
    state = load_file(weights)
    save_file({k: -v if k.startswith("heads.") else v for k, v in state.items()}, weights)
    return run


def test_a_deliberately_worse_run_is_worse_with_an_interval_below_zero(tiny_run, inverted_run):
    # every sample of the data (40 subjects): the trained run is far better than its inverse
    result = _compare(str(tiny_run), str(inverted_run), "--split", "all")
    mean = result["mean"][result["select"]]
    assert mean["interval"][1] < 0 and mean["p"] < 0.05
    assert result["verdict"] == "worse"
    reverse = _compare(str(inverted_run), str(tiny_run), "--split", "all")
    assert reverse["verdict"] == "better"
    text = runner.invoke(app, ["compare", str(tiny_run), str(inverted_run), "--split", "all"])
    assert "B is worse than A on ba_f1" in text.stdout


def test_runs_with_other_regions_are_refused_naming_the_difference(
    tiny_run, tiny_data, tiny_regions, tmp_path
):
    from skincls.core.config import build_config
    from skincls.training.train import train

    from .conftest import tiny_values

    values = tiny_values(tiny_data, tiny_regions, output=str(tmp_path / "w"), region=["wrinkle"])
    wrinkle_only = train(build_config({**values, "max_steps_per_epoch": 2})).run_dir
    got = runner.invoke(app, ["compare", str(tiny_run), str(wrinkle_only)])
    assert got.exit_code != 0
    assert "different regions: only in A: ['pore']; only in B: none" in got.output


def test_verdict_follows_the_direction_of_the_figure():
    up = {"difference": 0.1, "interval": [0.02, 0.2]}
    assert verdict(up, "balanced_accuracy") == "better" and verdict(up, "grade_mae") == "worse"
    assert verdict({"difference": 0.1, "interval": [-0.01, 0.2]}, "ba_f1") == "not distinguishable"
