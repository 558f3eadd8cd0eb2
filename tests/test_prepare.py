from PIL import Image

from skincls.data.prepare import PrepareOptions, prepare
from skincls.data.regions import discover_regions
from skincls.data.sources import load_data
from skincls.data.synthetic import make_aihub_tree


def test_prepare_crops_once_and_resumes(tmp_path):
    root = tmp_path / "aihub"
    make_aihub_tree(root, n_subjects=2, image_size=(400, 500), null_bbox_every=6)
    out = tmp_path / "cache dir"
    first = prepare(root, out, PrepareOptions(max_side=64, workers=2, progress=False))
    assert first["failed"] == 0 and first["written"] == first["crops"] > 0
    crops = sorted((out / "crops").rglob("*.jpg"))
    assert len(crops) == first["crops"]
    assert all(max(Image.open(c).size) <= 64 for c in crops)
    reg = discover_regions(include_entry_points=False)
    direct = load_data(root, reg)
    cached = load_data(out, reg)
    assert cached.source == "csv"
    assert cached.counts() == direct.counts()
    assert sorted((s.regions, s.group, s.mirror) for s in cached.samples) == sorted(
        (s.regions, s.group, s.mirror) for s in direct.samples
    )
    again = prepare(root, out, PrepareOptions(max_side=64, workers=1, progress=False))
    assert again["written"] == 0 and again["reused"] == first["crops"]
