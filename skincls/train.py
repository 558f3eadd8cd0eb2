"""Multi-task training: shared backbone, a head and a loss per region, checkpoint and resume.

``train(config)`` is the plain function behind ``skincls train``. Resuming restores the split,
sampler epoch, optimizer, scheduler, scaler, RNG states, epoch and best metric, so on CPU an
interrupted and resumed run ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import csv
import math
import random
import shlex
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from skincls import distributed as D
from skincls.config import RESUME_MUTABLE, TrainConfig, build_config, save_config
from skincls.data.dataset import SampleDataset, build_transforms
from skincls.data.sampler import EpochSampler, EvalSampler, sample_weights
from skincls.data.samples import Dataset
from skincls.data.sources import load_data
from skincls.data.split import load_split, partition, save_split, split_samples
from skincls.errors import SkinclsError
from skincls.losses import SIGMOID_LOSSES, create_loss
from skincls.metrics import evaluate_predictions
from skincls.model import MultiHeadNet, load_backbone_weights
from skincls.regions import RegionRegistry, RegionSpec, discover_regions
from skincls.runs import (
    RunLock,
    atomic_write_json,
    check_meta,
    check_state_matches,
    load_checkpoint,
    load_trainer_state,
    looks_like_run,
    read_history,
    remove_temp_entries,
    resolve_checkpoint,
    run_regions,
    save_checkpoint,
)

EPOCH_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "qwk", "grade_mae")
SHORT = {
    "accuracy": "acc",
    "balanced_accuracy": "bal_acc",
    "macro_f1": "macro_f1",
    "qwk": "qwk",
    "grade_mae": "grade_mae",
}


class TrainingInterrupted(SkinclsError):
    exit_code = 130


@dataclass
class RunResult:
    run_dir: Path
    best_epoch: int
    best_metric: float
    history: list[dict[str, Any]] = field(default_factory=list)
    test: dict[str, Any] | None = None
    select: str = "balanced_accuracy"
    wandb: str = "disabled"

    def next_steps(self) -> list[str]:
        """What the end of ``skincls train`` prints: the selected epoch, where the weights are,
        and the commands to run next (shell-quoted, ready to paste)."""
        run = shlex.quote(str(self.run_dir))
        if self.best_epoch > 0:
            lines = [
                f"best epoch {self.best_epoch} of {len(self.history)} by validation "
                f"{self.select} = {self.best_metric:.4f}; weights in {self.run_dir / 'best'}"
            ]
        else:
            lines = [
                f"no epoch was selected (no validation data); weights in {self.run_dir / 'last'}"
            ]
        lines += [
            "next:",
            f"  skincls evaluate {run}            # figures on the held-out test split",
            f"  skincls export {run}              # one verified ONNX file for apps",
            f"  skincls predict {run} IMAGE...    # grades of new images",
        ]
        offline = sorted((self.run_dir / "wandb").glob("offline-run-*"))
        if self.wandb == "offline" and offline:
            lines.append(
                f"  wandb sync {shlex.quote(str(offline[-1]))}   # upload the offline wandb run"
            )
        return lines


def resolve_device(device: str) -> torch.device:
    if device == "cuda" and not torch.cuda.is_available():
        raise SkinclsError("--device cuda: no CUDA device is available (use --device cpu or auto)")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


def amp_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """bf16 where the GPU supports it, else fp16 (with a grad scaler); no AMP on CPU."""
    if device.type != "cuda" or config.amp == "off":
        return None
    if config.amp == "fp16":
        return torch.float16
    if config.amp == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": list(random.getstate()[1]),
        "python_pos": random.getstate()[2] if random.getstate()[2] is not None else -1,
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    pos = state.get("python_pos", -1)
    random.setstate((3, tuple(state["python"]), None if pos == -1 else pos))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def lr_factor(step: int, warmup_steps: int, total_steps: int, eta_ratio: float) -> float:
    """Linear warm-up to 1, then cosine down to ``eta_ratio`` = eta_min / lr at the last step."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(total_steps - warmup_steps, 1)
    progress = min((step - warmup_steps) / span, 1.0)
    return eta_ratio + (1 - eta_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on biases and normalisation weights (1-d tensors), as timm and the CB code."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for _, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def registry_from_run(run_dir: Path) -> RegionRegistry:
    """The region specs a run was trained with (its own copy, not the current files)."""
    registry = RegionRegistry()
    for spec in run_regions(run_dir):
        registry.add(spec, str(run_dir / "regions" / f"{spec.name}.yaml"))
    return registry


def read_run_config(run_dir: Path) -> TrainConfig:
    from skincls.config import load_config_file

    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise SkinclsError(f"{run_dir}: not a skincls run directory (no config.yaml)")
    return build_config(load_config_file(path), str(path))


def resume_config(run_dir: Path, overrides: dict[str, Any]) -> TrainConfig:
    """The saved config of ``run_dir`` with the allowed ``overrides``; others must not differ."""
    saved = read_run_config(run_dir)
    values = saved.model_dump()
    changed = [k for k, v in overrides.items() if k not in RESUME_MUTABLE and values.get(k) != v]
    if changed:
        raise SkinclsError(
            f"--resume {run_dir}: these options differ from the run and cannot change on resume: "
            + ", ".join(
                f"--{k.replace('_', '-')} (run: {values.get(k)!r}, given: {overrides[k]!r})"
                for k in changed
            )
        )
    values.update({k: v for k, v in overrides.items() if k in RESUME_MUTABLE})
    values["resume"] = str(run_dir)
    values["output"] = str(run_dir)
    return build_config(values)


def _check_output(config: TrainConfig) -> None:
    """Refuse an existing, non-empty --output early, before any data is read."""
    if config.output and Path(config.output).exists() and not Path(config.output).is_dir():
        raise SkinclsError(f"--output {config.output}: is a file; give a directory for the run")
    if config.output and not config.overwrite:
        run_dir = Path(config.output)
        if run_dir.exists() and any(run_dir.iterdir()):
            raise SkinclsError(
                f"--output {run_dir}: directory exists and is not empty; pass --overwrite to "
                f"replace it or --resume {shlex.quote(str(run_dir))} to continue it"
            )


def _new_run_dir(config: TrainConfig) -> Path:
    if config.output:
        run_dir = Path(config.output)
    else:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = Path("runs") / f"{stamp}-{config.backbone}"
    if run_dir.exists() and not run_dir.is_dir():
        raise SkinclsError(f"--output {run_dir}: is a file; give a directory for the run")
    if run_dir.exists() and any(run_dir.iterdir()):
        if not config.overwrite:
            raise SkinclsError(
                f"--output {run_dir}: directory exists and is not empty; pass --overwrite to "
                f"replace it or --resume {shlex.quote(str(run_dir))} to continue it"
            )
        import shutil

        if not looks_like_run(run_dir):
            raise SkinclsError(
                f"--output {run_dir}: --overwrite only replaces a skincls run directory; "
                "this one holds other files"
            )
        with RunLock(run_dir):  # refuses a directory a running process is writing
            pass
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def build_model(
    config: TrainConfig, regions: list[RegionSpec], losses: dict[str, str]
) -> MultiHeadNet:
    hub = config.pretrained == "hub"
    try:
        model = MultiHeadNet(
            config.backbone,
            [r.name for r in regions],
            [r.num_classes for r in regions],
            dropout=config.dropout,
            pretrained=hub,
            sigmoid_regions=[r.name for r in regions if losses[r.name] in SIGMOID_LOSSES],
        )
    except SkinclsError:
        raise
    except Exception as err:
        if hub:
            raise SkinclsError(
                f"--backbone {config.backbone}: cannot get pretrained weights from the hub "
                f"({str(err).split('.')[0][:160]}); pass --pretrained FILE for a local weights "
                "file or --no-pretrained"
            ) from None
        raise
    if config.pretrained not in ("hub", "none"):
        load_backbone_weights(model, config.pretrained)
    return model


def _loss_of(config: TrainConfig, spec: RegionSpec) -> str:
    return spec.loss or config.loss


def _sampler_of(config: TrainConfig, spec: RegionSpec) -> str:
    return spec.sampler or config.sampler


def multitask_loss(
    logits: tuple[torch.Tensor, ...],
    region_idx: torch.Tensor,
    labels: torch.Tensor,
    ok: torch.Tensor,
    loss_fns: nn.ModuleDict,
    region_names: list[str],
    touch_all: bool = False,
) -> torch.Tensor:
    """Sum over regions of each head's loss on its own (decodable) samples only.

    A region with no sample in the batch adds nothing, so its head gets no gradient. With
    ``touch_all`` (DistributedDataParallel) every head joins the graph with weight zero, so
    all ranks reduce the same parameters.
    """
    loss = torch.zeros((), device=labels.device)
    if touch_all:
        loss = loss + sum(lg.float().sum() for lg in logits) * 0.0
    for i, name in enumerate(region_names):
        mask = (region_idx == i) & ok
        n = int(mask.sum())
        if n == mask.numel():  # the whole batch belongs to this head: no gather needed
            loss = loss + loss_fns[name](logits[i], labels)
        elif n:
            loss = loss + loss_fns[name](logits[i][mask], labels[mask])
    return loss


def training_step(
    net: nn.Module,
    model: nn.Module,
    images: torch.Tensor,
    region_idx: torch.Tensor,
    labels: torch.Tensor,
    ok: torch.Tensor,
    loss_fns: nn.ModuleDict,
    names: list[str],
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    scheduler: Any,
    dtype: torch.dtype | None,
    grad_clip: float,
    accum: int = 1,
    last_micro: bool = True,
    dctx: D.DistContext | None = None,
) -> tuple[torch.Tensor, bool]:
    """One micro-batch: forward under autocast, masked multi-task loss, backward, and on the last
    micro-batch of an accumulation group an optimizer and scheduler step (with clipping).

    Returns the loss and whether it was finite on every rank; a non-finite loss changes no weight.
    """
    dctx = dctx or D.DistContext()
    device = images.device
    with D.no_sync(net, skip=not last_micro):
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            logits = net(images)
        loss = multitask_loss(
            logits, region_idx, labels, ok, loss_fns, names, touch_all=dctx.enabled
        )
        finite = D.all_true(bool(torch.isfinite(loss)), dctx, device)
        if not finite:
            optimizer.zero_grad(set_to_none=True)
            if last_micro:
                scheduler.step()
            return loss, False
        if loss.requires_grad:
            scaler.scale(loss / accum).backward()
    if last_micro and not any(p.grad is not None for p in model.parameters()):
        # no decodable image in the whole accumulation group: nothing to step (and a GradScaler
        # would fail with "no inf checks were recorded")
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        return loss, True
    if last_micro:
        if grad_clip > 0:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
    return loss, True


def _collate_to(batch, device, channels_last):
    images, regions, labels, ok, index = batch
    images = images.to(device, non_blocking=True)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images, regions.to(device), labels.to(device), ok.to(device), index


def predict_loader(
    model: MultiHeadNet, loader, device, dtype, channels_last
) -> dict[str, np.ndarray]:
    """Logits of each sample's own region head, plus its region index, label and decode flag."""
    model.eval()
    out: dict[str, list] = {
        "region": [],
        "label": [],
        "pred": [],
        "ok": [],
        "index": [],
        "probs": [],
    }
    with torch.inference_mode():
        for batch in loader:
            images, regions, labels, ok, index = _collate_to(batch, device, channels_last)
            with torch.autocast(
                device.type, dtype=dtype or torch.float32, enabled=dtype is not None
            ):
                logits = model(images)
            preds = torch.zeros_like(labels)
            for i, lg in enumerate(logits):
                mask = regions == i
                if mask.any():
                    preds[mask] = lg[mask].float().argmax(1)
            out["region"].append(regions.cpu())
            out["label"].append(labels.cpu())
            out["pred"].append(preds.cpu())
            out["ok"].append(ok.cpu())
            out["index"].append(index)
    return {k: torch.cat(v).numpy() for k, v in out.items() if v}


def score(
    model, loader, regions: list[RegionSpec], device, dtype, channels_last, dctx=None
) -> dict[str, Any]:
    """Metrics over every sample of ``loader``; under torch.distributed the predictions of all
    ranks are gathered first, so the figures are those of the whole split on every rank."""
    p = predict_loader(model, loader, device, dtype, channels_last)
    if dctx is not None:
        p = D.gather_predictions(p, dctx)
    if not p:
        return {"regions": {}, "mean": {}, "bad": 0}
    keep = p["ok"].astype(bool)
    result = evaluate_predictions(
        [r.name for r in regions],
        {r.name: r.classes for r in regions},
        p["region"][keep],
        p["label"][keep],
        p["pred"][keep],
    )
    result["bad_indices"] = p["index"][~keep].tolist()
    return result


def make_loader(dataset, sampler, config: TrainConfig, device, drop_last: bool = False):
    """A DataLoader over ``(index, seed)`` items; ``drop_last`` avoids a final batch of one,
    which batch normalisation cannot train on."""
    from torch.utils.data import DataLoader

    return DataLoader(
        dataset,
        batch_size=config.batch_size,
        sampler=sampler,
        num_workers=config.workers,
        pin_memory=device.type == "cuda",
        drop_last=drop_last,
        persistent_workers=False,
    )


def _create_run(
    config: TrainConfig, regions: list[RegionSpec], dataset: Dataset, assignment
) -> Path:
    """Make the run directory with the resolved config, region specs and split."""
    import yaml

    run_dir = _new_run_dir(config)
    config = config.model_copy(update={"output": str(run_dir)})
    save_config(config, run_dir / "config.yaml")
    (run_dir / "regions").mkdir(exist_ok=True)
    for r in regions:
        (run_dir / "regions" / f"{r.name}.yaml").write_text(
            yaml.safe_dump(
                r.model_dump(mode="json", exclude_none=True), sort_keys=False, allow_unicode=True
            ),
            encoding="utf-8",
        )
    (run_dir / "regions" / "order.txt").write_text("\n".join(r.name for r in regions) + "\n")
    save_split(run_dir / "split.csv", dataset.samples, assignment)
    return run_dir


def _summary_lines(
    config: TrainConfig, regions: list[RegionSpec], counts: dict[str, list[int]]
) -> list[str]:
    lines = []
    for r in regions:
        loss = _loss_of(config, r)
        sampler = _sampler_of(config, r)
        reweight = loss in ("cb_softmax", "cb_sigmoid", "cb_focal")
        adjust = loss in ("logit_adjust", "balanced_softmax")
        corrections = []
        if sampler != "none":
            corrections.append(f"sampler={sampler}")
        if reweight:
            corrections.append(f"loss weights (CB, beta={config.beta})")
        if adjust:
            corrections.append(f"logit prior ({loss})")
        warn = " [double correction]" if sampler != "none" and (reweight or adjust) else ""
        lines.append(
            f"{r.name}: {r.num_classes} classes, train counts {counts[r.name]}, loss={loss}, "
            f"imbalance corrections: {', '.join(corrections) or 'none'}{warn}"
        )
    lines.append(f"region balance across regions: {config.region_balance}")
    return lines


def train(
    config: TrainConfig,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
    console: Any = None,
    wandb_group: str | None = None,
    show_test: bool = True,
) -> RunResult:
    """Train, validate each epoch, keep ``best/`` and ``last/``, evaluate the best on test
    (its table is printed unless ``show_test`` is False, as ``skincls demo`` prints it itself).

    Under ``torchrun`` every rank trains on its share of each epoch's draw, predictions are
    gathered before metrics are computed, and only rank 0 writes files and logs to wandb.
    """
    dctx = D.init_distributed(config.device)
    held: list[RunLock] = []
    try:
        return _train(config, dctx, on_epoch_end, console, wandb_group, held, show_test)
    finally:
        for lock in held:
            lock.release()
        D.cleanup(dctx)


def _train(
    config: TrainConfig,
    dctx: D.DistContext,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None,
    console: Any,
    wandb_group: str | None,
    held: list[RunLock],
    show_test: bool = True,
) -> RunResult:
    from skincls.console import make_console

    if not dctx.is_main:
        console = make_console(quiet=True)
    console = console or make_console(quiet=config.quiet)  # results: stdout
    notes = make_console(stderr=True, quiet=config.quiet or not dctx.is_main)  # progress, warnings
    if dctx.backend == "nccl":
        device = torch.device("cuda", dctx.local_rank)
    else:
        device = resolve_device("cpu" if dctx.enabled else config.device)
    dtype = amp_dtype(config, device)
    channels_last = config.channels_last and device.type == "cuda"
    resuming = config.resume is not None

    if not resuming:
        if dctx.is_main:
            _check_output(config)
        # absolute paths keep the run usable from any working directory
        config = config.model_copy(
            update={
                "data": str(Path(config.data).resolve()),
                "regions_dir": [str(Path(d).resolve()) for d in config.regions_dir],
                "pretrained": config.pretrained
                if config.pretrained in ("hub", "none")
                else str(Path(config.pretrained).resolve()),
            }
        )
    if resuming:
        run_dir = Path(config.resume)  # type: ignore[arg-type]
        if dctx.is_main:
            held.append(RunLock(run_dir).acquire())
            remove_temp_entries(run_dir)
        registry = registry_from_run(run_dir)
        selected = registry.names()
    else:
        registry = discover_regions(config.regions_dir)
        selected = config.region
        run_dir = None  # created once the data has loaded
    dataset: Dataset = load_data(
        config.data, registry, selected, config.source, config.group_column, config.skip_bad
    )
    regions = dataset.regions
    # the model is built before the run directory exists, so a failure (e.g. no hub access)
    # leaves nothing behind
    seed_everything(config.seed)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    losses_of = {r.name: _loss_of(config, r) for r in regions}
    model = build_model(config, regions, losses_of)
    if resuming:
        assert run_dir is not None
        assignment = load_split(run_dir / "split.csv", dataset.samples)
    else:
        split_seed = config.seed if config.split_seed is None else config.split_seed
        assignment = split_samples(dataset.samples, config.fractions, split_seed)
        created: tuple[str, str] | None = None
        if dctx.is_main:
            try:
                created = ("ok", str(_create_run(config, regions, dataset, assignment)))
            except SkinclsError as err:
                created = ("error", str(err))
        created = D.broadcast(created, dctx)
        assert created is not None
        if created[0] == "error":
            raise SkinclsError(created[1])
        run_dir = Path(created[1])
        if dctx.is_main:
            held.append(RunLock(run_dir).acquire())
        config = config.model_copy(update={"output": str(run_dir)})
    assert run_dir is not None
    parts = partition(dataset.samples, assignment)
    train_samples, val_samples = parts["train"], parts["val"]
    if not train_samples:
        raise SkinclsError(f"{config.data}: the training split is empty")
    counts = dataset.counts(train_samples)

    data_cfg = model.data_config
    mean, std = data_cfg["mean"], data_cfg["std"]
    if dctx.enabled and config.sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    net: nn.Module = model
    if dctx.enabled:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(
            model, device_ids=[dctx.local_rank] if device.type == "cuda" else None
        )
    loss_fns = nn.ModuleDict(
        {
            r.name: create_loss(
                losses_of[r.name],
                counts[r.name],
                config.beta,
                config.gamma,
                config.label_smoothing,
                config.tau,
            )
            for r in regions
        }
    ).to(device)

    train_ds = SampleDataset(
        train_samples,
        [r.name for r in regions],
        build_transforms(regions, "train", config.image_size, mean, std),
        config.image_size,
    )
    eval_tf = build_transforms(regions, "eval", config.image_size, mean, std)
    val_ds = SampleDataset(val_samples, [r.name for r in regions], eval_tf, config.image_size)
    weights = sample_weights(
        train_samples, {r.name: _sampler_of(config, r) for r in regions}, config.region_balance
    )
    sampler = EpochSampler(
        len(train_samples), weights, config.seed, rank=dctx.rank, world_size=dctx.world_size
    )
    if len(sampler) < 2:
        raise SkinclsError(
            f"{config.data}: the training split has {len(sampler)} sample(s); need 2+"
        )
    train_loader = make_loader(
        train_ds, sampler, config, device, drop_last=len(sampler) >= config.batch_size
    )
    val_loader = make_loader(
        val_ds, EvalSampler(len(val_ds), dctx.rank, dctx.world_size), config, device
    )

    steps_per_epoch = len(train_loader)
    if config.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, config.max_steps_per_epoch)
    accum = config.accum_steps
    updates_per_epoch = math.ceil(steps_per_epoch / accum)
    total_steps = updates_per_epoch * config.epochs
    warmup_steps = updates_per_epoch * config.warmup_epochs
    optimizer = torch.optim.AdamW(param_groups(model, config.weight_decay), lr=config.lr)
    eta_ratio = config.eta_min / config.lr
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, warmup_steps, total_steps, eta_ratio)
    )
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)

    start_epoch, best_metric, best_epoch, wandb_id = 0, -math.inf, -1, None
    history: list[dict[str, Any]] = []
    run_info_path = run_dir / "run.json"
    write = dctx.is_main
    last = run_dir / "last"
    if resuming and not _has_checkpoint(last):
        console.print(f"{run_dir}: no epoch was completed before; starting from epoch 1")
    elif resuming:
        weights_state, meta = load_checkpoint(last)
        check_meta(meta, str(resolve_checkpoint(last)), config.model_dump(), regions)
        check_state_matches(model.state_dict(), weights_state, str(resolve_checkpoint(last)))
        model.load_state_dict(weights_state)
        state = load_trainer_state(last)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"])
        start_epoch = int(state["epoch"]) + 1
        best_metric = float(state["best_metric"])
        best_epoch = int(state["best_epoch"])
        history = read_history(run_dir)[:start_epoch]
        wandb_id = _read_json(run_info_path).get("wandb_id")
        if start_epoch >= config.epochs:
            console.print(f"{run_dir}: already trained {start_epoch} of {config.epochs} epochs")

    from skincls.tracking import Tracker

    tracker = Tracker(
        config.wandb if write else "disabled",
        run_dir,
        config.model_dump(mode="json"),
        config.wandb_project,
        config.wandb_entity,
        config.wandb_name,
        config.wandb_tags,
        run_id=wandb_id,
        group=wandb_group,
    )
    if write:
        atomic_write_json(
            run_info_path,
            {
                "wandb_id": tracker.run_id,
                "wandb_mode": config.wandb,
                "status": "running",
                "device": str(device),
                "world_size": dctx.world_size,
                "amp": str(dtype) if dtype else "off",
                "skincls_version": _version(),
                "torch_version": torch.__version__,
            },
        )

    console.print(
        f"run {run_dir}  device={device} amp={dtype or 'off'} "
        f"backbone={config.backbone} train={len(train_samples)} val={len(val_samples)} "
        f"test={len(parts['test'])}"
    )
    for line in _summary_lines(config, regions, counts):
        console.print("  " + line)
    console.print(
        f"  batch: {config.batch_size} per rank x {dctx.world_size} rank(s) x {accum} "
        f"accumulation step(s) = global batch {config.batch_size * dctx.world_size * accum}"
    )

    bad_paths: dict[str, str] = {}
    names = [r.name for r in regions]
    interrupted = {"flag": False}

    def _on_signal(signum, frame):  # first signal: finish cleanly at the next step boundary
        if interrupted["flag"]:
            raise KeyboardInterrupt
        interrupted["flag"] = True

    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    in_main_thread = _is_main_thread()
    if in_main_thread:
        for s in previous:
            signal.signal(s, _on_signal)
    exit_code = 0
    epoch_times: list[float] = []
    try:
        for epoch in range(start_epoch, config.epochs):
            sampler.set_epoch(epoch)
            net.train()
            t0 = time.perf_counter()
            seen, loss_sum, loss_n, skipped_nan = 0, 0.0, 0, 0
            progress = _progress(notes, config.quiet)
            optimizer.zero_grad(set_to_none=True)
            with progress:
                task = progress.add_task(
                    f"epoch {epoch + 1}/{config.epochs}", total=steps_per_epoch, info=""
                )
                for step, batch in enumerate(train_loader):
                    if step >= steps_per_epoch:
                        break
                    if interrupted["flag"]:
                        raise KeyboardInterrupt
                    images, region_idx, labels, ok, index = _collate_to(
                        batch, device, channels_last
                    )
                    if not bool(ok.all()):
                        for i in index[~ok.cpu()].tolist():
                            _note_bad(bad_paths, train_samples[i])
                        if not dctx.enabled:  # under torchrun: decided on the global count
                            _check_bad_fraction(bad_paths, len(train_samples), config)
                    last_micro = (step + 1) % accum == 0 or step + 1 == steps_per_epoch
                    loss, finite = training_step(
                        net,
                        model,
                        images,
                        region_idx,
                        labels,
                        ok,
                        loss_fns,
                        names,
                        optimizer,
                        scaler,
                        scheduler,
                        dtype,
                        config.grad_clip,
                        accum,
                        last_micro,
                        dctx,
                    )
                    if not finite:
                        if config.on_nan == "stop":
                            raise SkinclsError(
                                f"epoch {epoch + 1} step {step + 1}: loss is {loss.item()}; "
                                "stopping (--on-nan stop). Lower --lr or check the data."
                            )
                        skipped_nan += 1
                        continue
                    seen += images.shape[0]
                    loss_sum += float(loss.detach())
                    loss_n += 1
                    rate = seen / max(time.perf_counter() - t0, 1e-9)
                    progress.update(
                        task, advance=1, info=f"loss {loss_sum / loss_n:.4f}  {rate:.1f} img/s"
                    )
            train_time = time.perf_counter() - t0
            total_loss, total_n, total_seen = D.reduce_sum([loss_sum, loss_n, seen], dctx, device)
            if skipped_nan:
                notes.print(
                    f"epoch {epoch + 1}: skipped {skipped_nan} step(s) with a non-finite loss",
                    style="yellow",
                )
            val = (
                score(model, val_loader, regions, device, dtype, channels_last, dctx)
                if len(val_ds)
                else None
            )
            for i in (val or {}).get("bad_indices", []):
                _note_bad(bad_paths, val_samples[i])
            bad_paths.update(D.merge_dicts(bad_paths, dctx))
            _check_bad_fraction(bad_paths, len(train_samples), config)
            selected_value = (
                val["mean"][config.select]
                if val and not math.isnan(val["mean"][config.select])
                else float(epoch)
            )
            record = {
                "epoch": epoch + 1,
                "lr": optimizer.param_groups[0]["lr"],
                "train_loss": total_loss / max(total_n, 1),
                "train_images_per_s": total_seen / max(train_time, 1e-9),
                "skipped_nan_steps": skipped_nan,
                "select": selected_value,
            }
            if val:
                for k in EPOCH_METRICS:
                    record[f"val_{k}"] = val["mean"][k]
                for name, m in val["regions"].items():
                    for k in EPOCH_METRICS:
                        record[f"val_{name}_{k}"] = m[k]
            improved = selected_value > best_metric
            if improved:
                best_metric, best_epoch = selected_value, epoch + 1
            history.append(record)
            if write:
                _write_history(run_dir, history)
                meta = _meta(config, regions, mean, std, epoch + 1, record, data_cfg)
                trainer_state = {
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                    "rng": _rng_state(),
                    "epoch": epoch,
                    "best_metric": best_metric,
                    "best_epoch": best_epoch,
                    "sampler": sampler.state_dict(),
                    "world_size": dctx.world_size,
                }
                state_dict = model.state_dict()
                if improved:
                    save_checkpoint(
                        run_dir / "best", state_dict, {**meta, "best": True}, trainer_state
                    )
                save_checkpoint(run_dir / "last", state_dict, meta, trainer_state)
            D.barrier(dctx)
            tracker.log(
                {k: v for k, v in record.items() if k != "epoch"} | {"epoch": epoch + 1},
                step=epoch + 1,
            )
            epoch_times.append(time.perf_counter() - t0)
            remaining = (config.epochs - epoch - 1) * sum(epoch_times) / len(epoch_times)
            _print_epoch(console, epoch + 1, config, record, val, improved, remaining)
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1, record)
    except KeyboardInterrupt:
        exit_code = 130
        if write:
            atomic_write_json(run_info_path, {**_read_json(run_info_path), "status": "interrupted"})
        kept = (
            f"{run_dir / 'last'} holds the last completed epoch ({len(history)})"
            if history
            else "no epoch was completed"
        )
        raise TrainingInterrupted(
            f"interrupted; {kept}. Continue with: skincls train --resume "
            f"{shlex.quote(str(run_dir))}"
        ) from None
    except BaseException as err:
        exit_code = 1
        status = "pruned" if type(err).__name__ == "TrialPruned" else "failed"
        if write:
            atomic_write_json(
                run_info_path, {**_read_json(run_info_path), "status": status, "error": str(err)}
            )
        raise
    finally:
        if in_main_thread:
            for s, h in previous.items():
                signal.signal(s, h)
        if bad_paths and write:
            _write_bad_images(run_dir, bad_paths)
            notes.print(_bad_summary(bad_paths, run_dir), style="yellow")
        if exit_code:
            tracker.finish(exit_code=1)

    test_result = None
    test_samples = parts["test"]
    if test_samples and best_epoch > 0:
        weights_state, _ = load_checkpoint(run_dir / "best")
        model.load_state_dict(weights_state)
        test_ds = SampleDataset(test_samples, names, eval_tf, config.image_size)
        test_sampler = EvalSampler(len(test_ds), dctx.rank, dctx.world_size)
        test_loader = make_loader(test_ds, test_sampler, config, device)
        test_result = score(model, test_loader, regions, device, dtype, channels_last, dctx)
        test_result.pop("bad_indices", None)
        test_result.update({"split": "test", "checkpoint": "best", "epoch": best_epoch})
        if write:
            atomic_write_json(run_dir / "evaluation.json", test_result)
        for name, m in test_result["regions"].items():
            r = next(x for x in regions if x.name == name)
            tracker.log_confusion(name, r.classes, m["confusion_matrix"], step=len(history))
        tracker.summary({f"test/{k}": v for k, v in test_result["mean"].items()})
        if show_test:
            _print_eval(console, "test (best checkpoint)", test_result)
    if write:
        atomic_write_json(
            run_info_path,
            {
                **_read_json(run_info_path),
                "status": "finished",
                "best_epoch": best_epoch,
                "best_metric": best_metric,
            },
        )
    tracker.finish()
    return RunResult(
        run_dir, best_epoch, best_metric, history, test_result, config.select, config.wandb
    )


def _has_checkpoint(directory: Path) -> bool:
    return any(p.exists() for p in (directory, directory.with_name(f"{directory.name}.old")))


def _version() -> str:
    from skincls import __version__

    return __version__


def _is_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _read_json(path: Path) -> dict[str, Any]:
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _note_bad(bad: dict[str, str], sample: Any) -> None:
    """Record why ``sample`` gave no pixels (read again here: failures are rare)."""
    from skincls.data.images import ImageReadError, read_image

    if sample.path in bad:
        return
    try:
        read_image(sample.path, sample.bbox, sample.mirror)
        bad[sample.path] = "cannot decode (failed in a data loader worker)"
    except ImageReadError as err:
        bad[sample.path] = str(err)


def _write_bad_images(run_dir: Path, bad: dict[str, str]) -> None:
    from skincls.runs import atomic_write_text

    atomic_write_text(run_dir / "bad_images.txt", "".join(f"{p}\t{bad[p]}\n" for p in sorted(bad)))


def _bad_summary(bad: dict[str, str], run_dir: Path) -> str:
    from collections import Counter

    reasons = Counter(r.split(":", 1)[0] for r in bad.values())
    parts = ", ".join(f"{n} {reason}" for reason, n in reasons.most_common())
    return f"skipped {len(bad)} image(s) that give no pixels ({parts}); list in {run_dir / 'bad_images.txt'}"


def _check_bad_fraction(bad: dict[str, str], total: int, config: TrainConfig) -> None:
    """Stop the run (every rank alike: ``bad`` is global under torchrun) over the limit; the
    list is written by the caller's ``finally``."""
    if len(bad) > config.max_bad_fraction * total:
        raise SkinclsError(
            f"{len(bad)} of {total} training images cannot be decoded, more than "
            f"--max-bad-fraction {config.max_bad_fraction}; list in {config.output}/bad_images.txt"
        )


def _meta(config, regions, mean, std, epoch, record, data_cfg) -> dict[str, Any]:
    return {
        "skincls_version": _version(),
        "backbone": config.backbone,
        "image_size": config.image_size,
        "mean": list(mean),
        "std": list(std),
        "interpolation": data_cfg.get("interpolation", "bilinear"),
        "regions": [{"name": r.name, "classes": r.classes, "ordinal": r.ordinal} for r in regions],
        "losses": {r.name: _loss_of(config, r) for r in regions},
        "epoch": epoch,
        "select": config.select,
        "metric": record["select"],
        "dropout": config.dropout,
    }


def _write_history(run_dir: Path, history: list[dict[str, Any]]) -> None:
    import io
    import json

    from skincls.runs import atomic_write_text

    atomic_write_text(run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in history))
    columns: list[str] = []
    for r in history:
        columns += [k for k in r if k not in columns]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns)
    w.writeheader()
    w.writerows(history)
    atomic_write_text(run_dir / "metrics.csv", buf.getvalue())


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def _progress(console, quiet):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=quiet or not console.is_terminal,
    )


def _print_epoch(console, epoch, config, record, val, improved, remaining: float = 0.0) -> None:
    from rich.table import Table

    title = (
        f"epoch {epoch}/{config.epochs}  loss {record['train_loss']:.4f}  "
        f"{record['train_images_per_s']:.1f} img/s  lr {record['lr']:.2e}"
        + ("  new best" if improved else "")
        + (f"  run eta {_duration(remaining)}" if remaining > 0 else "")
    )
    if not val:
        console.print(title)
        return
    console.print(title)
    table = Table()
    table.add_column("val region", min_width=max(map(len, val["regions"]), default=4), no_wrap=True)
    for k in EPOCH_METRICS:
        table.add_column(SHORT[k], justify="right")
    for name, m in val["regions"].items():
        table.add_row(name, *(f"{m[k]:.3f}" for k in EPOCH_METRICS))
    table.add_row("mean", *(f"{val['mean'][k]:.3f}" for k in EPOCH_METRICS), style="bold")
    console.print(table)


def _print_eval(console, title, result) -> None:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    table.add_column("region", min_width=max(map(len, result["regions"]), default=4), no_wrap=True)
    table.add_column("n", justify="right")
    for k in EPOCH_METRICS:
        table.add_column(SHORT[k], justify="right")
    for name, m in result["regions"].items():
        table.add_row(name, str(m["n"]), *(f"{m[k]:.3f}" for k in EPOCH_METRICS))
    table.add_row("mean", "", *(f"{result['mean'][k]:.3f}" for k in EPOCH_METRICS), style="bold")
    console.print(table)


def train_from_options(options: dict[str, Any], config_file: str | None = None) -> RunResult:
    """Merge defaults < config file < ``options`` (only those given), then train or resume."""
    from skincls.config import load_config_file

    values: dict[str, Any] = {}
    if config_file:
        values.update(load_config_file(config_file))
    values.update(options)
    resume = values.get("resume")
    if resume:
        overrides = {k: v for k, v in values.items() if k != "resume"}
        config = resume_config(Path(resume), overrides)
    else:
        if not values.get("data"):
            raise SkinclsError("DATA: missing; give the data path (or use --resume RUN)")
        config = build_config(values, config_file or "options")
    return train(config)
