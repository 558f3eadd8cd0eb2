"""A new user's first hour: no lost files, no circles, no silence (issue 18)."""

import json
import math
import os
import re
import shlex
import shutil
import time
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from skincls.cli.root import app
from skincls.core.config import TrainConfig, build_config
from skincls.core.errors import SkinclsError

from .conftest import tiny_cli_args, tiny_values

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]


def image(path: Path) -> Path:
    Image.new("RGB", (40, 40), (150, 90, 70)).save(path)
    return path


# 1. Nothing a user made is replaced silently --------------------------------------------------


def test_every_writing_command_refuses_an_existing_file(
    tmp_path, tiny_run, tiny_data, tiny_regions
):
    mine = "my own notes\n"
    x = image(tmp_path / "x.png")
    cases = {
        "analyze --plot": ["analyze", str(tiny_data), "--regions-dir", str(tiny_regions), "--plot"],
        "predict --csv": ["predict", str(tiny_run), str(x), "--csv"],
        "sweep --wandb-config": [
            "sweep",
            *tiny_cli_args(tiny_data, tiny_regions),
            "--wandb-config",
        ],
        "export -o": ["export", str(tiny_run), "-o"],
    }
    for name, args in cases.items():
        suffix = {"export": ".onnx", "analyze": ".png", "sweep": ".yaml"}.get(
            name.split()[0], ".csv"
        )
        target = tmp_path / (name.split()[0] + suffix)
        target.write_text(mine)
        result = runner.invoke(app, [*args, str(target)])
        assert result.exit_code == 2, (name, result.output)
        assert "exists; pass --overwrite" in result.stderr, (name, result.stderr)
        assert target.read_text() == mine, name
    plot = tmp_path / "analyze.png"
    ok = runner.invoke(app, [*cases["analyze --plot"], str(plot), "--overwrite"])
    assert ok.exit_code == 0 and plot.read_bytes().startswith(b"\x89PNG")


def test_explain_and_prepare_refuse_what_exists(tmp_path, tiny_run):
    from skincls.data.synthetic import make_aihub_tree

    x = image(tmp_path / "face.png")
    out = tmp_path / "cams"
    out.mkdir()
    region = json.loads((tiny_run / "best" / "meta.json").read_text())["regions"][0]["name"]
    target = out / f"face_{region}_gradcam.png"
    target.write_text("mine")
    args = ["explain", str(tiny_run), str(x), "--region", region, "--output", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "1 file(s) exist" in result.stderr
    assert target.read_text() == "mine"
    assert runner.invoke(app, [*args, "--overwrite"]).exit_code == 0
    assert target.read_bytes().startswith(b"\x89PNG")

    root = tmp_path / "aihub"
    make_aihub_tree(root, n_subjects=1, image_size=(200, 240))
    cache = tmp_path / "my folder"
    cache.mkdir()
    (cache / "manifest.csv").write_text("path,label\nmine.png,1\n")
    result = runner.invoke(app, ["prepare", str(root), "--out", str(cache)])
    assert result.exit_code == 2 and "not a skincls prepare cache" in result.stderr
    assert (cache / "manifest.csv").read_text() == "path,label\nmine.png,1\n"


def test_a_file_where_a_directory_is_expected_and_the_reverse(
    tmp_path, tiny_run, tiny_data, tiny_regions
):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    x = image(tmp_path / "x.png")
    region = json.loads((tiny_run / "best" / "meta.json").read_text())["regions"][0]["name"]
    cases = [
        (["train", *tiny_cli_args(tiny_data, tiny_regions), "-o", str(a_file)], "is a file"),
        (["prepare", str(tmp_path), "-o", str(a_file)], "expected a directory, found a file"),
        (
            ["explain", str(tiny_run), str(x), "--region", region, "-o", str(a_file / "sub")],
            "expected a directory, found a file",
        ),
        (
            ["sweep", *tiny_cli_args(tiny_data, tiny_regions), "-o", str(a_file)],
            "expected a directory, found a file",
        ),
        (["predict", str(tiny_run), str(x), "--csv", str(tmp_path)], "is a directory"),
        (
            [
                "analyze",
                str(tiny_data),
                "--regions-dir",
                str(tiny_regions),
                "--plot",
                str(tmp_path),
            ],
            "is a directory",
        ),
    ]
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.stderr and "Traceback" not in result.output, result.stderr


# 2. No circles --------------------------------------------------------------------------------


def test_interrupt_in_the_first_epoch_then_the_printed_command_works(
    tmp_path, tiny_data, tiny_regions, monkeypatch
):
    from skincls.training.loop import Engine

    out = tmp_path / "my runs" / "first try"
    real = Engine.train_step

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Engine, "train_step", interrupted)
    result = runner.invoke(app, ["train", *tiny_cli_args(tiny_data, tiny_regions), "-o", str(out)])
    assert result.exit_code == 130
    assert "no epoch was completed" in result.stderr
    hint = re.search(r"Continue with: (skincls train .*)$", result.stderr.strip()).group(1)
    monkeypatch.setattr(Engine, "train_step", real)
    argv = shlex.split(hint)[1:]
    assert argv == ["train", "--resume", str(out)]
    resumed = runner.invoke(app, argv)
    assert resumed.exit_code == 0, resumed.output
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == list(range(1, 21))[: len(history)] and history


def test_the_end_of_train_names_the_metric_and_the_next_commands(tmp_path, tiny_data, tiny_regions):
    out = tmp_path / "run dir"
    args = [
        "train",
        *tiny_cli_args(tiny_data, tiny_regions),
        "-o",
        str(out),
        "--epochs",
        "1",
        "--select",
        "macro_f1",
        "--max-steps-per-epoch",
        "2",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "serving epoch 1 of 1 (the last and the best), validation macro_f1 = " in result.stdout
    assert f"weights in {out / 'best'}" in result.stdout
    # the start-of-run summary gives each head's share of the loss: with the default
    # --region-balance sqrt, sqrt(labels) over the sum of sqrt(labels) of all heads
    heads = re.findall(r"train counts \[([\d, ]+)\].*share of the loss ([\d.]+)%", result.stdout)
    sizes = [sum(int(n) for n in counts.split(",")) for counts, _ in heads]
    assert len(heads) == 2 and all(sizes)
    for (_, share), n in zip(heads, sizes, strict=True):
        expected = math.sqrt(n) / sum(math.sqrt(m) for m in sizes)
        assert float(share) / 100 == pytest.approx(expected, abs=6e-4)
    commands = [
        line.split("#")[0].strip()
        for line in result.stdout.splitlines()
        if line.startswith("  skincls ")
    ]
    assert commands[:2] == [
        f"skincls evaluate {shlex.quote(str(out))}",
        f"skincls export {shlex.quote(str(out))}",
    ]
    evaluated = runner.invoke(app, [*shlex.split(commands[0])[1:], "--json"])
    assert evaluated.exit_code == 0 and "regions" in json.loads(evaluated.stdout)


def test_the_suggested_retrain_command_of_a_sweep_works(tmp_path, tiny_data, tiny_regions):
    out = tmp_path / "my sweep"
    args = [
        "sweep",
        *tiny_cli_args(tiny_data, tiny_regions, "--max-steps-per-epoch", "2", "--epochs", "1"),
        "--trials",
        "2",
        "-o",
        str(out),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    # 5. never silent: one line per trial start and end, with the metric, best and ETA
    assert result.stderr.count("started: lr=") == 2
    assert re.search(
        r"trial 2/2 \(#1\) complete: val ba_f1 \d\.\d{4} \| best \d\.\d{4} \(#\d\) \| \d+m\d\ds elapsed, eta 0m00s",
        result.stderr,
    )
    assert "val ba_f1" in result.stdout  # the table names its metric
    hint = re.search(r"retrain it with: (skincls train .*)$", result.stdout.strip()).group(1)
    argv = shlex.split(hint)[1:] + ["-o", str(tmp_path / "retrained")]
    retrained = runner.invoke(app, argv)
    assert retrained.exit_code == 0, retrained.output


# 3. Caches know their settings ---------------------------------------------------------------


def test_prepare_refuses_other_settings_and_redoes_changed_photos(tmp_path):
    from skincls.data.prepare import PrepareOptions, prepare
    from skincls.data.synthetic import make_aihub_tree

    root = tmp_path / "aihub"
    make_aihub_tree(root, n_subjects=2, image_size=(300, 360))
    out = tmp_path / "cache"
    first = prepare(root, out, PrepareOptions(max_side=64, workers=1, progress=False))
    with pytest.raises(
        SkinclsError, match=r"cache made with other settings: max_side 64 \(now 96\)"
    ):
        prepare(root, out, PrepareOptions(max_side=96, workers=1, progress=False))
    photo = next(p for p in root.rglob("*.jpg"))
    Image.open(photo).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(photo)
    os.utime(photo, ns=(time.time_ns(), time.time_ns() + 10**9))
    again = prepare(root, out, PrepareOptions(max_side=64, workers=1, progress=False))
    assert (
        0 < again["written"] < first["crops"]
        and again["reused"] == first["crops"] - again["written"]
    )
    redone = prepare(
        root, out, PrepareOptions(max_side=96, workers=1, progress=False, overwrite=True)
    )
    assert redone["written"] == first["crops"]
    crop = next((out / "crops").rglob("*.jpg"))
    assert max(Image.open(crop).size) <= 96


# 4. Commands accept what other commands accept --------------------------------------------------


def test_evaluate_on_a_csv_with_regions_the_run_lacks(tmp_path, tiny_run, tiny_data):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    manifest = data / "manifest.csv"
    lines = manifest.read_text().splitlines()
    extra = [
        line.replace(",wrinkle,", ",lip_dryness,") for line in lines[1:6] if ",wrinkle," in line
    ]
    manifest.write_text("\n".join(lines + extra) + "\n")
    result = runner.invoke(app, ["evaluate", str(tiny_run), str(data), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert set(doc["regions"]) == {"wrinkle", "pore"}


def test_export_without_data_verifies_on_the_runs_own_images(tmp_path, tiny_run):
    from skincls.serving.export import export_onnx

    report = export_onnx(tiny_run, tmp_path / "m.onnx")
    assert report["real_images"] > 0 and report["class_agreement"] >= 0.99


# 6. Offline is normal ---------------------------------------------------------------------------


def test_offline_hub_fails_within_seconds_with_the_helpful_line(
    tmp_path, tiny_data, tiny_regions, monkeypatch
):
    import socket

    from huggingface_hub import constants

    from skincls.model.network import create_model as build_model

    def no_network(*args, **kwargs):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty hf cache"))
    config = build_config(
        tiny_values(tiny_data, tiny_regions, backbone="resnet10t", pretrained="hub")
    )
    regions = [
        type(
            "R",
            (),
            {"name": "wrinkle", "num_classes": 4, "loss": None, "ordinal": True, "decision": None},
        )()
    ]
    t0 = time.perf_counter()
    with pytest.raises(
        SkinclsError, match="--pretrained FILE for a local weights file or --no-pretrained"
    ):
        build_model(config, regions)
    assert time.perf_counter() - t0 < 10


# 7. Output that reads well anywhere ---------------------------------------------------------


def test_tables_never_cut_region_names_at_80_columns(tmp_path, monkeypatch):
    from skincls.data.regions import discover_regions

    monkeypatch.setenv("COLUMNS", "80")
    names = discover_regions(include_entry_points=False).names()
    result = runner.invoke(app, ["regions", "list"])
    assert result.exit_code == 0
    for name in names:
        assert name in result.stdout, name
    helptext = runner.invoke(app, ["train", "--help"]).stdout
    for option in (
        "--no-channels-last",
        "--max-steps-per-epoch",
        "--region-balance",
        "--label-smoothing",
    ):
        assert option in helptext


def test_weights_are_written_with_the_users_umask(tiny_run):
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tiny_run / "best").iterdir()}
    assert modes["model.safetensors"] == modes["meta.json"] == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# 8. Help that answers ---------------------------------------------------------------------------


def test_help_shows_every_default_and_choice_and_the_version():
    from pydantic_core import PydanticUndefined

    from skincls import __version__

    helptext = " ".join(runner.invoke(app, ["train", "--help"]).stdout.split())
    losses = (
        "ce|focal|cb_softmax|cb_sigmoid|cb_focal|logit_adjust|balanced_softmax|corn|sord|cdw_ce"
    )
    assert f"<{losses}>" in helptext
    assert "<none|class_balanced|sqrt>" in helptext and "<auto|bf16|fp16|off>" in helptext
    assert "<ba_f1|balanced_accuracy|macro_f1|qwk|within1|grade_mae>" in helptext
    assert "<argmax|median>" in helptext
    assert "--skip-bad Skip" in helptext  # a flag, no <bool> value
    for field, info in TrainConfig.model_fields.items():
        flag = {"wandb_tags": "--wandb-tag"}.get(field, "--" + field.replace("_", "-"))
        if field == "data":
            continue
        assert flag in helptext, field
        shown = info.default not in (None, PydanticUndefined) and not isinstance(info.default, bool)
        if shown and field != "wandb":
            assert f"[default: {info.default}]" in helptext, field  # plainly, not "(20)"
    assert "[default: (" not in helptext
    for command in ("evaluate", "export", "predict", "explain"):
        text = " ".join(runner.invoke(app, [command, "--help"]).stdout.split())
        assert "<best|last>" in text, command
    sweep_help = " ".join(runner.invoke(app, ["sweep", "--help"]).stdout.split())
    assert "Every `skincls train` option is accepted here" in sweep_help
    version = runner.invoke(app, ["--version"])
    assert version.exit_code == 0 and version.stdout.strip() == f"skincls {__version__}"


def test_train_options_and_trainconfig_fields_are_one_list():
    from typer.main import get_command

    train = get_command(app).commands["train"]
    params = {p.name for p in train.params} - {"config", "no_pretrained"}
    assert params == set(TrainConfig.model_fields)


def test_messages_use_option_names(tmp_path, tiny_data, tiny_regions):
    result = runner.invoke(
        app, ["train", *tiny_cli_args(tiny_data, tiny_regions), "--batch-size", "0"]
    )
    assert (
        result.exit_code == 2
        and "--batch-size: Input should be greater than or equal to 1" in result.stderr
    )
    result = runner.invoke(
        app,
        ["train", *tiny_cli_args(tiny_data, tiny_regions), "--epochs", "2", "--warmup-epochs", "2"],
    )
    assert "--warmup-epochs (2) must be smaller than --epochs (2)" in result.stderr


# 9. README quick start works in a new terminal --------------------------------------------------


def test_readme_quick_start_second_command_needs_no_activated_venv():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", quick, re.S)
    assert len(blocks) == 2
    first, second = (b.strip() for b in blocks)
    assert first.startswith("python3 -m venv .venv") and "skincls demo" in first
    assert second.startswith(".venv/bin/") and "pytest" in second  # works in a fresh shell
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pytest -q" in ci


def test_validate_of_a_folder_without_region_files_and_analyze_fractions_name_the_input(
    tmp_path, demo_data
):
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["regions", "validate", str(tmp_path / "empty")])
    assert result.exit_code == 1
    assert f"{tmp_path / 'empty'}: no region file (*.yaml or *.yml) in this folder" in result.stderr
    result = runner.invoke(app, ["analyze", str(demo_data), "--split", "--val-fraction", "1.5"])
    assert result.exit_code == 2
    assert "--val-fraction: expected a share from 0 to below 1, got 1.5" in result.stderr
    result = runner.invoke(
        app,
        ["analyze", str(demo_data), "--split", "--val-fraction", "0.6", "--test-fraction", "0.6"],
    )
    assert result.exit_code == 2
    assert "--val-fraction 0.6 + --test-fraction 0.6: must add up to less than 1" in result.stderr


def test_predict_with_no_usable_input_exits_non_zero_and_says_why(tiny_run, tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"x")
    missing = tmp_path / "nope.png"
    result = runner.invoke(app, ["predict", str(tiny_run), str(missing), str(tmp_path / "bad.jpg")])
    assert result.exit_code == 1, result.output
    assert f"{missing}: file not found" in result.stderr
    assert "cannot decode: UnidentifiedImageError" in result.stderr
    assert "no input gave a prediction (2 skipped, above)" in result.stderr


def test_the_top_level_help_says_where_to_start():
    text = " ".join(runner.invoke(app, ["--help"]).stdout.split())
    assert "New here? Start with `skincls demo`" in text


def test_the_readme_python_example_runs(tmp_path, monkeypatch):
    """README's 'From Python' block, run as written in a folder holding the quick start's data."""
    import re
    import subprocess
    import sys

    from skincls.data.synthetic import make_demo_data

    block = re.search(
        r"## From Python.*?```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S
    )
    assert block, "README has a 'From Python' example"
    make_demo_data(tmp_path / "skincls-demo" / "data", seed=0)
    done = subprocess.run(
        [sys.executable, "-c", block.group(1)], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert re.search(r"test balanced accuracy 0\.\d{3}", done.stdout)
    assert "['cheek_pore', 'forehead_wrinkle', 'lip_dryness'] 48" in done.stdout


COMMANDS = [
    ["analyze"], ["prepare"], ["train"], ["demo"], ["sweep"], ["evaluate"], ["export"],
    ["predict"], ["explain"], ["report"], ["regions", "list"], ["regions", "validate"],
]  # fmt: skip


def test_help_names_values_in_words_and_summaries_are_whole():
    """No Typer type names (``<int range>``, ``<list[Path]>``, ``<path>``) in any command's help
    (issue 34 item 6); every summary in ``skincls --help`` is whole at 80 columns; --select
    says which metric is lower-is-better; --workers 0 of prepare says what 0 means."""
    import re

    for command in COMMANDS:
        text = runner.invoke(app, [*command, "--help"], terminal_width=80).stdout
        assert not re.search(r"<(int|float|str|text|path|list\[|Path)", text), (command, text)
    top = runner.invoke(app, ["--help"], terminal_width=80).stdout
    lines = top[top.index("Commands:") :].splitlines()[1:]
    from skincls.cli.root import SHORT

    assert len([line for line in lines if line.strip()]) == len(SHORT) + 1  # and `regions`
    assert not [line for line in lines if line.rstrip().endswith(("...", "…"))], top
    predict = " ".join(runner.invoke(app, ["predict", "--help"]).stdout.split())
    assert "MODEL PATH Run directory or .onnx file." in predict
    assert "INPUTS PATH... Images, folders or AI Hub label JSON files." in predict
    assert "--batch-size N Images per batch." in predict
    train = " ".join(runner.invoke(app, ["train", "--help"]).stdout.split())
    assert "grade_mae (lower is better)" in train
    prepare = " ".join(runner.invoke(app, ["prepare", "--help"]).stdout.split())
    assert "--workers N Worker processes (0: one per core, up to 8)" in prepare


def test_the_validation_table_of_every_epoch_only_when_asked():
    """The demo prints the epoch line each epoch and the validation table only at the last
    (``--verbose``: every epoch)."""
    from rich.console import Console

    from skincls.training.callbacks import ConsoleReporter, EpochEnd
    from skincls.training.loop import TrainState

    val = {"regions": {"pore": {"n": 4, "balanced_accuracy": 0.5, "macro_f1": 0.4}}, "mean": {}}
    record = {"train_loss": 1.0, "train_images_per_s": 10.0, "lr": 1e-3}

    def printed(every: bool) -> list[str]:
        console = Console(record=True, width=120)
        reporter = ConsoleReporter(console, 3, every_table=every)
        for epoch in (1, 2, 3):
            end = EpochEnd(epoch, record, val, False, TrainState())
            reporter.on_epoch_end(end)
        return console.export_text().splitlines()

    quiet, verbose = printed(False), printed(True)
    assert sum(line.startswith("epoch ") for line in quiet) == 3
    assert sum("val region" in line for line in quiet) == 1
    assert sum("val region" in line for line in verbose) == 3


def test_predict_counts_images_applies_a_known_regions_head_and_keeps_rows_on_one_line(
    tiny_run, tiny_data, tmp_path
):
    """Issue 34 item 3: the header counts images and region predictions; a CSV with a region
    column applies only that region's head, a bare image every head (and says so); a long path
    is shortened in the table, kept whole in --json."""
    import json

    deep = tmp_path / ("a-very-long-folder-name-" * 4) / "nested"
    deep.mkdir(parents=True)
    images = sorted((tiny_data / "images").rglob("*.png"))[:2]
    for image in images:
        shutil.copy(image, deep / image.name)
    listing = tmp_path / "crops.csv"
    listing.write_text(
        "path,region\n"
        + f"{(deep / images[0].name).relative_to(tmp_path)},pore\n"
        + f"{(deep / images[1].name).relative_to(tmp_path)},\n",
        encoding="utf-8",
    )
    result = runner.invoke(app, ["predict", str(tiny_run), str(listing)], terminal_width=120)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "2 image(s), 3 region prediction(s)" in out
    assert "1 image(s) of unknown region: every head was applied" in " ".join(out.split())
    table_rows = [line for line in out.splitlines() if images[0].name in line]
    assert len(table_rows) == 1 and ".../" in table_rows[0]  # one line, shortened path
    doc = json.loads(runner.invoke(app, ["predict", str(tiny_run), str(listing), "--json"]).stdout)
    first, second = doc["predictions"]
    assert list(first["regions"]) == ["pore"] and first["region_known"] is True
    assert set(second["regions"]) == {"pore", "wrinkle"} and second["region_known"] is False
    assert first["path"] == str(deep / images[0].name)


def test_the_cpu_only_install_line_resolves_a_cpu_build(tmp_path):
    """README's CPU-only line (issue 34 item 1) asks for the torch and torchvision ranges of
    pyproject.toml (so the editable install keeps the CPU build) from PyPI's CPU wheel index,
    and that index resolves them to a ``+cpu`` build (skipped where it cannot be reached)."""
    import subprocess
    import sys
    import urllib.request

    readme = (ROOT / "README.md").read_text()
    line = next(
        x for x in readme.splitlines() if "download.pytorch.org/whl/cpu" in x and "pip" in x
    )
    project = (ROOT / "pyproject.toml").read_text()
    for name in ("torch", "torchvision"):
        spec = re.search(rf'^\s*"({name}[<>=][^"]*)"', project, re.M).group(1)
        assert f"'{spec}'" in line, (spec, line)
    assert line.endswith("&& pip install -e '.[dev]'")
    index = "https://download.pytorch.org/whl/cpu"
    try:
        urllib.request.urlopen(f"{index}/torch/", timeout=5).close()
    except OSError as err:
        pytest.skip(f"PyTorch's CPU index cannot be reached from here ({err})")
    specs = re.findall(r"'(torch[^']*)'", line)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--quiet",
         "--report", str(tmp_path / "r.json"), "--index-url", index, *specs],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    import json

    versions = {
        i["metadata"]["name"]: i["metadata"]["version"]
        for i in json.loads((tmp_path / "r.json").read_text())["install"]
    }
    assert versions["torch"].endswith("+cpu"), versions
