"""Developer sessions: tests, lint, typecheck, demo and the benchmarks."""

import nox

nox.options.reuse_venv = "yes"
nox.options.sessions = ["tests", "lint"]


@nox.session
def tests(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("pytest", "-q", *session.posargs, env={"WANDB_MODE": "offline"})


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "format", "--check", "skincls", "tests", "benchmarks", "noxfile.py")
    session.run("ruff", "check", "skincls", "tests", "benchmarks", "noxfile.py", *session.posargs)


@nox.session
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("mypy", "skincls", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    session.install("-e", ".")
    session.run("skincls", "demo", *session.posargs)


@nox.session
def bench_quality(session: nox.Session) -> None:
    session.install("-e", ".")
    session.run("python", "benchmarks/quality.py", *session.posargs)


@nox.session
def bench_speed(session: nox.Session) -> None:
    session.install("-e", ".")
    for script in ("startup.py", "index.py", "train_step.py", "loader.py"):
        session.run("python", f"benchmarks/{script}", *session.posargs)
