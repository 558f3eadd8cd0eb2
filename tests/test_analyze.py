import json

import pytest
from typer.testing import CliRunner

from skincls.cli.root import app
from skincls.core.imbalance import class_balanced_weights

from .conftest import HAM10000, needs_ham10000

runner = CliRunner()


def test_cb_weights_by_hand():
    # counts 1 and 3, beta 0.5: E = 1 and (1 - 0.125) / 0.5 = 1.75; w ∝ 1 and 1/1.75, sum 2.
    w = class_balanced_weights([1, 3], 0.5)
    assert w == pytest.approx([2 * 1.75 / 2.75, 2 / 2.75])
    assert class_balanced_weights([5, 50], 0.0) == pytest.approx([1.0, 1.0])
    inverse = class_balanced_weights([10, 40], 0.999999)
    assert inverse[0] / inverse[1] == pytest.approx(4.0, rel=1e-3)
    assert class_balanced_weights([0, 10, 30], 0.99) == pytest.approx(
        [
            0.0,
            3 * (1 / (1 - 0.99**10)) / (1 / (1 - 0.99**10) + 1 / (1 - 0.99**30)),
            3 * (1 / (1 - 0.99**30)) / (1 / (1 - 0.99**10) + 1 / (1 - 0.99**30)),
        ]
    )


def test_analyze_json_has_the_known_counts(tiny_data, tiny_regions):
    result = runner.invoke(
        app,
        [
            "analyze",
            str(tiny_data),
            "--regions-dir",
            str(tiny_regions),
            "--json",
            "--split",
            "--beta",
            "0.9",
        ],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    w = doc["regions"]["wrinkle"]
    assert w["counts"] == {"0": 12, "1": 30, "2": 16, "3": 10}
    assert w["total"] == 68 and w["imbalance_ratio"] == 3.0
    assert sum(w["cb_weights"].values()) == pytest.approx(4.0)
    assert doc["regions"]["pore"]["counts"] == {"0": 10, "1": 24, "2": 12}
    for _name, r in doc["regions"].items():
        for label, n in r["counts"].items():
            assert sum(r["split"][p][label] for p in ("train", "val", "test")) == n


def test_analyze_plot_and_table(tiny_data, tiny_regions, tmp_path):
    png = tmp_path / "dist.png"
    result = runner.invoke(
        app, ["analyze", str(tiny_data), "--regions-dir", str(tiny_regions), "--plot", str(png)]
    )
    assert result.exit_code == 0, result.output
    assert "wrinkle: 68 samples, imbalance max/min 3.0" in result.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_user_errors_are_one_line_without_traceback(tiny_data, tiny_regions):
    result = runner.invoke(
        app, ["analyze", str(tiny_data), "--regions-dir", str(tiny_regions), "--region", "nose"]
    )
    assert result.exit_code == 2
    assert "error: --region nose: no such region" in result.stderr
    assert "Traceback" not in result.output


def test_debug_shows_the_user_error_and_does_not_stay_on(tiny_data, tiny_regions):
    from skincls.core.errors import SkinclsError

    args = ["analyze", str(tiny_data), "--regions-dir", str(tiny_regions), "--region", "nose"]
    result = runner.invoke(app, ["--debug", *args])
    assert isinstance(result.exception, SkinclsError)
    assert "--region nose: no such region" in str(result.exception)
    result = runner.invoke(app, args)  # the next command, without --debug, is back to one line
    assert result.exit_code == 2 and "error: --region nose" in result.stderr


def test_regions_cli(tmp_path):
    result = runner.invoke(app, ["regions", "list", "--json"])
    assert result.exit_code == 0
    names = [r["name"] for r in json.loads(result.stdout)["regions"]]
    assert "cheek_pore" in names and len(names) == 8
    (tmp_path / "x.yaml").write_text("name: x\nclasses: [a]\n")
    (tmp_path / "y.yaml").write_text("name: y\nclasses: [a, b]\naugment: {train: [{op: Blur}]}\n")
    result = runner.invoke(
        app, ["regions", "validate", str(tmp_path / "x.yaml"), str(tmp_path / "y.yaml")]
    )
    assert result.exit_code == 1
    assert "x.yaml: classes: List should have at least 2 items" in result.stderr
    assert "y.yaml: augment.train.0: unknown transform 'Blur'" in result.stderr


@needs_ham10000
def test_analyze_ham10000_end_to_end(tmp_path):
    (tmp_path / "lesion.yaml").write_text(
        "name: lesion\nclasses: [akiec, bcc, bkl, df, mel, nv, vasc]\n"
    )
    result = runner.invoke(
        app,
        [
            "analyze",
            str(HAM10000 / "manifest.csv"),
            "--regions-dir",
            str(tmp_path),
            "--region",
            "lesion",
            "--group-column",
            "lesion_id",
            "--json",
            "--split",
        ],
    )
    assert result.exit_code == 0, result.output
    r = json.loads(result.stdout)["regions"]["lesion"]
    assert r["counts"] == {
        "akiec": 234,
        "bcc": 381,
        "bkl": 813,
        "df": 84,
        "mel": 838,
        "nv": 5040,
        "vasc": 106,
    }
    assert r["imbalance_ratio"] == 60.0
    assert r["split"]["test"]["df"] > 0


def test_light_commands_do_not_import_heavy_libraries(tiny_data, tiny_regions):
    import subprocess
    import sys

    probe = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from skincls.cli.root import app\n"
        "for argv in (['--help'], ['regions', 'list'], ['analyze', sys.argv[1], '--regions-dir', sys.argv[2]]):\n"
        "    assert CliRunner().invoke(app, argv).exit_code == 0, argv\n"
        "print(sorted(m for m in ('torch', 'timm', 'albumentations', 'wandb', 'onnxruntime') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, str(tiny_data), str(tiny_regions)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == "[]"
