import pytest
import yaml

from skincls.core.errors import RegionSpecError
from skincls.data import regions as R


def write(d, name, text):
    p = d / f"{name}.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def test_builtin_regions_match_the_aihub_grades():
    reg = R.discover_regions(include_entry_points=False)
    expected = {
        "forehead_wrinkle": 7,
        "forehead_pigmentation": 6,
        "glabella_wrinkle": 7,
        "perocular_wrinkle": 7,
        "cheek_pore": 6,
        "cheek_pigmentation": 6,
        "lip_dryness": 5,
        "chin_sagging": 7,
    }
    assert {n: reg[n].num_classes for n in reg.names()} == expected
    assert [s.key for s in reg["glabella_wrinkle"].sources] == ["glabellus_wrinkle"]
    pore = reg["cheek_pore"].sources
    assert [(s.facepart, s.key, s.mirror) for s in pore] == [
        (5, "l_cheek_pore", False),
        (6, "r_cheek_pore", True),
    ]
    assert reg.origin("cheek_pore").startswith("built-in")


def test_two_line_region_gets_defaults(tmp_path):
    write(tmp_path, "lesion", "name: lesion\nclasses: [akiec, bcc, bkl, df, mel, nv, vasc]\n")
    spec = R.load_region_file(tmp_path / "lesion.yaml")
    assert spec.num_classes == 7 and not spec.ordinal and spec.sources == []
    assert [op.op for op in spec.augment.train] == ["HorizontalFlip", "Affine"]


def test_integer_classes_and_label_map_are_strings(tmp_path):
    write(tmp_path, "w", "name: w\nclasses: [0, 1, 2]\nlabel_map: {3: 2, 4: 2}\n")
    spec = R.load_region_file(tmp_path / "w.yaml")
    assert spec.classes == ["0", "1", "2"]
    assert spec.class_index("4") == 2 and spec.class_index("1") == 1
    assert spec.class_index("9") is None


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "augment: {train: [{op: HorizontalFlip}, {op: CLAHE, p: 1.5}]}",
            "bad.yaml: augment.train.1.p: Input should be less than or equal to 1 (got 1.5)",
        ),
        (
            "augment: {train: [{op: Solarize}]}",
            "bad.yaml: augment.train.0: unknown transform 'Solarize'",
        ),
        (
            "augment: {eval: [{op: Affine, rotat: [1, 2]}]}",
            "bad.yaml: augment.eval.0.rotat: unknown field",
        ),
        (
            "augment: {train: [{op: Affine, rotate: [10, -10]}]}",
            "bad.yaml: augment.train.0: rotate: lower bound 10.0 is greater than upper bound -10.0",
        ),
        ("colour: red", "bad.yaml: colour: unknown field"),
        ("label_map: {'7': '9'}", "label_map: '7' maps to '9', which is not one of classes"),
    ],
)
def test_bad_fields_name_file_and_field(tmp_path, body, expected):
    write(tmp_path, "bad", f"name: bad\nclasses: ['0', '1', '2']\n{body}\n")
    with pytest.raises(RegionSpecError) as err:
        R.load_region_file(tmp_path / "bad.yaml")
    assert expected in str(err.value)


def test_duplicate_class_and_bad_name(tmp_path):
    write(tmp_path, "dup", "name: dup\nclasses: [a, b, a]\n")
    with pytest.raises(RegionSpecError, match="duplicate class 'a'"):
        R.load_region_file(tmp_path / "dup.yaml")
    write(tmp_path, "Bad", "name: Bad\nclasses: [a, b]\n")
    with pytest.raises(RegionSpecError, match=r"Bad.yaml: name: String should match pattern"):
        R.load_region_file(tmp_path / "Bad.yaml")


def test_name_must_match_file_name_and_yaml_errors_have_a_line(tmp_path):
    write(tmp_path, "one", "name: two\nclasses: [a, b]\n")
    with pytest.raises(RegionSpecError, match="differs from the file name 'one'"):
        R.load_region_file(tmp_path / "one.yaml")
    write(tmp_path, "broken", "name: broken\nclasses: [a, b\n")
    with pytest.raises(RegionSpecError, match=r"broken.yaml: line 3"):
        R.load_region_file(tmp_path / "broken.yaml")


def test_validate_reports_every_error_of_every_file(tmp_path):
    write(tmp_path, "a", "name: a\nclasses: [x]\n")
    write(tmp_path, "b", "name: b\nclasses: [x, y]\nordinal: maybe\nfoo: 1\n")
    write(tmp_path, "c", "name: c\nclasses: [x, y]\n")
    problems = R.validate_files([tmp_path])
    assert len(problems) == 3
    assert any("a.yaml: classes: List should have at least 2 items" in p for p in problems)
    assert any("b.yaml: ordinal:" in p for p in problems)
    assert any("b.yaml: foo: unknown field" in p for p in problems)


def test_regions_dir_duplicate_names_both_origins(tmp_path):
    write(tmp_path, "cheek_pore", "name: cheek_pore\nclasses: [a, b]\n")
    with pytest.raises(RegionSpecError) as err:
        R.discover_regions([tmp_path], include_entry_points=False)
    msg = str(err.value)
    assert "'cheek_pore' is defined twice" in msg
    assert "built-in (cheek_pore.yaml)" in msg and str(tmp_path / "cheek_pore.yaml") in msg


def test_regions_dir_adds_regions(tmp_path):
    write(tmp_path, "lesion", "name: lesion\nclasses: [a, b]\n")
    reg = R.discover_regions([tmp_path], include_entry_points=False)
    assert "lesion" in reg and len(reg) == 9
    assert reg.origin("lesion") == str(tmp_path / "lesion.yaml")


class FakeEntryPoint:
    def __init__(self, name, target):
        self.name, self.value, self._target, self.dist = name, f"fake:{name}", target, None

    def load(self):
        return self._target


def test_entry_points_contribute_directories_and_specs(tmp_path, monkeypatch):
    write(tmp_path, "neck_wrinkle", "name: neck_wrinkle\nclasses: ['0', '1']\n")
    spec = R.RegionSpec(name="scalp", classes=["a", "b"])
    eps = [FakeEntryPoint("dir", str(tmp_path)), FakeEntryPoint("fn", lambda: [spec])]
    import importlib.metadata as md

    monkeypatch.setattr(
        md, "entry_points", lambda group: eps if group == R.ENTRY_POINT_GROUP else []
    )
    reg = R.discover_regions()
    assert "neck_wrinkle" in reg and "scalp" in reg
    assert reg.origin("scalp") == "entry point 'fn'"
    eps.append(FakeEntryPoint("again", lambda: [spec]))
    with pytest.raises(
        RegionSpecError,
        match="'scalp' is defined twice: in entry point 'fn' and in entry point 'again'",
    ):
        R.discover_regions()


def test_every_builtin_recipe_builds_in_albumentations():
    import numpy as np

    from skincls.data.augment import build_transform

    reg = R.discover_regions(include_entry_points=False)
    img = np.random.default_rng(0).integers(0, 255, (90, 70, 3), dtype=np.uint8)
    for name in reg.names():
        for phase in ("train", "eval"):
            t = build_transform(getattr(reg[name].augment, phase), 48, (0.5,) * 3, (0.5,) * 3)
            out = t(image=img)["image"]
            assert out.shape == (48, 48, 3), (name, phase)


def test_every_supported_op_builds_with_its_defaults():
    from skincls.data import augment as aug

    ops = [getattr(aug, name)(op=name) for name in aug.OP_NAMES]
    t = aug.build_transform(ops, 32, (0.5,) * 3, (0.5,) * 3)
    import numpy as np

    assert t(image=np.zeros((40, 50, 3), np.uint8))["image"].shape == (32, 32, 3)


def test_region_yaml_round_trips(tmp_path):
    reg = R.discover_regions(include_entry_points=False)
    dumped = reg["cheek_pore"].model_dump(mode="json")
    p = write(tmp_path, "cheek_pore", yaml.safe_dump(dumped))
    assert R.load_region_file(p) == reg["cheek_pore"]


def test_builtin_regions_ship_inside_the_wheel(tmp_path):
    """A wheel (not only a source checkout) carries the built-in region files."""
    import subprocess
    import sys
    import zipfile
    from pathlib import Path

    pytest.importorskip("hatchling")
    root = Path(__file__).resolve().parents[1]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(root),
        ],
        check=True,
        capture_output=True,
    )
    wheel = next(tmp_path.glob("skincls-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    shipped = sorted(Path(n).name for n in names if n.startswith("skincls/builtin_regions/"))
    assert shipped == sorted(p.name for p in (root / "regions").glob("*.yaml"))
    templates = sorted(Path(n).name for n in names if n.startswith("skincls/templates/"))
    assert templates == sorted(p.name for p in (root / "skincls" / "templates").glob("*.j2"))
