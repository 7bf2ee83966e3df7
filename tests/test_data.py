"""CIFAR-10 loading on the real sample: contents, safety against hostile pickles, corrupt files, splits."""
from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from trainer.data import DataError, batches_dir, load_cifar10, read_batch, resolve_data_dir, split_train_val


def test_sample_loads_with_expected_sizes_and_labels(cifar_dir):
    data = load_cifar10(cifar_dir)
    assert data.train_images.shape == (5170, 3, 32, 32) and data.train_images.dtype == torch.uint8
    assert data.test_images.shape == (1017, 3, 32, 32)
    assert data.train_labels.dtype == torch.int64 and len(data.train_labels) == 5170
    assert set(data.train_labels.tolist()) == set(range(10)) == set(data.test_labels.tolist())


def test_known_pixel_in_rgb_channel_order(cifar_dir):
    # The first training image of CIFAR-10 is a frog whose top-left pixel is RGB (59, 62, 63).
    data = load_cifar10(cifar_dir)
    assert data.train_labels[0].item() == 6
    assert data.train_images[0, :, 0, 0].tolist() == [59, 62, 63]


def test_batches_folder_itself_is_accepted(cifar_dir):
    inner = cifar_dir / "cifar-10-batches-py"
    assert batches_dir(inner) == inner
    assert len(load_cifar10(inner).test_labels) == 1017


def test_data_dir_falls_back_to_environment(monkeypatch, cifar_dir):
    monkeypatch.setenv("CIFAR10_DIR", str(cifar_dir))
    assert resolve_data_dir(None) == cifar_dir
    monkeypatch.delenv("CIFAR10_DIR")
    assert resolve_data_dir(None) == Path("data")


def test_missing_data_names_flag_and_directory(tmp_path):
    with pytest.raises(DataError, match="--data-dir") as err:
        load_cifar10(tmp_path / "nowhere")
    assert "--download" in str(err.value) and "nowhere" in str(err.value)


class _Exploit:
    """A pickle payload that would create a marker file when unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickle_that_runs_code_is_refused_and_code_does_not_run(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "data_batch_1"
    evil.write_bytes(pickle.dumps({"data": _Exploit(marker), "labels": [0]}, protocol=2))
    with pytest.raises(DataError, match="not a safe CIFAR-10 batch .refusing to load global"):
        read_batch(evil)
    assert not marker.exists()
    # The same file really is an exploit for a plain unpickler.
    pickle.loads(evil.read_bytes())
    assert marker.exists()


def _copy_sample(cifar_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "cifar-10-batches-py"
    shutil.copytree(cifar_dir / "cifar-10-batches-py", dst)
    for f in dst.iterdir():
        f.chmod(0o644)
    return dst


def test_truncated_batch_gives_clear_error(cifar_dir, tmp_path):
    folder = _copy_sample(cifar_dir, tmp_path)
    path = folder / "data_batch_3"
    path.write_bytes(path.read_bytes()[:100_000])
    with pytest.raises(DataError, match="data_batch_3: corrupt or truncated"):
        load_cifar10(tmp_path)


@pytest.mark.parametrize("batch, message", [
    ({"data": np.zeros((4, 3000), np.uint8), "labels": [0] * 4}, r"shape \(N, 3072\)"),
    ({"data": np.zeros((4, 3072), np.float32), "labels": [0] * 4}, "uint8"),
    ({"data": np.zeros((4, 3072), np.uint8), "labels": [0] * 3}, "4 images but labels"),
    ({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 10]}, r"labels must be in 0..9"),
    ([1, 2, 3], "expected a dict"),
])
def test_wrong_shapes_and_labels_are_rejected(tmp_path, batch, message):
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DataError, match=message):
        read_batch(path)


def test_missing_batch_file(cifar_dir, tmp_path):
    folder = _copy_sample(cifar_dir, tmp_path)
    (folder / "test_batch").unlink()
    with pytest.raises(DataError, match="test_batch is missing"):
        load_cifar10(tmp_path)


def test_official_size_file_with_wrong_checksum_is_rejected(tmp_path):
    path = tmp_path / "data_batch_2"
    path.write_bytes(b"\0" * 31_035_000)
    with pytest.raises(DataError, match="MD5"):
        read_batch(path)


def test_split_is_stratified_disjoint_and_seeded(cifar_dir):
    labels = load_cifar10(cifar_dir).train_labels
    train, val = split_train_val(labels, 0.1, seed=3)
    assert len(set(train.tolist()) & set(val.tolist())) == 0
    assert len(train) + len(val) == len(labels)
    counts = torch.bincount(labels, minlength=10).float()
    val_counts = torch.bincount(labels[val], minlength=10).float()
    assert torch.allclose(val_counts / counts, torch.full((10,), 0.1), atol=0.006)
    again, _ = split_train_val(labels, 0.1, seed=3)
    other, _ = split_train_val(labels, 0.1, seed=4)
    assert torch.equal(train, again) and not torch.equal(train, other)


def test_data_error_is_the_projects_user_error_and_a_value_error():
    from cli_kit import UserError

    assert issubclass(DataError, UserError) and issubclass(DataError, ValueError)


def test_missing_data_message_names_every_layout_on_one_line(tmp_path):
    with pytest.raises(DataError) as err:
        load_cifar10(tmp_path / "nowhere")
    message = str(err.value)
    assert "\n" not in message
    for layout in ("cifar-10-batches-py/data_batch_1..5", "train/<class>/", ".tar.gz"):
        assert layout in message


def test_sample_is_the_batch_layout_and_not_cached(cifar_dir):
    data = load_cifar10(cifar_dir)
    assert data.source_kind == "batches" and data.cached is False and data.cache_file is None
