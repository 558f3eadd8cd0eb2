import csv

from typer.testing import CliRunner

from skincls.cli.root import app
from skincls.core.config import build_config
from skincls.training.demo import DemoBudget, run_demo
from skincls.training.train import train

from .conftest import HAM10000, needs_ham10000


def test_demo_learns_well_above_chance_and_every_suggestion_runs(tmp_path, monkeypatch):
    import shlex

    result = run_demo(tmp_path / "demo", DemoBudget(epochs=4, workers=0, image_size=48))
    ba = result["metrics"]["mean"]["balanced_accuracy"]
    assert ba > 2.5 * result["chance"], (ba, result["chance"])
    assert (result["run_dir"] / "best" / "model.safetensors").is_file()
    # each printed "try next" command runs offline on CPU as printed (YOUR_DATA: the demo's
    # data; training with a tiny budget appended, which wins over the printed one)
    monkeypatch.chdir(tmp_path)
    tiny = ["--epochs", "1", "--max-steps-per-epoch", "2", "--no-report", "--wandb", "disabled"]
    for i, command in enumerate(result["next"]):
        argv = shlex.split(command.replace("YOUR_DATA", str(tmp_path / "demo" / "data")))[1:]
        if argv[0] == "train":
            argv += [*tiny, "--workers", "0", "-o", str(tmp_path / f"next{i}")]
        done = CliRunner().invoke(app, argv)
        assert done.exit_code == 0, (command, done.output, done.stderr)
    assert "--no-pretrained" in result["next"][2] and "resnet10t" in result["next"][2]


def test_demo_refuses_to_replace_other_directories(tmp_path):
    (tmp_path / "mine.txt").write_text("x")
    result = CliRunner().invoke(app, ["demo", "-o", str(tmp_path), "--overwrite"])
    assert result.exit_code == 2 and "not a skincls demo directory" in result.stderr


@needs_ham10000
def test_ham10000_training_beats_the_majority_baseline(tmp_path):
    """A lesion-grouped subset, a few epochs: balanced accuracy must beat 1/7 (majority class)."""
    with open(HAM10000 / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    per_class: dict[str, int] = {}
    subset = []
    for r in rows:
        if per_class.get(r["label"], 0) < 120:
            per_class[r["label"]] = per_class.get(r["label"], 0) + 1
            subset.append(r)
    with open(tmp_path / "subset.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "lesion_id"])
        for r in subset:
            w.writerow([str(HAM10000 / r["path"]), r["label"], r["lesion_id"]])
    regions = tmp_path / "regions"
    regions.mkdir()
    (regions / "lesion.yaml").write_text(
        "name: lesion\nclasses: [akiec, bcc, bkl, df, mel, nv, vasc]\n"
    )
    config = build_config(
        dict(
            data=str(tmp_path / "subset.csv"),
            regions_dir=[str(regions)],
            region=["lesion"],
            group_column="lesion_id",
            output=str(tmp_path / "run"),
            backbone="resnet10t",
            pretrained="none",
            image_size=48,
            batch_size=32,
            epochs=3,
            lr=3e-3,
            workers=2,
            wandb="disabled",
            quiet=True,
            seed=0,
        )
    )
    result = train(config)
    assert result.test is not None
    ba = result.test["regions"]["lesion"]["balanced_accuracy"]
    assert ba > 1 / 7 + 0.05, ba
