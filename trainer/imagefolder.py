"""CIFAR-10 in the image-folder layout, from a folder or a tar archive, decoded once and cached.

CIFAR-10 also travels as image folders (``train/<class>/*.jpg|png``,
``test/<class>/*``), e.g. ``../shared/cifar10-jpeg/cifar10-jpeg.tar.gz``.
This module reads that layout with the same checks as the batch reader in
`trainer.data`: every image 32x32 RGB, exactly the ten CIFAR-10 class folders
(labels in `CLASSES` order), no empty split, and a one-line `DataError` naming
the file for anything else. Order is reproducible: classes in `CLASSES`
order, files within a class in sorted filename order (the shared archive
names them NNNN.jpg by their rank in the official batch order).

Archives are read in one streaming pass, straight from the member bytes:
nothing is extracted to disk, and a .tar.gz is decompressed once (random
access into gzip would decompress again for every backward seek).

Why a cache: decoding 60,000 JPEGs costs seconds and every Ray trial process
loads the data again. Measured on the shared archive (one process on a busy
2-core machine): first load 7-8 s (tar pass ~2.5 s, PIL decode ~4.8 s, cache
write ~0.5 s), cached load 0.1-1 s (sha256 of the 19 MB archive, then reading
the 184 MB .npz). The decoded uint8 arrays are kept as an
uncompressed ``.npz`` in `cache_dir()` (``$GHOSTNAS_CACHE``, else
``~/.cache/ghostnas``), written to a temporary file and renamed, so a killed
writer never leaves a half file under the real name. A cache file that does
not read back cleanly (truncated, bad CRC, wrong shapes, other key) is
ignored and rebuilt; failing to write one only warns, since the data loaded.
"""
from __future__ import annotations

import hashlib
import io
import os
import tarfile
import warnings
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .cifar import ARCHIVE_SUFFIXES, CLASSES, Cifar10, DataError
from host.files import write_atomic

SPLITS = ("train", "test")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
LAYOUT = "train/<class>/*.jpg|png and test/<class>/*"
# Decoders PIL may use: the formats the layout allows, and none of PIL's
# rarely exercised ones, since the bytes come from outside.
FORMATS = ("JPEG", "PNG")
# A 32x32 JPEG or PNG is a few KB; a member this large is not one, and is not read into memory.
MAX_IMAGE_BYTES = 1 << 20
# Part of every cache key: bump it when decoding or checks change, so old cache files are never read.
CACHE_VERSION = 1
ARRAYS = ("train_images", "train_labels", "test_images", "test_labels")
_ALLOWED = ", ".join(CLASSES)
_JUNK_TOP = "__MACOSX"  # resource forks that macOS zips and tars add beside the real folder


def _hidden(part: str) -> bool:
    return part.startswith(".")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


# ------------------------------------------------------------------ where
def is_archive(path: Path) -> bool:
    """A file named .tar, .tar.gz or .tgz, or any other file that tarfile can open."""
    if not path.is_file():
        return False
    if path.name.lower().endswith(ARCHIVE_SUFFIXES):
        return True
    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False


def find_image_folder(root: Path) -> Path | None:
    """The folder holding train/ and test/: `root` itself, or its one sub-folder that does.

    A folder with only one of the splits still counts (its load then says
    which split is missing); None when nothing looks like the layout.
    """
    def has_split(folder: Path) -> bool:
        return any((folder / split).is_dir() for split in SPLITS)

    if not root.is_dir():
        return None
    if has_split(root):
        return root
    inside = [p for p in root.iterdir() if not _hidden(p.name) and p.is_dir() and has_split(p)]
    return inside[0] if len(inside) == 1 else None


def cache_dir() -> Path:
    """``$GHOSTNAS_CACHE`` when set, else ``~/.cache/ghostnas``."""
    return Path(os.environ.get("GHOSTNAS_CACHE") or Path.home() / ".cache" / "ghostnas").expanduser()


# ------------------------------------------------------------------ listing
@dataclass(frozen=True)
class _Plan:
    """The checked layout: per split, (label, path relative to the layout root) in load order."""

    files: dict[str, list[tuple[int, str]]]


def _plan(files: list[str], dirs: list[str], name: Callable[[str], str], where: str) -> _Plan:
    """Check the layout from its relative file and folder paths; `name` turns one into a path for messages."""
    classes: dict[str, dict[str, list[str]]] = {}
    for d in dirs:
        parts = d.split("/")
        if parts[0] not in SPLITS or any(_hidden(p) for p in parts):
            continue
        split_classes = classes.setdefault(parts[0], {})
        if len(parts) >= 2:
            split_classes.setdefault(parts[1], [])
        if len(parts) >= 3:
            raise DataError(f"{name(d)}: a folder inside a class folder; the layout is {LAYOUT}")
    for f in files:
        parts = f.split("/")
        if parts[0] not in SPLITS or any(_hidden(p) for p in parts):
            continue  # a README beside train/ and test/, .DS_Store, ...
        if len(parts) == 2:
            raise DataError(f"{name(f)}: a file directly in {parts[0]}/; images belong in class folders ({LAYOUT})")
        if len(parts) > 3:
            raise DataError(f"{name(f)}: nested inside a class folder; the layout is {LAYOUT}")
        if not parts[2].lower().endswith(IMAGE_SUFFIXES):
            raise DataError(f"{name(f)}: not an image file (expected {', '.join(IMAGE_SUFFIXES)})")
        classes.setdefault(parts[0], {}).setdefault(parts[1], []).append(parts[2])
    plan: dict[str, list[tuple[int, str]]] = {}
    for split in SPLITS:
        if split not in classes:
            raise DataError(f"{where}: no {split}/ folder; an image-folder CIFAR-10 holds {LAYOUT}")
        found = classes[split]
        unknown = sorted(set(found) - set(CLASSES))
        if unknown:
            raise DataError(f"{name(f'{split}/{unknown[0]}')}: unknown class folder; "
                            f"the class folders must be exactly: {_ALLOWED}")
        if not any(found.values()):
            raise DataError(f"{name(split)}/: empty split, no {', '.join(IMAGE_SUFFIXES)} images in its class folders")
        missing = [c for c in CLASSES if c not in found]
        if missing:
            raise DataError(f"{name(split)}/: no folder for class {missing[0]!r}; "
                            f"the class folders must be exactly: {_ALLOWED}")
        empty = [c for c in CLASSES if not found[c]]
        if empty:
            raise DataError(f"{name(f'{split}/{empty[0]}')}: class folder without images")
        plan[split] = [(label, f"{split}/{cls}/{fn}") for label, cls in enumerate(CLASSES)
                       for fn in sorted(found[cls])]
    return _Plan(plan)


class _Folder:
    """An image folder on disk; its cache key hashes the sorted (relative path, size, mtime_ns) list."""

    kind = "imagefolder"

    def __init__(self, root: Path):
        self.root = root
        files, dirs, self.stats = [], [], {}
        try:
            for split in SPLITS:
                if not (root / split).is_dir():
                    continue
                dirs.append(split)
                with os.scandir(root / split) as top:
                    for entry in top:
                        if not entry.is_dir():
                            files.append(f"{split}/{entry.name}")
                            continue
                        dirs.append(f"{split}/{entry.name}")
                        with os.scandir(entry.path) as folder:
                            for item in folder:
                                rel = f"{split}/{entry.name}/{item.name}"
                                if item.is_dir():
                                    dirs.append(rel)
                                    continue
                                files.append(rel)
                                if item.is_file():
                                    st = item.stat()
                                    self.stats[rel] = (st.st_size, st.st_mtime_ns)
        except OSError as exc:
            raise DataError(f"{root}: cannot list the image folder ({type(exc).__name__}: {_one_line(exc)})") \
                from None
        self.plan = _plan(files, dirs, self.name, str(root))

    def name(self, rel: str) -> str:
        return str(self.root / rel)

    def content_key(self) -> str:
        h = hashlib.sha256()
        for split in SPLITS:
            for _, rel in self.plan.files[split]:
                size, mtime = self.stats.get(rel, (-1, -1))
                h.update(f"{rel}\t{size}\t{mtime}\n".encode())
        return h.hexdigest()

    def images(self) -> Callable[[str], bytes]:
        def read(rel: str) -> bytes:
            path = self.root / rel
            size = self.stats.get(rel, (None,))[0]
            if size is None:
                raise DataError(f"{path}: not a regular file")
            if size > MAX_IMAGE_BYTES:
                raise DataError(f"{path}: {size} bytes, far too large for a 32x32 image")
            try:
                return path.read_bytes()
            except OSError as exc:
                raise DataError(f"{path}: cannot be read ({type(exc).__name__}: {_one_line(exc)})") from None
        return read


class _Archive:
    """A tar archive (plain or compressed) of an image folder; its cache key is the sha256 of its bytes."""

    kind = "archive"

    def __init__(self, path: Path):
        self.path = path
        self.prefix = ""

    def name(self, rel: str) -> str:
        return f"{self.path}: {self.prefix}{rel}"

    def content_key(self) -> str:
        with open(self.path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()

    def _scan(self) -> list[tuple[tuple[str, ...], bool, bytes | None]]:
        """One streaming pass: (path parts, is_dir, bytes of image-named files) per entry."""
        entries = []
        try:
            with tarfile.open(self.path, "r|*") as tar:
                for member in tar:
                    parts = tuple(p for p in PurePosixPath(member.name).parts if p not in ("/", "."))
                    if not parts:
                        continue
                    if member.isdir():
                        entries.append((parts, True, None))
                        continue
                    data = None
                    if member.isfile() and parts[-1].lower().endswith(IMAGE_SUFFIXES) and not _hidden(parts[-1]):
                        if member.size > MAX_IMAGE_BYTES:
                            raise DataError(f"{self.path}: {member.name}: {member.size} bytes, "
                                            "far too large for a 32x32 image")
                        data = tar.extractfile(member).read()
                    entries.append((parts, False, data))
        except DataError:
            raise
        except Exception as exc:  # tarfile.ReadError, EOFError, zlib.error, OSError on a truncated file ...
            raise DataError(f"{self.path}: not a readable tar archive ({type(exc).__name__}: {_one_line(exc)})") \
                from None
        return entries

    def plan_and_read(self) -> tuple[_Plan, Callable[[str], bytes]]:
        entries = self._scan()
        if any(parts[-1] == "data_batch_1" for parts, is_dir, _ in entries if not is_dir):
            raise DataError(f"{self.path} holds CIFAR-10 python batches, not an image folder; extract it "
                            f"(tar xzf {self.path.name}) and pass the extracted folder as --data-dir")
        # The layout sits at the top level, or under exactly one top-level folder.
        visible = [parts for parts, _, _ in entries if parts[0] != _JUNK_TOP and not any(map(_hidden, parts))]
        if not any(parts[0] in SPLITS and len(parts) >= 2 for parts in visible):
            tops = sorted({parts[0] for parts in visible if len(parts) >= 2 and parts[1] in SPLITS})
            if len(tops) != 1:
                found = sorted({parts[0] for parts in visible})
                where = f"several top-level folders hold one ({', '.join(tops)})" if tops else \
                    f"its top level holds: {', '.join(found[:8]) or 'nothing'}"
                raise DataError(f"{self.path}: no train/ or test/ folder at the top level or under a single "
                                f"top-level folder ({where}); an image-folder CIFAR-10 holds {LAYOUT}")
            self.prefix = tops[0] + "/"
        depth = 1 if self.prefix else 0
        files, dirs, data = [], [], {}
        for parts, is_dir, blob in entries:
            if len(parts) <= depth or (depth and parts[0] + "/" != self.prefix):
                continue
            rel = "/".join(parts[depth:])
            (dirs if is_dir else files).append(rel)
            if blob is not None:
                data[rel] = blob
        plan = _plan(files, dirs, self.name, str(self.path))

        def read(rel: str) -> bytes:
            if rel not in data:
                raise DataError(f"{self.name(rel)}: not a regular file")
            return data[rel]
        return plan, read


# ------------------------------------------------------------------ decode
class _BadImage(Exception):
    """Why an image is refused; the caller adds its name (built only on failure: 60,000 names cost time)."""


def _pixels(data: bytes) -> np.ndarray:
    """JPEG or PNG bytes → uint8 [32, 32, 3], or _BadImage saying why not."""
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as im:
            # Size and mode come from the header: checked before any pixel is decoded.
            if im.size != (32, 32):
                raise _BadImage(f"{im.size[0]}x{im.size[1]} image; CIFAR-10 images are 32x32 RGB")
            if im.mode != "RGB":
                raise _BadImage(f"{im.mode}-mode image; CIFAR-10 images are RGB (3 channels)")
            pixels = im.tobytes()
    except _BadImage:
        raise
    except UnidentifiedImageError:
        raise _BadImage("not a JPEG or PNG image (corrupt or another format)") from None
    except Exception as exc:  # OSError("image file is truncated"), SyntaxError from the PNG reader, ...
        raise _BadImage(f"corrupt or truncated image ({type(exc).__name__}: {_one_line(exc)})") from None
    return np.frombuffer(pixels, np.uint8).reshape(32, 32, 3)


def decode_image(data: bytes, name: str) -> np.ndarray:
    """JPEG or PNG bytes → uint8 [3, 32, 32]; anything else is a one-line DataError naming `name`."""
    try:
        return _pixels(data).transpose(2, 0, 1).copy()
    except _BadImage as exc:
        raise DataError(f"{name}: {exc}") from None


def _decode_all(plan: _Plan, read: Callable[[str], bytes], name: Callable[[str], str]) -> dict[str, np.ndarray]:
    arrays = {}
    for split in SPLITS:
        entries = plan.files[split]
        images = np.empty((len(entries), 3, 32, 32), np.uint8)
        for i, (_, rel) in enumerate(entries):
            try:
                images[i] = _pixels(read(rel)).transpose(2, 0, 1)
            except _BadImage as exc:
                raise DataError(f"{name(rel)}: {exc}") from None
        arrays[f"{split}_images"] = images
        arrays[f"{split}_labels"] = np.array([label for label, _ in entries], np.int64)
    return arrays


# ------------------------------------------------------------------ cache
def _cache_file(kind: str, content_key: str) -> tuple[Path, str]:
    key = hashlib.sha256(f"ghostnas-cifar10 v{CACHE_VERSION} {kind} {content_key}".encode()).hexdigest()
    return cache_dir() / f"cifar10-{kind}-{key[:32]}.npz", key


def _source(path: Path) -> _Folder | _Archive:
    return _Archive(path) if path.is_file() else _Folder(path)


def cache_path(source: str | Path) -> Path:
    """Where the decoded arrays of `source` (an image folder or an archive of one) are cached.

    The name holds a hash of the source's content: for an archive the sha256
    of its bytes (a copy elsewhere hits the same file); for a folder a hash
    of the sorted (relative path, size, mtime_ns) of its images, which is
    cheap to take for 60,000 files but does not see an edit that keeps both
    size and mtime (e.g. a copy with restored timestamps and other pixels).
    """
    src = _source(Path(source))
    return _cache_file(src.kind, src.content_key())[0]


def _read_cache(path: Path, key: str) -> dict[str, np.ndarray] | None:
    """The cached arrays, or None when the file is missing or does not read back as a valid cache."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            if str(npz["key"]) != key:
                return None
            arrays = {name: npz[name] for name in ARRAYS}  # reading checks each member's CRC
    except Exception:  # missing, truncated, not a zip, bad CRC, missing array: rebuild it
        return None
    for split in SPLITS:
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if (images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (3, 32, 32) or not len(images)
                or labels.dtype != np.int64 or labels.shape != (len(images),)
                or labels.min() < 0 or labels.max() >= len(CLASSES)):
            return None
    return arrays


def _write_cache(path: Path, key: str, arrays: dict[str, np.ndarray]) -> None:
    """Written atomically (host.files): readers see the old file or the whole new one; a failure is a warning."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, lambda f: np.savez(f, key=np.array(key), **arrays))
    except OSError as exc:
        warnings.warn(f"could not write the CIFAR-10 cache {path} ({type(exc).__name__}: {_one_line(exc)}); "
                      "the next load decodes the images again", stacklevel=3)


# ------------------------------------------------------------------ load
def load_image_folder(source: str | Path) -> Cifar10:
    """CIFAR-10 from an image folder (the folder holding train/ and test/) or a tar archive of one.

    The cache is looked up first; on a miss the images are decoded, checked
    and cached. `Cifar10.cached` says which happened, `Cifar10.cache_file`
    where the arrays live (None for the batch layout).
    """
    path = Path(source)
    src = _source(path)
    if isinstance(src, _Folder):  # listing a folder is cheap and its checks come first
        plan, read = src.plan, src.images()
    cache, key = _cache_file(src.kind, src.content_key())
    arrays = _read_cache(cache, key)
    cached = arrays is not None
    if arrays is None:
        if isinstance(src, _Archive):
            plan, read = src.plan_and_read()
        arrays = _decode_all(plan, read, src.name)
        _write_cache(cache, key, arrays)
    return Cifar10(
        train_images=torch.from_numpy(arrays["train_images"]),
        train_labels=torch.from_numpy(arrays["train_labels"]),
        test_images=torch.from_numpy(arrays["test_images"]),
        test_labels=torch.from_numpy(arrays["test_labels"]),
        root=path,
        source_kind=src.kind,
        cached=cached,
        cache_file=cache,
    )
