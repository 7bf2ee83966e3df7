"""Batches from uint8 images that stay resident on the device, augmented a batch at a time.

Following airbench, nothing is decoded per image and there are no worker
processes: the whole split is one uint8 tensor on the training device, and
each batch is gathered, randomly cropped (4-pixel zero padding), flipped and
normalised with a few tensor ops on the device itself.
"""
from __future__ import annotations

import math
from typing import Iterator

import torch

# CIFAR-10 channel statistics, applied as x * scale + shift on 0..255 inputs.
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
PAD = 4


class DeviceLoader:
    """Iterates (float images, labels) batches; `train=True` shuffles and augments."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, device: torch.device,
                 train: bool = True, seed: int = 0, channels_last: bool = False, epoch_images: int | None = None):
        self.images = images.to(device, non_blocking=True).contiguous()
        self.labels = labels.to(device, non_blocking=True)
        self.batch_size = batch_size
        self.device = device
        self.train = train
        self.drop_last = train  # training: no small last batch (its BatchNorm statistics would be noisy)
        # A training epoch of `epoch_images` drawn afresh from all the images each epoch: a short proxy
        # still sees the whole split over its epochs (EcoNAS: more samples beat more epochs).
        self.epoch_images = min(epoch_images, len(self.images)) if train and epoch_images else len(self.images)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        # Shuffling and augmentation draw from their own generator on the device,
        # so a seed fixes the order and the crops without touching global RNG state.
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(seed)
        self.scale = torch.tensor([1 / (255 * s) for s in STD], device=device).view(1, 3, 1, 1)
        self.shift = torch.tensor([-m / s for m, s in zip(MEAN, STD)], device=device).view(1, 3, 1, 1)
        self._base = torch.arange(32, device=device)

    def __len__(self) -> int:
        n = self.epoch_images
        if self.drop_last and n >= self.batch_size:
            return n // self.batch_size
        return math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = self.epoch_images
        order = torch.randperm(len(self.images), device=self.device, generator=self.generator)[:n] \
            if self.train else None
        for i in range(len(self)):
            sl = slice(i * self.batch_size, min(n, (i + 1) * self.batch_size))
            if order is None:
                x, y = self.images[sl], self.labels[sl]
            else:
                idx = order[sl]
                x, y = self.augment(self.images[idx]), self.labels[idx]
            yield self.normalise(x), y

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """Random 32×32 crop of the zero-padded 40×40 image and a random horizontal flip, per image."""
        b = x.shape[0]
        padded = torch.nn.functional.pad(x, (PAD, PAD, PAD, PAD))
        dy = torch.randint(0, 2 * PAD + 1, (b,), device=self.device, generator=self.generator)
        dx = torch.randint(0, 2 * PAD + 1, (b,), device=self.device, generator=self.generator)
        flip = torch.rand(b, device=self.device, generator=self.generator) < 0.5
        rows = (dy[:, None] + self._base)[:, None, :, None]  # [B, 1, 32, 1]
        cols = dx[:, None] + self._base
        cols = torch.where(flip[:, None], cols.flip(1), cols)[:, None, None, :]  # flip = reversed columns
        batch = torch.arange(b, device=self.device)[:, None, None, None]
        channel = torch.arange(3, device=self.device)[None, :, None, None]
        return padded[batch, channel, rows, cols]

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        out = x.float().mul_(self.scale).add_(self.shift)
        return out.contiguous(memory_format=self.memory_format)
