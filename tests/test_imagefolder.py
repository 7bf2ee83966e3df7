"""CIFAR-10 image folders: the real shared JPEG archive, hand-made folders and archives, the cache, errors."""
from __future__ import annotations

import io
import itertools
import math
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from PIL import Image

from trainer.data import CLASSES, DataError, load_cifar10, read_batch
from trainer import imagefolder
from trainer.imagefolder import cache_dir, cache_path, load_image_folder

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
ARCHIVE = SHARED / "cifar10-jpeg" / "cifar10-jpeg.tar.gz"


@pytest.fixture(autouse=True)
def _own_cache(monkeypatch, tmp_path):
    """Every test gets an empty cache of its own: nothing is read from or written to ~/.cache."""
    monkeypatch.setenv("GHOSTNAS_CACHE", str(tmp_path / "cache"))


# ------------------------------------------------------------ the real archive
@pytest.fixture(scope="session")
def full_archive(tmp_path_factory):
    """The shared 60,000-image archive loaded twice into a fresh cache: (first load, second load).

    The full decode is the expensive part (seconds), so it happens once per session.  The second
    load runs with the decoder replaced by a tripwire: a cache hit decodes no image (how much
    faster that is, is `trainer/imagefolder.py`'s measured figure, not a test's).
    """
    if not ARCHIVE.is_file():
        pytest.fail(f"the shared CIFAR-10 JPEG archive is missing: {ARCHIVE}")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GHOSTNAS_CACHE", str(tmp_path_factory.mktemp("cache")))
        first = load_cifar10(ARCHIVE)

        def tripwire(*args, **kwargs):
            raise AssertionError("the second load decoded images: the cache was not used")

        mp.setattr(imagefolder, "_decode_all", tripwire)
        second = load_cifar10(ARCHIVE)
    return first, second


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = ((a.double() - b.double()) ** 2).mean().item()
    return math.inf if mse == 0 else 10 * math.log10(255 ** 2 / mse)


def test_shared_archive_has_all_images_in_class_order(full_archive):
    data = full_archive[0]
    assert data.source_kind == "archive" and not data.cached and data.root == ARCHIVE
    assert data.train_images.shape == (50_000, 3, 32, 32) and data.train_images.dtype == torch.uint8
    assert data.test_images.shape == (10_000, 3, 32, 32) and data.test_images.dtype == torch.uint8
    assert data.train_labels.dtype == torch.int64 == data.test_labels.dtype
    assert torch.bincount(data.train_labels).tolist() == [5000] * 10
    assert torch.bincount(data.test_labels).tolist() == [1000] * 10
    # Classes in CIFAR-10 order, files in name order: labels are sorted blocks.
    assert torch.equal(data.train_labels, torch.arange(10).repeat_interleave(5000))
    assert torch.equal(data.test_labels, torch.arange(10).repeat_interleave(1000))


def test_shared_archive_matches_official_pixels(full_archive, cifar_dir):
    """test/cat/0000.jpg is the first cat of the official test batch; train/frog/0000.jpg its first training image."""
    data = full_archive[0]
    cat = CLASSES.index("cat")
    test_images, test_labels = read_batch(cifar_dir / "cifar-10-batches-py" / "test_batch")
    official_cat = torch.from_numpy(test_images[np.flatnonzero(test_labels == cat)[0]])
    assert psnr(data.test_images[cat * 1000], official_cat) >= 25
    assert psnr(data.test_images[cat * 1000 + 1], official_cat) < 20  # the check can fail
    train_images, train_labels = read_batch(cifar_dir / "cifar-10-batches-py" / "data_batch_1")
    assert train_labels[0] == CLASSES.index("frog")
    assert psnr(data.train_images[CLASSES.index("frog") * 5000], torch.from_numpy(train_images[0])) >= 25


def test_second_load_of_shared_archive_hits_the_cache(full_archive):
    first, second = full_archive
    assert second.cached and second.cache_file == first.cache_file and second.cache_file.is_file()
    assert second.cache_file.parent == first.cache_file.parent and second.cache_file.suffix == ".npz"
    for field in ("train_images", "train_labels", "test_images", "test_labels"):
        assert torch.equal(getattr(first, field), getattr(second, field))


# ------------------------------------------------------------ hand-made folders
def _pixels(seed: int, size=(32, 32), mode="RGB") -> Image.Image:
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    arr = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    return Image.fromarray(arr[..., 0] if channels == 1 else arr, mode)


def _smooth_pixels(seed: int) -> Image.Image:
    """Random 4x4 colours blown up bilinearly: smooth, as photos are, so JPEG keeps them at about 32 dB
    (noise is JPEG's worst case, 12 dB, hardly above a flat grey image's 10.8 dB)."""
    low = np.random.default_rng(seed).integers(0, 256, (4, 4, 3), dtype=np.uint8)
    return Image.fromarray(low).resize((32, 32), Image.BILINEAR)


def make_folder(root: Path, per_class: int = 2, fmt: str = "PNG",
                pixels: Callable[[int], Image.Image] = _pixels) -> dict[str, list[np.ndarray]]:
    """train/ and test/ with `per_class` `pixels` images per class; returns the expected [3, 32, 32] arrays in order."""
    expected: dict[str, list[np.ndarray]] = {"train": [], "test": []}
    ext = {"PNG": "png", "JPEG": "jpg"}[fmt]
    for s, split in enumerate(("train", "test")):
        for label, cls in enumerate(CLASSES):
            folder = root / split / cls
            folder.mkdir(parents=True)
            # Written in reverse, so load order must come from sorting names, not from the file system.
            for i in reversed(range(per_class)):
                pixels(1000 * s + 10 * label + i).save(folder / f"{i:04d}.{ext}", fmt)
            expected[split] += [np.asarray(pixels(1000 * s + 10 * label + i)).transpose(2, 0, 1)
                                for i in range(per_class)]
    return expected


def make_archive(folder: Path, path: Path, top: str | None = None) -> Path:
    """Pack `folder`'s contents into `path` (.tar, .tar.gz or .tgz), at the top level or under `top`/."""
    mode = "w" if path.name.endswith(".tar") else "w:gz"
    with tarfile.open(path, mode) as tar:
        for child in sorted(folder.iterdir()):
            tar.add(child, arcname=f"{top}/{child.name}" if top else child.name)
    return path


def check_loaded(data, expected):
    for split in ("train", "test"):
        images = getattr(data, f"{split}_images")
        assert images.dtype == torch.uint8 and images.shape == (20, 3, 32, 32)
        assert np.array_equal(images.numpy(), np.stack(expected[split]))
        assert getattr(data, f"{split}_labels").tolist() == [c for c in range(10) for _ in range(2)]


def test_png_folder_loads_exact_pixels_in_class_and_name_order(tmp_path):
    expected = make_folder(tmp_path / "cifar")
    data = load_cifar10(tmp_path / "cifar")
    assert data.source_kind == "imagefolder" and data.root == tmp_path / "cifar" and not data.cached
    check_loaded(data, expected)


def test_folder_under_one_subfolder_is_found(tmp_path):
    expected = make_folder(tmp_path / "data" / "cifar10-images")
    data = load_cifar10(tmp_path / "data")
    assert data.root == tmp_path / "data" / "cifar10-images"
    check_loaded(data, expected)


def test_jpeg_folder_loads_within_jpeg_tolerance(tmp_path):
    expected = make_folder(tmp_path / "cifar", fmt="JPEG", pixels=_smooth_pixels)
    data = load_cifar10(tmp_path / "cifar")
    originals = [torch.tensor(a) for split in ("train", "test") for a in expected[split]]
    # Every image of both splits, in class and name order, within JPEG's loss of its own original
    # (32 dB or more here); another image of the set, a flat grey one or the colours in BGR order
    # stay below 17 dB, so the bound can fail.
    for split in ("train", "test"):
        images = getattr(data, f"{split}_images")
        assert images.dtype == torch.uint8 and images.shape == (20, 3, 32, 32)
        assert getattr(data, f"{split}_labels").tolist() == [c for c in range(10) for _ in range(2)]
        scores = [psnr(images[i], torch.tensor(want)) for i, want in enumerate(expected[split])]
        assert min(scores) >= 25, (split, scores)
    impostors = [psnr(a, b) for a, b in itertools.permutations(originals, 2)]
    impostors += [psnr(torch.full((3, 32, 32), 128), a) for a in originals]
    impostors += [psnr(a.flip(0), a) for a in originals]
    assert max(impostors) < 20


@pytest.mark.parametrize("name, top", [
    ("cifar.tar.gz", None), ("cifar.tar.gz", "cifar10"), ("cifar.tgz", "images"), ("cifar.tar", None),
])
def test_archive_loads_with_or_without_top_folder(tmp_path, name, top):
    expected = make_folder(tmp_path / "cifar")
    archive = make_archive(tmp_path / "cifar", tmp_path / name, top)
    data = load_cifar10(archive)
    assert data.source_kind == "archive" and data.root == archive and not data.cached
    check_loaded(data, expected)
    again = load_cifar10(str(archive))
    assert again.cached and again.cache_file == cache_path(archive) == data.cache_file
    check_loaded(again, expected)


def test_archive_ignores_macos_junk_and_readme(tmp_path):
    expected = make_folder(tmp_path / "cifar" / "top")
    (tmp_path / "cifar" / "top" / "README.md").write_text("CIFAR-10 as images\n")
    (tmp_path / "cifar" / "top" / "train" / "cat" / ".DS_Store").write_bytes(b"\0\1")
    (tmp_path / "cifar" / "__MACOSX").mkdir()
    (tmp_path / "cifar" / "__MACOSX" / "._top").write_bytes(b"\0")
    check_loaded(load_cifar10(make_archive(tmp_path / "cifar", tmp_path / "x.tar.gz")), expected)


def test_batches_win_over_image_folders_and_are_not_cached(cifar_dir):
    data = load_cifar10(cifar_dir)
    assert data.source_kind == "batches" and not data.cached and data.cache_file is None
    assert not cache_dir().exists()


# ------------------------------------------------------------ the cache
def test_cache_lives_in_ghostnas_cache_else_home(monkeypatch, tmp_path):
    assert cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("GHOSTNAS_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "ghostnas"


def test_folder_cache_hit_then_rebuilt_when_a_file_changes(tmp_path):
    make_folder(tmp_path / "cifar")
    first = load_cifar10(tmp_path / "cifar")
    assert not first.cached and first.cache_file == cache_path(tmp_path / "cifar") and first.cache_file.is_file()
    assert [p.name for p in first.cache_file.parent.iterdir()] == [first.cache_file.name]  # no temp file left
    second = load_cifar10(tmp_path / "cifar")
    assert second.cached and torch.equal(second.train_images, first.train_images)
    changed = tmp_path / "cifar" / "train" / "dog" / "0001.png"
    _pixels(99).save(changed)
    os.utime(changed, ns=(1, 1))  # a different mtime, whatever the clock's resolution
    third = load_cifar10(tmp_path / "cifar")
    assert not third.cached and third.cache_file != first.cache_file
    dog1 = CLASSES.index("dog") * 2 + 1
    assert np.array_equal(third.train_images[dog1].numpy(), np.asarray(_pixels(99)).transpose(2, 0, 1))


def test_archive_cache_key_is_its_content(tmp_path):
    make_folder(tmp_path / "cifar")
    archive = make_archive(tmp_path / "cifar", tmp_path / "a.tar")
    copy = tmp_path / "copy" / "b.tar"
    copy.parent.mkdir()
    copy.write_bytes(archive.read_bytes())
    assert not load_cifar10(archive).cached
    assert load_cifar10(copy).cached  # same bytes elsewhere: same cache file
    other = make_archive(tmp_path / "cifar", tmp_path / "c.tar", top="x")
    assert cache_path(other) != cache_path(archive)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "flip", "empty"])
def test_corrupt_cache_is_ignored_and_rebuilt(tmp_path, damage):
    expected = make_folder(tmp_path / "cifar")
    archive = make_archive(tmp_path / "cifar", tmp_path / "c.tar.gz")
    cache = load_cifar10(archive).cache_file
    raw = cache.read_bytes()
    if damage == "truncate":
        cache.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":
        cache.write_bytes(b"not an npz file")
    elif damage == "flip":  # one pixel byte of the stored arrays: caught by the zip CRC
        pos = raw.index(b"train_images.npy") + 400
        cache.write_bytes(raw[:pos] + bytes([raw[pos] ^ 0xFF]) + raw[pos + 1:])
    else:
        cache.write_bytes(b"")
    rebuilt = load_cifar10(archive)
    assert not rebuilt.cached
    check_loaded(rebuilt, expected)
    assert load_cifar10(archive).cached


def test_unwritable_cache_only_warns(tmp_path, monkeypatch):
    expected = make_folder(tmp_path / "cifar")
    (tmp_path / "blocker").write_text("a file where the cache folder should be")
    monkeypatch.setenv("GHOSTNAS_CACHE", str(tmp_path / "blocker"))
    with pytest.warns(UserWarning, match="could not write the CIFAR-10 cache"):
        data = load_cifar10(tmp_path / "cifar")
    check_loaded(data, expected)


# ------------------------------------------------------------ errors
def _one_line_error(path, match):
    with pytest.raises(DataError, match=match) as err:
        load_cifar10(path)
    assert "\n" not in str(err.value)
    return str(err.value)


def _replace_image(root: Path, rel: str, img: Image.Image | None = None, raw: bytes | None = None) -> Path:
    path = root / rel
    if raw is None:
        buf = io.BytesIO()
        img.save(buf, "PNG" if rel.endswith(".png") else "JPEG")
        raw = buf.getvalue()
    path.write_bytes(raw)
    return path


@pytest.mark.parametrize("as_archive", [False, True], ids=["folder", "archive"])
@pytest.mark.parametrize("case", [
    "unknown class", "missing class", "64x64", "grayscale", "rgba", "truncated jpeg", "not an image",
    "empty split", "no test split", "file outside class folder",
])
def test_bad_image_folders_give_one_line_naming_the_problem(tmp_path, case, as_archive):
    root = tmp_path / "cifar"
    make_folder(root)
    if case == "unknown class":
        (root / "train" / "kitten").mkdir()
        _pixels(1).save(root / "train" / "kitten" / "0000.png")
        match, named = "unknown class folder; the class folders must be exactly: airplane, automobile", "train/kitten"
    elif case == "missing class":
        for f in (root / "test" / "truck").iterdir():
            f.unlink()
        (root / "test" / "truck").rmdir()
        match, named = "no folder for class 'truck'.*airplane, automobile, bird", "test"
    elif case == "64x64":
        _replace_image(root, "train/bird/0001.png", _pixels(1, size=(64, 64)))
        match, named = "64x64 image; CIFAR-10 images are 32x32", "train/bird/0001.png"
    elif case == "grayscale":
        _replace_image(root, "test/ship/0000.png", _pixels(1, mode="L"))
        match, named = "L-mode image; CIFAR-10 images are RGB", "test/ship/0000.png"
    elif case == "rgba":
        _replace_image(root, "test/ship/0001.png", _pixels(1, mode="RGBA"))
        match, named = "RGBA-mode image", "test/ship/0001.png"
    elif case == "truncated jpeg":
        buf = io.BytesIO()
        _pixels(5).save(buf, "JPEG")
        (root / "train" / "cat" / "0000.png").unlink()
        _replace_image(root, "train/cat/0000.jpg", raw=buf.getvalue()[: len(buf.getvalue()) // 2])
        match, named = "corrupt or truncated image", "train/cat/0000.jpg"
    elif case == "not an image":
        _replace_image(root, "train/deer/0001.png", raw=b"\x89PNG but not really")
        match, named = "not a JPEG or PNG image", "train/deer/0001.png"
    elif case == "empty split":
        for f in (root / "test").glob("*/*"):
            f.unlink()
        match, named = "empty split", "test"
    elif case == "no test split":
        for f in (root / "test").glob("*/*"):
            f.unlink()
        for d in (root / "test").iterdir():
            d.rmdir()
        (root / "test").rmdir()
        match, named = "no test/ folder", "test/"
    else:
        _pixels(3).save(root / "train" / "stray.png")
        match, named = "a file directly in train/; images belong in class folders", "train/stray.png"
    path = make_archive(root, tmp_path / "c.tar.gz", top="cifar10") if as_archive else root
    message = _one_line_error(path, match)
    assert named in message
    if as_archive:
        assert str(path) in message
    assert not any(cache_dir().glob("*.npz"))  # nothing cached from a bad source


def test_not_found_names_every_layout_and_an_archive_inside(tmp_path):
    (tmp_path / "downloads").mkdir()
    message = _one_line_error(tmp_path / "nowhere", "CIFAR-10 not found")
    for layout in ("cifar-10-batches-py", "train/<class>/*.jpg|png", "test/<class>/*", ".tar/.tar.gz/.tgz",
                   "--data-dir", "--download"):
        assert layout in message
    make_folder(tmp_path / "cifar")
    make_archive(tmp_path / "cifar", tmp_path / "downloads" / "cifar10.tar.gz")
    message = _one_line_error(tmp_path / "downloads", "holds cifar10.tar.gz: pass the archive file itself")


def test_corrupt_and_foreign_archives(tmp_path, cifar_dir):
    make_folder(tmp_path / "cifar")
    good = make_archive(tmp_path / "cifar", tmp_path / "good.tar.gz").read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(good[: len(good) // 2])
    _one_line_error(tmp_path / "cut.tar.gz", "cut.tar.gz: not a readable tar archive")
    (tmp_path / "notes.txt").write_text("hello")
    _one_line_error(tmp_path / "notes.txt", "notes.txt is a file but not a .tar/.tar.gz/.tgz archive")
    batches = make_archive(cifar_dir, tmp_path / "cifar-10-python.tar")
    _one_line_error(batches, "holds CIFAR-10 python batches, not an image folder; extract it")
    (tmp_path / "two" / "a").mkdir(parents=True)
    (tmp_path / "two" / "b").mkdir()
    make_folder(tmp_path / "two" / "a" / "x")
    make_folder(tmp_path / "two" / "b" / "y")
    _one_line_error(make_archive(tmp_path / "two", tmp_path / "two.tar"), "no train/ or test/ folder at the top")


def test_load_image_folder_directly(tmp_path):
    expected = make_folder(tmp_path / "cifar")
    check_loaded(load_image_folder(tmp_path / "cifar"), expected)


def test_train_cli_exits_2_with_one_line_on_a_bad_image_folder(tmp_path):
    root = tmp_path / "cifar"
    make_folder(root)
    (root / "train" / "kitten").mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           "GHOSTNAS_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run(
        [sys.executable, "-m", "trainer.train", "--arch", "cnn", "--data-dir", str(root), "--epochs", "1",
         "--device", "cpu", "--out", str(tmp_path / "out")],
        cwd=REPO, capture_output=True, text=True, timeout=300, env=env,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("trainer.train: error: ")
    assert "train/kitten: unknown class folder" in proc.stderr
    assert not (tmp_path / "out").exists()
