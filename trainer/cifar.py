"""The CIFAR-10 vocabulary every reader shares: class names, the loaded arrays, the one error type.

Its own module so that the two readers — python batches (`trainer.data`) and
image folders (`trainer.imagefolder`) — both depend on it instead of on each other.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from cli_kit import UserError

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz")  # of an image folder (trainer.imagefolder)


class DataError(UserError):
    """The data directory, a batch file or an image is missing, corrupt or unsafe (a user error)."""


@dataclass(frozen=True)
class Cifar10:
    """Images as uint8 tensors [N, 3, 32, 32] (R, G, B planes), labels as int64 [N].

    `root` is the folder of the batches, the image folder (the one holding
    train/ and test/) or the archive file. `source_kind` is "batches",
    "imagefolder" or "archive"; for the last two `cache_file` is the decoded
    arrays' cache and `cached` says whether this load read it instead of
    decoding the images.
    """

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    root: Path
    source_kind: str = "batches"
    cached: bool = False
    cache_file: Path | None = None
