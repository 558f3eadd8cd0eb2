"""Every command that writes fails cleanly at a read-only location, on a full disk and where a
directory stands for a file (or a file for a folder): one line naming the path and the reason,
exit 2, no temporary file left, nothing previous damaged (issue 35 item 5).

Read-only and full locations are real: small tmpfs mounts (skipped, with the reason, where
the test may not mount one); the writer failures raised inside safetensors and torch are also
checked without a mount."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from skincls.cli.root import app

from .conftest import tiny_cli_args

runner = CliRunner()


def _mount(point: Path, size: str) -> None:
    point.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
        capture_output=True,
        text=True,
    )
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'not permitted'})")


@pytest.fixture
def location(request, tmp_path, tiny_run):
    """A folder holding a copy of ``tiny_run`` as ``run``: read-only, or on a full disk."""
    point = tmp_path / "mnt"
    _mount(point, "64m")
    try:
        shutil.copytree(tiny_run, point / "run")
        config = point / "run" / "config.yaml"
        config.write_text(config.read_text().replace(str(tiny_run), str(point / "run")))
        (point / "old.html").write_text("the user's previous report")
        if request.param == "read-only":
            subprocess.run(["mount", "-o", "remount,ro", str(point)], check=True)
        else:
            with open(point / "filler", "wb", buffering=0) as fh:  # fill every last block
                for size in (1 << 16, 1):
                    try:
                        while True:
                            fh.write(b"\0" * size)
                    except OSError:
                        pass
        yield request.param, point
    finally:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


@pytest.fixture(scope="module")
def aihub(tmp_path_factory) -> Path:
    from skincls.data.synthetic import make_aihub_tree

    root = tmp_path_factory.mktemp("aihub")
    make_aihub_tree(root, n_subjects=2, image_size=(96, 120))
    return root


def commands(m: Path, run: Path, data: Path, regions: Path, aihub: Path, image: Path):
    train = tiny_cli_args(data, regions, "--epochs", "1", "--max-steps-per-epoch", "1")
    return {
        "train": ["train", *train, "-o", str(m / "new")],
        "resume": ["train", "--resume", str(m / "run"), "--epochs", "2"],
        "report": ["report", str(run), "-o", str(m / "old.html"), "--overwrite"],
        "prepare": ["prepare", str(aihub), "-o", str(m / "cache")],
        "evaluate": ["evaluate", str(run), "--reliability", str(m / "rel")],
        "sweep": ["sweep", *train, "--trials", "1", "-o", str(m / "sweep")],
        "predict": ["predict", str(run), str(image), "--csv", str(m / "p.csv")],
        "explain": ["explain", str(run), str(image), "--region", "pore", "-o", str(m / "cams")],
        "analyze": [
            "analyze",
            str(data),
            "--regions-dir",
            str(regions),
            "--plot",
            str(m / "a.png"),
        ],
        "export": ["export", str(run), "-o", str(m / "m.onnx")],
    }


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


NAMES = list(commands(*[Path(".")] * 6))


@pytest.mark.parametrize("location", ["read-only", "full"], indirect=True)
@pytest.mark.parametrize("name", NAMES)
def test_a_read_only_or_full_location_is_one_clear_error(
    location, name, tiny_run, tiny_data, tiny_regions, aihub
):
    kind, m = location
    image = next(tiny_data.rglob("*.png"))
    run = m / "run" if name == "resume" else tiny_run
    before = digest(m / "run"), (m / "old.html").read_text()
    result = runner.invoke(app, commands(m, run, tiny_data, tiny_regions, aihub, image)[name])
    output = result.output
    assert result.exit_code == 2, output
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    reason = "the file system is read-only" if kind == "read-only" else "the disk is full"
    assert len(errors) == 1 and reason in errors[0] and str(m) in errors[0], output
    assert not [p for p in m.rglob("*") if ".tmp" in p.name or "probe" in p.name]
    assert (digest(m / "run"), (m / "old.html").read_text()) == before


def test_a_directory_where_a_file_goes_and_a_file_where_a_folder_goes(
    tmp_path, tiny_run, tiny_data, tiny_regions, aihub
):
    image = next(tiny_data.rglob("*.png"))
    all_commands = commands(tmp_path, tiny_run, tiny_data, tiny_regions, aihub, image)
    for name, argv in all_commands.items():
        if name in ("resume",):
            continue
        target = Path(argv[argv.index("-o") + 1] if "-o" in argv else argv[-1])
        if name == "predict":
            target = tmp_path / "p.csv"
        elif name == "analyze":
            target = tmp_path / "a.png"
        elif name == "evaluate":
            target = tmp_path / "rel"
        folder_expected = name in ("train", "prepare", "evaluate", "sweep", "explain")
        if folder_expected:
            target.write_text("a file of the user's")
        else:
            target.mkdir()
        result = runner.invoke(app, argv)
        assert result.exit_code == 2, (name, result.output)
        expected = "found a file" if folder_expected else "is a directory"
        if name == "train":
            expected = "is a file"
        assert expected in result.output and str(target) in result.output, (name, result.output)
        assert "Traceback" not in result.output
        assert target.is_file() if folder_expected else target.is_dir()


@pytest.mark.parametrize(
    "failure",
    [
        "Error while serializing: I/O error: No space left on device (os error 28)",
        "[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file "
        "data/0: file write failed",
    ],
)
def test_a_checkpoint_writer_failing_inside_safetensors_or_torch_keeps_the_previous(
    tmp_path, tiny_run, monkeypatch, failure
):
    """The writers of safetensors (Rust) and torch raise their own exception types on a full
    disk: still one clear error, the temporary copy removed, the previous checkpoint intact."""
    import safetensors.torch

    from skincls.core.errors import SkinclsError
    from skincls.run.checkpoints import load_checkpoint, save_checkpoint

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    weights, meta = load_checkpoint(run / "last")
    before = digest(run / "last")

    class WriterError(Exception):
        pass

    def failing(*args, **kwargs):
        raise WriterError(failure)

    monkeypatch.setattr(safetensors.torch, "save_file", failing)
    with pytest.raises(SkinclsError, match=r"last: cannot write: .*previous last/ checkpoint"):
        save_checkpoint(run / "last", weights, meta)
    assert digest(run / "last") == before
    assert not [p for p in run.iterdir() if ".tmp" in p.name]


# Bad option values and bad URLs (issue 35 item 7) --------------------------------------------


@pytest.mark.parametrize(
    "storage, message",
    [
        ("not a url", r"--storage not a url: not a database URL \(expected e.g. sqlite:///"),
        (
            "postgresql://user@localhost/study",
            r"the database driver is not installed \(no module psycopg2?: pip install 'psycopg",
        ),
        ("sqlite:////no/such/folder/study.db", r"the folder /no/such/folder does not exist"),
    ],
)
def test_a_bad_sweep_storage_is_one_clear_error(
    tmp_path, tiny_data, tiny_regions, storage, message
):
    train = tiny_cli_args(tiny_data, tiny_regions, "--epochs", "1", "--max-steps-per-epoch", "1")
    argv = ["sweep", *train, "--trials", "1", "-o", str(tmp_path / "sw"), "--storage", storage]
    result = runner.invoke(app, argv)
    assert result.exit_code == 2, result.output
    assert re.search(message, " ".join(result.output.split())), result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "sw" / "trial-0000").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["sweep", "DATA", "--trials", "0"], "Invalid value for '--trials'"),
        (["sweep", "DATA", "--batch-size", "0"], "--batch-size: Input should be greater than"),
        (["sweep", "DATA", "--workers", "-2"], "--workers: Input should be greater than"),
        (["demo", "--epochs", "0"], "Invalid value for '--epochs'"),
        (["demo", "--image-size", "8"], "Invalid value for '--image-size'"),
        (["train", "DATA", "--workers", "-1"], "--workers: Input should be greater than"),
    ],
)
def test_bad_counts_are_refused_before_any_work(tmp_path, tiny_data, argv, message):
    argv = [str(tiny_data) if a == "DATA" else a for a in argv] + ["-o", str(tmp_path / "o")]
    result = runner.invoke(app, argv)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()), result.output
    assert not (tmp_path / "o").exists()


def test_a_compiler_that_cannot_build_is_found_before_training(
    tmp_path, tiny_data, tiny_regions, monkeypatch
):
    """A C++ compiler on PATH that fails (missing headers, a bad CXX) is probed with a tiny
    kernel before the first step: one clear error, no run trained."""
    import shutil as sh

    if not any(sh.which(c) for c in ("g++", "c++", "clang++")):
        pytest.skip("no C++ compiler on PATH: the missing-compiler message is tested instead")
    broken = tmp_path / "broken-cxx"
    broken.write_text('#!/bin/sh\necho "fatal error: Python.h: No such file" >&2\nexit 1\n')
    broken.chmod(0o755)
    monkeypatch.setenv("CXX", str(broken))
    import torch._inductor.config as inductor

    monkeypatch.setattr(inductor.cpp, "cxx", (None, str(broken)))
    argv = ["train", *tiny_cli_args(tiny_data, tiny_regions), "--compile"]
    result = runner.invoke(app, [*argv, "-o", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert "--compile on cpu: the compiler cannot build a test kernel" in result.output
    assert not (tmp_path / "run" / "last").exists()


# Concurrent writers (issue 35 item 6) and damaged side files (item 8) ------------------------

HOLDER = (
    "import sys, time\nfrom skincls.core.locks import output_lock\n"
    "lock = output_lock(sys.argv[1]).acquire()\nprint('held', flush=True)\ntime.sleep(60)\n"
)


@pytest.mark.parametrize("name", ["export", "prepare", "report", "predict", "explain", "analyze"])
def test_a_second_command_writing_the_same_output_is_refused(
    name, tmp_path, tiny_run, tiny_data, tiny_regions, aihub
):
    """While one process writes an output, a second command naming the same output is refused
    with the holder named; once the first ends (even killed), the output is free and no lock
    file is left beside it."""
    import sys

    image = next(tiny_data.rglob("*.png"))
    argv = commands(tmp_path, tiny_run, tiny_data, tiny_regions, aihub, image)[name]
    target = {
        "export": tmp_path / "m.onnx",
        "prepare": tmp_path / "cache",
        "report": tmp_path / "old.html",
        "predict": tmp_path / "p.csv",
        "explain": tmp_path / "cams",
        "analyze": tmp_path / "a.png",
    }[name]
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(target)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        result = runner.invoke(app, argv)
        assert result.exit_code == 2, result.output
        said = " ".join(result.output.split())
        assert f"{target}: in use by process {holder.pid} on " in said, said
        assert "another skincls command is writing it" in said
        assert not target.exists()
    finally:
        holder.kill()
        holder.wait()
    result = runner.invoke(app, argv)
    assert result.exit_code == 0, result.output
    assert target.exists()
    assert not list(tmp_path.glob(".*.lock"))


def test_damaged_side_files_are_one_clear_error(tmp_path, aihub, tiny_run):
    cache = tmp_path / "cache"
    assert runner.invoke(app, ["prepare", str(aihub), "-o", str(cache)]).exit_code == 0
    record = cache / "prepare.json"
    for text, reason in (
        (record.read_text()[:40], "damaged (Unterminated string"),
        ("[1, 2]", "damaged (expected an object, found list)"),
        (
            '{"version": 2, "max_side": 512, "quality": 90, "crops": [1]}',
            "damaged (crops: expected",
        ),
    ):
        record.write_text(text)
        result = runner.invoke(app, ["prepare", str(aihub), "-o", str(cache)])
        said = " ".join(result.output.split())
        assert result.exit_code == 2 and f"{record}: {reason}" in said, said
    result = runner.invoke(app, ["prepare", str(aihub), "-o", str(cache), "--overwrite"])
    assert result.exit_code == 0, result.output

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    config = run / "config.yaml"
    config.write_text(config.read_text().replace(str(tiny_run), str(run)))
    (run / ".lock").unlink(missing_ok=True)
    (run / ".lock").mkdir()
    result = runner.invoke(app, ["train", "--resume", str(run), "--epochs", "3"])
    said = " ".join(result.output.split())
    assert result.exit_code == 2 and f"{run / '.lock'}: is a directory" in said, said


def test_a_report_lock_left_by_a_killed_command_does_not_block_overwrite(run_copy):
    """``report`` locks ``RUN/report.html`` through ``.report.html.lock``; killed, it leaves the
    file, and the run can still be replaced with --overwrite (not "holds other files")."""
    from skincls.run.rundir import looks_like_run

    (run_copy / ".report.html.lock").write_text("process 4242 on gone\n")
    assert looks_like_run(run_copy)
    (run_copy / "notes.txt").write_text("the user's own file")
    assert not looks_like_run(run_copy)
