"""Bad input gets one clear error, and nothing a user made is lost (issue: robustness)."""

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from skincls.core.config import build_config
from skincls.core.errors import DataError, RegionSpecError, SkinclsError
from skincls.data.images import ImageReadError, read_image
from skincls.data.manifest import ManifestOptions
from skincls.data.regions import discover_regions, parse_region
from skincls.data.samples import LoadReport
from skincls.data.sources import load_csv, load_data
from skincls.run.checkpoints import load_checkpoint, resolve_checkpoint, save_checkpoint

from .conftest import tiny_cli_args, tiny_values


def make_images(d: Path) -> dict[str, Path]:
    d.mkdir(parents=True, exist_ok=True)
    rgb = Image.new("RGB", (40, 30), (200, 120, 90))
    rgb.save(d / "ok.jpg")
    buf = io.BytesIO()
    rgb.save(buf, "JPEG")
    (d / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (d / "empty.jpg").write_bytes(b"")
    rgb.save(d / "png_named.jpg", "PNG")
    Image.new("CMYK", (40, 30), (10, 50, 0, 20)).save(d / "cmyk.jpg")
    Image.fromarray(np.full((30, 40), 40000, np.uint16)).save(d / "sixteen.png")
    Image.new("L", (40, 30), 128).save(d / "gray.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° on display
    Image.new("RGB", (40, 30), (1, 2, 3)).save(d / "rotated.jpg", exif=exif)
    return {p.stem: p for p in d.iterdir()}


def test_images_decode_where_possible(tmp_path):
    imgs = make_images(tmp_path)
    assert read_image(str(imgs["png_named"])).shape == (30, 40, 3)
    assert read_image(str(imgs["cmyk"])).shape == (30, 40, 3)
    assert read_image(str(imgs["gray"])).shape == (30, 40, 3)
    sixteen = read_image(str(imgs["sixteen"]))
    assert sixteen.dtype == np.uint8 and sixteen.max() == round(40000 / 65535 * 255)
    assert read_image(str(imgs["rotated"])).shape == (40, 30, 3)  # EXIF orientation applied
    for bad in ("truncated", "empty"):
        with pytest.raises(ImageReadError, match="cannot decode"):
            read_image(str(imgs[bad]))
    with pytest.raises(ImageReadError, match="box outside the image"):
        read_image(str(imgs["ok"]), bbox=(100, 100, 120, 120))


def corrupt_run_config(tmp_path, tiny_regions, bad_every, **kw):
    """A manifest where every ``bad_every``-th image is corrupt."""
    from skincls.data.synthetic import make_demo_data

    manifest = make_demo_data(
        tmp_path / "data", counts={"forehead_wrinkle": [20, 20, 20, 20]}, size=32
    )
    text = manifest.read_text().replace(",forehead_wrinkle,", ",wrinkle,")
    manifest.write_text(text)
    rows = text.splitlines()[1:]
    broken = []
    for i, row in enumerate(rows):
        if i % bad_every == 0:
            path = manifest.parent / row.split(",")[0]
            path.write_bytes(path.read_bytes()[:40])
            broken.append(str(path))
    values = tiny_values(
        manifest.parent, tiny_regions, output=str(tmp_path / "run"), warmup_epochs=0
    )
    values.update(kw)
    return build_config(values), broken


def test_training_skips_undecodable_images_and_lists_them(tmp_path, tiny_regions):
    from skincls.training.train import train

    config, broken = corrupt_run_config(tmp_path, tiny_regions, bad_every=5, max_bad_fraction=0.5)
    result = train(config)
    lines = (result.run_dir / "bad_images.txt").read_text().splitlines()
    listed = {line.split("\t")[0] for line in lines}
    assert listed and listed <= set(broken)
    assert all(line.split("\t")[1].startswith("cannot decode") for line in lines)


def test_too_many_bad_images_stop_the_run_with_a_clear_error(tmp_path, tiny_regions):
    from skincls.training.train import train

    config, _ = corrupt_run_config(tmp_path, tiny_regions, bad_every=2, max_bad_fraction=0.05)
    with pytest.raises(SkinclsError, match="cannot be decoded, more than --max-bad-fraction 0.05"):
        train(config)


def test_non_finite_loss_is_skipped_or_stops(tmp_path, tiny_data, tiny_regions, monkeypatch):
    from skincls.training import loop
    from skincls.training import train as T

    real = loop.multitask_loss
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        loss = real(*args, **kwargs)
        return loss * float("nan") if calls["n"] == 2 else loss

    monkeypatch.setattr(loop, "multitask_loss", poisoned)
    base = tiny_values(tiny_data, tiny_regions, warmup_epochs=0)
    result = T.train(build_config({**base, "output": str(tmp_path / "skip")}))
    assert result.history[0]["skipped_nan_steps"] == 1
    assert all(
        torch.isfinite(v).all() for v in load_checkpoint(result.run_dir / "last")[0].values()
    )
    calls["n"] = 0
    with pytest.raises(SkinclsError, match="step 2: loss is nan; stopping \\(--on-nan stop\\)"):
        T.train(build_config({**base, "output": str(tmp_path / "stop"), "on_nan": "stop"}))


def test_bad_label_files_each_get_one_clear_error(tmp_path):
    from skincls.data.synthetic import make_aihub_tree

    root = tmp_path / "aihub"
    jsons = make_aihub_tree(root, n_subjects=1)
    reg = discover_regions(include_entry_points=False)
    cases = [
        ({"info": {"id": "1"}, "images": {"facepart": 1}}, "info.filename: missing"),
        (
            {"info": {"filename": "x.jpg"}, "images": {"facepart": "forehead"}},
            "images.facepart: expected an integer 0..8, got 'forehead'",
        ),
        ({"info": {"filename": "x.jpg"}}, "missing or invalid 'images' object"),
        ([1, 2], "expected a JSON object"),
    ]
    for doc, expected in cases:
        jsons[1].write_text(json.dumps(doc))
        with pytest.raises(DataError) as err:
            load_data(root, reg)
        assert str(jsons[1]) in str(err.value) and expected in str(err.value)


def test_inverted_and_outside_boxes_are_skipped_and_counted(tmp_path):
    from skincls.data.synthetic import make_aihub_tree

    root = tmp_path / "aihub"
    jsons = make_aihub_tree(root, n_subjects=1)
    lip = next(p for p in jsons if p.name.endswith("_07.json"))
    doc = json.loads(lip.read_text())
    doc["images"]["bbox"] = [50, 50, 10, 10]
    lip.write_text(json.dumps(doc))
    ds = load_data(root, discover_regions(include_entry_points=False))
    assert ds.report.skipped["lip_dryness: invalid bbox"] == 1


def test_checkpoint_of_other_regions_gives_a_mismatch_error(tiny_run, tmp_path):
    import shutil

    from skincls.run.load import load_run

    other = tmp_path / "other"
    shutil.copytree(tiny_run, other)
    meta_path = other / "best" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta.pop("settings")  # as written by skincls 0.4: the weights' shapes are the last check
    meta["backbone"] = "resnet10t"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(SkinclsError, match="backbone 'resnet10t' vs config.yaml 'test_resnet'"):
        load_run(other)  # meta.json edited: refused before any weight is used
    config_path = other / "config.yaml"
    config_path.write_text(
        config_path.read_text().replace("backbone: test_resnet", "backbone: resnet10t")
    )
    with pytest.raises(
        SkinclsError,
        match=r"checkpoint does not fit the model: .*unexpected tensor.*shape mismatch\(es\) \(e.g. backbone.bn1.bias: checkpoint \(32,\) vs model \(64,\)\)",
    ):
        load_run(other)
    meta["backbone"] = "test_resnet"
    meta["regions"] = meta["regions"][:1]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(
        SkinclsError, match="(?s)does not match the run's files .*heads and classes"
    ):
        load_run(other)


def test_trainer_state_loads_with_weights_only(tiny_run):
    state = torch.load(tiny_run / "last" / "trainer.pt", weights_only=True)
    assert {"optimizer", "scheduler", "rng", "train_state"} <= set(state)


KILLER = """
import sys, time, torch
from pathlib import Path
from skincls.run.checkpoints import save_checkpoint
target = Path(sys.argv[1])
i = 0
while True:
    i += 1
    save_checkpoint(target, {"w": torch.full((256, 1024), float(i))}, {"epoch": i}, {"epoch": i})
    print(i, flush=True)
"""


def test_kill_9_mid_save_never_leaves_a_checkpoint_that_loads_wrong(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(KILLER)
    target = tmp_path / "ckpt dir" / "last"
    for delay in (0.6, 0.9, 1.3):
        proc = subprocess.Popen([sys.executable, str(script), str(target)], stdout=subprocess.PIPE)
        proc.stdout.readline()  # at least one complete save
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        weights, meta = load_checkpoint(target)
        assert torch.equal(weights["w"], torch.full((256, 1024), float(meta["epoch"])))
        state = torch.load(resolve_checkpoint(target) / "trainer.pt", weights_only=True)
        assert state["epoch"] == meta["epoch"]


def test_sigterm_saves_last_exits_nonzero_and_resume_matches(tmp_path, tiny_data, tiny_regions):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}

    def cli(*extra):
        return [sys.executable, "-m", "skincls", "train", *extra]

    common = tiny_cli_args(
        tiny_data,
        tiny_regions,
        "--batch-size",
        "8",
        "--epochs",
        "3",
        "--seed",
        "2",
        "--lr",
        "0.003",
        "--quiet",
    )
    subprocess.run(
        cli(*common, "-o", str(tmp_path / "full")), env=env, check=True, capture_output=True
    )
    out = tmp_path / "cut 중단"
    proc = subprocess.Popen(
        cli(*common, "-o", str(out)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.time() + 300
    while not (out / "last" / "meta.json").exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    done = json.loads((out / "last" / "meta.json").read_text())["epoch"]
    if done < 3:  # the signal arrived during training, not after the last epoch
        assert proc.returncode == 130, err[-2000:]
        assert "Continue with: skincls train --resume" in err
        assert json.loads((out / "run.json").read_text())["status"] == "interrupted"
        subprocess.run(cli("--resume", str(out)), env=env, check=True, capture_output=True)
    a, _ = load_checkpoint(tmp_path / "full" / "last")
    b, _ = load_checkpoint(out / "last")
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-6), k


region_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 10)
    | st.floats(allow_nan=True)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
region_docs = (
    st.fixed_dictionaries(
        {},
        optional={
            "name": st.sampled_from(["a", "ok_name", "Bad", "", "x" * 70]) | st.text(max_size=5),
            "classes": st.lists(st.text(max_size=3) | st.integers(0, 5), max_size=5)
            | region_values,
            "ordinal": region_values,
            "label_map": st.dictionaries(st.text(max_size=2), st.text(max_size=2), max_size=3)
            | region_values,
            "sources": st.lists(
                st.fixed_dictionaries(
                    {"key": st.text(max_size=4)},
                    optional={"facepart": st.integers(-1, 9), "mirror": region_values},
                ),
                max_size=2,
            )
            | region_values,
            "augment": st.fixed_dictionaries(
                {},
                optional={
                    "train": st.lists(
                        st.fixed_dictionaries(
                            {"op": st.sampled_from(["HorizontalFlip", "Affine", "CLAHE", "Nope"])},
                            optional={"p": region_values, "rotate": region_values},
                        ),
                        max_size=3,
                    )
                },
            )
            | region_values,
            "extra": region_values,
        },
    )
    | region_values
)


@settings(max_examples=300, deadline=None)
@given(region_docs)
def test_region_parser_returns_a_spec_or_a_validation_error(doc):
    try:
        spec = parse_region(doc, "prop.yaml")
    except RegionSpecError as err:
        assert all(p.startswith("prop.yaml") for p in err.problems)
    else:
        assert spec.num_classes >= 2


csv_cells = st.lists(st.sampled_from(list('ab01,"\n .-xy/[]') + ["한", "[/i]"]), max_size=12).map(
    "".join
)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    header=st.lists(
        st.sampled_from(
            ["path", "label", "region", "group", "x1", "y1", "x2", "y2", "mirror", "zz"]
        ),
        max_size=8,
    ),
    rows=st.lists(st.lists(csv_cells, max_size=9), max_size=5),
)
def test_manifest_parser_returns_samples_or_a_data_error(tmp_path, header, rows):
    import csv as _csv

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    manifest = tmp_path / "m.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as fh:
        w = _csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    reg = discover_regions(include_entry_points=False)
    try:
        samples = load_csv(
            manifest,
            reg,
            [reg["cheek_pore"]],
            LoadReport(),
            ManifestOptions(default_region="cheek_pore"),
        )
    except SkinclsError as err:
        assert str(manifest) in str(err)
    else:
        assert all(s.regions == ("cheek_pore",) for s in samples)


def test_checkpoint_save_is_atomic_under_a_leftover_temp_dir(tmp_path):
    target = tmp_path / "best"
    (tmp_path / f".best.tmp{os.getpid()}").mkdir()
    save_checkpoint(target, {"w": torch.ones(2)}, {"epoch": 1})
    assert load_checkpoint(target)[1]["epoch"] == 1


def test_undecodable_images_of_every_part_are_listed_and_counted(tmp_path, tiny_regions, capfd):
    """None is dropped silently: a broken image in the test part joins bad_images.txt with its
    reason and is counted on stderr by train, and evaluate counts its own on stderr."""
    import csv as _csv
    from pathlib import Path

    from typer.testing import CliRunner

    from skincls.cli.root import app
    from skincls.training.train import train

    config, broken = corrupt_run_config(tmp_path, tiny_regions, bad_every=5, max_bad_fraction=0.5)
    train(config.model_copy(update={"quiet": False}))
    said = capfd.readouterr().err
    data = Path(config.data)
    with open(Path(config.output) / "split.csv", newline="", encoding="utf-8") as fh:
        part_of = {str(data / r["key"].split("#")[0]): r["part"] for r in _csv.DictReader(fh)}
    in_test = [p for p in broken if part_of[p] == "test"]
    assert in_test, "the fixture must put a broken image in the test part"
    lines = (Path(config.output) / "bad_images.txt").read_text().splitlines()
    listed = dict(line.split("\t", 1) for line in lines)
    assert set(in_test) <= set(listed)
    assert all(listed[p].startswith("cannot decode") for p in in_test)
    assert f"test: skipped {len(in_test)} image(s) that give no pixels" in said
    result = CliRunner().invoke(app, ["evaluate", config.output, "--json"])
    assert result.exit_code == 0, result.output
    err = result.stderr + capfd.readouterr().err
    assert f"skipped {len(in_test)} image(s) that give no pixels" in err
    assert in_test[0] in err
    assert set(json.loads(result.stdout)["undecodable_reasons"]) == set(in_test)
