"""Real users' files and mistakes: never a silently wrong result, never a traceback (issue 11)."""

import csv
import json
import os
import struct
import subprocess
import sys
import time
import unicodedata
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from skincls.cli.root import app
from skincls.core.config import build_config, load_config_file
from skincls.core.errors import DataError, RegionSpecError, SkinclsError
from skincls.core.textio import load_yaml
from skincls.data.images import MAX_PIXELS, ImageReadError, read_image
from skincls.data.manifest import ManifestOptions
from skincls.data.regions import discover_regions, load_region_file
from skincls.data.samples import LoadReport
from skincls.data.sources import ReadOptions, load_csv, load_data

from .conftest import resume, tiny_values

runner = CliRunner()


def registry_with(tmp_path: Path, text: str = "name: lesion\nclasses: [a, b]\n"):
    d = tmp_path / "regions"
    d.mkdir(exist_ok=True)
    (d / "lesion.yaml").write_text(text, encoding="utf-8")
    return d, discover_regions([d], include_builtin=False, include_entry_points=False)


# 1. One way to read pixels -------------------------------------------------------------------


def rotated_photo(path: Path) -> tuple[int, int, int, int]:
    """A JPEG stored landscape with EXIF 'rotate 90° clockwise'; returns a box (in displayed
    coordinates) around a red square that is only red once the orientation is applied."""
    displayed = np.zeros((400, 300, 3), np.uint8)  # 300 wide, 400 tall as a viewer shows it
    displayed[:, :] = (0, 0, 200)
    displayed[40:120, 30:110] = (220, 20, 20)
    stored = np.rot90(displayed, k=1)  # orientation 6 rotates it back clockwise on display
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.ascontiguousarray(stored)).save(path, quality=95, exif=exif)
    return (30, 40, 110, 120)


def test_every_path_crops_the_same_pixels_from_a_rotated_photo(tmp_path):
    from skincls.data.prepare import _crop_image

    photo = tmp_path / "photo.jpg"
    box = rotated_photo(photo)
    crop = read_image(str(photo), box)
    assert crop.shape == (80, 80, 3)
    assert crop[..., 0].mean() > 180 and crop[..., 2].mean() < 60  # the red square, not blue
    out = tmp_path / "crop.jpg"
    assert _crop_image((str(photo), [(str(out), box)], 512, 95)) == [(str(out), None)]
    cached = np.asarray(Image.open(out).convert("RGB"), np.float32)
    assert np.abs(cached - crop).mean() < 4  # same pixels up to JPEG re-encoding
    small = read_image(str(photo), box, max_side=40)  # draft decoding keeps orientation too
    assert max(small.shape[:2]) == 40 and small[..., 0].mean() > 180


def test_sixteen_bit_images_are_scaled_by_bit_depth_not_content(tmp_path):
    dark = tmp_path / "dark16.png"
    Image.fromarray(np.full((20, 20), 200, np.uint16)).save(dark)
    assert read_image(str(dark)).max() == round(200 / 65535 * 255)  # 1, not 255 or 200


def test_box_rounding_is_outward_and_clipped(tmp_path):
    from skincls.data.images import scale_box

    assert scale_box((3, 3, 9, 9), 0.5, 100, 100) == (1, 1, 5, 5)
    assert scale_box((-5, 10, 50, 120), 1.0, 40, 100) == (0, 10, 40, 100)
    with pytest.raises(
        ImageReadError, match=r"box outside the image: \(50, 0, 60, 10\) in 40 x 30"
    ):
        scale_box((50, 0, 60, 10), 1.0, 40, 30)


# 2. Hostile or huge images -------------------------------------------------------------------


def png_header_only(path: Path, width: int, height: int) -> None:
    """A valid PNG signature and IHDR claiming ``width x height`` with almost no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def test_bombs_and_strips_are_refused_with_a_reason_before_decoding(tmp_path):
    bomb = tmp_path / "bomb.png"
    png_header_only(bomb, 60000, 60000)
    t0 = time.perf_counter()
    with pytest.raises(ImageReadError, match="too large: 60000 x 60000"):
        read_image(str(bomb))
    assert time.perf_counter() - t0 < 2
    strip = tmp_path / "strip.png"
    Image.new("RGB", (4000, 10)).save(strip)
    with pytest.raises(ImageReadError, match="too elongated: 4000 x 10 .*aspect ratio over"):
        read_image(str(strip))
    dslr = tmp_path / "dslr.jpg"  # an AI Hub DSLR photo is 2976 x 3968 (about 12 MP)
    Image.new("RGB", (2976, 3968), (90, 60, 50)).save(dslr)
    assert read_image(str(dslr), (100, 100, 1600, 900), max_side=256).shape == (137, 256, 3)
    ok = tmp_path / "ok.png"
    Image.new("RGB", (300, 40)).save(ok)
    with pytest.raises(ImageReadError, match="box .*aspect"):
        read_image(str(ok), (0, 0, 300, 2))


def test_training_counts_a_bomb_as_a_skip_with_its_reason(tmp_path, tiny_data, tiny_regions):
    from skincls.training.train import train

    data = tmp_path / "data"
    import shutil

    shutil.copytree(tiny_data, data)
    victim = sorted((data / "images").rglob("*.png"))[3]
    png_header_only(victim, 60000, 60000)
    values = tiny_values(data, tiny_regions, output=str(tmp_path / "run"), max_bad_fraction=0.5)
    result = train(build_config(values))
    lines = (result.run_dir / "bad_images.txt").read_text().splitlines()
    assert lines == [f"{victim}\ttoo large: 60000 x 60000 (image over {MAX_PIXELS:,} pixels)"]


def test_predict_skips_a_bomb_with_its_reason_and_exit_0(tiny_run, tmp_path):
    bomb = tmp_path / "bomb.png"
    png_header_only(bomb, 60000, 60000)
    good = tmp_path / "good.png"
    Image.new("RGB", (40, 40), (120, 80, 60)).save(good)
    result = runner.invoke(app, ["predict", str(tiny_run), str(bomb), str(good), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [p["path"] for p in doc["predictions"]] == [str(good)]
    assert doc["errors"][0]["error"].startswith("too large: 60000 x 60000")


def test_predict_on_a_folder_leaves_out_hidden_files(tiny_run, tmp_path):
    folder = tmp_path / "photos"
    (folder / ".thumbnails").mkdir(parents=True)
    Image.new("RGB", (40, 40), (120, 80, 60)).save(folder / "face.png")
    (folder / "._face.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    Image.new("RGB", (40, 40)).save(folder / ".thumbnails" / "face.png")
    result = runner.invoke(app, ["predict", str(tiny_run), str(folder), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [p["path"] for p in doc["predictions"]] == [str(folder / "face.png")]
    assert doc["errors"] == []


# 3. Text files from Korean Windows -----------------------------------------------------------


def manifest_rows(tmp_path: Path, labels: list[str]) -> list[list[str]]:
    (tmp_path / "img").mkdir(exist_ok=True)
    rows = [["path", "label", "region", "group"]]
    for i, label in enumerate(labels):
        Image.new("RGB", (16, 16)).save(tmp_path / "img" / f"{i}.png")
        rows.append([f"img/{i}.png", label, "lesion", f"환자{i}"])
    return rows


@pytest.mark.parametrize("encoding", ["cp949", "euc-kr", "utf-16", "utf-8-sig", "utf-8"])
def test_csv_saved_by_korean_excel_reads_the_same(tmp_path, encoding):
    regions, registry = registry_with(tmp_path, "name: lesion\nclasses: [양성, 악성]\n")
    rows = manifest_rows(tmp_path, ["양성", "악성", "양성"])
    text = "\r\n".join(",".join(r) for r in rows) + "\r\n"
    manifest = tmp_path / "manifest.csv"
    manifest.write_bytes(text.encode(encoding))
    samples = load_csv(manifest, registry, [registry["lesion"]], LoadReport())
    assert [s.labels[0].raw for s in samples] == ["양성", "악성", "양성"]
    assert {s.group for s in samples} == {"환자0", "환자1", "환자2"}


def test_text_in_an_unknown_encoding_is_one_error_naming_the_file(tmp_path):
    _, registry = registry_with(tmp_path)
    manifest = tmp_path / "manifest.csv"
    manifest.write_bytes(b"path,label,region\n\x81\xff\xfe.png,a,lesion\n")
    with pytest.raises(SkinclsError, match=r"manifest.csv: not text in UTF-8, UTF-16 .*CP949"):
        load_csv(manifest, registry, [registry["lesion"]], LoadReport())


def test_region_yaml_and_config_in_cp949_and_utf16(tmp_path):
    region = tmp_path / "lesion.yaml"
    region.write_bytes("name: lesion\ntitle: 이마 주름\nclasses: [a, b]\n".encode("cp949"))
    assert load_region_file(region).title == "이마 주름"
    region.write_bytes("name: lesion\ntitle: 이마 주름\nclasses: [a, b]\n".encode("utf-16"))
    assert load_region_file(region).title == "이마 주름"
    config = tmp_path / "run.yaml"
    config.write_bytes("data: 데이터\nepochs: 3\n".encode("cp949"))
    assert load_config_file(config) == {"data": "데이터", "epochs": 3}


def test_korean_file_names_in_nfc_and_nfd_are_one_file(tmp_path):
    _, registry = registry_with(tmp_path)
    folder = unicodedata.normalize("NFD", "사진")
    (tmp_path / folder).mkdir()
    Image.new("RGB", (16, 16)).save(tmp_path / folder / unicodedata.normalize("NFD", "이마.png"))
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(
        f"path,label,region\n{unicodedata.normalize('NFC', '사진/이마.png')},a,lesion\n"
    )
    samples = load_csv(manifest, registry, [registry["lesion"]], LoadReport())
    assert len(samples) == 1 and Path(samples[0].path).is_file()


# 4. YAML safety -----------------------------------------------------------------------------

BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
    for p, c in zip("abcdefgh", "bcdefghi", strict=True)
)


def test_alias_bomb_is_refused_quickly_within_bounded_memory(tmp_path):
    bomb = tmp_path / "lesion.yaml"
    bomb.write_text("name: lesion\nclasses: [a, b]\n" + "extra:\n  " + BOMB.replace("\n", "\n  "))
    script = (
        "import resource, sys, time\n"
        "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
        "from skincls.data.regions import load_region_file\n"
        "from skincls.core.errors import RegionSpecError\n"
        "t = time.perf_counter()\n"
        "try:\n    load_region_file(sys.argv[1])\nexcept RegionSpecError as e:\n"
        "    print(e, time.perf_counter() - t)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(bomb)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    message, seconds = out.stdout.rsplit(" ", 1)
    assert "refused: more than 100,000 values once its aliases" in message
    assert float(seconds) < 1.0


def test_duplicate_keys_are_errors_naming_the_key_and_line(tmp_path):
    path = tmp_path / "lesion.yaml"
    path.write_text("name: lesion\nclasses: [a, b]\nordinal: true\nordinal: false\n")
    with pytest.raises(
        RegionSpecError, match=r"duplicate key 'ordinal' at line 4 \(first at line 3\)"
    ):
        load_region_file(path)
    config = tmp_path / "run.yaml"
    config.write_text("epochs: 3\nlr: 0.1\nepochs: 5\n")
    with pytest.raises(SkinclsError, match=r"--config .*duplicate key 'epochs' at line 3"):
        load_config_file(config)
    assert load_yaml("a: &x 1\nb: *x\n", "ok") == {"a": 1, "b": 1}  # small aliases still work


# 5. Duplicates and trees --------------------------------------------------------------------


def test_one_image_spelled_four_ways_is_one_image(tmp_path):
    _, registry = registry_with(tmp_path)
    (tmp_path / "imgs").mkdir()
    name = unicodedata.normalize("NFC", "얼굴.png")
    Image.new("RGB", (16, 16)).save(tmp_path / "imgs" / name)
    spellings = [
        f"imgs/{name}",
        f"./imgs/{name}",
        str(tmp_path / "imgs" / name),
        unicodedata.normalize("NFD", f"imgs/{name}"),
    ]
    manifest = tmp_path / "manifest.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "region"])
        for s in spellings:
            w.writerow([s, "a", "lesion"])
    with pytest.raises(DataError) as err:
        load_csv(manifest, registry, [registry["lesion"]], LoadReport())
    assert str(err.value).count("the same image, region and box as line 2") == 3
    report = LoadReport()
    samples = load_csv(
        manifest, registry, [registry["lesion"]], report, ManifestOptions(skip_bad=True)
    )
    assert len(samples) == 1 and report.skipped["duplicate row"] == 3


def test_an_image_in_two_groups_never_lands_in_two_split_parts(tmp_path):
    from skincls.data.split import split_samples

    d = tmp_path / "regions"
    d.mkdir()
    (d / "a.yaml").write_text("name: a\nclasses: [x, y]\n")
    (d / "b.yaml").write_text("name: b\nclasses: [x, y]\n")
    registry = discover_regions([d], include_builtin=False, include_entry_points=False)
    (tmp_path / "i").mkdir()
    rows = ["path,label,region,group"]
    for i in range(40):
        Image.new("RGB", (8, 8)).save(tmp_path / "i" / f"{i}.png")
        rows.append(f"i/{i}.png,{'xy'[i % 2]},a,p{i}")
        rows.append(f"./i/{i}.png,{'xy'[i % 3 % 2]},b,q{i}")  # same image, other group column
    (tmp_path / "manifest.csv").write_text("\n".join(rows) + "\n")
    samples = load_csv(
        tmp_path / "manifest.csv", registry, [registry["a"], registry["b"]], LoadReport()
    )
    assignment = split_samples(samples, (0.6, 0.2, 0.2), seed=3)
    part_of_image: dict[str, set[str]] = {}
    for s in samples:
        part_of_image.setdefault(s.path, set()).add(assignment[s.key])
    assert len(part_of_image) == 40 and all(len(p) == 1 for p in part_of_image.values())


def test_aihub_walk_survives_loops_and_reports_copied_trees(tmp_path):
    from skincls.data.synthetic import make_aihub_tree

    root = tmp_path / "aihub"
    make_aihub_tree(root, n_subjects=2, image_size=(200, 240))
    label_dirs = [p for p in root.rglob("*") if p.is_dir() and p.name.startswith("TL")]
    os.symlink(root, label_dirs[0] / "loop")  # a symlink back to the top
    (label_dirs[0] / "._0001_01_F_01.json").write_bytes(b"\x00\x05\x16\x07 mac resource fork")
    registry = discover_regions(include_entry_points=False)
    data = load_data(root, registry)
    assert data.report.skipped["folder reached twice (symlink loop or linked copy)"] == 1
    baseline = len(data.samples)
    import shutil

    shutil.copytree(label_dirs[0], label_dirs[0].parent / "TL copy", symlinks=True)
    (label_dirs[0].parent / "TL copy" / "loop").unlink()
    with pytest.raises(DataError, match=r"is also at .*copied twice"):
        load_data(root, registry)
    kept = load_data(root, registry, read=ReadOptions(skip_bad=True))
    assert len(kept.samples) == baseline
    assert kept.report.skipped["label file present twice (copied folder)"] > 0


# 6. User text is text ------------------------------------------------------------------------


def test_markup_in_labels_and_paths_prints_as_written(tmp_path):
    regions, _ = registry_with(tmp_path)
    folder = tmp_path / "scans [left]"
    folder.mkdir()
    Image.new("RGB", (8, 8)).save(folder / "x.png")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,label,region\nscans [left]/x.png,[/i],lesion\n")
    result = runner.invoke(app, ["analyze", str(manifest), "--regions-dir", str(regions)])
    assert result.exit_code == 2
    assert "label: '[/i]' is not a class of region 'lesion'" in result.stderr
    assert "Traceback" not in result.output
    manifest.write_text("path,label,region\nscans [left]/missing.png,a,lesion\n")
    result = runner.invoke(app, ["analyze", str(manifest), "--regions-dir", str(regions)])
    assert "scans [left]/missing.png" in result.stderr


# 7. Run directories under concurrency and damage -------------------------------------------


HOLDER = (
    "import sys, time\nfrom pathlib import Path\nfrom skincls.run.rundir import RunLock\n"
    "lock = RunLock(Path(sys.argv[1])).acquire()\nprint('held', flush=True)\ntime.sleep(60)\n"
)


def test_a_second_writer_is_refused_and_a_killed_one_leaves_no_lock(run_copy):
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(run_copy)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(SkinclsError, match=rf"in use by process {proc.pid} on "):
            resume(run_copy)
        from skincls.training.train import train_from_options

        with pytest.raises(SkinclsError, match=rf"in use by process {proc.pid}"):
            train_from_options({**json_config(run_copy), "overwrite": True})
    finally:
        proc.kill()
        proc.wait()
    assert resume(run_copy).history[-1]["epoch"] == 3  # the kernel released the lock


def json_config(run: Path) -> dict:
    import yaml

    values = yaml.safe_load((run / "config.yaml").read_text())
    return {k: v for k, v in values.items() if k not in ("resume",)}


def test_an_edited_run_is_refused_with_the_differences(run_copy):
    region = run_copy / "regions" / "pore.yaml"
    region.write_text(region.read_text().replace("- '2'", "- '2'\n- '3'"))
    with pytest.raises(
        SkinclsError,
        match=r"(?s)does not match the run's files .*'pore', \['0', '1', '2'\]\).* vs region files",
    ):
        resume(run_copy)


@pytest.mark.parametrize(
    "damage, message",
    [
        (
            lambda r: (r / "last" / "trainer.pt").write_bytes(b"PK\x03\x04 truncated"),
            "damaged trainer state",
        ),
        (
            lambda r: (r / "regions" / "order.txt").write_text("pore\n"),
            r"order.txt: damaged: lists \['pore'\]",
        ),
        (
            lambda r: (r / "metrics.jsonl").write_text('{"epoch": 1}\n{"epo'),
            r"metrics.jsonl line 2: damaged",
        ),
    ],
)
def test_damaged_run_files_are_clear_errors(run_copy, damage, message):
    damage(run_copy)
    with pytest.raises(SkinclsError, match=message):
        resume(run_copy)


def test_leftovers_of_a_killed_save_are_removed_at_the_next_start(run_copy):
    (run_copy / ".last.tmp99999").mkdir()
    (run_copy / ".last.tmp99999" / "model.safetensors").write_bytes(b"half")
    (run_copy / ".metrics.jsonl.tmp99999").write_text("{")
    resume(run_copy)
    assert not [p for p in run_copy.iterdir() if ".tmp" in p.name]


def test_a_run_whose_creation_was_interrupted_can_be_replaced(tmp_path, tiny_data, tiny_regions):
    from skincls.training.train import train

    out = tmp_path / "run"
    out.mkdir()
    (out / ".config.yaml.tmp4242").write_text("data: x")
    (out / ".lock").write_text("process 4242 on gone\n")
    values = tiny_values(tiny_data, tiny_regions, output=str(out), max_steps_per_epoch=1)
    with pytest.raises(SkinclsError, match="pass --overwrite"):
        train(build_config(values))
    assert train(build_config({**values, "overwrite": True})).best_epoch == 1


def test_disk_full_is_one_error_and_keeps_the_previous_checkpoint(
    tmp_path, tiny_data, tiny_regions, monkeypatch
):
    import errno

    import safetensors.torch

    from skincls.run.checkpoints import load_checkpoint
    from skincls.training.train import train

    real = safetensors.torch.save_file
    calls = {"n": 0}

    def save_file(tensors, filename, *a, **kw):
        calls["n"] += 1
        if calls["n"] > 2:  # epoch 1 writes best/ and last/; epoch 2 finds the disk full
            # when it writes best/ (the default serves the last epoch: best/ every epoch)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(tensors, filename, *a, **kw)

    monkeypatch.setattr(safetensors.torch, "save_file", save_file)
    values = tiny_values(
        tiny_data,
        tiny_regions,
        output=str(tmp_path / "run"),
        epochs=2,
        max_steps_per_epoch=1,
        warmup_epochs=0,
    )
    with pytest.raises(
        SkinclsError, match=r"best: cannot write: the disk is full; the previous best/"
    ):
        train(build_config(values))
    run = tmp_path / "run"
    assert json.loads((run / "run.json").read_text())["status"] == "failed"
    assert load_checkpoint(run / "best")[1]["epoch"] == 1
    assert load_checkpoint(run / "last")[1]["epoch"] == 1
    assert not [p for p in run.iterdir() if ".tmp" in p.name]


# 8. ONNX metadata is checked ----------------------------------------------------------------


def test_edited_onnx_metadata_is_explained_in_one_line(tiny_run, tmp_path):
    import onnx

    from skincls.serving.export import export_onnx

    path = tmp_path / "m.onnx"
    export_onnx(tiny_run, path)
    model = onnx.load(str(path))
    entry = next(p for p in model.metadata_props if p.key == "skincls")
    meta = json.loads(entry.value)
    image = tmp_path / "x.png"
    Image.new("RGB", (40, 40)).save(image)
    first = meta["regions"][0]
    n = len(first["classes"])
    cases = [
        (
            lambda m: m["regions"][0]["classes"].append("9"),
            f"lists {n + 1} classes but {first['name']}_probs has width {n}",
        ),
        (
            lambda m: m.update(image_size=64),
            "image_size 64 but the input 'image' has shape [None, 3, 32, 32]",
        ),
        (lambda m: m["regions"][1].update(name="chin"), "no output 'chin_probs' for region 'chin'"),
        (lambda m: m.pop("mean"), "mean: expected list, got None"),
    ]
    for edit, message in cases:
        edited = json.loads(json.dumps(meta))
        edit(edited)
        entry.value = json.dumps(edited)
        onnx.save(model, str(path))
        result = runner.invoke(app, ["predict", str(path), str(image)])
        assert result.exit_code == 2 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    entry.value = "{not json"
    onnx.save(model, str(path))
    result = runner.invoke(app, ["predict", str(path), str(image)])
    assert result.exit_code == 2 and "is not valid JSON" in result.stderr


# 9. Numeric corner case ---------------------------------------------------------------------


def test_a_micro_batch_without_decoded_images_does_not_crash_the_grad_scaler():
    import torch

    from skincls.training.loop import Engine, TrainState
    from skincls.training.optim import create_scheduler

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = model

        def forward(self, x):
            return (self.m(x),)

    net = Net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    engine = Engine(
        net=net,
        model=net,
        loss_fns=torch.nn.ModuleDict({"r": torch.nn.CrossEntropyLoss(reduction="none")}),
        names=["r"],
        head_weights=[1.0],
        optimizer=opt,
        scheduler=create_scheduler(opt, 0.1, 0.0, total=10, warmup=0),
        scaler=torch.amp.GradScaler("cpu", enabled=True),
        device=torch.device("cpu"),
        grad_clip=1.0,
    )
    before = [p.detach().clone() for p in net.parameters()]
    labels = torch.zeros(4, 1, dtype=torch.long)
    state = TrainState()
    no_image = torch.zeros(4, dtype=torch.bool)
    loss, finite = engine.train_step(torch.randn(4, 3, 2, 2), labels, no_image, [0], state)
    assert finite and float(loss.detach()) == 0.0
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))
    assert state.updates == 1  # the schedule still advances by one update


# 10. Overflow values and missing folders ------------------------------------------------------


def test_infinite_boxes_are_clear_errors(tmp_path):
    from skincls.data.aihub import valid_bbox

    _, registry = registry_with(tmp_path)
    Image.new("RGB", (16, 16)).save(tmp_path / "x.png")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,label,region,x1,y1,x2,y2\nx.png,a,lesion,0,0,inf,1e400\n")
    with pytest.raises(DataError, match=r"line 2: x1,y1,x2,y2: expected four finite numbers"):
        load_csv(manifest, registry, [registry["lesion"]], LoadReport())
    assert valid_bbox([0, 0, float("inf"), 10]) is None


def test_predict_csv_into_a_missing_folder_is_a_clear_error(tiny_run, tmp_path):
    image = tmp_path / "x.png"
    Image.new("RGB", (40, 40)).save(image)
    target = tmp_path / "no such folder" / "out.csv"
    result = runner.invoke(app, ["predict", str(tiny_run), str(image), "--csv", str(target)])
    assert result.exit_code == 2
    assert f"the folder {target.parent} does not exist" in result.stderr


# Property tests: any bytes, any encoding, any markup ----------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

ENCODINGS = ["utf-8", "utf-8-sig", "utf-16", "cp949", "latin-1"]


def encoded_or_empty(text: str, encoding: str) -> bytes:
    """``text`` in ``encoding``, or nothing where the encoding cannot hold it (Hangul in latin-1)."""
    try:
        return text.encode(encoding)
    except UnicodeEncodeError:
        return b""


markup_text = st.lists(
    st.sampled_from(list("ab01[]/,: \n") + ["[/i]", "[bold]", "한"]), max_size=8
).map("".join)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(prefix=st.binary(max_size=24), body=markup_text, encoding=st.sampled_from(ENCODINGS))
def test_manifest_bytes_give_samples_or_one_data_error(tmp_path, prefix, body, encoding):
    _, registry = registry_with(tmp_path)
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    manifest = tmp_path / "m.csv"
    manifest.write_bytes(
        prefix + encoded_or_empty(f"path,label,region\na.png,{body},lesion\n", encoding)
    )
    try:
        samples = load_csv(manifest, registry, [registry["lesion"]], LoadReport())
    except SkinclsError as err:
        assert str(manifest) in str(err)
    else:
        assert all(s.regions == ("lesion",) for s in samples)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(prefix=st.binary(max_size=16), title=markup_text, encoding=st.sampled_from(ENCODINGS))
def test_region_file_bytes_give_a_spec_or_errors_naming_the_file(tmp_path, prefix, title, encoding):
    path = tmp_path / "lesion.yaml"
    text = f"name: lesion\ntitle: {title!r}\nclasses: [a, b]\n"
    path.write_bytes(prefix + encoded_or_empty(text, encoding))
    try:
        spec = load_region_file(path)
    except RegionSpecError as err:
        assert all(str(path) in p for p in err.problems)
    else:
        assert spec.classes == ["a", "b"]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    label=markup_text.filter(
        lambda t: t.strip() not in ("", "a", "b") and "\n" not in t and "," not in t
    )
)
def test_cli_prints_any_label_as_written(tmp_path, label):
    regions, _ = registry_with(tmp_path)
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(f"path,label,region\na.png,{label},lesion\n", encoding="utf-8")
    result = runner.invoke(app, ["analyze", str(manifest), "--regions-dir", str(regions)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"label: {label.strip()!r} is not a class" in result.stderr.replace("\n", "")


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["evaluate", "RUN", "--batch-size", "0"], "--batch-size"),
        (["evaluate", "RUN", "--workers", "-1"], "--workers"),
        (["predict", "RUN", "IMG", "--batch-size", "-3"], "--batch-size"),
        (["prepare", "DATA", "-o", "OUT", "--workers", "-1"], "--workers"),
        (["prepare", "DATA", "-o", "OUT", "--quality", "0"], "--quality"),
        (["demo", "--workers", "-1"], "--workers"),
    ],
)
def test_bad_sizes_and_worker_counts_are_one_clear_error(tiny_run, tmp_path, args, option):
    """Zero or negative batch sizes and negative worker counts are refused naming the option,
    before any work (they were tracebacks from torch's loader or range())."""
    names = {"RUN": str(tiny_run), "IMG": str(tmp_path / "x.png"), "DATA": str(tmp_path)}
    argv = [names.get(a, a) for a in args]
    argv = [str(tmp_path / "out") if a == "OUT" else a for a in argv]
    result = runner.invoke(app, argv)
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option}'" in result.stderr
    assert "Traceback" not in result.output + result.stderr


def test_the_python_api_refuses_bad_sizes_too():
    from skincls.data.prepare import PrepareOptions
    from skincls.serving.evaluate import EvalOptions

    with pytest.raises(SkinclsError, match="--batch-size: expected 1 or more, got 0"):
        EvalOptions(batch_size=0)
    with pytest.raises(SkinclsError, match="--workers: expected 0 or more, got -2"):
        PrepareOptions(workers=-2)
