"""One backbone, many heads: per-label loss weighting, heads without labels left untouched (one
process and two gloo processes alike), multi-label samples and the sampler's shares."""

from __future__ import annotations

import math
import os
import socket
from collections import Counter

import pytest
import torch

from skincls.data.regions import RegionSpec
from skincls.data.sampler import EpochSampler, draw_shares, sample_weights
from skincls.data.samples import Sample
from skincls.model.losses import create_loss
from skincls.training.loop import Engine, TrainState, batch_label_counts, multitask_loss


def spec(name: str, n: int, weight: float = 1.0) -> RegionSpec:
    return RegionSpec(name=name, classes=[str(i) for i in range(n)], weight=weight)


def ce_by_hand(row: list[float], target: int) -> float:
    return -row[target] + math.log(sum(math.exp(v) for v in row))


# Loss weighting ---------------------------------------------------------------------------


def test_per_label_mean_over_heads_by_hand():
    a = [[2.0, 0.0, -1.0], [0.5, 0.5, 0.0], [0.0, 1.0, 3.0], [1.0, -2.0, 0.0]]
    b = [[1.0, -1.0], [0.0, 2.0], [3.0, 0.0], [-1.0, 1.0]]
    # sample 0: a=0, b=1; sample 1: a only; sample 2: b only; sample 3: both, but undecodable
    labels = torch.tensor([[0, 1], [2, -1], [-1, 0], [1, 1]])
    ok = torch.tensor([True, True, True, False])
    fns = torch.nn.ModuleDict(
        {
            "a": create_loss("ce", [1] * 3, reduction="none"),
            "b": create_loss("ce", [1] * 2, reduction="none"),
        }
    )
    logits = (torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True))
    counts = batch_label_counts(labels, ok)
    assert counts == [2, 2]
    loss = multitask_loss(logits, labels, ok, fns, ["a", "b"], [1.0, 3.0], float(sum(counts)))
    expected = (
        ce_by_hand(a[0], 0)
        + ce_by_hand(a[1], 2)
        + 3.0 * (ce_by_hand(b[0], 1) + ce_by_hand(b[2], 0))
    ) / 4
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    # no gradient reaches a label that is absent or an image that did not decode
    assert logits[0].grad[2].abs().sum() == 0 and logits[0].grad[3].abs().sum() == 0
    assert logits[1].grad[1].abs().sum() == 0 and logits[1].grad[3].abs().sum() == 0


def test_total_loss_does_not_grow_with_the_number_of_heads():
    torch.manual_seed(0)
    lg = torch.randn(6, 4)
    y = torch.randint(0, 4, (6,))
    ok = torch.ones(6, dtype=torch.bool)
    fn = create_loss("ce", [1] * 4, reduction="none")
    one = multitask_loss((lg,), y[:, None], ok, torch.nn.ModuleDict({"a": fn}), ["a"], [1.0], 6.0)
    fns = torch.nn.ModuleDict({n: fn for n in "abc"})
    three = multitask_loss(
        (lg, lg, lg), y[:, None].repeat(1, 3), ok, fns, list("abc"), [1.0] * 3, 18.0
    )
    assert three.item() == pytest.approx(one.item(), rel=1e-6)
    assert one.item() == pytest.approx(torch.nn.functional.cross_entropy(lg, y).item(), rel=1e-6)


class Probe(torch.nn.Module):
    """A per-sample 'loss' equal to one learnable scalar: its gradient is the head's weight."""

    def __init__(self):
        super().__init__()
        self.p = torch.nn.Parameter(torch.ones(()))

    def forward(self, logits, target):
        return self.p.expand(target.shape[0])


@pytest.mark.parametrize(
    ("balance", "weight", "big_share"),
    [
        ("none", 1.0, 1000 / 1010),
        ("sqrt", 1.0, math.sqrt(1000) / (math.sqrt(1000) + math.sqrt(10))),
        ("equal", 1.0, 0.5),
        ("none", 3.0, 1000 / 1030),  # the small region's weight: 3
    ],
)
def test_each_region_contributes_its_documented_share_of_the_gradient(balance, weight, big_share):
    regions = [spec("big", 2), spec("small", 2, weight)]
    samples = [
        Sample.single(f"b{i}", "p", ("big", i % 2, str(i % 2)), f"b{i}") for i in range(1000)
    ]
    samples += [
        Sample.single(f"s{i}", "p", ("small", i % 2, str(i % 2)), f"s{i}") for i in range(10)
    ]
    weights = sample_weights(samples, {"big": "none", "small": "none"}, balance)
    shares = draw_shares(samples, weights, regions)
    assert shares["big"]["loss_share"] == pytest.approx(big_share, rel=1e-9)
    # Measure: the multi-task loss of 200 drawn batches of 64, gradients summed per region.
    probes = torch.nn.ModuleDict({"big": Probe(), "small": Probe()})
    sampler = EpochSampler(len(samples), weights, seed=3, num_samples=64 * 200)
    order = [i for i, _ in sampler]
    for start in range(0, len(order), 64):
        batch = [samples[i] for i in order[start : start + 64]]
        labels = torch.tensor([[0, -1] if s.regions == ("big",) else [-1, 0] for s in batch])
        ok = torch.ones(len(batch), dtype=torch.bool)
        counts = batch_label_counts(labels, ok)
        dummy = (torch.zeros(len(batch), 2), torch.zeros(len(batch), 2))
        loss = multitask_loss(
            dummy, labels, ok, probes, ["big", "small"], [1.0, weight], float(sum(counts))
        )
        loss.backward()
    big, small = probes["big"].p.grad.item(), probes["small"].p.grad.item()
    assert big / (big + small) == pytest.approx(big_share, abs=0.02)


# A head without a label is not updated, with one process or two ----------------------------


def _model_and_batch():
    from skincls.model.network import MultiHeadNet

    torch.manual_seed(0)
    model = MultiHeadNet("test_resnet", ["a", "b", "c"], [3, 2, 2], dropout=0.0)
    model.eval()  # batch norm with running statistics: the same maths for any batch split
    images = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    labels = torch.full((8, 3), -1, dtype=torch.long)
    labels[:, 0] = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    labels[0, 1] = 1  # head b: one label, in rank 0's half; head c: none at all
    return model, images, labels


def _engine(model, net, dctx=None):
    from skincls.core import distributed as D
    from skincls.training.optim import create_optimizer, create_scheduler

    optimizer = create_optimizer(model, 1e-2, 0.05)
    return Engine(
        net=net,
        model=model,
        loss_fns=torch.nn.ModuleDict(
            {
                n: create_loss("ce", [1] * k, reduction="none")
                for n, k in zip("abc", (3, 2, 2), strict=True)
            }
        ),
        names=["a", "b", "c"],
        head_weights=[1.0, 1.0, 1.0],
        optimizer=optimizer,
        scheduler=create_scheduler(optimizer, 1e-2, 0.0, total=10, warmup=0),
        scaler=torch.amp.GradScaler("cpu", enabled=False),
        device=torch.device("cpu"),
        dctx=dctx or D.DistContext(),
    )


def _steps(engine, images, labels, steps=2):
    ok = torch.ones(images.shape[0], dtype=torch.bool)
    state = TrainState()
    for _ in range(steps):
        engine.train_step(images, labels, ok, batch_label_counts(labels, ok), state)


def _ddp_worker(rank: int, port: int, out: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from skincls.core import distributed as D

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        model, images, labels = _model_and_batch()
        net = DistributedDataParallel(model)
        engine = _engine(model, net, D.DistContext(True, rank, 2, 0, "gloo"))
        half = slice(4 * rank, 4 * rank + 4)
        _steps(engine, images[half], labels[half])
        torch.save(model.state_dict(), os.path.join(out, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_head_without_labels_is_untouched_with_one_process_and_two(tmp_path):
    import torch.multiprocessing as mp

    model, images, labels = _model_and_batch()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _steps(_engine(model, model), images, labels)
    single = model.state_dict()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(port, str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    for name, value in before.items():
        if name.startswith("heads.c."):  # no label anywhere: bit-identical, AdamW decay included
            assert all(torch.equal(sd[name], value) for sd in (single, *ranks)), name
    moved = [n for n in before if n.startswith(("heads.a.", "heads.b.")) and "weight" in n]
    assert moved and all(not torch.equal(single[n], before[n]) for n in moved)
    # two processes with half the batch each take the step one process takes with all of it
    for name in single:
        torch.testing.assert_close(ranks[0][name], single[name], rtol=1e-4, atol=2e-5)
        assert torch.equal(ranks[0][name], ranks[1][name])


# Samples with several labels ----------------------------------------------------------------


def test_forehead_json_with_two_grades_is_one_sample_decoded_once(tmp_path, monkeypatch):
    import json

    import skincls.data.dataset as dataset_mod
    from skincls.data.dataset import SampleDataset, build_transforms
    from skincls.data.regions import discover_regions
    from skincls.data.sources import load_data
    from skincls.data.synthetic import make_aihub_tree

    jsons = make_aihub_tree(tmp_path / "aihub", n_subjects=3)
    registry = discover_regions(include_entry_points=False)
    names = ["forehead_wrinkle", "forehead_pigmentation", "cheek_pore", "cheek_pigmentation"]
    ds = load_data(tmp_path / "aihub", registry, names)
    # independently from the JSON files: one crop per forehead/cheek file, one label per grade
    forehead = [json.loads(p.read_text()) for p in jsons if p.name.endswith("_01.json")]
    assert all(
        set(d["annotations"]) >= {"forehead_wrinkle", "forehead_pigmentation"} for d in forehead
    )
    two = [s for s in ds.samples if set(s.regions) == {"forehead_wrinkle", "forehead_pigmentation"}]
    assert len(two) == len(forehead) == 3
    for s, doc in zip(
        sorted(two, key=lambda s: s.group),
        sorted(forehead, key=lambda d: d["info"]["id"]),
        strict=True,
    ):
        grades = {lab.region: int(lab.raw) for lab in s.labels}
        assert grades == {k: doc["annotations"][k] for k in grades}
    cheeks = [s for s in ds.samples if "cheek_pore" in s.regions]
    assert len(cheeks) == 6 and all(
        set(s.regions) == {"cheek_pore", "cheek_pigmentation"} for s in cheeks
    )
    assert sum(ds.counts()["forehead_wrinkle"]) == sum(ds.counts()["forehead_pigmentation"]) == 3

    decoded: Counter[tuple] = Counter()
    real = dataset_mod.read_image

    def counting(path, bbox=None, mirror=False, **kwargs):
        decoded[(path, bbox, mirror)] += 1
        return real(path, bbox, mirror, **kwargs)

    monkeypatch.setattr(dataset_mod, "read_image", counting)
    tf = build_transforms(ds.regions, "train", 32, [0.5] * 3, [0.5] * 3)
    data = SampleDataset(ds.samples, names, tf, 32)
    epoch = [data[item] for item in EpochSampler(len(data), None, seed=0)]
    assert len(epoch) == len(ds.samples) == 9
    assert set(decoded.values()) == {1}  # each crop once per epoch, whatever its labels
    for _, y, ok, i in epoch:
        s = ds.samples[i]
        assert ok and [int(v) for v in y] == [
            next((lab.index for lab in s.labels if lab.region == n), -1) for n in names
        ]


def test_csv_rows_of_one_image_and_box_merge(tmp_path):
    from PIL import Image

    from skincls.data.regions import RegionRegistry
    from skincls.data.sources import load_data

    registry = RegionRegistry()
    for r in (spec("a", 3), spec("b", 2)):
        registry.add(r, "test")
    for name in ("x.png", "y.png"):
        Image.new("RGB", (40, 40)).save(tmp_path / name)
    (tmp_path / "manifest.csv").write_text(
        "path,label,region,x1,y1,x2,y2\n"
        "x.png,2,a,0,0,20,20\n"
        "./x.png,1,b,0,0,20,20\n"  # same image (other spelling) and box: merged
        "x.png,0,b,10,10,40,40\n"  # same image, other box: its own sample
        "y.png,1,a,0,0,40,40\n"
    )
    ds = load_data(tmp_path / "manifest.csv", registry)
    assert [(s.regions, [lab.index for lab in s.labels]) for s in ds.samples] == [
        (("a", "b"), [2, 1]),
        (("b",), [0]),
        (("a",), [1]),
    ]
    assert ds.counts() == {"a": [0, 1, 1], "b": [1, 1]}  # one per row, as before merging
    (tmp_path / "manifest.csv").write_text(
        "path,label,region\nx.png,2,a\nx.png,1,a\n"  # the same region twice stays an error
    )
    from skincls.core.errors import DataError

    with pytest.raises(DataError, match="line 3: the same image, region and box as line 2"):
        load_data(tmp_path / "manifest.csv", registry)


def test_sampler_rule_for_multi_label_samples_gives_the_stated_shares():
    # 6 crops labelled a=0 only, 2 labelled a=1 and b=1, 2 labelled b=0 only
    def make(key, labels):
        s = Sample.single(key, "p", (labels[0][0], labels[0][1], "x"), key)
        for region, index in labels[1:]:
            s = Sample(
                s.key,
                s.path,
                s.labels + Sample.single(key, "p", (region, index, "x"), key).labels,
                key,
            )
        return s

    samples = [make(f"a{i}", [("a", 0)]) for i in range(6)]
    samples += [make(f"ab{i}", [("a", 1), ("b", 1)]) for i in range(2)]
    samples += [make(f"b{i}", [("b", 0)]) for i in range(2)]
    regions = [spec("a", 2), spec("b", 2)]
    weights = sample_weights(samples, {"a": "class_balanced", "b": "class_balanced"}, "equal")
    # by hand: asks a0 = (1/2)/6 = 1/12, a1 = b0 = b1 = (1/2)/2 = 1/4; a crop takes its largest
    assert weights == pytest.approx([1 / 18] * 6 + [1 / 6] * 2 + [1 / 6] * 2)
    shares = draw_shares(samples, weights, regions)
    assert shares["a"]["classes"] == pytest.approx([0.5, 0.5])
    assert shares["b"]["classes"] == pytest.approx([0.5, 0.5])
    assert shares["a"]["loss_share"] == pytest.approx(0.5)
    drawn = [samples[i] for i, _ in EpochSampler(len(samples), weights, seed=1, num_samples=20000)]
    for head in ("a", "b"):
        c = Counter(lab.index for s in drawn for lab in s.labels if lab.region == head)
        assert c[0] / (c[0] + c[1]) == pytest.approx(0.5, abs=0.02)
