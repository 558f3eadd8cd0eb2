"""Overhead of skincls's training step against a minimal hand-written timm loop.

Both loops train the same backbone on the same in-memory batches (no data loading), alternating
blocks of steps in one process so that machine noise hits both alike. The skincls side is the epoch
loop ``skincls train`` runs (``skincls.training.loop.Engine.train_epoch``: host label counts, the
masked per-label loss, the finiteness check, gradient clipping, timm's scheduler stepped per
update, the running loss). Also reports images per second and peak RSS.

    python benchmarks/train_step.py --backbone resnet50 --image-size 128 --batch-size 16
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time

import torch
from torch import nn


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--backbone", default="resnet50")
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--steps", type=int, default=6, help="steps per block")
    p.add_argument("--blocks", type=int, default=4)
    p.add_argument("--clip", type=float, default=1.0, help="gradient norm clip, both loops")
    args = p.parse_args()
    import timm

    from skincls.core.runtime import GracefulStop
    from skincls.model.losses import create_loss
    from skincls.model.network import MultiHeadNet
    from skincls.training.loop import Engine, TrainState
    from skincls.training.optim import create_optimizer, create_scheduler

    torch.manual_seed(0)
    n_classes = 7
    batches = [
        (
            torch.randn(args.batch_size, 3, args.image_size, args.image_size),
            torch.randint(0, n_classes, (args.batch_size,)),
        )
        for _ in range(args.steps)
    ]

    # minimal loop, as timm's train.py steps: model with its own classifier, AdamW,
    # cross-entropy, timm's clipping (--clip-grad) and its scheduler's step_update
    from timm.scheduler import CosineLRScheduler
    from timm.utils import dispatch_clip_grad

    plain = timm.create_model(args.backbone, pretrained=False, num_classes=n_classes)
    plain_opt = torch.optim.AdamW(plain.parameters(), lr=1e-4)
    plain_sched = CosineLRScheduler(plain_opt, t_initial=1000, warmup_t=10, t_in_epochs=False)
    plain_updates = [0]

    def plain_block() -> None:
        plain.train()
        for x, y in batches:
            loss = nn.functional.cross_entropy(plain(x), y)
            plain_opt.zero_grad(set_to_none=True)
            loss.backward()
            if args.clip:
                dispatch_clip_grad(plain.parameters(), args.clip)
            plain_opt.step()
            plain_updates[0] += 1
            plain_sched.step_update(num_updates=plain_updates[0])

    # skincls: MultiHeadNet with one region head, the real training step
    net = MultiHeadNet(args.backbone, ["lesion"], [n_classes], dropout=0.3)
    opt = create_optimizer(net, 1e-4, 1e-4)
    names = ["lesion"]
    engine = Engine(
        net=net,
        model=net,
        loss_fns=nn.ModuleDict({"lesion": create_loss("ce", [1] * n_classes, reduction="none")}),
        names=names,
        head_weights=[1.0],
        optimizer=opt,
        scheduler=create_scheduler(opt, 1e-4, 1e-6, total=1000, warmup=10),
        scaler=torch.amp.GradScaler("cpu", enabled=False),
        device=torch.device("cpu"),
        grad_clip=args.clip,
    )
    state = TrainState()
    ok = torch.ones(args.batch_size, dtype=torch.bool)
    index = torch.arange(args.batch_size)
    loader = [(x, y[:, None], ok, index) for x, y in batches]

    def skincls_block() -> None:
        engine.train_epoch(loader, len(loader), state, GracefulStop())

    plain_block()  # warm-up both
    skincls_block()
    times = {"plain": [], "skincls": []}
    for _ in range(args.blocks):
        for name, block in (("plain", plain_block), ("skincls", skincls_block)):
            t0 = time.perf_counter()
            block()
            times[name].append(time.perf_counter() - t0)
    per_step = {k: sum(v) / (len(v) * args.steps) for k, v in times.items()}
    print(
        json.dumps(
            {
                "backbone": args.backbone,
                "image_size": args.image_size,
                "batch_size": args.batch_size,
                "clip": args.clip,
                "seconds_per_step": per_step,
                "ratio_skincls_over_plain": per_step["skincls"] / per_step["plain"],
                "images_per_second_skincls": args.batch_size / per_step["skincls"],
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "torch": torch.__version__,
                "timm": timm.__version__,
                "threads": torch.get_num_threads(),
                "machine": platform.machine(),
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
