import csv
import json
import os
import subprocess
import sys
from collections import Counter

import pytest

from skincls.data.sampler import EpochSampler, sample_weights
from skincls.data.samples import Sample
from skincls.serving.evaluate import EvalOptions, Selection, evaluate

from .conftest import tiny_cli_args


def samples_with(counts):
    out = []
    for label, n in enumerate(counts):
        out += [
            Sample.single(f"k{label}-{i}", "p", ("r", label, str(label)), f"g{label}-{i}")
            for i in range(n)
        ]
    return out


def test_ranks_draw_disjoint_shares_of_one_class_balanced_draw():
    samples = samples_with([500, 60, 20])
    weights = sample_weights(samples, {"r": "class_balanced"})
    ranks = [EpochSampler(len(samples), weights, seed=7, rank=r, world_size=2) for r in (0, 1)]
    for s in ranks:
        s.set_epoch(3)
    draws = [list(s) for s in ranks]
    assert len(draws[0]) == len(draws[1]) == len(ranks[0])
    global_draw = ranks[0].global_draw()
    positions = [set(range(r, len(global_draw), 2)) for r in (0, 1)]
    assert positions[0].isdisjoint(positions[1])
    assert sorted(i for d in draws for i, _ in d) == sorted(global_draw)
    labels = Counter(samples[i].labels[0].index for d in draws for i, _ in d)
    assert all(abs(labels[c] / sum(labels.values()) - 1 / 3) < 0.06 for c in range(3))
    # reproducible for a seed and epoch, different for the next epoch
    again = EpochSampler(len(samples), weights, seed=7, rank=0, world_size=2)
    again.set_epoch(3)
    assert list(again) == draws[0]
    again.set_epoch(4)
    assert list(again) != draws[0]


def test_plain_shuffle_gives_each_rank_distinct_samples():
    ranks = [EpochSampler(100, None, seed=1, rank=r, world_size=2) for r in (0, 1)]
    a, b = ({i for i, _ in s} for s in ranks)
    assert a.isdisjoint(b) and a | b == set(range(100))


def torchrun(args, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "skincls",
        "train",
        *args,
    ]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_two_gloo_processes_train_gather_metrics_and_resume(tmp_path, tiny_data, tiny_regions):
    out = tmp_path / "ddp"
    common = tiny_cli_args(
        tiny_data, tiny_regions, "--batch-size", "8", "--lr", "0.003", "--seed", "5", "--quiet"
    )
    result = torchrun([*common, "--epochs", "2", "-o", str(out)], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((out / "run.json").read_text())["world_size"] == 2
    assert sorted(p.name for p in out.iterdir() if p.name in ("best", "last")) == ["best", "last"]
    assert not [p for p in out.iterdir() if ".tmp" in p.name or p.name.endswith(".old")]
    with open(out / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    # the logged validation metrics are those of ALL validation samples, recomputed here in one
    # process from the saved weights
    single = evaluate(out, options=EvalOptions(Selection("val"), checkpoint="last"))
    with open(out / "split.csv") as fh:
        n_val = sum(1 for r in csv.DictReader(fh) if r["part"] == "val")
    assert sum(m["n"] for m in single["regions"].values()) == n_val
    assert float(rows[-1]["val_balanced_accuracy"]) == pytest.approx(
        single["mean"]["balanced_accuracy"], abs=1e-9
    )
    assert float(rows[-1]["val_macro_f1"]) == pytest.approx(single["mean"]["macro_f1"], abs=1e-9)

    resumed = torchrun(["--resume", str(out), "--epochs", "3"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[0]["train_loss"] == pytest.approx(float(rows[0]["train_loss"]))


def test_bad_image_limit_is_decided_on_the_global_count(tmp_path, tiny_data, tiny_regions):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    images = sorted((data / "images").rglob("*.png"))
    broken = images[::5]
    for p in broken:
        p.write_bytes(p.read_bytes()[:40])
    out = tmp_path / "ddp"
    # one epoch, every image once (no weighted draw): each rank meets about half of the 23 bad
    # images (11 here), below the limit of 17; together they are above it
    limit = 0.15
    args = tiny_cli_args(
        data,
        tiny_regions,
        "--batch-size",
        "8",
        "--sampler",
        "none",
        "--region-balance",
        "none",
        "--val-fraction",
        "0",
        "--test-fraction",
        "0",
        "--max-bad-fraction",
        str(limit),
        "--epochs",
        "1",
        "--quiet",
        "-o",
        str(out),
    )
    result = torchrun(args, tmp_path)
    assert result.returncode != 0
    assert result.stderr.count("cannot be decoded, more than --max-bad-fraction 0.15") == 2
    assert json.loads((out / "run.json").read_text())["status"] == "failed"
    listed = {line.split("\t")[0] for line in (out / "bad_images.txt").read_text().splitlines()}
    assert listed <= {str(p) for p in broken}
    assert len(listed) > limit * len(images)  # more than one rank alone can have seen
