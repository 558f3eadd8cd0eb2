"""The yardstick of issue 19: a plain hand-written timm loop on the quality benchmark's split.

What a user would write in a notebook: resnet10t from scratch, AdamW (weight decay 0.05) with a
one-cycle schedule peaking at 2e-3, batch 64, no augmentation, the whole image resized to the
input square, cross-entropy with a class-balanced sampler (weights 1 / class count), every
non-test image (the split's train and validation parts: no model selection), the last epoch
scored on the split's test part. The split is the one ``skincls train`` makes for the quality
benchmark (lesion-grouped, 70/15/15, split seed 0), so the test images are the same.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import numpy as np
import torch


def split_parts(data: Path, regions_dir: Path, group_column: str = "lesion_id") -> dict:
    """The quality benchmark's train/val/test samples (the split ``skincls train`` makes)."""
    from skincls.data.regions import discover_regions
    from skincls.data.sources import ReadOptions, load_data
    from skincls.data.split import partition, split_samples

    dataset = load_data(
        data, discover_regions([regions_dir]), ["lesion"], ReadOptions("csv", group_column)
    )
    return partition(dataset.samples, split_samples(dataset.samples, (0.7, 0.15, 0.15), 0))


class _Images(torch.utils.data.Dataset):
    def __init__(self, samples, size: int, mean, std):
        self.samples, self.size = samples, size
        self.mean = np.array(mean, np.float32)[:, None, None]
        self.std = np.array(std, np.float32)[:, None, None]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        from PIL import Image

        s = self.samples[i]
        img = Image.open(s.path).convert("RGB").resize((self.size, self.size), Image.BILINEAR)
        x = np.asarray(img, np.float32).transpose(2, 0, 1) / 255.0
        return torch.from_numpy((x - self.mean) / self.std), s.labels[0].index


SKINCLS_PIECES = ("optim", "schedule", "weight_decay", "clip", "dropout", "data", "no_augment")
"""What a loop variant can take from ``skincls train``'s recipe, to find what costs the default
its macro F1: ``optim`` (AdamW with weight decay 1e-4 off biases and norms, a cosine schedule
with one warm-up epoch to ``--eta-min`` 1e-6: :mod:`skincls.training.optim`), or one half of it:
``schedule`` (the cosine with its warm-up; weight decay 0.05 on every parameter as the loop) or
``weight_decay`` (1e-4 off biases and norms; the loop's one-cycle schedule), ``clip`` (gradient
norm clipped at 1.0), ``dropout`` (0.3 before the classifier), ``data`` (skincls's dataset and
transforms: the default flip + affine recipe, resize ``crop``, JPEG draft decoding),
``no_augment`` (with ``data``: an empty train recipe, so only the resize and the decoding)."""


def _skincls_images(samples, size: int, mean, std, split: str, augment: bool = True):
    from skincls.data.dataset import SampleDataset, build_transforms
    from skincls.data.regions import RegionSpec

    recipe = {} if augment else {"augment": {"train": [], "eval": []}}
    region = RegionSpec(name="lesion", classes=[str(i) for i in range(7)], **recipe)
    tf = build_transforms([region], split, size, mean, std, "crop")
    ds = SampleDataset(samples, ["lesion"], tf, size, draft_min=size if split == "train" else None)

    class _Labelled(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(ds)

        def __getitem__(self, i: int):
            image, labels, _, _ = ds[(i, int(torch.randint(2**31 - 1, ())))]
            return image, int(labels[0])

    return _Labelled()


def run_minimal(
    seed: int,
    data: Path,
    regions_dir: Path,
    args,
    train_only: bool = False,
    pieces: tuple[str, ...] = (),
) -> dict:
    """Train and score the minimal loop; the quality benchmark's row for ``minimal_loop``
    (``train_only``: on the split's train part alone, the images ``skincls train`` learns from,
    instead of train + validation; ``pieces``: what it takes from skincls, see
    :data:`SKINCLS_PIECES`)."""
    import timm
    from timm.data import resolve_data_config

    from skincls.core.metrics import region_metrics

    t0 = time.perf_counter()
    parts = split_parts(data, regions_dir)
    train = parts["train"] if train_only else parts["train"] + parts["val"]
    torch.manual_seed(seed)
    model = timm.create_model(
        args.backbone,
        pretrained=False,
        num_classes=7,
        drop_rate=0.3 if "dropout" in pieces else 0.0,
    )
    cfg = resolve_data_config({}, model=model)
    if "data" in pieces:
        augment = "no_augment" not in pieces
        train_set = _skincls_images(
            train, args.image_size, cfg["mean"], cfg["std"], "train", augment
        )
        test_set = _skincls_images(parts["test"], args.image_size, cfg["mean"], cfg["std"], "eval")
    else:
        train_set = _Images(train, args.image_size, cfg["mean"], cfg["std"])
        test_set = _Images(parts["test"], args.image_size, cfg["mean"], cfg["std"])
    labels = np.array([s.labels[0].index for s in train])
    weights = 1.0 / np.bincount(labels, minlength=7)[labels]
    sampler = torch.utils.data.WeightedRandomSampler(
        torch.as_tensor(weights, dtype=torch.double),
        len(train),
        generator=torch.Generator().manual_seed(seed),
    )
    loader = torch.utils.data.DataLoader(
        train_set,
        batch_size=args.batch_size,
        sampler=sampler,
        num_workers=args.workers,
        drop_last=True,
    )
    total = args.epochs * len(loader)
    from skincls.training.optim import create_optimizer, create_scheduler

    cosine = bool({"optim", "schedule"} & set(pieces))
    if {"optim", "weight_decay"} & set(pieces):
        opt = create_optimizer(model, 2e-3 if cosine else 1e-3, 1e-4)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=2e-3 if cosine else 1e-3, weight_decay=0.05)
    if cosine:
        sched = create_scheduler(opt, 2e-3, 1e-6, total, len(loader))
    else:
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=total)
    updates = 0
    for _ in range(args.epochs):
        model.train()
        for x, y in loader:
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            if "clip" in pieces:
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            updates += 1
            if cosine:
                sched.step_update(updates)
            else:
                sched.step()
    model.eval()
    test = torch.utils.data.DataLoader(test_set, batch_size=128)
    pred, true = [], []
    with torch.no_grad():
        for x, y in test:
            pred += model(x).argmax(1).tolist()
            true += y.tolist()
    return {
        "metrics": region_metrics(true, pred, [str(i) for i in range(7)]),
        "seconds": time.perf_counter() - t0,
    }


class _OneCycle:
    """torch's ``OneCycleLR`` behind the ``step_update`` of timm's schedulers."""

    def __init__(self, optimizer, max_lr: float, total: int):
        import torch

        self.sched = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr, total_steps=total)

    def step_update(self, num_updates: int) -> None:
        self.sched.step()

    def state_dict(self) -> dict:
        return self.sched.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.sched.load_state_dict(state)


@contextlib.contextmanager
def loop_optimizer():
    """While open, ``skincls train`` optimizes as the minimal loop does: AdamW with weight decay
    0.05 on every parameter and a one-cycle schedule peaking at the run's ``lr`` (its Adam
    beta1 cycling 0.95 -> 0.85 -> 0.95). A diagnostic for the benchmark, not an option of the
    tool."""
    import torch

    import skincls.training.optim as optim

    saved = optim.create_optimizer, optim.create_scheduler
    used = []

    def create_optimizer(model, lr, weight_decay, *args, **kwargs):
        # the one-cycle schedule sets the starting rate itself (lr / 25)
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)

    def create_scheduler(optimizer, lr, eta_min, total, warmup):
        used.append(total)
        return _OneCycle(optimizer, lr, total)

    optim.create_optimizer, optim.create_scheduler = create_optimizer, create_scheduler
    try:
        yield
    finally:
        optim.create_optimizer, optim.create_scheduler = saved
    if not used:  # the engine no longer looks the factories up at run time: nothing was swapped
        raise RuntimeError("loop_optimizer: skincls.training.optim was not used; the arm ran as is")
