"""A run's JSON files are typed and versioned: files of runs written before this layout still
read and resume; a damaged, edited or future file is one clear error naming it and the field."""

import json
import shutil
from pathlib import Path

import pytest

from skincls.core.errors import SkinclsError
from skincls.run.artifacts import RUN_ENTRIES, CheckpointMeta, Evaluation, RunStatus
from skincls.run.load import load_run
from skincls.run.rundir import RunDir, looks_like_run, resume_config
from skincls.training.train import train

PRE_LAYOUT = Path(__file__).parent / "data" / "pre_layout_run"


def test_files_written_before_the_typed_artifacts_read_as_format_1():
    """meta.json, run.json and evaluation.json of a run trained by skincls at 12f8ea3."""
    meta = CheckpointMeta.read(PRE_LAYOUT / "meta.json")
    assert (meta.format, meta.backbone, meta.image_size, meta.epoch) == (1, "test_resnet", 32, 2)
    assert [h.name for h in meta.regions] == ["pore", "wrinkle"]
    assert set(meta.calibration) == {"wrinkle", "pore"}
    status = RunStatus.read(PRE_LAYOUT / "run.json")
    assert (status.status, status.served_epoch, status.best_epoch) == ("finished", 2, 1)
    evaluation = Evaluation.read(PRE_LAYOUT / "evaluation.json")
    assert evaluation.split == "test" and set(evaluation.regions) == {"wrinkle", "pore"}


def _as_before(run: Path) -> None:
    """Rewrite the run's JSON files as skincls wrote them before they had a format version."""
    for path in [run / "run.json", run / "evaluation.json", *run.glob("*/meta.json")]:
        data = json.loads(path.read_text())
        data.pop("format")
        path.write_text(json.dumps(data))


def test_a_run_in_the_previous_format_is_served_and_resumed(tiny_run, tmp_path):
    run = tmp_path / "old"
    shutil.copytree(tiny_run, run)
    _as_before(run)
    assert load_run(run).meta.epoch == 2
    result = train(resume_config(run, {"epochs": 3}))
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    assert json.loads((run / "run.json").read_text())["format"] == 1
    assert looks_like_run(run) and {p.name for p in run.iterdir()} <= RUN_ENTRIES


@pytest.mark.parametrize(
    ("file", "edit", "message"),
    [
        ("best/meta.json", {"image_size": "big"}, r"best/meta.json: damaged or edited: image_size"),
        ("best/meta.json", {"format": 9}, r"format 9 was written by a newer skincls"),
        ("best/meta.json", {"colour": "red"}, r"colour: Extra inputs are not permitted"),
        ("run.json", {"served_epoch": "last"}, r"run.json: damaged or edited: served_epoch"),
    ],
)
def test_a_damaged_edited_or_future_file_is_one_clear_error(
    tiny_run, tmp_path, file, edit, message
):
    run = tmp_path / "edited"
    shutil.copytree(tiny_run, run)
    path = run / file
    path.write_text(json.dumps({**json.loads(path.read_text()), **edit}))
    with pytest.raises(SkinclsError, match=message):
        if file == "run.json":
            RunDir.open(run, lock=False).status()
        else:
            load_run(run)


def test_a_file_that_is_not_json_is_damaged(tiny_run, tmp_path):
    run = tmp_path / "cut"
    shutil.copytree(tiny_run, run)
    (run / "evaluation.json").write_text('{"regions": ')
    with pytest.raises(SkinclsError, match=r"evaluation.json: damaged \("):
        RunDir.open(run, lock=False).evaluation()
