"""The components of a run, built once from the config, the model and the split: losses from
the training counts, datasets and loaders with their samplers, optimizer, schedule and Engine."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from skincls.core.errors import SkinclsError
from skincls.core.runtime import amp_dtype, compile_backbone
from skincls.data.regions import RegionSpec
from skincls.training.loop import Engine


@dataclass
class Kit:
    """Everything the fit loop needs, built once."""

    engine: Engine
    regions: list[RegionSpec]
    sampler: Any
    train_loader: Any
    val_loader: Any
    eval_transforms: dict[str, Any]
    steps_per_epoch: int
    mean: list[float]
    std: list[float]
    shares: dict[str, dict[str, Any]]
    """Per head, its expected share of the loss and its drawn class shares (``draw_shares``)."""


def build_kit(config: Any, model: nn.Module, regions, parts, device, dctx) -> Kit:
    """Losses from the training counts, datasets and loaders, optimizer, schedule, engine."""
    from skincls.data.dataset import build_transforms
    from skincls.training.optim import create_optimizer, create_scheduler

    data_cfg: dict[str, Any] = model.data_config  # type: ignore[assignment]
    mean, std = list(data_cfg["mean"]), list(data_cfg["std"])
    model, net, dtype, channels_last = _place(config, model, device, dctx)
    eval_tf = build_transforms(regions, "eval", config.image_size, mean, std, config.resize)
    train_tf = build_transforms(regions, "train", config.image_size, mean, std, config.resize)
    sampler, shares, train_loader, val_loader = _loaders(
        config, regions, parts, train_tf, eval_tf, device, dctx
    )
    steps = len(train_loader)
    if config.max_steps_per_epoch:
        steps = min(steps, config.max_steps_per_epoch)
    updates_per_epoch = math.ceil(steps / config.accum_steps)
    optimizer = create_optimizer(
        model, config.lr, config.weight_decay, config.head_lr_mult, config.layer_decay
    )
    ema = _ema(config, model)  # copied before compiling: the EMA stays an eager module
    if config.compile:
        compile_backbone(model, device)
    engine = Engine(
        net=net,
        model=model,
        loss_fns=_loss_fns(config, regions, parts["train"]).to(device),
        names=[r.name for r in regions],
        head_weights=[r.weight for r in regions],
        optimizer=optimizer,
        scheduler=create_scheduler(
            optimizer,
            config.lr,
            config.eta_min,
            updates_per_epoch * config.epochs,
            updates_per_epoch * config.warmup_epochs,
        ),
        scaler=torch.amp.GradScaler(device.type, enabled=dtype == torch.float16),
        device=device,
        dtype=dtype,
        grad_clip=config.grad_clip,
        accum=config.accum_steps,
        channels_last=channels_last,
        on_nan=config.on_nan,
        dctx=dctx,
        ema=ema,
    )
    return Kit(
        engine, regions, sampler, train_loader, val_loader, eval_tf, steps, mean, std, shares
    )


def _ema(config: Any, model: nn.Module) -> Any:
    """timm's ``ModelEmaV3`` with its warm-up (decay 1 - (1 + step)^(-2/3), capped at
    ``--ema-decay``), so short runs average sensibly; None without ``--ema-decay``."""
    if not config.ema_decay:
        return None
    from timm.utils import ModelEmaV3

    return ModelEmaV3(model, decay=config.ema_decay, use_warmup=True)


def _place(config: Any, model: nn.Module, device, dctx):
    """The model on its device (SyncBatchNorm, channels_last where asked) and its DDP wrapper."""
    if dctx.enabled and config.sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    dtype = amp_dtype(config.amp, device)
    channels_last = config.channels_last and device.type == "cuda"
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    net: nn.Module = model
    if dctx.enabled:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(
            model, device_ids=[dctx.local_rank] if device.type == "cuda" else None
        )
    return model, net, dtype, channels_last


def _loss_fns(config: Any, regions, train_samples) -> nn.ModuleDict:
    """One per-sample loss per head, its class weights or priors from the ORIGINAL training
    counts."""
    from skincls.data.samples import label_counts
    from skincls.model.losses import create_loss, loss_of

    counts = label_counts(regions, train_samples)
    return nn.ModuleDict(
        {
            r.name: create_loss(
                loss_of(r, config.loss),
                counts[r.name],
                config.beta,
                config.gamma,
                config.label_smoothing,
                config.tau,
                reduction="none",
            )
            for r in regions
        }
    )


def _loaders(config: Any, regions, parts, train_tf, eval_tf, device, dctx):
    """The epoch sampler, what its draw gives each head, the train loader (this rank's share)
    and the validation loader (None without validation samples)."""
    from skincls.data.dataset import SampleDataset
    from skincls.data.sampler import EpochSampler, EvalSampler, draw_shares, sample_weights
    from skincls.model.inference import make_loader

    names = [r.name for r in regions]
    size = config.image_size
    train_ds = SampleDataset(parts["train"], names, train_tf, size, draft_min=size)
    val_ds = SampleDataset(parts["val"], names, eval_tf, config.image_size)
    weights = sample_weights(
        parts["train"],
        {r.name: r.sampler or config.sampler for r in regions},
        config.region_balance,
    )
    sampler = EpochSampler(
        len(train_ds), weights, config.seed, rank=dctx.rank, world_size=dctx.world_size
    )
    if len(sampler) < 2:
        raise SkinclsError(
            f"{config.data}: the training split has {len(sampler)} sample(s); need 2+"
        )
    bs, workers = config.batch_size, config.workers
    train_loader = make_loader(
        train_ds, sampler, bs, workers, device, len(sampler) >= bs, persistent=True
    )
    val_sampler = EvalSampler(len(val_ds), dctx.rank, dctx.world_size)
    val_loader = make_loader(val_ds, val_sampler, bs, workers, device) if len(val_ds) else None
    shares = draw_shares(parts["train"], weights, regions)
    return sampler, shares, train_loader, val_loader
