"""Figures by subgroup (issue 29 item 2): fields from AI Hub labels and CSV columns, counts,
agreement with scoring the subgroup alone, and the mistakes a user makes."""

from __future__ import annotations

import csv
import json
import random
import shutil

import pytest
from typer.testing import CliRunner

from skincls.cli.root import app
from skincls.core.errors import SkinclsError
from skincls.data.regions import discover_regions
from skincls.data.sources import load_data
from skincls.data.synthetic import make_aihub_tree
from skincls.serving.subgroups import SubgroupOptions, age_band, parse_ages

runner = CliRunner()


def test_aihub_fields_are_read_from_the_label_json_and_survive_prepare(tmp_path):
    from skincls.data.prepare import PrepareOptions, prepare

    root = tmp_path / "aihub"
    make_aihub_tree(root, n_subjects=3, angles=("F", "L30"), image_size=(200, 240))
    reg = discover_regions(include_entry_points=False)
    direct = load_data(root, reg).samples
    # the fixture writes gender F/M by subject number, age 20 + 7n, device 0 (DSLR)
    by_subject = {s.group: s for s in direct}
    assert by_subject["0001"].field("gender") == "M" and by_subject["0002"].field("gender") == "F"
    assert by_subject["0003"].field("age") == "41"
    assert {s.field("device") for s in direct} == {"DSLR"}
    assert {s.field("angle") for s in direct} == {"F", "L30"}
    out = tmp_path / "cache"
    prepare(root, out, PrepareOptions(max_side=48, workers=1, progress=False))
    cached = load_data(out, reg).samples

    def fields(samples):
        keep = ("gender", "age", "device", "angle", "skin_type", "sensitive")
        return sorted((s.group, s.regions, tuple(s.field(f) for f in keep)) for s in samples)

    assert fields(cached) == fields(direct)


def test_age_bands():
    assert age_band("47", []) == "40-49" and age_band("40.0", []) == "40-49"
    assert [age_band(a, [20, 30, 45]) for a in ("19", "20", "44", "45", "90")] == [
        "<20",
        "20-29",
        "30-44",
        "45+",
        "45+",
    ]
    assert age_band(None, []) is None and age_band("unknown", []) is None
    with pytest.raises(SkinclsError, match="--age-bands: expected whole ages"):
        parse_ages("20;30")
    with pytest.raises(SkinclsError, match="--age-bands: expected increasing ages"):
        SubgroupOptions(age_bands=[30, 20])


@pytest.fixture
def with_device(tiny_run, tiny_data, tmp_path):
    """A copy of the tiny run whose data has a ``device`` and an ``age`` column."""
    run, data = tmp_path / "run", tmp_path / "data"
    shutil.copytree(tiny_run, run)
    shutil.copytree(tiny_data, data)
    manifest = data / "manifest.csv"
    rows = list(csv.DictReader(manifest.open(encoding="utf-8")))
    rng = random.Random(0)
    with manifest.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=[*rows[0], "device", "age"])
        w.writeheader()
        for r in rows:
            w.writerow({**r, "device": rng.choice(["DSLR", "phone"]), "age": rng.randint(18, 70)})
    config = run / "config.yaml"
    config.write_text(config.read_text().replace(str(tiny_data), str(data)))
    return run, data


def test_subgroups_count_every_label_once_and_match_scoring_the_subgroup_alone(with_device):
    run, data = with_device
    got = runner.invoke(
        app, ["evaluate", str(run), "--by", "device", "--json", "--bootstrap", "200"]
    )
    assert got.exit_code == 0, got.output
    result = json.loads(got.stdout)
    entry = result["subgroups"]["device"]
    total = sum(m["n"] for m in result["regions"].values())
    assert sum(s["n"] for s in entry["subgroups"]) == total
    phone = next(s for s in entry["subgroups"] if s["value"] == "phone")
    # the same test rows of phone photos only, as a manifest of their own: every row is scored
    with (run / "split.csv").open(encoding="utf-8") as fh:
        test_keys = {r["key"] for r in csv.DictReader(fh) if r["part"] == "test"}
    rows = list(csv.DictReader((data / "manifest.csv").open(encoding="utf-8")))
    alone = data / "phone.csv"
    with alone.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(
            r for r in rows if r["device"] == "phone" and f"{r['path']}#{r['region']}" in test_keys
        )
    single = runner.invoke(app, ["evaluate", str(run), str(alone), "--json", "--bootstrap", "200"])
    assert single.exit_code == 0, single.output
    expected = json.loads(single.stdout)
    for name, m in expected["regions"].items():
        for k in ("n", "accuracy", "balanced_accuracy", "macro_f1", "within1", "grade_mae"):
            assert phone["regions"][name][k] == pytest.approx(m[k]), (name, k)
    gap = entry["largest_gap"]
    assert gap is None or gap["value"] in {s["value"] for s in entry["subgroups"]}


def test_small_subgroups_are_shown_and_marked_not_hidden(with_device):
    run, _ = with_device
    got = runner.invoke(
        app,
        ["evaluate", str(run), "--by", "age_band", "--min-subgroup", "1000", "--bootstrap", "0"],
    )
    assert got.exit_code == 0, got.output
    assert "(under 1000)" in got.stdout and "by age_band" in got.stdout
    assert "largest gap" not in got.stdout  # every subgroup is too small to be flagged


def test_a_field_the_data_lacks_is_one_clear_error(with_device, tiny_run):
    run, _ = with_device
    got = runner.invoke(app, ["evaluate", str(run), "--by", "skin_type"])
    assert got.exit_code != 0
    assert "--by skin_type: no sample of" in got.output and "device" in got.output
    bare = runner.invoke(app, ["evaluate", str(tiny_run), "--by", "device"])
    assert bare.exit_code != 0 and "carries no per-image fields" in bare.output


def test_the_report_has_a_chart_and_table_per_field(with_device, tmp_path):
    run, _ = with_device
    out = tmp_path / "r.html"
    got = runner.invoke(
        app, ["report", str(run), "-o", str(out), "--by", "device", "--by", "age_band"]
    )
    assert got.exit_code == 0, got.output
    html = out.read_text(encoding="utf-8")
    section = html.split('id="subgroups"', 1)[1].split("</section>", 1)[0]
    for field in ("device", "age_band"):
        assert f'alt="balanced accuracy by {field}"' in section
        assert f"<th>{field}</th>" in section
    assert section.count("<td>phone") == 1
    bad = runner.invoke(
        app, ["report", str(run), "-o", str(tmp_path / "s.html"), "--by", "skin_type"]
    )
    assert bad.exit_code != 0 and "--by skin_type" in bad.output
