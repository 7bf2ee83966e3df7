"""Full training of one architecture: `python -m trainer.train --arch best.json`.

The search only ranks architectures with short proxy trainings on a
validation split; this is the step that turns the chosen one into a trained
model and the one number people quote: CIFAR-10 test accuracy. So it trains
on every training image (no validation split), evaluates on the test batch
after each epoch, and writes a checkpoint every epoch so that a long run that
is stopped can go on with `--resume` without repeating or losing an epoch.

Outputs in --out: checkpoint.pt (every epoch), and when finished model.pt
(state_dict), arch.json (ArchConfig JSON) and metrics.json.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from space import ArchConfig, build_model, count_macs, count_params, get_backbone, load_arch
from cli_kit import Parser, UserError, run_main
from space.presets import PRESETS

from .budget import BUDGETS, Budget, get_budget
from .data import Cifar10, load_cifar10, seeded_subset
from host.device import resolve_device
from host.files import write_atomic
from .loader import DeviceLoader
from .loop import EVAL_BATCH, EpochStats, Training, evaluate_accuracy, fit, make_training
from .state import restore_training, training_state

PROG = "trainer.train"
CHECKPOINT = "checkpoint.pt"
# Settings a resumed run must keep: changing them mid-training would make the
# result something no single command describes.
KEPT_ON_RESUME = ("batch_size", "lr", "seed", "budget", "train_size")
CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "epoch", "epochs", "rng", "history", "arch", "settings")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog=f"python -m {PROG}", description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", required=True,
                   help=f"preset ({', '.join(PRESETS)}) or ArchConfig JSON file, e.g. best.json from analysis.select")
    p.add_argument("--width", type=float, default=None, help="override the architecture's width multiplier")
    p.add_argument("--epochs", type=int, default=None,
                   help="total epochs (on --resume: the total to reach); default: the budget's epochs")
    p.add_argument("--data-dir", default=None, help="CIFAR-10 folder (default $CIFAR10_DIR, else ./data)")
    p.add_argument("--download", action="store_true", help="fetch CIFAR-10 when it is missing")
    p.add_argument("--out", default=None, help="output folder (default runs/train-<arch name>)")
    p.add_argument("--resume", action="store_true", help=f"continue from {CHECKPOINT} in --out")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N (default auto)")
    p.add_argument("--budget", default=None, choices=tuple(BUDGETS),
                   help="preset to take hyper-parameters from (default gpu with CUDA, else cpu); "
                        "its train_size is ignored")
    p.add_argument("--batch-size", type=int, default=None, help="default: the budget's")
    p.add_argument("--lr", type=float, default=None, help="peak one-cycle learning rate (default: the budget's)")
    p.add_argument("--seed", type=int, default=None, help="seed of init, order and augmentation (default 0)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--train-size", type=int, default=None,
                   help="dev/test only: train on a seeded subset of this many images instead of all")
    p.add_argument("--inherit", default=None, metavar="SUPERNET",
                   help="start from the weights --arch inherits from this supernet file (a one-shot run's "
                        "supernets/seed-S.pt) instead of a fresh initialisation: a fine-tune")
    return p


# ----------------------------------------------------------------- set-up
@dataclasses.dataclass
class Setup:
    """Everything checked before anything is written."""

    arch: ArchConfig
    arch_name: str
    out: Path
    device: torch.device
    budget: Budget
    epochs: int
    seed: int
    train_size: int | None
    data: Cifar10
    checkpoint: dict[str, Any] | None
    inherit: Any = None  # the Supernet whose path of `arch` the training starts from (--inherit)
    inherit_path: str | None = None  # its file, kept in the checkpoint so a resumed fine-tune still says so


def arch_name(spec: str, width: float | None) -> str:
    """Folder-friendly name: the preset, or the JSON file's stem; a width override is appended."""
    name = spec.replace(":", "-") if spec in PRESETS or ":" in spec else Path(spec).stem
    return f"{name}-w{width:g}" if width is not None else name


def settings(args: argparse.Namespace) -> dict[str, Any]:
    """The explicit training settings (None = not given)."""
    return {"budget": args.budget, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
            "train_size": args.train_size}


def load_checkpoint(path: Path, device: torch.device) -> dict[str, Any]:
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # truncated or foreign file
        raise UserError(f"cannot read {path} ({type(exc).__name__}: {exc}); start again with another --out") from None
    missing = set(CHECKPOINT_KEYS) - set(ckpt) if isinstance(ckpt, dict) else {"everything"}
    if missing:
        raise UserError(f"{path} is not a trainer.train checkpoint (no {', '.join(sorted(missing))})")
    return ckpt


def resolve_settings(args: argparse.Namespace, device: torch.device, ckpt: dict[str, Any] | None) -> dict[str, Any]:
    """Explicit flags, else the checkpoint's (on resume), else the defaults; conflicts are user errors."""
    given = settings(args)
    if ckpt is not None:
        saved = ckpt["settings"]
        for key in KEPT_ON_RESUME:
            if given[key] is not None and given[key] != saved[key]:
                flag = "--" + key.replace("_", "-")
                raise UserError(f"{flag} {given[key]} differs from the checkpoint's {saved[key]}; "
                                 "a resumed run keeps its settings (use another --out to change them)")
        return dict(saved)
    return {"budget": given["budget"] or ("gpu" if device.type == "cuda" else "cpu"),
            "batch_size": given["batch_size"], "lr": given["lr"], "seed": 0 if given["seed"] is None else given["seed"],
            "train_size": given["train_size"]}


def _checkpoint(args: argparse.Namespace, out: Path, arch: ArchConfig, device: torch.device) -> dict | None:
    """The checkpoint `--resume` continues (it must hold `arch`); None for a new training, which must not
    overwrite one."""
    ckpt_path = out / CHECKPOINT
    if not args.resume:
        if ckpt_path.exists():
            raise UserError(f"{ckpt_path} exists; add --resume to continue it or choose another --out")
        return None
    if not ckpt_path.is_file():
        raise UserError(f"--resume: no {CHECKPOINT} in {out}")
    ckpt = load_checkpoint(ckpt_path, device)
    try:
        saved = ArchConfig.from_dict(ckpt["arch"])
    except ValueError as exc:
        raise UserError(f"{ckpt_path}: bad arch ({exc})") from None
    if saved != arch:
        raise UserError(f"--arch {args.arch} ({arch.key}) differs from the checkpoint's arch ({saved.key})")
    return ckpt


def prepare(args: argparse.Namespace) -> Setup:
    """Check flags, arch, device, data and checkpoint; raise UserError before writing anything."""
    for flag in ("epochs", "batch_size", "threads", "train_size"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise UserError(f"--{flag.replace('_', '-')} must be >= 1 (got {value})")
    if args.lr is not None and not args.lr > 0:
        raise UserError(f"--lr must be > 0 (got {args.lr})")
    try:
        arch = load_arch(args.arch)
        if args.width is not None:
            arch = dataclasses.replace(arch, width=args.width)
        if get_backbone(arch.backbone).num_classes != 10:
            raise UserError(f"--arch {args.arch}: {arch.backbone} is an ImageNet network; trainer.train "
                            "trains CIFAR-10 networks (ghostnet, vgg16, resnet56)")
        device = resolve_device(args.device)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    out = Path(args.out or f"runs/train-{arch_name(args.arch, args.width)}")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    ckpt = _checkpoint(args, out, arch, device)
    supernet = _inherit(args, arch, ckpt)
    chosen = resolve_settings(args, device, ckpt)
    try:
        budget = get_budget(chosen["budget"], batch_size=chosen["batch_size"], lr=chosen["lr"])
    except ValueError as exc:
        raise UserError(str(exc)) from None
    epochs = args.epochs or (ckpt["epochs"] if ckpt else budget.epochs)
    if ckpt is not None and ckpt["epoch"] > epochs:
        raise UserError(f"the checkpoint already has {ckpt['epoch']} epochs; --epochs must be at least that")
    data = load_cifar10(args.data_dir, download=args.download)  # DataError is a UserError
    # Full training: every training image of the real architecture, and no BN recalibration (thousands of
    # steps settle BN); the proxy-only knobs (width, images per epoch, weight average, TTA) are off, and the
    # weight decay is the long-training one (the `cpu` proxy's light 5e-5 helps one epoch, not two hundred).
    budget = dataclasses.replace(budget, train_size=None, bn_images=0, epochs=epochs, proxy_width=1.0,
                                 epoch_images=None, ema=0.0, tta=False,
                                 weight_decay=Budget.__dataclass_fields__["weight_decay"].default)
    return Setup(arch, arch_name(args.arch, args.width), out, device, budget, epochs, chosen["seed"],
                 chosen["train_size"], data, ckpt, supernet,
                 str(Path(args.inherit).resolve()) if args.inherit else (ckpt or {}).get("settings", {}).get("inherit"))


def _inherit(args: argparse.Namespace, arch: ArchConfig, ckpt: dict[str, Any] | None):
    """The supernet `--inherit` names, checked to hold `arch`; None without the flag."""
    if args.inherit is None:
        return None
    if ckpt is not None:
        raise UserError("--inherit starts a training from a supernet's weights; a resumed training continues "
                        "from its checkpoint (drop --inherit)")
    from space.supernet import OutsideMenu

    from .supernet import load_supernet

    if not Path(args.inherit).is_file():
        raise UserError(f"--inherit {args.inherit}: no such file")
    try:
        net = load_supernet(args.inherit)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if arch.width != net.space.width:
        raise UserError(f"the supernet {args.inherit} holds width-{net.space.width:g} copies (it trained at a proxy "
                        f"width); add --width {net.space.width:g} to fine-tune {arch.key}'s copy")
    try:
        net.check(arch)
    except OutsideMenu as exc:
        raise UserError(str(exc)) from None
    return net


# --------------------------------------------------------------- training
def train_subset(data: Cifar10, size: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All training images, or a seeded subset when --train-size asks for one (tests, dev runs)."""
    idx = seeded_subset(len(data.train_labels), size, seed)
    if idx is None:
        return data.train_images, data.train_labels
    return data.train_images[idx], data.train_labels[idx]


def atomic_save(obj: Any, path: Path) -> None:
    """Text or bytes as they are, anything else as torch.save writes it; a kill never leaves half a file."""
    write_atomic(path, obj if isinstance(obj, (str, bytes)) else lambda f: torch.save(obj, f))


def restore_scheduler(scheduler, ckpt: dict[str, Any], epochs: int) -> bool:
    """Load the schedule's position; when --epochs changed, re-read the lr from the new schedule.

    The schedule is a function of the total step count, so a run extended on
    resume follows the longer cycle from the step reached (the lr jumps to
    where that cycle is). Returns True when that happened.
    """
    scheduler.load_state_dict(ckpt["scheduler"])
    if ckpt["epochs"] == epochs:
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "step() before optimizer.step()": only the lr is recomputed
        scheduler.last_epoch -= 1
        scheduler.step()
    return True


def fmt_eta(seconds: float) -> str:
    return str(datetime.timedelta(seconds=round(seconds)))


def run(setup: Setup) -> int:
    """Train to `setup.epochs`, checkpointing each epoch; 0 when done, 1 on divergence."""
    device, budget = setup.device, setup.budget
    ckpt = setup.checkpoint
    torch.manual_seed(setup.seed)
    # --inherit: the path's weights and BN statistics, as the one-shot search scored it (space.supernet.extract)
    model = build_model(setup.arch) if setup.inherit is None else setup.inherit.extract(setup.arch).train()
    macs, params = count_macs(model), count_params(model)
    memory_format = torch.channels_last if budget.channels_last else torch.preserve_format
    model = model.to(device, memory_format=memory_format)
    images, labels = train_subset(setup.data, setup.train_size, setup.seed)
    train = DeviceLoader(images, labels, budget.batch_size, device, train=True, seed=setup.seed,
                         channels_last=budget.channels_last)
    test = DeviceLoader(setup.data.test_images, setup.data.test_labels, EVAL_BATCH, device, train=False,
                        channels_last=budget.channels_last)
    training = make_training(model, train, budget, setup.epochs)
    history: list[dict[str, float]] = []
    start_epoch = 0
    if ckpt is not None:
        start_epoch = restore_training(training, ckpt, schedule=False)
        if restore_scheduler(training.scheduler, ckpt, setup.epochs):
            print(f"note: --epochs changed from {ckpt['epochs']} to {setup.epochs}; "
                  "the one-cycle schedule continues on the longer cycle", file=sys.stderr, flush=True)
        history = list(ckpt["history"])
    setup.out.mkdir(parents=True, exist_ok=True)
    chosen = {"budget": budget.name, "batch_size": budget.batch_size, "lr": budget.lr, "seed": setup.seed,
              "train_size": setup.train_size, "inherit": setup.inherit_path}

    def checkpoint(stats: EpochStats) -> None:
        """After each epoch: history, an atomic checkpoint, and a progress line."""
        seconds = stats.seconds - sum(h["seconds"] for h in history[start_epoch:])
        history.append({"epoch": stats.epoch, "train_loss": stats.train_loss, "test_acc": stats.accuracy,
                        "images_per_s": stats.images_per_s, "seconds": seconds})
        save_checkpoint(training, stats.epoch, history, setup, chosen)
        done = stats.epoch - start_epoch
        eta = stats.seconds / done * (setup.epochs - stats.epoch)
        print(f"epoch {stats.epoch}/{setup.epochs} loss {stats.train_loss:.3f} test_acc {100 * stats.accuracy:.1f}% "
              f"{stats.images_per_s:.0f} img/s ETA {fmt_eta(eta)}", flush=True)

    result = fit(training, lambda m: evaluate_accuracy(m, test), start_epoch=start_epoch, on_epoch=checkpoint)
    if result.status == "diverged":
        epoch = start_epoch + result.epochs
        kept = (f"{setup.out / CHECKPOINT} keeps epoch {epoch}, the last good one" if epoch
                else "no epoch finished, so there is no checkpoint")
        print(f"{PROG}: diverged: {result.error}; {kept}; try a lower --lr", file=sys.stderr)
        return 1
    write_outputs(setup, model, history, macs, params, chosen)
    return 0


def save_checkpoint(training: Training, epoch: int, history: list[dict[str, float]], setup: Setup,
                    chosen: dict[str, Any]) -> None:
    atomic_save({**training_state(training, epoch), "epochs": setup.epochs, "history": history,
                 "arch": setup.arch.to_dict(), "settings": chosen}, setup.out / CHECKPOINT)


def write_outputs(setup: Setup, model: nn.Module, history: list[dict[str, float]], macs: int, params: int,
                  chosen: dict[str, Any]) -> None:
    """model.pt, arch.json and metrics.json: what a finished training hands on."""
    out = setup.out
    atomic_save({k: v.cpu() for k, v in model.state_dict().items()}, out / "model.pt")
    atomic_save(json.dumps(setup.arch.to_dict(), indent=2) + "\n", out / "arch.json")
    metrics = {
        "arch": setup.arch.key, "arch_name": setup.arch_name, "arch_config": setup.arch.to_dict(),
        "epochs": len(history), "history": history,
        "test_acc": history[-1]["test_acc"] if history else None,
        "macs": macs, "params": params, "device": str(setup.device), "threads": torch.get_num_threads(),
        "train_images": len(train_subset(setup.data, setup.train_size, setup.seed)[1]),
        "seconds": sum(h["seconds"] for h in history),
        "inherited_from": setup.inherit_path,
        "settings": {**chosen, "momentum": setup.budget.momentum, "weight_decay": setup.budget.weight_decay,
                     "label_smoothing": setup.budget.label_smoothing, "warmup": setup.budget.warmup},
    }
    atomic_save(json.dumps(metrics, indent=2) + "\n", out / "metrics.json")
    print(f"done: test_acc {100 * metrics['test_acc']:.2f}% after {len(history)} epochs; wrote {out}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Exit status 0 done, 1 diverged, 2 user error."""
    args = build_parser().parse_args(argv)
    setup = prepare(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    return run(setup)


if __name__ == "__main__":
    sys.exit(run_main(main, prog=PROG))
