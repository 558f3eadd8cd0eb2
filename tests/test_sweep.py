import json

import optuna
import pytest
import yaml
from typer.main import get_command
from typer.testing import CliRunner

from skincls.cli.root import app
from skincls.core.config import build_config, load_config_file
from skincls.core.errors import SkinclsError
from skincls.training.sweep import StudyOptions, load_space, run_sweep, wandb_sweep_config
from skincls.training.train import train

from .conftest import tiny_cli_args, tiny_values

runner = CliRunner()


def base(data, regions):
    return tiny_values(data, regions, max_steps_per_epoch=3, warmup_epochs=0, seed=4)


SPACE = {
    "parameters": {
        "lr": {"type": "loguniform", "low": 1e-4, "high": 1e-2},
        "loss": {"type": "categorical", "choices": ["ce", "cb_softmax"]},
    }
}


def test_sweep_resumes_and_its_best_config_reproduces(tmp_path, tiny_data, tiny_regions):
    space_file = tmp_path / "space.yaml"
    space_file.write_text(yaml.safe_dump(SPACE))
    out = tmp_path / "sweep"
    args = [
        "sweep",
        *tiny_cli_args(
            tiny_data,
            tiny_regions,
            "--batch-size",
            "16",
            "--epochs",
            "1",
            "--max-steps-per-epoch",
            "3",
            "--warmup-epochs",
            "0",
            "--seed",
            "4",
            "--config",
            str(space_file),
            "-o",
            str(out),
            "--trials",
            "3",
            "--json",
        ),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    first = json.loads(result.stdout)
    assert (out / "study.db").is_file() and len(first["trials"]) == 3
    assert all((out / f"trial-{i:04d}" / "config.yaml").is_file() for i in range(3))
    result = runner.invoke(app, args[:-3] + ["--trials", "4", "--json"])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["trials"]) == 4
    best = json.loads((out / "results.json").read_text())["best"]
    assert (out / "history.png").is_file()
    config = load_config_file(best["config"])
    assert config["lr"] == best["params"]["lr"] and config["epochs"] == 1
    again = train(build_config({**config, "output": str(tmp_path / "again")}))
    assert again.best_metric == pytest.approx(best["value"], abs=1e-9)


def test_pruning_stops_a_clearly_worse_trial(tmp_path, tiny_regions):
    from skincls.data.synthetic import make_demo_data

    manifest = make_demo_data(
        tmp_path / "data", counts={"forehead_wrinkle": [60] * 4, "cheek_pore": [60] * 3}, size=32
    )
    manifest.write_text(
        manifest.read_text()
        .replace(",forehead_wrinkle,", ",wrinkle,")
        .replace(",cheek_pore,", ",pore,")
    )
    storage = f"sqlite:///{tmp_path / 'p.db'}"
    study = optuna.create_study(study_name="p", storage=storage, direction="maximize")
    # two trials that learn, then one that cannot (lr 1e-9): it stays at chance and is pruned
    study.enqueue_trial({"lr": 3e-3})
    study.enqueue_trial({"lr": 3e-3})
    study.enqueue_trial({"lr": 1e-9})
    space = load_space(None).model_validate(
        {
            "parameters": {"lr": {"type": "loguniform", "low": 1e-9, "high": 1e-2}},
            "pruner_warmup_epochs": 0,
            "pruner_startup_trials": 2,
        }
    )
    values = {
        **base(manifest.parent, tiny_regions),
        "epochs": 4,
        "max_steps_per_epoch": None,
        "eta_min": 0.0,
        "report": True,
    }
    result = run_sweep(values, tmp_path / "s", 3, StudyOptions(space, storage, "p"))
    states = [t["state"] for t in result["trials"]]
    assert states == ["complete", "complete", "pruned"]
    assert result["trials"][2]["epochs_reported"] < 4
    assert result["trials"][0]["value"] > 0.5
    assert (
        json.loads((tmp_path / "s" / "trial-0002" / "run.json").read_text())["status"] == "pruned"
    )
    pruned = result["trials"][2]
    epochs = pruned["epochs_reported"]
    assert pruned["value_shown"] == f"{pruned['value']:.4f} (intermediate, epoch {epochs})"
    assert result["trials"][0]["value_shown"] == f"{result['trials'][0]['value']:.4f}"
    assert result["importances"] == ("not shown: 2 complete trial(s), at least 5 needed")
    html = (tmp_path / "s" / "report.html").read_text()
    assert f"(intermediate, epoch {epochs})" in html and "higher is better" in html
    lr = f"{result['trials'][2]['params']['lr']:.4g}"
    assert f"<td>{lr}</td>" in html and "at least 5 needed" in html


def test_search_space_errors_name_the_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump(
            {
                "parameters": {
                    "lr": {"type": "loguniform", "low": 1e-2, "high": 1e-4},
                    "colour": {"type": "categorical", "choices": [1]},
                    "loss": {"type": "categorical", "choices": ["hinge"]},
                }
            }
        )
    )
    with pytest.raises(SkinclsError) as err:
        load_space(bad)
    msg = str(err.value)
    assert "parameters.lr: low (0.01) must be below high (0.0001)" in msg


def test_unknown_search_parameter(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump({"parameters": {"colour": {"type": "categorical", "choices": [1]}}})
    )
    with pytest.raises(SkinclsError, match="parameters.colour: not a searchable train option"):
        load_space(bad)
    bad.write_text(
        yaml.safe_dump({"parameters": {"loss": {"type": "categorical", "choices": ["hinge"]}}})
    )
    with pytest.raises(SkinclsError, match="parameters.loss: choice 'hinge'"):
        load_space(bad)


def test_wandb_sweep_yaml_command_parses_with_the_real_cli(tmp_path, tiny_data, tiny_regions):
    out = tmp_path / "wandb.yaml"
    result = runner.invoke(
        app,
        [
            "sweep",
            str(tiny_data),
            "--regions-dir",
            str(tiny_regions),
            "--epochs",
            "3",
            "--wandb-config",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    doc = yaml.safe_load(out.read_text())
    assert doc["method"] == "bayes" and doc["metric"]["name"] == "val_ba_f1"
    sampled = {
        "lr": 3e-4,
        "dropout": 0.4,
        "weight-decay": 1e-5,
        "gamma": 2.0,
        "beta": 0.99,
        "loss": "cb_focal",
        "sampler": "sqrt",
    }
    assert set(doc["parameters"]) == set(sampled)
    argv = []
    for tok in doc["command"]:
        if tok == "${args}":
            argv += [f"--{k}={v}" for k, v in sampled.items()]
        elif tok != "${env}":
            argv.append(tok)
    assert argv[0] == "skincls"
    group = get_command(app)
    ctx = group.make_context("skincls", argv[1:2] + ["--help"] * 0, resilient_parsing=True)
    train_cmd = group.get_command(ctx, "train")
    sub = train_cmd.make_context("train", argv[2:], parent=ctx)
    assert sub.params["lr"] == 3e-4 and sub.params["weight_decay"] == 1e-5
    assert sub.params["loss"] == "cb_focal" and sub.params["sampler"] == "sqrt"
    assert sub.params["epochs"] == 3 and sub.params["data"] == str(tiny_data)


def test_wandb_config_from_library_is_stable():
    doc = wandb_sweep_config(["data.csv"])
    assert doc["parameters"]["lr"] == {
        "distribution": "log_uniform_values",
        "min": 1e-5,
        "max": 1e-3,
    }
    assert doc["parameters"]["dropout"] == {"values": [0.2, 0.3, 0.4, 0.5]}
