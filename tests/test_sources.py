import json
from pathlib import Path

import pytest
from PIL import Image

from skincls.core.errors import DataError, SkinclsError
from skincls.data.aihub import index_records
from skincls.data.regions import RegionSpec, discover_regions
from skincls.data.sources import ReadOptions, detect_source, load_data
from skincls.data.synthetic import make_aihub_tree


def registry_with(tmp_path, *files):
    d = tmp_path / "regions"
    d.mkdir(exist_ok=True)
    for name, text in files:
        (d / f"{name}.yaml").write_text(text)
    return discover_regions([d], include_entry_points=False)


def image(path: Path, size=(20, 16)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (200, 150, 130)).save(path)
    return path


@pytest.fixture
def lesion_csv(tmp_path):
    rows = ["path,label,lesion_id"]
    for i, (label, lesion) in enumerate(
        [("a", "L1"), ("a", "L1"), ("b", "L2"), ("c", "L3"), ("b", "L4")]
    ):
        image(tmp_path / "imgs" / f"{i}.jpg")
        rows.append(f"imgs/{i}.jpg,{label},{lesion}")
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    reg = registry_with(tmp_path, ("lesion", "name: lesion\nclasses: [a, b, c]\n"))
    return tmp_path / "m.csv", reg


def test_csv_with_region_option_and_group_column(lesion_csv):
    manifest, reg = lesion_csv
    ds = load_data(manifest, reg, ["lesion"], read=ReadOptions(group_column="lesion_id"))
    assert ds.source == "csv"
    assert ds.counts() == {"lesion": [2, 2, 1]}
    assert [s.group for s in ds.samples] == ["L1", "L1", "L2", "L3", "L4"]
    assert Path(ds.samples[0].path) == manifest.parent / "imgs" / "0.jpg"


def test_csv_without_region_needs_the_option(lesion_csv):
    manifest, reg = lesion_csv
    with pytest.raises(SkinclsError, match="no 'region' column; pass --region NAME"):
        load_data(manifest, reg)
    with pytest.raises(SkinclsError, match="--group-column 'patient' is not a column"):
        load_data(manifest, reg, ["lesion"], read=ReadOptions(group_column="patient"))


def test_csv_bad_label_names_the_line_and_skip_bad_counts(lesion_csv):
    manifest, reg = lesion_csv
    manifest.write_text(manifest.read_text() + "imgs/0.jpg,zz,L9\n")
    with pytest.raises(
        DataError, match=r"m.csv line 7: label: 'zz' is not a class of region 'lesion'"
    ):
        load_data(manifest, reg, ["lesion"])
    ds = load_data(manifest, reg, ["lesion"], read=ReadOptions(skip_bad=True))
    assert len(ds.samples) == 5 and ds.report.skipped["lesion: label outside classes"] == 1


def test_csv_missing_image_is_reported_with_its_path(lesion_csv):
    manifest, reg = lesion_csv
    manifest.write_text(manifest.read_text() + "imgs/gone.jpg,a,L9\n")
    with pytest.raises(DataError, match=r"line 7: image not found: .*imgs/gone.jpg"):
        load_data(manifest, reg, ["lesion"])


def test_csv_label_map_merges_classes(tmp_path, lesion_csv):
    manifest, _ = lesion_csv
    reg = registry_with(
        tmp_path, ("lesion", "name: lesion\nclasses: [a, bc]\nlabel_map: {b: bc, c: bc}\n")
    )
    ds = load_data(manifest, reg, ["lesion"])
    assert ds.counts() == {"lesion": [2, 3]}
    assert dict(ds.report.raw_counts["lesion"]) == {"a": 2, "b": 2, "c": 1}


def test_csv_bbox_and_mirror_columns(tmp_path):
    image(tmp_path / "x.jpg", (100, 80))
    (tmp_path / "manifest.csv").write_text(
        "path,label,region,group,x1,y1,x2,y2,mirror\n"
        "x.jpg,0,r,s1,10,10,50,40,1\nx.jpg,1,r,s1,,,,,0\nx.jpg,1,r,s2,5,50,3,60,0\n"
    )
    reg = registry_with(tmp_path, ("r", "name: r\nclasses: ['0', '1']\n"))
    with pytest.raises(DataError, match=r"line 4: x1,y1,x2,y2: expected 0 <= x1 < x2"):
        load_data(tmp_path, reg)
    ds = load_data(tmp_path, reg, read=ReadOptions(skip_bad=True))
    assert [(s.bbox, s.mirror) for s in ds.samples] == [((10, 10, 50, 40), True), (None, False)]
    assert ds.report.skipped["invalid bbox"] == 1


def test_folder_source(tmp_path):
    for region, label, n in [("r", "0", 3), ("r", "1", 2), ("other", "x", 1)]:
        for i in range(n):
            image(tmp_path / "data" / region / label / f"{i}.png")
    reg = registry_with(tmp_path, ("r", "name: r\nclasses: ['0', '1']\n"))
    ds = load_data(tmp_path / "data", reg)
    assert ds.source == "folder" and ds.counts() == {"r": [3, 2]}
    assert ds.report.skipped["folder that is no known region"] == 1
    image(tmp_path / "data" / "r" / "7" / "0.png")
    with pytest.raises(DataError, match=r"r/7: class folder '7' is not a class of region 'r'"):
        load_data(tmp_path / "data", reg)


def test_aihub_tree_with_korean_folders(tmp_path):
    root = tmp_path / "AI허브 피부"
    jsons = make_aihub_tree(root, n_subjects=3, null_bbox_every=4, seed=3)
    assert detect_source(root) == "aihub"
    reg = discover_regions(include_entry_points=False)
    ds = load_data(root, reg)
    # Independent count from the generated JSON: one label per non-null grade whose bbox is set,
    # one sample (crop) per label file with at least one such grade.
    expected, crops, null_bbox = 0, 0, 0
    for p in jsons:
        doc = json.loads(p.read_text())
        if doc["images"]["facepart"] == 0:
            continue
        n = sum(v is not None for v in doc["annotations"].values())
        if doc["images"]["bbox"] is None:
            null_bbox += n
        else:
            expected += n
            crops += n > 0
    assert sum(len(s.labels) for s in ds.samples) == expected
    assert len(ds.samples) == crops < expected
    assert sum(n for r, n in ds.report.skipped.items() if r.endswith("null bbox")) == null_bbox
    assert ds.report.skipped["full-face record key 'acne' (no grade)"] == 3
    pore = [s for s in ds.samples if "cheek_pore" in s.regions]
    assert {s.mirror for s in pore if "#r_cheek_pore#" in s.key} == {True}
    assert {s.mirror for s in pore if "#l_cheek_pore#" in s.key} == {False}
    assert all(Path(s.path).name == f"{s.group}_01_F.jpg" for s in ds.samples)
    assert all("01.원천데이터" in s.path for s in ds.samples)


def test_two_regions_may_claim_one_annotation_key(tmp_path):
    root = tmp_path / "aihub"
    make_aihub_tree(root, n_subjects=2)
    d = tmp_path / "regions"
    d.mkdir()
    bands = {str(g): ("0-2" if g < 3 else "3-6") for g in range(7)}
    (d / "wrinkle_bands.yaml").write_text(
        "name: wrinkle_bands\nclasses: ['0-2', '3-6']\n"
        f"label_map: {json.dumps(bands)}\nsources: [{{facepart: 1, key: forehead_wrinkle}}]\n"
    )
    reg = discover_regions([d], include_entry_points=False)
    # Another preprocessing recipe (the default one): the crop is two samples, one per recipe.
    ds = load_data(root, reg, ["forehead_wrinkle", "wrinkle_bands"])
    assert (
        sorted(s.regions for s in ds.samples)
        == [("forehead_wrinkle",)] * 2 + [("wrinkle_bands",)] * 2
    )
    # The same recipe (augmentation and resize policy) as forehead_wrinkle: one crop, one
    # sample with two labels.
    fine_spec = reg.select(["forehead_wrinkle"])[0]
    augment = json.dumps(fine_spec.augment.model_dump(mode="json"))
    with open(d / "wrinkle_bands.yaml", "a") as fh:
        fh.write(f"augment: {augment}\nresize: {fine_spec.resize}\n")
    reg = discover_regions([d], include_entry_points=False)
    ds = load_data(root, reg, ["forehead_wrinkle", "wrinkle_bands"])
    # One forehead crop per subject, carrying both heads' labels of the same grade.
    assert len(ds.samples) == 2
    for s in ds.samples:
        fine, coarse = s.labels
        assert (fine.region, coarse.region) == ("forehead_wrinkle", "wrinkle_bands")
        assert (int(fine.raw) >= 3) == (coarse.index == 1)
    assert ds.counts()["wrinkle_bands"] and sum(ds.counts()["forehead_wrinkle"]) == 2


def test_aihub_grade_outside_classes_names_file_key_value(tmp_path):
    root = tmp_path / "aihub"
    jsons = make_aihub_tree(root, n_subjects=1)
    lip = next(p for p in jsons if p.name.endswith("_07.json"))
    doc = json.loads(lip.read_text())
    doc["annotations"]["lip_dryness"] = 9
    lip.write_text(json.dumps(doc))
    reg = discover_regions(include_entry_points=False)
    with pytest.raises(
        DataError,
        match=r"_07.json: annotations.lip_dryness: grade 9 is not a class of region 'lip_dryness'",
    ):
        load_data(root, reg)
    ds = load_data(root, reg, read=ReadOptions(skip_bad=True))
    assert ds.report.skipped["lip_dryness: grade outside classes"] == 1


def test_aihub_malformed_json_has_a_position(tmp_path):
    root = tmp_path / "aihub"
    jsons = make_aihub_tree(root, n_subjects=1)
    jsons[3].write_text('{"info": {"filename": "x.jpg",\n "id": }')
    reg = discover_regions(include_entry_points=False)
    with pytest.raises(DataError, match=r"_03.json: malformed JSON at line 2, column 8"):
        load_data(root, reg)


def test_aihub_index_cache_is_reused_and_invalidated(tmp_path):
    root = tmp_path / "aihub"
    jsons = make_aihub_tree(root, n_subjects=2)
    first, _, _ = index_records(root)
    second, _, _ = index_records(root)
    assert first == second
    doc = json.loads(jsons[5].read_text())
    doc["annotations"] = {k: 0 for k in doc["annotations"]}
    jsons[5].write_text(json.dumps(doc) + "\n")
    third, _, _ = index_records(root)
    changed = [r for r in third if r.json_path == str(jsons[5].resolve())]
    assert changed[0].annotations == doc["annotations"]


def test_unknown_region_and_missing_data(tmp_path, lesion_csv):
    manifest, reg = lesion_csv
    with pytest.raises(SkinclsError, match="--region nope: no such region"):
        load_data(manifest, reg, ["nope"])
    with pytest.raises(SkinclsError, match="no such file or directory"):
        load_data(tmp_path / "absent", reg)


def test_region_spec_is_frozen_data():
    spec = RegionSpec(name="x", classes=["a", "b"], label_map={"c": "b"})
    assert spec.class_index("c") == 1
