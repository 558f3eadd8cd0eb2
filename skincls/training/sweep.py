"""``skincls sweep``: hyperparameter search with Optuna (TPE + median pruning), no server needed.

The study lives in ``<output>/study.db`` (SQLite) unless ``--storage`` names a database URL
(PostgreSQL, MySQL) that several machines share. ``--trials N`` is the total the study should
reach, so rerunning continues where it stopped. Each trial is an ordinary run directory.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from skincls.core.config import build_config
from skincls.core.console import duration
from skincls.core.errors import SkinclsError
from skincls.core.fileio import atomic_write
from skincls.core.names import DEFAULT_SELECT
from skincls.training.callbacks import Callback, EpochEnd
from skincls.training.sweep_space import (
    SearchSpace,
    default_space,
    load_space,
    suggest,
    wandb_sweep_config,
    write_wandb_config,
)

__all__ = [
    "OptunaPruner",
    "load_space",
    "render_sweep",
    "run_sweep",
    "summarize",
    "wandb_sweep_config",
    "write_wandb_config",
]


@dataclass(frozen=True)
class StudyOptions:
    """The Optuna study of a sweep: its search space (default :func:`default_space`), storage
    URL (default ``OUTPUT/study.db``), name, time limit in seconds and sampler seed."""

    space: SearchSpace | None = None
    storage: str | None = None
    study_name: str = "skincls"
    timeout: float | None = None
    seed: int = 0


def run_sweep(
    base: dict[str, Any],
    output: str | Path,
    trials: int,
    options: StudyOptions | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run trials until the study holds ``trials`` finished ones; return the results summary.

    ``base`` holds the fixed train options (as ``skincls train`` takes them); a trial overrides
    only the searched parameters. ``progress`` receives one line when a trial starts and one
    when it ends (its metric, the best so far, elapsed time and an estimate of the rest).
    """
    import optuna

    from skincls.training.train import train

    o = options or StudyOptions()
    if trials < 1:
        raise SkinclsError(f"--trials: expected 1 or more, got {trials}")
    space, storage, study_name, timeout, seed = (
        o.space or default_space(),
        o.storage,
        o.study_name,
        o.timeout,
        o.seed,
    )
    output = Path(output)
    probe = build_config({**base, "output": str(output / "probe")}, "sweep options")  # fail early
    if probe.val_fraction == 0:
        raise SkinclsError(
            "--val-fraction 0: a sweep needs a validation split to choose between trials (it "
            "optimises the validation selection figure); give --val-fraction above 0"
        )
    from skincls.core.names import LOWER_IS_BETTER

    output.mkdir(parents=True, exist_ok=True)
    url = storage or f"sqlite:///{(output / 'study.db').resolve()}"
    direction: Literal["minimize", "maximize"] = (
        "minimize" if base.get("select") in LOWER_IS_BETTER else "maximize"
    )
    with storage_errors(url, given=storage is not None, opening=True):
        study = _study(space, url, study_name, seed, direction)
    todo = max(0, trials - len(_finished(optuna, study)))
    reporter = TrialProgress(todo, str(base.get("select", DEFAULT_SELECT)), progress)

    def objective(trial) -> float:
        params = {name: suggest(trial, name, p) for name, p in space.parameters.items()}
        reporter.started(trial.number, params)
        run_dir = output / f"trial-{trial.number:04d}"
        values = {**base, **params, "output": str(run_dir), "overwrite": True, "report": False}
        config = build_config(values, f"trial {trial.number}")
        trial.set_user_attr("run_dir", str(run_dir))
        result = train(config, callbacks=[OptunaPruner(trial)], wandb_group=study_name)
        return result.served_metric

    with storage_errors(url, given=storage is not None):
        if todo:
            study.optimize(
                objective, n_trials=todo, timeout=timeout, catch=(), callbacks=[reporter]
            )
        return summarize(study, base, output)


DRIVERS = {
    "psycopg": "psycopg[binary]",
    "psycopg2": "psycopg2-binary",
    "MySQLdb": "mysqlclient",
    "pymysql": "PyMySQL",
}
"""Python modules of SQLAlchemy's database drivers and the PyPI package that provides each."""


@contextmanager
def storage_errors(url: str, given: bool, opening: bool = False) -> Iterator[None]:
    """The study database's failures as one clear error naming it: an unparsable URL, a
    driver that is not installed (and the package to install), a folder that does not exist,
    a full disk. ``opening``: also a missing driver or an unsupported URL (raised only while
    the study is opened; later they would come from the trials)."""
    import sqlalchemy.exc

    what = f"--storage {url}" if given else f"the study database {url}"
    if url.startswith("sqlite:///") and not url.endswith(":memory:"):
        folder = Path(url.removeprefix("sqlite:///")).parent
        if not folder.is_dir():
            raise SkinclsError(f"{what}: the folder {folder} does not exist")
    try:
        yield
    except ImportError as err:
        if not opening:
            raise
        module = getattr(err.__cause__ or err.__context__, "name", None)
        install = f" (no module {module}: pip install '{DRIVERS.get(str(module), module)}')"
        raise SkinclsError(
            f"{what}: the database driver is not installed" + (install if module else "")
        ) from None
    except sqlalchemy.exc.ArgumentError:
        raise SkinclsError(
            f"{what}: not a database URL (expected e.g. sqlite:///sweeps/study.db or "
            "postgresql://user:password@host/database)"
        ) from None
    except sqlalchemy.exc.OperationalError as err:
        reason = str(err.orig) if err.orig is not None else str(err).splitlines()[0]
        if "disk is full" in reason:
            raise SkinclsError(f"{what}: cannot write: the disk is full") from None
        raise SkinclsError(f"{what}: the database cannot be used: {reason}") from None
    except ValueError as err:
        if not opening:
            raise
        raise SkinclsError(f"{what}: {err}") from None


def _study(
    space: SearchSpace,
    storage: str,
    name: str,
    seed: int,
    direction: Literal["minimize", "maximize"],
) -> Any:
    """The study (created or continued): TPE sampler, median pruner per validation epoch,
    maximising the selection metric (minimising one where lower is better)."""
    import logging

    import optuna

    optuna.logging.set_verbosity(logging.WARNING)
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        direction=direction,
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(
            n_startup_trials=space.pruner_startup_trials,
            n_warmup_steps=space.pruner_warmup_epochs,
        ),
    )
    # a rerun continues the study with fresh but reproducible suggestions
    study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.trials))
    return study


class OptunaPruner(Callback):
    """Reports each epoch's validation selection metric to the trial and stops the run
    (``optuna.TrialPruned``; the run is marked pruned) when the pruner says so."""

    def __init__(self, trial: Any) -> None:
        self.trial = trial

    def on_epoch_end(self, end: EpochEnd) -> None:
        import optuna

        value = end.record["select"]
        if value is not None:
            self.trial.report(value, end.epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {end.epoch} ({value:.4f})")


class TrialProgress:
    """One line when a trial starts (its parameters) and one when it ends (an Optuna callback):
    its metric, the best so far, elapsed time and an estimate of the rest."""

    def __init__(self, todo: int, metric: str, say: Callable[[str], None] | None) -> None:
        self.todo, self.metric, self.say = todo, metric, say or (lambda line: None)
        self.start, self.done = time.perf_counter(), 0

    def started(self, number: int, params: dict[str, Any]) -> None:
        self.say(f"trial {self.done + 1}/{self.todo} (#{number}) started: {_params(params)}")

    def __call__(self, study: Any, trial: Any) -> None:
        self.done += 1
        elapsed = time.perf_counter() - self.start
        left = elapsed / self.done * (self.todo - self.done)
        value = "" if trial.value is None else f" val {self.metric} {trial.value:.4f}"
        try:
            best = f"best {study.best_value:.4f} (#{study.best_trial.number})"
        except ValueError:
            best = "no complete trial yet"
        self.say(
            f"trial {self.done}/{self.todo} (#{trial.number}) {trial.state.name.lower()}:{value}"
            f" | {best} | {duration(elapsed)} elapsed, eta {duration(left)}"
        )


def _params(params: dict[str, Any]) -> str:
    return " ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()
    )


def _value_shown(trial: Any) -> str:
    """A trial's value as the tables show it: a pruned trial's is the intermediate figure of
    the last epoch it reported, and says so."""
    if trial.value is None:
        return ""
    if trial.state.name == "PRUNED":
        return f"{trial.value:.4f} (intermediate, epoch {len(trial.intermediate_values)})"
    return f"{trial.value:.4f}"


MIN_IMPORTANCE_TRIALS = 5
"""Complete trials below which parameter importances are not shown (a forest fitted on fewer
points ranks noise)."""


def _finished(optuna, study) -> list:
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return [t for t in study.trials if t.state in states]


def summarize(study, base: dict[str, Any], output: Path) -> dict[str, Any]:
    """Trials table data, the best trial, and ``best.yaml`` ready for ``skincls train --config``."""
    import optuna

    rows = [
        {
            "number": t.number,
            "state": t.state.name.lower(),
            "value": t.value,
            "params": t.params,
            "epochs_reported": len(t.intermediate_values),
            "value_shown": _value_shown(t),
            "run_dir": t.user_attrs.get("run_dir"),
        }
        for t in study.trials
    ]
    metric = str(base.get("select", DEFAULT_SELECT))
    from skincls.core.names import LOWER_IS_BETTER

    result: dict[str, Any] = {
        "study": study.study_name,
        "metric": metric,
        "direction": "lower is better" if metric in LOWER_IS_BETTER else "higher is better",
        "trials": rows,
        "best": None,
    }
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if complete:
        best = study.best_trial
        config = {**base, **best.params}
        for key in ("output", "overwrite", "quiet"):
            config.pop(key, None)
        path = output / "best.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        result["best"] = {
            "number": best.number,
            "value": best.value,
            "params": best.params,
            "config": str(path),
            "run_dir": best.user_attrs.get("run_dir"),
        }
        _plots(study, output, result, metric)
    (output / "results.json").write_text(json.dumps(result, indent=2, default=str))
    if base.get("report", True):
        from skincls.serving.report import build_study_report

        try:
            result["report"] = build_study_report(result, output)
        except Exception as err:  # an optional page must never fail a finished study
            result["report_error"] = f"{type(err).__name__}: {err}"
    return result


def _plots(study, output: Path, result: dict[str, Any], metric: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import warnings

    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as vm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ax = vm.plot_optimization_history(study, target_name=f"validation {metric}")
        fig: Any = ax.figure
        fig.set_size_inches(7, 4)
        fig.tight_layout()
        atomic_write(output / "history.png", lambda tmp: fig.savefig(tmp, dpi=100))
        plt.close(fig)
        result["plots"] = [str(output / "history.png")]
        complete = sum(t.state.name == "COMPLETE" for t in study.trials)
        if complete < MIN_IMPORTANCE_TRIALS:
            result["importances"] = (
                f"not shown: {complete} complete trial(s), at least {MIN_IMPORTANCE_TRIALS} needed"
            )
            return
        try:
            ax = vm.plot_param_importances(study, target_name=f"validation {metric}")
            fig = ax.figure
            fig.set_size_inches(7, 4)
            fig.tight_layout()
            atomic_write(output / "importances.png", lambda tmp: fig.savefig(tmp, dpi=100))
            plt.close(fig)
            result["plots"].append(str(output / "importances.png"))
        except (ValueError, RuntimeError):
            pass  # fewer than two distinct completed trials: importances are undefined


def render_sweep(result: dict[str, Any], console: Any) -> None:
    """The trials table (headed by the metric) and the best trial with its retrain command."""
    import shlex

    from rich.table import Table

    def fmt(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else "" if v is None else str(v)

    names = sorted({k for t in result["trials"] for k in t["params"]})
    table = Table(title=f"study {result['study']}: {len(result['trials'])} trials")
    for col in ("#", "state", f"val {result['metric']}", *names):
        table.add_column(col, overflow="fold")
    for t in result["trials"]:
        table.add_row(
            str(t["number"]),
            t["state"],
            t.get("value_shown", ""),
            *(fmt(t["params"].get(n)) for n in names),
        )
    console.print(table)
    if result.get("importances"):
        console.print(f"parameter importances {result['importances']}")
    if result["best"]:
        b = result["best"]
        console.print(
            f"best: trial {b['number']} with validation {result['metric']} {b['value']:.4f}; "
            f"its run: {b['run_dir']}; retrain it with: skincls train --config "
            f"{shlex.quote(b['config'])}"
        )
