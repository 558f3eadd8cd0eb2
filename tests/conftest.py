import os
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

HAM10000 = Path(__file__).resolve().parents[2] / "shared" / "data" / "ham10000"
needs_ham10000 = pytest.mark.skipif(
    not (HAM10000 / "manifest.csv").is_file(),
    reason=f"HAM10000 data not found at {HAM10000} (it lives in ../shared beside the checkout)",
)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SKINCLS_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory) -> Path:
    """A small graded data set (CSV manifest with region and group columns)."""
    from skincls.data.synthetic import make_demo_data

    root = tmp_path_factory.mktemp("demo")
    counts = {
        "forehead_wrinkle": [12, 40, 20, 8],
        "cheek_pore": [10, 30, 12],
    }
    return make_demo_data(root, counts=counts, size=32, seed=1).parent


@pytest.fixture(scope="session")
def tiny_regions(tmp_path_factory) -> Path:
    """Region files matching ``demo_data``: fewer grades than the built-ins, and no duplicates."""
    d = tmp_path_factory.mktemp("regions")
    (d / "wrinkle.yaml").write_text(
        "name: wrinkle\nclasses: ['0', '1', '2', '3']\nordinal: true\n"
        "augment: {train: [{op: HorizontalFlip, p: 0.5}], eval: []}\n"
    )
    (d / "pore.yaml").write_text(
        "name: pore\nclasses: ['0', '1', '2']\nordinal: true\naugment: {train: [], eval: []}\n"
    )
    return d


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """Graded data for the ``tiny_regions`` (regions ``wrinkle`` and ``pore``)."""
    from skincls.data.synthetic import make_demo_data

    root = tmp_path_factory.mktemp("tiny")
    manifest = make_demo_data(
        root,
        counts={"forehead_wrinkle": [12, 30, 16, 10], "cheek_pore": [10, 24, 12]},
        size=32,
        seed=2,
    )
    text = (
        manifest.read_text()
        .replace(",forehead_wrinkle,", ",wrinkle,")
        .replace(",cheek_pore,", ",pore,")
    )
    manifest.write_text(text)
    return root


def tiny_values(data, regions, **overrides) -> dict:
    """Train options for a tiny, fast CPU run (test_resnet at 32 px, no wandb)."""
    values = dict(
        data=str(data),
        regions_dir=[str(regions)],
        backbone="test_resnet",
        pretrained="none",
        image_size=32,
        batch_size=16,
        epochs=1,
        workers=0,
        wandb="disabled",
        quiet=True,
        report=False,
    )
    values.update(overrides)
    return values


def tiny_cli_args(data, regions, *extra: str) -> list[str]:
    """``skincls train`` arguments for the same tiny run as :func:`tiny_values`."""
    return [
        str(data),
        "--regions-dir",
        str(regions),
        "--backbone",
        "test_resnet",
        "--no-pretrained",
        "--image-size",
        "32",
        "--workers",
        "0",
        "--wandb",
        "disabled",
        "--no-report",
        *extra,
    ]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_data, tiny_regions) -> Path:
    """A trained run directory (test_resnet, 2 short epochs) shared by the deployment tests."""
    from skincls.core.config import build_config
    from skincls.training.train import train

    out = tmp_path_factory.mktemp("runs") / "tiny run"
    config = build_config(
        tiny_values(
            tiny_data,
            tiny_regions,
            output=str(out),
            epochs=2,
            lr=3e-3,
            seed=0,
            max_steps_per_epoch=4,
        )
    )
    return train(config).run_dir


@pytest.fixture
def run_copy(tiny_run, tmp_path) -> Path:
    """A copy of ``tiny_run`` that a test may resume, edit or damage."""
    import shutil

    target = tmp_path / "copy"
    shutil.copytree(tiny_run, target)
    config = target / "config.yaml"
    config.write_text(config.read_text().replace(str(tiny_run), str(target)))
    return target


def resume(run: Path, epochs: int = 3):
    """``skincls train --resume RUN --epochs N`` as the library runs it."""
    from skincls.training.train import train_from_options

    return train_from_options({"resume": str(run), "epochs": epochs})
