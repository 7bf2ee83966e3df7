"""CIFAR-10 from the standard python batches, loaded without trusting the pickles.

`load_cifar10` also reads the image-folder layout (a folder, or a .tar/.tar.gz/.tgz
archive of one); that reader and its cache live in `trainer.imagefolder`.

The batches are pickles, and unpickling runs whatever code a file names. The
loader therefore uses a restricted unpickler that admits only the handful of
globals a CIFAR batch needs (numpy array reconstruction, dtype, the codecs
helper) and refuses everything else before it runs.
"""
from __future__ import annotations

import hashlib
import io
import os
import pickle
from pathlib import Path

import numpy as np
import torch

from .cifar import ARCHIVE_SUFFIXES, CLASSES, Cifar10, DataError

BATCHES_DIR = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
# Official checksums (as torchvision lists them). A full official batch holds
# 10,000 images and is ~31 MB; smaller files (like the shipped sample) are
# subsets and cannot match, so only full-size files are checked.
OFFICIAL_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}
OFFICIAL_SIZE_RANGE = (31_000_000, 31_100_000)
SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _Refused(pickle.UnpicklingError):
    """The pickle names a global outside SAFE_GLOBALS."""


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):  # noqa: D401 - pickle API
        if (module, name) not in SAFE_GLOBALS:
            raise _Refused(f"refusing to load global {module}.{name}")
        return super().find_class(module, name)


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file → (uint8 images [N, 3, 32, 32], int64 labels [N]), fully checked."""
    raw = path.read_bytes()
    lo, hi = OFFICIAL_SIZE_RANGE
    if path.name in OFFICIAL_MD5 and lo <= len(raw) <= hi:
        digest = hashlib.md5(raw).hexdigest()
        if digest != OFFICIAL_MD5[path.name]:
            raise DataError(f"{path}: MD5 {digest} differs from the official CIFAR-10 checksum; the file is corrupt")
    try:
        batch = _SafeUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except _Refused as exc:
        raise DataError(f"{path}: not a safe CIFAR-10 batch ({exc}); it was not loaded") from None
    except Exception as exc:  # truncated files raise EOFError, ValueError, ...
        raise DataError(f"{path}: corrupt or truncated CIFAR-10 batch ({type(exc).__name__}: {exc})") from None
    if not isinstance(batch, dict):
        raise DataError(f"{path}: expected a dict with 'data' and 'labels', got {type(batch).__name__}")
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    data, labels = batch.get("data"), batch.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        desc = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: 'data' must be a uint8 array of shape (N, 3072), got {desc}")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError):
        raise DataError(f"{path}: 'labels' must be a list of integers") from None
    if labels.shape != (len(data),):
        raise DataError(f"{path}: {len(data)} images but labels of shape {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{path}: labels must be in 0..9, found {labels.min()}..{labels.max()}")
    return data.reshape(-1, 3, 32, 32), labels


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """--data-dir, else $CIFAR10_DIR, else ./data."""
    return Path(data_dir or os.environ.get("CIFAR10_DIR") or "data")


def batches_dir(root: Path) -> Path | None:
    """The folder holding the batch files: `root/cifar-10-batches-py` or `root` itself."""
    for candidate in (root / BATCHES_DIR, root):
        if (candidate / TRAIN_FILES[0]).exists():
            return candidate
    return None


def fetch_cifar10(root: Path) -> None:
    """Fetch the official archive with torchvision (needs internet)."""
    from torchvision.datasets import CIFAR10

    try:
        root.mkdir(parents=True, exist_ok=True)
        CIFAR10(str(root), train=True, download=True)
    except Exception as exc:
        raise DataError(f"could not download CIFAR-10 into {root} ({type(exc).__name__}: {exc}); "
                        f"without internet, copy {BATCHES_DIR}/ there and pass --data-dir") from None


def not_found_message(root: Path) -> str:
    """One line naming every accepted layout (and an archive sitting in `root`, which must be passed itself)."""
    hint = ""
    try:
        archives = sorted(p.name for p in root.iterdir() if p.name.lower().endswith(ARCHIVE_SUFFIXES) and p.is_file())
    except OSError:  # missing or unreadable folder
        archives = []
    if archives:
        hint = f"; {root} holds {', '.join(archives)}: pass the archive file itself as --data-dir"
    return (f"CIFAR-10 not found in {root}: expected the python batches ({BATCHES_DIR}/data_batch_1..5 and "
            f"test_batch), an image folder (train/<class>/*.jpg|png and test/<class>/*, classes {', '.join(CLASSES)}) "
            f"or a {'/'.join(ARCHIVE_SUFFIXES)} archive of one{hint}; "
            "pass --data-dir DIR, set $CIFAR10_DIR, or add --download to fetch it")


def load_cifar10(data_dir: str | Path | None = None, download: bool = False) -> Cifar10:
    """Load CIFAR-10 from whichever layout `data_dir` holds; `download=True` fetches the batches when none is there.

    Tried in this order: the python batches (`root/cifar-10-batches-py/` or
    `root` itself), an image folder (`root/train/<class>/*`, `root/test/<class>/*`,
    or the same under root's one sub-folder), and, when `root` is a file, a
    .tar/.tar.gz/.tgz archive of an image folder. Image folders are decoded
    once and cached (`trainer.imagefolder`).
    """
    root = resolve_data_dir(data_dir)
    if root.is_file():
        from .imagefolder import is_archive, load_image_folder

        if not is_archive(root):
            raise DataError(f"{root} is a file but not a {'/'.join(ARCHIVE_SUFFIXES)} archive; "
                            "--data-dir takes a CIFAR-10 folder or an archive of an image folder")
        return load_image_folder(root)
    folder = batches_dir(root)
    if folder is None and root.is_dir():
        from .imagefolder import find_image_folder, load_image_folder

        layout = find_image_folder(root)
        if layout is not None:
            return load_image_folder(layout)
    if folder is None and download:
        fetch_cifar10(root)
        folder = batches_dir(root)
    if folder is None:
        raise DataError(not_found_message(root))
    parts = []
    for name in (*TRAIN_FILES, TEST_FILE):
        path = folder / name
        if not path.is_file():
            raise DataError(f"CIFAR-10 in {folder} is incomplete: {name} is missing")
        parts.append(read_batch(path))
    train_images = np.concatenate([p[0] for p in parts[:-1]])
    train_labels = np.concatenate([p[1] for p in parts[:-1]])
    return Cifar10(
        train_images=torch.from_numpy(np.ascontiguousarray(train_images)),
        train_labels=torch.from_numpy(train_labels),
        test_images=torch.from_numpy(np.ascontiguousarray(parts[-1][0])),
        test_labels=torch.from_numpy(parts[-1][1]),
        root=folder,
    )


def seeded_subset(n: int, size: int | None, seed: int) -> torch.Tensor | None:
    """Indices of a seeded random subset of `size` out of `n`, or None when all `n` are kept.

    The one way every caller (proxy budgets, --train-size) draws a subset, so
    the same seed always picks the same images.
    """
    if size is None or size >= n:
        return None
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:size]


def default_val_size(n_train: int) -> int:
    """Validation images when --val-size is not given: min(max(10 % of N, 5,000), 20 % of N).

    5,000 images put the binomial SE of an accuracy near 0.5 at 0.7 points
    (517 images, 10 % of the CIFAR-10 sample, leave it at 2.2), so a large
    training set gives 10 % or 5,000, whichever is more; a small one gives
    at most 20 % of its images, keeping 80 % for training.  Full CIFAR-10
    (50,000): 5,000.  The 5,170-image sample: 1,034.
    """
    return max(1, min(max(round(0.1 * n_train), 5000), n_train // 5))


def stratified_counts(labels: np.ndarray, size: int) -> dict[int, int]:
    """Per-class validation counts summing to `size`, proportional to the class sizes.

    Largest remainder: each class gets floor(n_c · size / N), and the images
    left over go to the classes with the largest fractional parts (ties to
    the lower class), so the split is as stratified as integers allow.
    """
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * size / counts.sum()
    base = np.floor(quota).astype(int)
    order = sorted(range(len(classes)), key=lambda i: (-(quota[i] - base[i]), i))
    for i in order[: size - int(base.sum())]:
        base[i] += 1
    return {int(c): int(b) for c, b in zip(classes, base)}


def split_train_val(labels: torch.Tensor | np.ndarray, val_fraction: float | None = 0.1,
                    seed: int = 0, val_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded stratified split of training indices into (train, val).

    With `val_size` the validation split holds exactly that many images,
    spread over the classes by `stratified_counts`; otherwise each class
    gives round(n_c · val_fraction) images (how runs made before --val-size
    split, kept so that they resume on the same split).
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    if val_size is not None:
        if not 0 < val_size < len(labels):
            raise ValueError(f"val_size must be between 1 and {len(labels) - 1} (the data has {len(labels)} "
                             f"training images), got {val_size}")
        per_class = stratified_counts(labels, val_size)
    train, val = [], []
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        n_val = per_class[int(cls)] if val_size is not None else int(round(len(idx) * val_fraction))
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return torch.from_numpy(np.sort(np.concatenate(train))), torch.from_numpy(np.sort(np.concatenate(val)))
