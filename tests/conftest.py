"""Shared fixtures: every test uses the real CIFAR-10 sample shipped beside the repo."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def cifar_dir() -> Path:
    """The real CIFAR-10 sample (../shared/cifar10-subset); $CIFAR10_SUBSET overrides."""
    path = Path(os.environ.get("CIFAR10_SUBSET", REPO.parent / "shared" / "cifar10-subset"))
    if not (path / "cifar-10-batches-py" / "data_batch_1").is_file():
        pytest.fail(f"CIFAR-10 sample not found at {path}; set CIFAR10_SUBSET")
    return path
