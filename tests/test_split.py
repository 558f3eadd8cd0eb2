from collections import Counter, defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skincls.core.errors import SkinclsError
from skincls.data.samples import Sample
from skincls.data.split import load_split, partition, save_split, split_samples


def make_samples(spec):
    """spec: list of (group, region, label)."""
    return [
        Sample.single(f"k{i}", f"p{i}", (r, lab, str(lab)), group=g)
        for i, (g, r, lab) in enumerate(spec)
    ]


sample_specs = st.lists(
    st.tuples(
        st.integers(0, 30).map(lambda g: f"g{g}"), st.sampled_from(["a", "b"]), st.integers(0, 3)
    ),
    min_size=1,
    max_size=200,
)


@settings(max_examples=60, deadline=None)
@given(sample_specs, st.integers(0, 10_000))
def test_no_group_in_two_parts_and_deterministic(spec, seed):
    samples = make_samples(spec)
    a = split_samples(samples, (0.6, 0.2, 0.2), seed)
    assert a == split_samples(samples, (0.6, 0.2, 0.2), seed)
    assert set(a) == {s.key for s in samples}
    parts_of_group = defaultdict(set)
    for s in samples:
        parts_of_group[s.group].add(a[s.key])
    assert all(len(p) == 1 for p in parts_of_group.values())


def test_stratified_within_two_samples_per_cell():
    # 600 singleton groups over 3 classes with 60/30/10% shares.
    spec = [(f"g{i}", "a", 0 if i < 360 else 1 if i < 540 else 2) for i in range(600)]
    samples = make_samples(spec)
    parts = partition(samples, split_samples(samples, (0.7, 0.15, 0.15), 0))
    for part, frac in (("train", 0.7), ("val", 0.15), ("test", 0.15)):
        c = Counter(s.labels[0].index for s in parts[part])
        for label, total in ((0, 360), (1, 180), (2, 60)):
            assert abs(c[label] - frac * total) <= 2, (part, label, c)


def test_groups_with_rare_classes_reach_every_part():
    spec = [(f"g{i}", "a", 0) for i in range(80)] + [(f"r{i}", "a", 1) for i in range(6)]
    samples = make_samples(spec)
    parts = partition(samples, split_samples(samples, (0.6, 0.2, 0.2), 5))
    assert all(any(s.labels[0].index == 1 for s in parts[p]) for p in ("train", "val", "test"))


def test_saved_split_round_trips_and_detects_changed_data(tmp_path):
    samples = make_samples([(f"g{i % 7}", "a", i % 3) for i in range(40)])
    a = split_samples(samples, (0.7, 0.15, 0.15), 1)
    save_split(tmp_path / "split.csv", samples, a)
    assert load_split(tmp_path / "split.csv", samples) == a
    extra = samples + make_samples([("new", "a", 0)] * 41)[40:]
    with pytest.raises(SkinclsError, match="1 label\\(s\\) of the data are not in the saved split"):
        load_split(tmp_path / "split.csv", extra)


def test_bad_fractions():
    with pytest.raises(SkinclsError, match="must sum to 1"):
        split_samples(make_samples([("g", "a", 0)]), (0.5, 0.1, 0.1))
