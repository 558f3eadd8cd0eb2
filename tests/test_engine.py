"""The engine's pieces, each alone: state, schedule, optimizer groups, callbacks, run directory."""

import json
import math
import os
import signal

import pytest
import torch
from rich.console import Console

from skincls.core.errors import SkinclsError
from skincls.core.runtime import GracefulStop
from skincls.run.rundir import RunDir
from skincls.training.callbacks import (
    CheckpointSaver,
    ConsoleReporter,
    EpochEnd,
    EpochHook,
    HistoryWriter,
    WandbLogger,
)
from skincls.training.loop import TrainState
from skincls.training.optim import create_optimizer, create_scheduler

from .conftest import tiny_values


def test_train_state_round_trip_and_improvement():
    state = TrainState()
    state.epoch, state.updates = 1, 40
    assert state.improve(0.5) and state.best_epoch == 1
    state.epoch = 2
    assert not state.improve(0.5)  # a tie keeps the earlier epoch
    state.epoch = 3
    assert state.improve(0.7)
    copy = TrainState()
    copy.load_state_dict(json.loads(json.dumps(state.state_dict())))
    assert copy.state_dict() == {"epoch": 3, "updates": 40, "best_metric": 0.7, "best_epoch": 3}


def lrs(total: int, warmup: int, lr: float = 1e-2, eta_min: float = 1e-5) -> list[float]:
    """The learning rate of each update 0..total-1, then the one after the last update."""
    opt = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=lr)
    sched = create_scheduler(opt, lr, eta_min, total, warmup)
    seen = [opt.param_groups[0]["lr"]]
    for n in range(1, total + 1):
        sched.step_update(num_updates=n)
        seen.append(opt.param_groups[0]["lr"])
    return seen


def test_schedule_warms_up_then_reaches_eta_min_exactly_after_the_last_update():
    seen = lrs(total=20, warmup=4)
    assert seen[0] == pytest.approx(1e-2 / 4)  # first update: lr / warmup
    assert seen[3] == pytest.approx(1e-2 * (1 / 4 + 3 * (3 / 4) / 4))  # linear ramp
    assert seen[4] == pytest.approx(1e-2)  # peak at the end of warm-up
    cosine = seen[4:]
    assert all(a >= b for a, b in zip(cosine, cosine[1:], strict=False))
    mid = 4 + 8
    assert seen[mid] == pytest.approx(1e-5 + 0.5 * (1e-2 - 1e-5))  # half-way down the cosine
    assert seen[-1] == 1e-5  # eta_min exactly, after the last update


def test_schedule_without_warmup_and_one_update():
    assert lrs(total=10, warmup=0)[0] == pytest.approx(1e-2)
    assert lrs(total=1, warmup=1)[-1] == 1e-5  # warm-up capped: one update still ends at eta_min


def test_optimizer_groups_exclude_biases_and_norms_from_weight_decay():
    import timm

    model = timm.create_model("test_resnet", num_classes=3)
    opt = create_optimizer(model, 1e-3, 0.05)
    decay = {id(p) for g in opt.param_groups if g["weight_decay"] == 0.05 for p in g["params"]}
    for name, p in model.named_parameters():
        assert (id(p) in decay) == (p.ndim > 1 and not name.endswith(".bias")), name
    assert all(g["lr"] == 1e-3 for g in opt.param_groups)


def end_of(epoch: int, improved: bool, state: TrainState | None = None) -> EpochEnd:
    state = state or TrainState()
    record = {
        "epoch": epoch,
        "lr": 1e-3,
        "train_loss": 0.5,
        "train_images_per_s": 100.0,
        "select": 0.1 * epoch,
    }
    state.history.append(record)
    val = {
        "regions": {
            "forehead_pigmentation": dict.fromkeys(
                ("accuracy", "balanced_accuracy", "macro_f1", "qwk", "grade_mae"), 0.25
            )
        },
        "mean": dict.fromkeys(
            ("accuracy", "balanced_accuracy", "macro_f1", "qwk", "grade_mae"), 0.25
        ),
    }
    return EpochEnd(epoch, record, val, improved, state, seconds=2.0, remaining=125.0)


def test_history_writer_writes_jsonl_and_csv(tmp_path):
    run = RunDir(tmp_path)
    writer = HistoryWriter(run)
    state = TrainState()
    for epoch in (1, 2):
        writer.on_epoch_end(end_of(epoch, True, state))
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    csv_lines = (tmp_path / "metrics.csv").read_text().splitlines()
    assert csv_lines[0].startswith("epoch,lr,train_loss") and len(csv_lines) == 3
    assert run.history() == state.history


def test_checkpoint_saver_keeps_best_only_when_improved(tmp_path):
    from skincls.run.artifacts import CheckpointMeta
    from skincls.run.checkpoints import load_checkpoint

    def meta(end):
        return CheckpointMeta(
            skincls_version="0",
            backbone="b",
            image_size=8,
            mean=[0.0] * 3,
            std=[1.0] * 3,
            regions=[],
            epoch=end.epoch,
            select="ba_f1",
        )

    weights = {"w": torch.zeros(2)}
    saver = CheckpointSaver(
        RunDir(tmp_path),
        weights=lambda: weights,
        meta=meta,
        trainer_state=lambda: {"format": 2},
    )
    saver.on_epoch_end(end_of(1, improved=True))
    weights = {"w": torch.ones(2)}
    saver.on_epoch_end(end_of(2, improved=False))
    best_w, best_meta = load_checkpoint(tmp_path / "best")
    last_w, last_meta = load_checkpoint(tmp_path / "last")
    assert (best_meta["epoch"], best_meta["best"]) == (1, True)
    assert torch.equal(best_w["w"], torch.zeros(2))
    assert (last_meta["epoch"], last_meta["best"]) == (2, False)
    assert torch.equal(last_w["w"], torch.ones(2))
    silent = CheckpointSaver(RunDir(tmp_path / "rank1"), lambda: weights, dict, dict, write=False)
    silent.on_epoch_end(end_of(3, improved=True))
    assert not (tmp_path / "rank1").exists()  # only rank 0 writes


def test_console_reporter_prints_the_epoch_line_and_whole_region_names():
    console = Console(record=True, width=80, markup=False, soft_wrap=True)
    ConsoleReporter(console, epochs=5).on_epoch_end(end_of(2, improved=True))
    text = console.export_text()
    assert "epoch 2/5  loss 0.5000  100.0 img/s  lr 1.00e-03  new best  run eta 2m05s" in text
    assert "forehead_pigmentation" in text and "0.250" in text


def test_wandb_logger_and_epoch_hook():
    logged, called = [], []

    class Tracker:
        def log(self, values, step):
            logged.append((values, step))

    WandbLogger(Tracker()).on_epoch_end(end_of(3, improved=False))
    EpochHook(lambda epoch, record: called.append((epoch, record["select"]))).on_epoch_end(
        end_of(4, improved=False)
    )
    assert logged[0][1] == 3 and logged[0][0]["epoch"] == 3 and logged[0][0]["train_loss"] == 0.5
    assert called == [(4, pytest.approx(0.4))]


def test_graceful_stop_asks_once_then_interrupts_and_restores_handlers():
    before = signal.getsignal(signal.SIGTERM)
    with GracefulStop() as stop:
        stop.check()  # nothing asked yet
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested
        with pytest.raises(KeyboardInterrupt):
            stop.check()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)  # a second signal interrupts at once
    assert signal.getsignal(signal.SIGTERM) == before


def test_run_dir_create_refuses_other_files_and_tracks_status(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("x")
    with pytest.raises(SkinclsError, match="--overwrite only replaces a skincls run"):
        RunDir.create(str(mine), overwrite=True)
    run = RunDir.create(str(tmp_path / "run"), overwrite=False)
    try:
        run.update_status(status="running", wandb_id="abc")
        run.update_status(status="finished")
        assert run.status().model_dump(exclude_defaults=True) == {
            "status": "finished",
            "wandb_id": "abc",
        }
        assert not run.has_checkpoint("last") and not math.isnan(0.0)
    finally:
        run.close()


def test_patience_stops_after_epochs_without_improvement_and_resume_keeps_the_stop(
    tmp_path, tiny_data, tiny_regions, monkeypatch
):
    import json

    import skincls.model.inference as inference
    from skincls.core.config import build_config
    from skincls.training.train import train

    # the validation selection figure per epoch: best at epoch 2, then two epochs without a better one
    values = iter([0.3, 0.5, 0.5, 0.4, 0.9, 0.9])

    def scripted(*args, **kwargs):
        v = next(values, 0.0)
        mean = {"accuracy": v, "balanced_accuracy": v, "macro_f1": v, "ba_f1": v}
        return {"regions": {}, "mean": mean, "bad_indices": []}

    monkeypatch.setattr(inference, "score", scripted)
    out = tmp_path / "run"
    config = build_config(
        tiny_values(
            tiny_data,
            tiny_regions,
            output=str(out),
            epochs=6,
            patience=2,
            max_steps_per_epoch=1,
            test_fraction=0.0,
            ema_decay=0,  # one scored validation per epoch: the script's figures in order
        )
    )
    result = train(config)
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4]  # epochs 5 and 6 never ran
    assert result.best_epoch == 2
    status = json.loads((out / "run.json").read_text())
    assert status["status"] == "finished"
    assert status["stopped_early"] == (
        "no better validation ba_f1 for 2 epoch(s) after epoch 2 (--patience 2)"
    )
    # resuming a run that stopped early trains nothing more
    again = train(config.model_copy(update={"resume": str(out), "overwrite": False}))
    assert len(again.history) == 4
    # without --patience the same metrics run all epochs
    values = iter([0.3, 0.5, 0.5, 0.4, 0.9, 0.9])
    full = train(config.model_copy(update={"patience": 0, "output": str(tmp_path / "full")}))
    assert len(full.history) == 6 and full.best_epoch == 5


def test_heads_learn_faster_and_backbone_layers_decay_towards_the_input():
    from skincls.model.network import MultiHeadNet

    model = MultiHeadNet("test_resnet", ["a", "b"], [3, 2], dropout=0.0)
    opt = create_optimizer(model, 1e-3, 0.05, head_lr_mult=10.0, layer_decay=0.5)
    sched = create_scheduler(opt, 1e-3, 0.0, total=100, warmup=0)
    sched.step_update(num_updates=10)
    heads = {id(p) for p in model.heads.parameters()}
    seen = [id(p) for g in opt.param_groups for p in g["params"]]
    assert sorted(seen) == sorted(id(p) for p in model.parameters())  # each parameter once
    head_groups = [g for g in opt.param_groups if {id(p) for p in g["params"]} <= heads]
    body_groups = [g for g in opt.param_groups if all(g is not h for h in head_groups)]
    assert head_groups and all(g["lr_scale"] == 10.0 for g in head_groups)
    scales = sorted({g["lr_scale"] for g in body_groups})
    assert scales[-1] == 1.0 and scales[0] < 1.0
    assert all(math.log(s, 0.5) == pytest.approx(round(math.log(s, 0.5))) for s in scales)
    # the schedule applies the scales: every group's lr is its scale times one common rate
    rates = {g["lr"] / g["lr_scale"] for g in opt.param_groups}
    cosine = 0.5 * 1e-3 * (1 + math.cos(math.pi * 10 / 100))
    assert max(rates) == pytest.approx(min(rates)) and min(rates) == pytest.approx(cosine)
    # biases and norm weights keep no weight decay, as without the options
    assert all(
        g["weight_decay"] == 0.0 for g in opt.param_groups if all(p.ndim <= 1 for p in g["params"])
    )


def test_head_lr_mult_applies_from_the_first_step():
    from skincls.model.network import MultiHeadNet

    model = MultiHeadNet("test_resnet", ["a"], [3], dropout=0.0)
    opt = create_optimizer(model, 1e-3, 0.0, head_lr_mult=5.0)
    create_scheduler(opt, 1e-3, 0.0, total=10, warmup=0)
    heads = {id(p) for p in model.heads.parameters()}
    for g in opt.param_groups:
        is_head = {id(p) for p in g["params"]} <= heads
        assert g["lr"] == pytest.approx(5e-3 if is_head else 1e-3)


def test_ema_is_validated_beside_the_raw_weights_kept_when_better_and_resumed_exactly(
    tmp_path, tiny_data, tiny_regions
):
    import csv

    from skincls.core.config import build_config
    from skincls.serving.evaluate import EvalOptions, Selection, evaluate
    from skincls.training.train import train

    def config(out, epochs, **kw):
        values = tiny_values(
            tiny_data,
            tiny_regions,
            output=str(out),
            epochs=epochs,
            lr=0.01,
            ema_decay=0.9,
            max_steps_per_epoch=3,
            calibrate=False,  # scored again below as selected: raw probabilities, argmax
            **kw,
        )
        return build_config(values)

    straight = train(config(tmp_path / "straight", 3))
    with open(tmp_path / "straight" / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert all(r["val_ema_ba_f1"] != "" for r in rows)
    best = rows[straight.served_epoch - 1]
    meta = json.loads((tmp_path / "straight" / "best" / "meta.json").read_text())
    assert meta["weights"] == best["selected_weights"] in ("raw", "ema")
    chosen = float(best["val_ema_ba_f1" if meta["weights"] == "ema" else "val_ba_f1"])
    # the best checkpoint holds the weights that were selected: scoring it gives that figure
    again = evaluate(tmp_path / "straight", options=EvalOptions(Selection("val")))
    assert again["mean"]["ba_f1"] == pytest.approx(chosen, abs=1e-9)
    # interrupted after 2 of 3 epochs, then resumed: the EMA ends where the straight run's does
    from skincls.run.rundir import resume_config
    from skincls.training.train import TrainingInterrupted

    def stop_after_two(epoch, record):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted):
        train(config(tmp_path / "resumed", 3), on_epoch_end=stop_after_two)
    train(resume_config(tmp_path / "resumed", {}))
    a = torch.load(tmp_path / "straight" / "last" / "trainer.pt", weights_only=True)["ema"]
    b = torch.load(tmp_path / "resumed" / "last" / "trainer.pt", weights_only=True)["ema"]
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=1e-5)


# No host read per region or per micro-batch on the hot path -----------------------------------


def _host_reads_during_epoch(monkeypatch, heads: int, steps: int, accum: int) -> int:
    """Run ``steps`` micro-batches of a ``heads``-head model and count the tensor-to-host reads
    (``item``, ``tolist``, ``bool``, ``float``, ``int``) made by skincls code."""
    import sys

    from skincls.model.losses import create_loss
    from skincls.model.network import MultiHeadNet
    from skincls.training.loop import Engine

    torch.manual_seed(0)
    names = [f"r{i}" for i in range(heads)]
    model = MultiHeadNet("test_resnet", names, [3] * heads, dropout=0.0)
    optimizer = create_optimizer(model, 1e-3, 0.05)
    engine = Engine(
        net=model,
        model=model,
        loss_fns=torch.nn.ModuleDict(
            {n: create_loss("ce", [1, 1, 1], reduction="none") for n in names}
        ),
        names=names,
        head_weights=[1.0] * heads,
        optimizer=optimizer,
        scheduler=create_scheduler(optimizer, 1e-3, 0.0, total=steps, warmup=0),
        scaler=torch.amp.GradScaler("cpu", enabled=False),
        device=torch.device("cpu"),
        grad_clip=1.0,
        accum=accum,
        log_every=5,
    )
    batches = [
        (
            torch.randn(4, 3, 32, 32),
            torch.randint(0, 3, (4, heads)),
            torch.ones(4, dtype=torch.bool),
            torch.arange(4),
        )
        for _ in range(steps)
    ]
    reads = {"n": 0}

    def counting(method):
        def wrapper(self, *args, **kwargs):
            if sys._getframe(1).f_globals.get("__name__", "").startswith("skincls"):
                reads["n"] += 1
            return method(self, *args, **kwargs)

        return wrapper

    for name in ("item", "tolist", "__bool__", "__float__", "__int__", "__index__"):
        monkeypatch.setattr(torch.Tensor, name, counting(getattr(torch.Tensor, name)))
    engine.train_epoch(batches, steps, TrainState(), GracefulStop())
    monkeypatch.undo()
    return reads["n"]


@pytest.mark.parametrize("accum", [1, 2])
def test_the_step_reads_the_device_once_per_update_whatever_the_number_of_heads(monkeypatch, accum):
    steps = 10
    expected = steps // accum + steps // 5 + 1  # updates, log intervals, the epoch's end
    for heads in (1, 3):
        assert _host_reads_during_epoch(monkeypatch, heads, steps, accum) == expected


def test_compiled_backbone_matches_eager_and_keeps_the_checkpoint_keys():
    import copy

    from skincls.core.runtime import compile_backbone, compile_unavailable
    from skincls.model.network import MultiHeadNet

    reason = compile_unavailable(torch.device("cpu"))
    if reason:
        pytest.skip(f"torch.compile cannot run on this machine's CPU: {reason}")
    torch.manual_seed(0)
    eager = MultiHeadNet("test_resnet", ["a", "b"], [3, 2], dropout=0.0)
    compiled = copy.deepcopy(eager)
    compile_backbone(compiled, torch.device("cpu"))
    assert list(compiled.state_dict()) == list(eager.state_dict())
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    for model in (eager, compiled):
        model.train()
        sum(out.logsumexp(1).sum() for out in model(x)).backward()
    for (name, p), q in zip(eager.named_parameters(), compiled.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-5, msg=name)
    eager.eval(), compiled.eval()
    with torch.no_grad():
        for a, b in zip(eager(x), compiled(x), strict=True):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


def test_compile_that_cannot_run_is_a_clear_error(monkeypatch):
    import shutil

    from skincls.core.runtime import compile_backbone
    from skincls.model.network import MultiHeadNet

    monkeypatch.setattr(shutil, "which", lambda name: None)
    model = MultiHeadNet("test_resnet", ["a"], [3], dropout=0.0)
    with pytest.raises(SkinclsError, match="--compile on cpu: inductor needs a C.. compiler"):
        compile_backbone(model, torch.device("cpu"))


def test_ema_follows_timms_warm_up_arithmetic_by_hand():
    """Three updates with decay 0.9 and warm-up: the EMA is the weights after update 1, then
    d2 * ema + (1 - d2) * weights with d2 = 1 - 2^(-2/3), then d3 = 1 - 3^(-2/3) (both below
    0.9, so the warm-up, not the cap, sets them)."""
    from timm.utils import ModelEmaV3

    from skincls.model.losses import create_loss
    from skincls.model.network import MultiHeadNet
    from skincls.training.loop import Engine

    torch.manual_seed(0)
    model = MultiHeadNet("test_resnet", ["a"], [3], dropout=0.0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    engine = Engine(
        net=model,
        model=model,
        loss_fns=torch.nn.ModuleDict({"a": create_loss("ce", [1, 1, 1], reduction="none")}),
        names=["a"],
        head_weights=[1.0],
        optimizer=optimizer,
        scheduler=create_scheduler(optimizer, 0.5, 0.5, total=10, warmup=0),
        scaler=torch.amp.GradScaler("cpu", enabled=False),
        device=torch.device("cpu"),
        ema=ModelEmaV3(model, decay=0.9, use_warmup=True),
    )
    state = TrainState()
    g = torch.Generator().manual_seed(1)
    weights, expected = [], None
    for step in range(3):
        images = torch.randn(4, 3, 32, 32, generator=g)
        labels = torch.randint(0, 3, (4, 1), generator=g)
        ok = torch.ones(4, dtype=torch.bool)
        engine.train_step(images, labels, ok, [4], state)
        w = model.heads["a"][1].weight.detach().clone()
        weights.append(w)
        d = [0.0, 1 - 2 ** (-2 / 3), 1 - 3 ** (-2 / 3)][step]
        expected = w if expected is None else d * expected + (1 - d) * w
        ema_w = engine.ema.module.heads["a"][1].weight
        torch.testing.assert_close(ema_w, expected, rtol=1e-5, atol=1e-7)
    assert not torch.allclose(weights[0], weights[2])  # the weights really moved


def test_a_one_update_cosine_does_not_warn_the_user(capfd, caplog):
    """timm logs that a cosine over one update has no effect; the user cannot act on it."""
    import logging

    from skincls.training.optim import create_scheduler

    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    with caplog.at_level(logging.WARNING):
        create_scheduler(opt, 1e-3, 1e-6, total=1, warmup=0)
    assert "Cosine annealing" not in capfd.readouterr().err + caplog.text
    assert logging.getLogger("timm.scheduler.cosine_lr").level == logging.NOTSET
