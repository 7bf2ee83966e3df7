"""How close does the trainer's input pipeline get to the model's own speed?

GhostNet-1.0 (preset `ghostnet`) training steps on one device and thread
count, three ways, with the same model, optimizer, loss and threads, in both
memory layouts (NCHW and channels_last, side by side); each is time-boxed
after a warm-up, in interleaved rounds with the best round kept (the load of
a shared machine drifts by the minute):
  a. model-only: the step on one batch already resident and normalised (the ceiling),
                 in each layout; the faster one is "the best layout";
  b. trainer:    `DeviceLoader` (resident uint8, on-device crop/flip/normalise)
                 + `train_epoch`, on an epoch of the sample sized to the time box, in each layout;
  c. dataloader: the torchvision recipe — a Dataset of PIL images over the same
                 uint8 data with RandomCrop(32, padding=4), RandomHorizontalFlip,
                 ToTensor, Normalize, fed by torch.utils.data.DataLoader
                 (num_workers 0 and 2; the better one is reported), in the best layout.
With --per-budget it measures instead what a search's layout choice rests on:
for each budget preset (`smoke`, `cpu`, `gpu`), training steps of ghostnet and
selective_mca at that budget's own width, batch and recipe, in both layouts,
interleaved over rounds (median and range of seconds per step, the ratio), and
the layout `trainer.layout.choose_layout` picks there, as a new run would.
Without it, it ends with the lines
  `layout: channels_last/nchw model-only=X.XX trainer=Y.YY; best layout L`   (target on CPU: >= 1.4)
  `ratios: trainer/model_only=X.XX trainer/dataloader=Y.YY`  (best layout; targets on CPU: >= 0.90 and >= 1.5).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from space import build_model, load_arch  # noqa: E402
from trainer.budget import get_budget  # noqa: E402
from trainer.data import load_cifar10  # noqa: E402
from host.device import resolve_device  # noqa: E402
from trainer.loader import MEAN, STD, DeviceLoader  # noqa: E402
from trainer.loop import autocast, make_optimizer, make_scheduler, train_epoch  # noqa: E402


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads, the same for all three (default 1: as a search trial trains)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seconds", type=float, default=10.0, help="time box of each measurement")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds that share --seconds")
    p.add_argument("--workers", default="0,2", help="DataLoader num_workers values to try for (c)")
    p.add_argument("--per-budget", action="store_true",
                   help="both layouts at each budget preset's width and batch, and the layout a run would choose")
    p.add_argument("--steps", type=int, default=8, help="--per-budget: timed training steps per measurement")
    p.add_argument("--data-dir", default=os.environ.get("CIFAR10_DIR", str(REPO.parent / "shared" / "cifar10-subset")))
    return p.parse_args()


class Stepper:
    """One training step shared by all three measurements, so only the input path differs."""

    def __init__(self, device: torch.device, batch_size: int, channels_last: bool):
        torch.manual_seed(0)
        self.device = device
        self.channels_last = channels_last
        self.budget = get_budget("cpu", batch_size=batch_size, lr=0.05, channels_last=channels_last)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.model = build_model(load_arch("ghostnet")).to(device, memory_format=fmt)
        self.optimizer = make_optimizer(self.model, self.budget)
        # A very long schedule: the lr stays in warm-up, the step costs the same.
        self.scheduler = make_scheduler(self.optimizer, self.budget, steps_per_epoch=10**6)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=self.budget.label_smoothing)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The same step as trainer.loop.train_epoch (which (b) calls itself)."""
        with autocast(self.device):
            loss = self.criterion(self.model(x), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        return loss.detach()

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def timed(it, stepper: Stepper, seconds: float, warmup: int) -> float:
    """Images/s over as many steps of `it` as fit in `seconds`, after `warmup` untimed steps."""
    for _ in range(warmup):
        stepper.step(*next(it))
    stepper.sync()
    images, steps, start = 0, 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        x, y = next(it)
        stepper.step(x, y)
        images += len(y)
        steps += 1
        if stepper.device.type == "cuda" and steps % 10 == 0:
            stepper.sync()
    stepper.sync()
    return images / (time.perf_counter() - start)


def on_device(batches, device: torch.device, channels_last: bool = False):
    """Endless (x, y) batches moved to `device` in the layout (a no-op for resident batches)."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    while True:
        for x, y in batches:
            yield x.to(device, non_blocking=True).contiguous(memory_format=fmt), y.to(device, non_blocking=True)


def model_only(stepper: Stepper, images: torch.Tensor, labels: torch.Tensor, batch_size: int):
    """(a) The ceiling: one resident, already normalised batch, stepped again and again."""
    loader = DeviceLoader(images[:batch_size], labels[:batch_size], batch_size, stepper.device, train=False,
                          channels_last=stepper.channels_last)
    it = on_device([next(iter(loader))], stepper.device, stepper.channels_last)
    return lambda seconds, warmup: timed(it, stepper, seconds, warmup)


def trainer_loop(stepper: Stepper, images: torch.Tensor, labels: torch.Tensor, batch_size: int, rate_hint):
    """(b) DeviceLoader + train_epoch, each epoch sized (from (a)'s last rate) to last about `seconds`."""
    rounds = iter(range(1, 10**6))

    def measure(seconds: float, warmup: int) -> float:
        if warmup:
            warm = DeviceLoader(images[: warmup * batch_size], labels[: warmup * batch_size], batch_size,
                                stepper.device, seed=0, channels_last=stepper.channels_last)
            train_epoch(stepper.model, warm, stepper.optimizer, stepper.scheduler, stepper.criterion)
        steps = max(2, math.ceil(rate_hint() * seconds / batch_size))
        n = steps * batch_size
        reps = math.ceil(n / len(images))  # the sample is small; a faster device gets it repeated
        seed = next(rounds)
        idx = torch.arange(reps * len(images)) % len(images)
        idx = idx[torch.randperm(len(idx), generator=torch.Generator().manual_seed(seed))[:n]]
        loader = DeviceLoader(images[idx], labels[idx], batch_size, stepper.device, seed=seed,
                              channels_last=stepper.channels_last)
        result = train_epoch(stepper.model, loader, stepper.optimizer, stepper.scheduler, stepper.criterion)
        return result.images / result.seconds

    return measure


class PilCifar(torch.utils.data.Dataset):
    """What torchvision.datasets.CIFAR10 does per item: a PIL image through the transforms."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform):
        self.images = images.permute(0, 2, 3, 1).contiguous().numpy()  # HWC uint8, as torchvision stores it
        self.labels = labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), self.labels[i]


def torchvision_loader(images: torch.Tensor, labels: torch.Tensor, batch_size: int, workers: int,
                       pin_memory: bool = False) -> torch.utils.data.DataLoader:
    """The standard CIFAR-10 recipe of the torchvision examples."""
    from torchvision import transforms

    transform = transforms.Compose([
        transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
        transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    return torch.utils.data.DataLoader(
        PilCifar(images, labels, transform), batch_size=batch_size, shuffle=True, drop_last=True,
        num_workers=workers, pin_memory=pin_memory, persistent_workers=workers > 0)


def input_only(loader, device: torch.device, batches: int = 10) -> float:
    """Images/s of an input pipeline with no training step (its own cost, for the record)."""
    images, start = 0, time.perf_counter()
    for i, (x, y) in enumerate(loader):
        if i == batches:
            break
        x = x.to(device, non_blocking=True)
        images += len(y)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return images / (time.perf_counter() - start)


def dataloader_pipeline(stepper: Stepper, images: torch.Tensor, labels: torch.Tensor, batch_size: int,
                        workers: int):
    """(c) torchvision transforms + DataLoader with `workers` processes (kept alive across rounds)."""
    loader = torchvision_loader(images, labels, batch_size, workers, pin_memory=stepper.device.type == "cuda")
    it = on_device(loader, stepper.device, stepper.channels_last)
    return lambda seconds, warmup: timed(it, stepper, seconds, warmup)


def per_budget(args, data, device: torch.device) -> None:
    """Seconds per training step in each layout at each budget's own settings; the layout a run would pick."""
    import statistics

    from space import PRESETS
    from trainer.layout import LAYOUTS, choose_layout, step_seconds

    archs = {n: PRESETS[n] for n in ("ghostnet", "selective_mca")}
    print(f"layout per budget on {device}, {args.threads} thread(s): seconds per training step of "
          f"{'+'.join(archs)} (summed), {args.steps} steps, {args.rounds} interleaved rounds (median, range)")
    for name in ("smoke", "cpu", "gpu"):
        budget = get_budget(name)
        rounds: dict[str, list[float]] = {layout: [] for layout in LAYOUTS}
        for _ in range(args.rounds):
            for layout in LAYOUTS:
                rounds[layout].append(sum(step_seconds(a, data, budget, device, layout == "channels_last",
                                                       args.steps) for a in archs.values()))
        med = {k: statistics.median(v) for k, v in rounds.items()}
        ratios = [n / c for n, c in zip(rounds["nchw"], rounds["channels_last"])]
        picked = choose_layout(list(archs.values()), data, budget, device, threads=args.threads)
        other = next(k for k in LAYOUTS if k != picked.layout)
        print(f"{name:<6} width x{budget.proxy_width:g} batch {budget.batch_size}: "
              + ", ".join(f"{k} {med[k] * 1e3:.0f} ms ({min(v) * 1e3:.0f}..{max(v) * 1e3:.0f})" for k, v in rounds.items())
              + f"; nchw/channels_last {statistics.median(ratios):.2f} ({min(ratios):.2f}..{max(ratios):.2f}); "
              f"a run picks {picked.layout}: side by side it takes {med[picked.layout] / med[other]:.2f}x the "
              f"other's time per step", flush=True)


def main() -> None:
    args = parse()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    data = load_cifar10(args.data_dir)
    if args.per_budget:
        per_budget(args, data, device)
        return
    images, labels = data.train_images, data.train_labels
    steppers = {"nchw": Stepper(device, args.batch_size, False), "channels_last": Stepper(device, args.batch_size, True)}
    print(f"GhostNet-1.0 training on {device} with {torch.get_num_threads()} threads, batch {args.batch_size}, "
          f"{args.seconds:g} s per measurement in {args.rounds} interleaved rounds (best round reported), "
          f"{len(images)} sample images", flush=True)
    rates: dict[str, list[float]] = {}
    methods = {}
    for layout, stepper in steppers.items():
        methods[f"a {layout}"] = model_only(stepper, images, labels, args.batch_size)
        methods[f"b {layout}"] = trainer_loop(stepper, images, labels, args.batch_size,
                                              lambda layout=layout: max(rates[f"a {layout}"][-1:] or [1.0]))
    # The DataLoader runs in the best layout; the first round (model-only only) tells which that is.
    for name in [n for n in methods if n.startswith("a ")]:
        rates.setdefault(name, []).append(methods[name](args.seconds / args.rounds, warmup=1))
    best_layout = max(steppers, key=lambda layout: rates[f"a {layout}"][0])
    workers = [int(w) for w in args.workers.split(",")]
    for w in workers:
        methods[f"c{w}"] = dataloader_pipeline(steppers[best_layout], images, labels, args.batch_size, w)
    # Interleaved short rounds, best of each: on a shared machine the load changes
    # by the minute, and a back-to-back a-then-b-then-c order would measure the load.
    for r in range(args.rounds):
        for name, measure in methods.items():
            if r == 0 and name.startswith("a "):
                continue  # measured above
            rates.setdefault(name, []).append(measure(args.seconds / args.rounds, warmup=1 if r == 0 else 0))
    best = {name: max(values) for name, values in rates.items()}
    spread = {name: f"{min(v):.1f}..{max(v):.1f}" for name, v in rates.items()}
    for layout in steppers:
        print(f"a. model-only step (resident batch), {layout:<13}: {best[f'a {layout}']:8.1f} img/s "
              f"(rounds {spread[f'a {layout}']})")
        print(f"b. trainer (DeviceLoader+train_epoch), {layout:<13}: {best[f'b {layout}']:8.1f} img/s "
              f"(rounds {spread[f'b {layout}']})")
    for w in workers:
        print(f"c. torchvision DataLoader, num_workers={w}, {best_layout}: {best[f'c{w}']:8.1f} img/s "
              f"(rounds {spread[f'c{w}']})")
    best_w = max(workers, key=lambda w: best[f"c{w}"])
    a, b, c = best[f"a {best_layout}"], best[f"b {best_layout}"], best[f"c{best_w}"]
    print(f"c. best DataLoader: num_workers={best_w} at {c:.1f} img/s")
    ours = input_only(DeviceLoader(images, labels, args.batch_size, device, seed=2), device)
    theirs = input_only(torchvision_loader(images, labels, args.batch_size, 0), device)
    print(f"input pipeline alone (no model): DeviceLoader {ours:.0f} img/s, torchvision num_workers=0 "
          f"{theirs:.0f} img/s ({ours / theirs:.1f}x)")
    print(f"layout: channels_last/nchw model-only={best['a channels_last'] / best['a nchw']:.2f} "
          f"trainer={best['b channels_last'] / best['b nchw']:.2f}; best layout {best_layout}")
    print(f"ratios: trainer/model_only={b / a:.2f} trainer/dataloader={b / c:.2f}")


if __name__ == "__main__":
    main()
