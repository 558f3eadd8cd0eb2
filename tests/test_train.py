import csv
import json

import pytest
import torch
from typer.testing import CliRunner

from skincls.cli.root import app
from skincls.core.config import build_config
from skincls.core.errors import SkinclsError
from skincls.model.network import MultiHeadNet
from skincls.run.checkpoints import load_checkpoint
from skincls.run.rundir import read_history
from skincls.training.train import TrainingInterrupted, train

from .conftest import tiny_cli_args, tiny_values

runner = CliRunner()


def tiny_config(data, regions, out, **kw):
    values = tiny_values(
        data,
        regions,
        output=str(out),
        epochs=4,
        lr=3e-3,
        warmup_epochs=1,
        seed=3,
        max_steps_per_epoch=4,
    )
    values.update(kw)
    return build_config(values)


def test_forward_returns_one_logits_tensor_per_region_in_order():
    model = MultiHeadNet("test_resnet", ["a", "b"], [4, 3], dropout=0.1)
    out = model(torch.randn(5, 3, 32, 32))
    assert [tuple(o.shape) for o in out] == [(5, 4), (5, 3)]


def test_sigmoid_losses_start_at_the_prior_bias():
    model = MultiHeadNet("test_resnet", ["a"], [7], sigmoid_regions=["a"])
    assert model.heads["a"][1].bias.tolist() == pytest.approx(
        [-torch.log(torch.tensor(6.0)).item()] * 7
    )


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path, tiny_data, tiny_regions):
    full = train(tiny_config(tiny_data, tiny_regions, tmp_path / "full"))

    def stop_after_two(epoch, record):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted, match="resume"):
        train(tiny_config(tiny_data, tiny_regions, tmp_path / "cut"), on_epoch_end=stop_after_two)
    assert json.loads((tmp_path / "cut" / "run.json").read_text())["status"] == "interrupted"
    _, meta = load_checkpoint(tmp_path / "cut" / "last")
    assert meta["epoch"] == 2
    from skincls.run.rundir import resume_config

    resumed = train(resume_config(tmp_path / "cut", {}))
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3, 4]
    a, _ = load_checkpoint(full.run_dir / "last")
    b, _ = load_checkpoint(resumed.run_dir / "last")
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-6), k
    assert full.best_epoch == resumed.best_epoch
    assert full.history[-1]["train_loss"] == pytest.approx(
        resumed.history[-1]["train_loss"], abs=1e-6
    )


def test_resume_refuses_changed_options(tmp_path, tiny_data, tiny_regions):
    train(tiny_config(tiny_data, tiny_regions, tmp_path / "r", epochs=1))
    from skincls.run.rundir import resume_config

    with pytest.raises(SkinclsError, match=r"--lr \(run: 0.003, given: 0.1\)"):
        resume_config(tmp_path / "r", {"lr": 0.1})


def test_serve_epoch_best_keeps_the_best_validation_epoch(tmp_path, tiny_data, tiny_regions):
    result = train(
        tiny_config(
            tiny_data,
            tiny_regions,
            tmp_path / "sel",
            epochs=3,
            select="macro_f1",
            serve_epoch="best",
        )
    )
    with open(result.run_dir / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    scores = [float(r["val_macro_f1"]) for r in rows]
    best = max(range(3), key=lambda i: (scores[i], -i)) + 1
    _, meta = load_checkpoint(result.run_dir / "best")
    assert meta["epoch"] == best == result.best_epoch == result.served_epoch
    assert {
        "config.yaml",
        "split.csv",
        "metrics.csv",
        "metrics.jsonl",
        "best",
        "last",
        "regions",
        "evaluation.json",
        "run.json",
    } <= {p.name for p in result.run_dir.iterdir()}
    state = torch.load(result.run_dir / "last" / "trainer.pt", weights_only=True)
    assert state["train_state"]["epoch"] == 3 and "optimizer" in state  # after the 3rd epoch


def test_the_default_serves_the_last_epoch_raw_or_ema_whichever_validates_better(
    tmp_path, tiny_data, tiny_regions
):
    result = train(tiny_config(tiny_data, tiny_regions, tmp_path / "last", epochs=3))
    rows = read_history(result.run_dir)
    last = rows[-1]
    raw, ema = last["val_ba_f1"], last["val_ema_ba_f1"]
    _, meta = load_checkpoint(result.run_dir / "best")
    assert meta["epoch"] == 3 == result.served_epoch
    assert meta["weights"] == ("ema" if ema > raw else "raw")
    assert meta["metric"] == pytest.approx(max(raw, ema)) == pytest.approx(result.served_metric)
    best = max(range(3), key=lambda i: (rows[i]["select"], -i)) + 1
    assert result.best_epoch == best
    status = json.loads((result.run_dir / "run.json").read_text())
    assert status["served_epoch"] == 3 and status["best_epoch"] == best
    scored = json.loads((result.run_dir / "evaluation.json").read_text())
    assert scored["epoch"] == 3  # the test figures are the served weights'


def test_the_served_epoch_default_follows_patience_and_a_resumed_run():
    from skincls.training.recipe import resolve_recipe

    plain, notes = resolve_recipe(build_config({"data": "d"}), 1)
    assert plain.serve_epoch == "last" and "serving the last epoch" in notes[-1]
    patient, notes = resolve_recipe(build_config({"data": "d", "patience": 3}), 1)
    assert patient.serve_epoch == "best" and "--patience" in notes[-1]
    given, _ = resolve_recipe(build_config({"data": "d", "patience": 3, "serve_epoch": "last"}), 1)
    assert given.serve_epoch == "last"


def test_next_steps_say_which_epoch_is_served(tmp_path):
    from skincls.training.train import RunResult

    history = [{"epoch": i, "val_ba_f1": 0.5} for i in range(1, 7)]
    last = RunResult(tmp_path, 4, 0.61, 6, 0.58, history).next_steps()[0]
    assert last.startswith("serving epoch 6 of 6 (the last; the best was epoch 4 with 0.6100)")
    assert "ba_f1 = 0.5800" in last and str(tmp_path / "best") in last
    best = RunResult(tmp_path, 4, 0.61, 4, 0.61, history).next_steps()[0]
    assert best.startswith("serving epoch 4 of 6 (the best), validation ba_f1 = 0.6100")
    both = RunResult(tmp_path, 6, 0.63, 6, 0.63, history).next_steps()[0]
    assert both.startswith("serving epoch 6 of 6 (the last and the best), validation")
    # without a validation split the selection figure is only the epoch's number: not shown
    unvalidated = [{"epoch": i} for i in range(1, 7)]
    none = RunResult(tmp_path, 6, 6.0, 6, 6.0, unvalidated).next_steps()[0]
    assert (
        none
        == f"serving epoch 6 of 6 (the last; no validation split); weights in {tmp_path / 'best'}"
    )


def test_existing_output_is_not_overwritten(tmp_path, tiny_data, tiny_regions):
    out = tmp_path / "keep"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(SkinclsError, match="exists and is not empty; pass --overwrite"):
        train(tiny_config(tiny_data, tiny_regions, out, epochs=1))
    with pytest.raises(SkinclsError, match="only replaces a skincls run directory"):
        train(tiny_config(tiny_data, tiny_regions, out, epochs=1, overwrite=True))
    assert (out / "notes.txt").read_text() == "mine"


def test_cli_train_with_config_file_then_evaluate_json(tmp_path, tiny_data, tiny_regions):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        f"data: {tiny_data}\nregions_dir: [{tiny_regions}]\nbackbone: test_resnet\n"
        "pretrained: none\nimage-size: 32\nbatch_size: 16\nepochs: 2\nlr: 0.01\nworkers: 0\n"
        "wandb: disabled\nmax_steps_per_epoch: 3\nloss: cb_focal\n"
    )
    out = tmp_path / "run dir 한글"
    result = runner.invoke(
        app, ["train", "--config", str(cfg), "--lr=0.002", "-o", str(out), "--quiet"]
    )
    assert result.exit_code == 0, result.output
    import yaml

    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["lr"] == 0.002 and saved["epochs"] == 2 and saved["loss"] == "cb_focal"
    result = runner.invoke(app, ["evaluate", str(out), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["split"] == "test"
    with open(out / "split.csv") as fh:
        test_rows = [r for r in csv.DictReader(fh) if r["part"] == "test"]
    assert sum(m["n"] for m in doc["regions"].values()) == len(test_rows)
    for _name, m in doc["regions"].items():
        for k in ("accuracy", "balanced_accuracy", "macro_f1", "qwk", "grade_mae"):
            assert k in m
        for k in ("accuracy", "balanced_accuracy", "macro_f1"):
            assert 0.0 <= m[k] <= 1.0
        c = len(m["per_class"])
        assert len(m["confusion_matrix"]) == c and all(len(r) == c for r in m["confusion_matrix"])
        assert sum(map(sum, m["confusion_matrix"])) == m["n"]
        assert set(next(iter(m["per_class"].values()))) == {"precision", "recall", "f1", "support"}
    assert set(doc["mean"]) >= {"accuracy", "balanced_accuracy", "macro_f1", "qwk"}


def test_cli_reports_bad_options_without_traceback(tmp_path, tiny_data, tiny_regions):
    result = runner.invoke(
        app,
        [
            "train",
            str(tiny_data),
            "--regions-dir",
            str(tiny_regions),
            "--loss",
            "hinge",
            "-o",
            str(tmp_path / "x"),
        ],
    )
    assert result.exit_code == 2
    assert "Invalid value for '--loss'" in result.stderr
    assert "'hinge' is not one of 'ce', 'focal'" in result.stderr
    assert "Traceback" not in result.output


def test_wandb_offline_run_is_written_and_resumed_under_the_same_id(
    tmp_path, tiny_data, tiny_regions
):
    out = tmp_path / "wb"

    def stop(epoch, record):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted):
        train(
            tiny_config(tiny_data, tiny_regions, out, epochs=2, wandb="offline"), on_epoch_end=stop
        )
    run_id = json.loads((out / "run.json").read_text())["wandb_id"]
    from skincls.run.rundir import resume_config

    train(resume_config(out, {}))
    assert json.loads((out / "run.json").read_text())["wandb_id"] == run_id
    runs = sorted((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all(r.name.endswith(run_id) for r in runs)
    assert all((r / f"run-{run_id}.wandb").stat().st_size > 0 for r in runs)


def test_the_default_learning_rate_follows_the_global_batch():
    """timm's rule for AdamW: 9e-4 x sqrt(global batch / 32) when fine-tuning (1.4e-3 x ...
    from scratch); a given --lr is kept."""
    from skincls.training.recipe import resolve_recipe

    values = dict(data="d", batch_size=16, accum_steps=2, pretrained="hub")
    config, notes = resolve_recipe(build_config(values), world_size=4)  # 16 x 4 x 2 = 128 images
    assert config.lr == pytest.approx(1.8e-3) and "global batch 128 / 32" in notes[0]
    config, _ = resolve_recipe(build_config({**values, "batch_size": 8}), world_size=1)
    assert config.lr == pytest.approx(6.36e-4)  # 9e-4 x sqrt(16 / 32) = 9e-4 x 0.7071, 3 digits
    scratch, notes = resolve_recipe(build_config({**values, "pretrained": "none"}), 4)
    assert scratch.lr == pytest.approx(2.8e-3) and "from scratch" in notes[0]  # 1.4e-3 x 2
    given, notes = resolve_recipe(build_config({**values, "lr": 0.01}), world_size=4)
    assert given.lr == 0.01 and not any("lr" in n for n in notes)
    with pytest.raises(SkinclsError, match="--eta-min"):
        resolve_recipe(build_config({**values, "eta_min": 0.01}), world_size=1)


def test_the_weight_ema_is_on_in_both_regimes_unless_given():
    from skincls.training.recipe import resolve_recipe

    scratch, notes = resolve_recipe(build_config({"data": "d", "pretrained": "none"}), 1)
    assert scratch.ema_decay == 0.999 and "--ema-decay 0 turns it off" in notes[1]
    tuned, notes = resolve_recipe(build_config({"data": "d", "pretrained": "hub"}), 1)
    assert tuned.ema_decay == 0.999 and "the default fine-tuning" in notes[1]
    off, _ = resolve_recipe(build_config({"data": "d", "pretrained": "none", "ema_decay": 0}), 1)
    assert off.ema_decay == 0.0


def test_a_run_records_and_resumes_with_the_learning_rate_it_resolved(
    tmp_path, tiny_data, tiny_regions
):
    import yaml

    from skincls.run.rundir import resume_config
    from skincls.training.recipe import resolve_recipe

    out = tmp_path / "auto"
    args = tiny_cli_args(tiny_data, tiny_regions, "--batch-size", "8", "--accum-steps", "2")
    args = [a for a in args if a != "--quiet"]
    result = runner.invoke(app, ["train", *args, "-o", str(out), "--max-steps-per-epoch", "2"])
    assert result.exit_code == 0, result.output
    # from scratch (--no-pretrained): 1.4e-3 x sqrt(16 / 32) = 9.9e-4
    assert "lr 0.00099: 0.0014 x sqrt(global batch 16 / 32) (the AdamW default from scratch" in (
        result.output
    )
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["lr"] == pytest.approx(9.9e-4) and saved["ema_decay"] == 0.999
    assert resume_config(out, {}).lr == pytest.approx(9.9e-4)
    # a resume given without them (the library, not the CLI) takes what the run started with
    given = build_config({"data": "d", "pretrained": "none", "resume": str(out), "lr": None})
    again = resolve_recipe(given, world_size=8)[0]
    assert again.lr == pytest.approx(9.9e-4) and again.ema_decay == 0.999
    assert saved["serve_epoch"] == "last" == again.serve_epoch
    # a run from before --serve-epoch (no such key in its config.yaml) served its best epoch
    del saved["serve_epoch"]
    (out / "config.yaml").write_text(yaml.safe_dump(saved))
    assert resolve_recipe(given, world_size=8)[0].serve_epoch == "best"


def test_resume_with_more_epochs_extends_the_schedule_and_records_it(
    tmp_path, tiny_data, tiny_regions, capsys
):
    import math

    import yaml

    out = tmp_path / "r"
    short = train(tiny_config(tiny_data, tiny_regions, out, epochs=2))
    eta_min = 1e-6
    assert short.history[-1]["lr"] == pytest.approx(eta_min)
    from skincls.run.rundir import resume_config

    capsys.readouterr()
    train(resume_config(out, {"epochs": 4, "quiet": False}))
    said = "".join(capsys.readouterr())
    assert "--epochs 4 extends the run's schedule of 2 epochs: from epoch 3 on" in said
    history = read_history(out)
    # 4 updates an epoch, the first epoch a warm-up: a 4-epoch cosine over 12 updates after it;
    # the learning rate after epoch 3 (update 12) is the cosine at 8 of 12, not the 2-epoch floor
    cosine_8_of_12 = eta_min + 0.5 * (3e-3 - eta_min) * (1 + math.cos(math.pi * 8 / 12))
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    assert history[2]["lr"] == pytest.approx(cosine_8_of_12, rel=1e-6)
    assert history[3]["lr"] == pytest.approx(eta_min)
    assert yaml.safe_load((out / "config.yaml").read_text())["epochs"] == 4
    assert json.loads((out / "run.json").read_text())["schedules"] == [
        {"epochs": 2, "from_epoch": 1},
        {"epochs": 4, "from_epoch": 3},
    ]
    train(resume_config(out, {"quiet": False}))
    assert "already trained 4 of 4 epochs" in "".join(capsys.readouterr())


def test_callbacks_hear_how_the_fit_ended_and_the_config_is_frozen(
    tmp_path, tiny_data, tiny_regions
):
    from pydantic import ValidationError

    from skincls.training.callbacks import Callback

    class Ends(Callback):
        def __init__(self):
            self.epochs, self.ends = [], []

        def on_epoch_end(self, end):
            self.epochs.append(end.epoch)

        def on_fit_end(self, status):
            self.ends.append(status)

    done = Ends()
    train(tiny_config(tiny_data, tiny_regions, tmp_path / "done", epochs=2), callbacks=[done])
    assert (done.epochs, done.ends) == ([1, 2], ["finished"])

    def cut(epoch, record):
        if epoch == 1:
            raise KeyboardInterrupt

    stopped = Ends()
    with pytest.raises(TrainingInterrupted):
        train(
            tiny_config(tiny_data, tiny_regions, tmp_path / "cut", epochs=2),
            on_epoch_end=cut,
            callbacks=[stopped],
        )
    assert (stopped.epochs, stopped.ends) == ([1], ["interrupted"])
    config = tiny_config(tiny_data, tiny_regions, tmp_path / "x")
    with pytest.raises(ValidationError, match="frozen"):
        config.epochs = 9


def test_without_a_validation_split_no_figure_is_made_up(tmp_path, tiny_data, tiny_regions, capsys):
    """--val-fraction 0: the last epoch is served and said to be; no selection figure is
    recorded anywhere (the epoch number stood in for it before), and a sweep is refused."""
    import yaml

    from skincls.training.sweep import run_sweep

    out = tmp_path / "noval"
    config = tiny_config(
        tiny_data, tiny_regions, out, epochs=2, val_fraction=0.0, report=True, quiet=False
    )
    capsys.readouterr()
    result = train(config)
    said = "".join(capsys.readouterr())
    assert "epoch 2/2" in said and "new best" not in said
    assert [r["select"] for r in read_history(out)] == [None, None]
    with open(out / "metrics.csv", newline="") as fh:
        assert [row["select"] for row in csv.DictReader(fh)] == ["", ""]
    status = json.loads((out / "run.json").read_text())
    assert (status["served_epoch"], status["best_metric"], status["served_metric"]) == (
        2,
        None,
        None,
    )
    assert json.loads((out / "best" / "meta.json").read_text())["metric"] is None
    assert result.next_steps()[0].startswith("serving epoch 2 of 2 (the last; no validation split)")
    html = (out / "report.html").read_text()
    assert "there is no validation split" in html and "the best by validation" not in html
    base = yaml.safe_load((out / "config.yaml").read_text())
    with pytest.raises(SkinclsError, match="--val-fraction 0: a sweep needs a validation split"):
        run_sweep({**base, "overwrite": True}, tmp_path / "sweep", 2)
