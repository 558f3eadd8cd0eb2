"""The run report: one self-contained HTML page a person can read (issue 16)."""

import base64
import csv
import io
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from skincls.cli.root import app
from skincls.core.config import build_config
from skincls.serving.report import Sections, build_report

from .conftest import tiny_values

runner = CliRunner()
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-headless-shell")


@pytest.fixture(scope="module")
def report(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "tiny report.html"
    written = build_report(tiny_run, out, sections=Sections(explain=True))
    return Path(written["path"]), tiny_run


def test_report_is_self_contained_with_one_section_per_region(report):
    path, run = report
    html = path.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)  # nothing from a network
    assert "<script" not in html and "<link" not in html
    regions = [line.strip() for line in (run / "regions" / "order.txt").read_text().splitlines()]
    sections = re.findall(r'<section class="region" id="region-([a-z0-9_]+)">', html)
    assert sections == regions
    with open(run / "split.csv", newline="") as fh:
        test_rows = [r for r in csv.DictReader(fh) if r["part"] == "test"]
    for name in regions:
        body = html.split(f'id="region-{name}"', 1)[1].split("</section>", 1)[0]
        classes = (run / "regions" / f"{name}.yaml").read_text()
        for label in re.findall(r"- '(\w+)'", classes):
            assert f"<td>{label}</td>" in body, (name, label)
        n_test = sum(1 for r in test_rows if r["region"] == name)
        assert f"<b>{n_test}</b><span>samples</span>" in body
        table = body.split('class="per-class"')[1].split("</table>")[0]
        supports = [int(s) for s in re.findall(r"<td>(\d+)</td></tr>", table)]
        assert sum(supports) == n_test


def test_report_images_decode_and_mistakes_are_real_mistakes(report):
    path, _ = report
    html = path.read_text(encoding="utf-8")
    images = re.findall(r'src="data:image/(png|jpeg);base64,([^"]+)"', html)
    assert len(images) >= 5
    for kind, data in images:
        with Image.open(io.BytesIO(base64.b64decode(data))) as img:
            img.load()
            assert img.size[0] > 8 and img.format.lower() == kind
    for true, pred in re.findall(r"true (\S+) &rarr; pred (\S+)", html):
        assert true != pred


def test_cli_report_and_train_write_reports(tmp_path, tiny_run, tiny_data, tiny_regions):
    from skincls.training.train import train

    target = tmp_path / "mine.html"
    target.write_text("my notes")
    result = runner.invoke(app, ["report", str(tiny_run), "-o", str(target)])
    assert result.exit_code == 2 and "exists; pass --overwrite" in result.stderr
    assert target.read_text() == "my notes"
    result = runner.invoke(app, ["report", str(tiny_run), "-o", str(target), "--overwrite"])
    assert result.exit_code == 0 and target.read_text().startswith("<!doctype html>")
    values = tiny_values(tiny_data, tiny_regions, output=str(tmp_path / "run"), report=True)
    run = train(build_config({**values, "max_steps_per_epoch": 2})).run_dir
    assert (run / "report.html").is_file()


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium (Debian package chromium) to render in")
def test_report_renders_in_a_real_browser_without_broken_images(report, tmp_path):
    path, _ = report
    checked = tmp_path / "checked.html"
    probe = (
        "<script>window.addEventListener('load', () => { const bad = [...document.images]"
        ".filter(i => !i.complete || i.naturalWidth === 0).length; "
        "document.body.setAttribute('data-images', document.images.length); "
        "document.body.setAttribute('data-broken', bad); });</script></body>"
    )
    checked.write_text(path.read_text(encoding="utf-8").replace("</body>", probe), "utf-8")
    flags = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--hide-scrollbars",
    ]
    dom = subprocess.run(
        [*flags, "--virtual-time-budget=5000", "--dump-dom", checked.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    images = int(re.search(r'data-images="(\d+)"', dom).group(1))
    assert images >= 5 and 'data-broken="0"' in dom
    shot = tmp_path / "shot.png"
    subprocess.run(
        [*flags, "--window-size=1200,1800", f"--screenshot={shot}", path.as_uri()],
        capture_output=True,
        timeout=120,
    )
    pixels = np.asarray(Image.open(shot).convert("L"), np.float32)
    assert pixels.shape == (1800, 1200) and pixels.std() > 20  # not a blank page


def test_evaluate_report_and_study_report(tmp_path, tiny_run, tiny_data, tiny_regions):
    from skincls.training.sweep import StudyOptions, run_sweep

    other = tmp_path / "other data"
    shutil.copytree(tiny_data, other)
    target = tmp_path / "other data.html"
    result = runner.invoke(
        app, ["evaluate", str(tiny_run), str(other), "--report", str(target), "--json"]
    )
    assert result.exit_code == 0, result.output
    html = target.read_text(encoding="utf-8")
    assert f"split <b>all</b> of {other}" in html  # other data: every sample is scored
    base = tiny_values(tiny_data, tiny_regions, max_steps_per_epoch=2, report=True)
    summary = run_sweep(base, tmp_path / "sweep", 2, StudyOptions(seed=1))
    study = Path(summary["report"]).read_text(encoding="utf-8")
    assert study.count("<tr><td>") == 2 and "val ba_f1" in study
    link = re.search(r'<a href="([^"]+)">Its report</a>', study).group(1)
    assert (tmp_path / "sweep" / link).is_file()


def test_report_counts_raw_labels_through_the_label_map(tmp_path, tiny_data):
    from skincls.training.train import train

    regions = tmp_path / "regions"
    regions.mkdir()
    (regions / "wrinkle.yaml").write_text(
        "name: wrinkle\nclasses: [low, high]\nlabel_map: {'0': low, '1': low, '2': high, "
        "'3': high}\naugment: {train: [], eval: []}\n"
    )
    (regions / "pore.yaml").write_text("name: pore\nclasses: ['0', '1', '2']\n")
    values = tiny_values(tiny_data, regions, output=str(tmp_path / "run"), region=["wrinkle"])
    run = train(build_config({**values, "max_steps_per_epoch": 2, "report": True})).run_dir
    html = (run / "report.html").read_text(encoding="utf-8")
    with open(run / "split.csv", newline="") as fh:
        n_test = sum(1 for r in csv.DictReader(fh) if r["part"] == "test")
    assert "<td>low</td>" in html and "<td>high</td>" in html
    assert f"<b>{n_test}</b><span>samples</span>" in html


def test_report_of_a_run_whose_data_is_gone_says_so(tiny_run, tmp_path):
    run = tmp_path / "moved run"
    shutil.copytree(tiny_run, run)
    config = run / "config.yaml"
    gone = tmp_path / "deleted data"
    text = config.read_text()
    data_line = next(line for line in text.splitlines() if line.startswith("data: "))
    config.write_text(text.replace(data_line, f"data: {gone}"))
    result = runner.invoke(app, ["report", str(run)])
    assert result.exit_code == 2 and f"{gone}: no such file or directory" in result.stderr


def test_report_names_the_served_epoch_and_bolds_its_row(report):
    import json

    path, run = report
    html = path.read_text(encoding="utf-8")
    status = json.loads((run / "run.json").read_text())
    served, best = status["served_epoch"], status["best_epoch"]
    assert served == 2  # the default serves the last of the run's 2 epochs
    assert f"Served epoch: <b>{served}</b>" in html
    bold = re.findall(r'<tr style="font-weight:bold"><td>(\d+)</td>', html)
    assert bold == [str(served)]
    said = "the best by validation" if best == served else f"was epoch {best}"
    assert said in html.split("Served epoch:", 1)[1].split("</p>", 1)[0]


def test_report_explains_the_served_decision_with_chance_levels_and_the_nia_table(report):
    """Issue 34 item 7: per region the calibration (T, validation ECE as fitted, a reliability
    diagram) and the decision rule in words, the chance level beside each figure (worked by
    hand from the supports), the ordinal regions in the data owners' layout with the figures
    evaluate prints, and no mistake shown twice."""
    import json

    from skincls.serving.evaluate import EvalOptions, evaluate

    path, run = report
    html = path.read_text(encoding="utf-8")
    meta = json.loads((run / "best" / "meta.json").read_text())
    scored = evaluate(run, options=EvalOptions(device="cpu"))
    for name in ("pore", "wrinkle"):
        body = html.split(f'id="region-{name}"', 1)[1].split("</section>", 1)[0]
        text = " ".join(re.sub(r"<[^>]+>", " ", body).split())
        fitted = meta["calibration"][name]
        assert f"temperature T = {fitted['temperature']:.2f}" in text
        assert f"validation ECE {fitted['val']['ece_before']:.3f}" in text
        assert "Decision rule:" in text and "% of the decisions differ" in text
        assert f'alt="reliability diagram of {name}"' in body
        m = scored["regions"][name]
        support = [c["support"] for c in m["per_class"].values()]
        k, total = len(support), sum(support)
        share = [s / total for s in support]
        f1 = sum(2 * p / k / (p + 1 / k) for p in share if p > 0) / k
        assert f"accuracy chance {1 / k:.3f}" in text
        assert f"macro_f1 chance {f1:.3f}" in text
        mae = sum(p * sum(abs(i - j) for j in range(k)) / k for i, p in enumerate(share))
        assert f"grade_mae chance {mae:.3f}" in text
        thumbs = re.findall(r'<div class="thumb"><img src="[^"]+" alt="([^"]+)"', body)
        assert len(thumbs) == len(set(thumbs))  # a mistake appears once
    nia = html.split('id="ordinal"', 1)[1].split("</section>", 1)[0]
    intervals = re.findall(r"<br><small>([^<]*)</small>", nia)
    assert len(intervals) == 5 * 3  # five figures of two items and the average
    plain = re.sub(r"<br><small>[^<]*</small>", "", nia)
    for name in ("pore", "wrinkle"):
        m = scored["regions"][name]
        row = f"<td>{name}</td><td>{m['n']}</td><td>{100 * m['accuracy']:.1f}</td>"
        within = f"<td>{100 * m['within1']:.1f}</td><td>{100 * m['within2']:.1f}</td>"
        assert row + within in plain
    assert "exact 60.6%, within one 93.0%, MAE 0.47" in nia
