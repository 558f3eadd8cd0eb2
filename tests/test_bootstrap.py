"""Group-bootstrap intervals (issue 29): figures from confusion matrices, groups not images,
and the intervals evaluate, evaluation.json and the report carry."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from skincls.core.bootstrap import Bootstrap, figures_from_confusion, intervals
from skincls.core.metrics import region_metrics


def test_figures_from_confusion_equal_scikit_learns():
    """Every figure, nominal and ordinal, on random labels including constant predictions and
    classes never predicted, equals region_metrics (scikit-learn, numpy) computed directly."""
    rng = np.random.default_rng(0)
    for trial in range(120):
        k, n = int(rng.integers(2, 7)), int(rng.integers(1, 50))
        yt = rng.integers(0, k, n)
        yp = np.full(n, rng.integers(0, k)) if trial % 3 == 0 else rng.integers(0, k, n)
        expected = region_metrics(yt, yp, [str(i) for i in range(k)], ordinal=True)
        got = figures_from_confusion(np.array(expected["confusion_matrix"]), ordinal=True)
        for key, value in got.items():
            assert float(value) == pytest.approx(expected[key], abs=1e-12), (key, yt, yp)


def test_within_two_grades_by_hand():
    # errors 0, 1, 2, 3: within one 2/4, within two 3/4, MAE 6/4
    m = region_metrics([0, 0, 0, 0], [0, 1, 2, 3], ["0", "1", "2", "3"], ordinal=True)
    assert (m["within1"], m["within2"], m["grade_mae"]) == (0.5, 0.75, 1.5)


def _clustered(n_groups: int = 40, per_group: int = 10, seed: int = 0):
    """Each group entirely right or entirely wrong (two classes): images of a group are one
    piece of evidence, not ``per_group``."""
    rng = np.random.default_rng(seed)
    right = rng.random(n_groups) < 0.7
    labels = np.repeat(rng.integers(0, 2, n_groups), per_group)
    preds = np.where(np.repeat(right, per_group), labels, 1 - labels)
    groups = np.repeat([f"s{i}" for i in range(n_groups)], per_group)
    return labels, preds, groups


def test_resampling_groups_gives_wider_intervals_than_resampling_images():
    labels, preds, groups = _clustered()
    region = np.zeros(len(labels), dtype=int)
    heads = [("r", 2, False)]
    by_group = intervals(region, labels, preds, groups, heads)
    by_image = intervals(region, labels, preds, [str(i) for i in range(len(labels))], heads)
    g, i = by_group["regions"]["r"]["accuracy"], by_image["regions"]["r"]["accuracy"]
    assert by_group["groups"] == 40 and by_image["groups"] == 400
    # sd of a proportion near 0.7: sqrt(.21/40) = 0.072 vs sqrt(.21/400) = 0.023: ~3x wider
    assert (g[1] - g[0]) > 2 * (i[1] - i[0])
    point = float((labels == preds).mean())
    assert g[0] <= point <= g[1] and i[0] <= point <= i[1]


def test_a_fixed_seed_repeats_and_another_seed_differs():
    labels, preds, groups = _clustered(seed=3)
    region, heads = np.zeros(len(labels), dtype=int), [("r", 2, False)]
    a = intervals(region, labels, preds, groups, heads, Bootstrap(500, seed=7))
    b = intervals(region, labels, preds, groups, heads, Bootstrap(500, seed=7))
    c = intervals(region, labels, preds, groups, heads, Bootstrap(500, seed=8))
    assert a == b
    assert a["regions"]["r"] != c["regions"]["r"]
    assert intervals(region, labels, preds, groups, heads, Bootstrap(0)) == {}


def test_regions_share_the_draws_and_the_mean_covers_only_regions_with_the_figure():
    """Two regions of the same subjects: the mean's interval lies between the regions' and the
    ordinal mean is over the ordinal region only."""
    labels, preds, groups = _clustered(seed=1)
    n = len(labels)
    region = np.r_[np.zeros(n, dtype=int), np.ones(n, dtype=int)]
    both = intervals(
        region,
        np.r_[labels, labels],
        np.r_[preds, labels],  # the second region is always right
        np.r_[groups, groups],
        [("a", 2, True), ("b", 2, False)],
        Bootstrap(300),
    )
    assert both["regions"]["b"]["accuracy"] == [1.0, 1.0]
    lo_a, hi_a = both["regions"]["a"]["accuracy"]
    lo_m, hi_m = both["mean"]["accuracy"]
    assert lo_m == pytest.approx((lo_a + 1) / 2) and hi_m == pytest.approx((hi_a + 1) / 2)
    assert both["ordinal_mean"]["within1"] == both["regions"]["a"]["within1"]
    assert "within1" not in both["regions"]["b"]


def test_evaluate_json_carries_intervals_and_bootstrap_0_turns_them_off(tiny_run):
    from typer.testing import CliRunner

    from skincls.cli.root import app

    runner = CliRunner()
    got = runner.invoke(app, ["evaluate", str(tiny_run), "--json", "--bootstrap", "300"])
    assert got.exit_code == 0, got.output
    result = json.loads(got.stdout)
    ci = result["intervals"]
    assert ci["resamples"] == 300 and ci["level"] == 0.95
    for name, m in result["regions"].items():
        lo, hi = ci["regions"][name]["balanced_accuracy"]
        assert lo <= m["balanced_accuracy"] <= hi
    off = runner.invoke(app, ["evaluate", str(tiny_run), "--json", "--bootstrap", "0"])
    assert not json.loads(off.stdout).get("intervals")
    table = runner.invoke(app, ["evaluate", str(tiny_run), "--bootstrap", "200"])
    assert "95% intervals" in table.stdout and "200 resamples" in table.stdout


def test_the_runs_evaluation_json_has_intervals_over_its_test_groups(tiny_run):
    from skincls.run.artifacts import EVALUATION

    saved = json.loads((tiny_run / EVALUATION).read_text())
    with (tiny_run / "split.csv").open(newline="", encoding="utf-8") as fh:
        test_groups = {r["group"] for r in csv.DictReader(fh) if r["part"] == "test"}
    assert saved["intervals"]["groups"] == len(test_groups)
    assert set(saved["intervals"]["regions"]) == set(saved["regions"])
