"""Named training budgets: how much a proxy training may spend on one architecture.

A search compares architectures trained the same short way, so the budget is
part of the run's settings; presets keep the choices few and comparable.
"""
from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Budget:
    """Hyper-parameters of one proxy training (SGD + Nesterov, one-cycle)."""

    name: str
    epochs: int
    train_size: int | None  # images from the training split; None = all of it
    batch_size: int
    lr: float  # peak of the one-cycle schedule
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    # Validation images (stratified, carved from the training batches); None: the
    # data's default (`trainer.data.default_val_size`: 1,034 on the sample, 5,000 on CIFAR-10).
    val_size: int | None = None
    # Only for runs created before val_size existed: round(10 % of each class), as they split.
    val_fraction: float | None = None
    warmup: float = 0.25  # fraction of steps spent rising to the peak lr
    channels_last: bool = False
    bn_images: int = 512  # training images used to recalibrate BatchNorm before each validation; 0 = off

    def __post_init__(self) -> None:
        checks = {
            "epochs": self.epochs >= 1,
            "train_size": self.train_size is None or self.train_size >= 1,
            "batch_size": self.batch_size >= 1,
            "lr": self.lr > 0,
            "val_size": self.val_size is None or self.val_size >= 1,
            "val_fraction": self.val_fraction is None or 0 < self.val_fraction < 1,
        }
        for name, ok in checks.items():
            if not ok:
                flag = "--" + name.replace("_", "-")
                raise ValueError(f"{flag} must be positive (got {getattr(self, name)!r})"
                                 if name != "val_fraction" else f"val_fraction must be in (0, 1)")


BUDGETS: dict[str, Budget] = {
    # Tests: seconds per trial on 2 CPU cores, still a real training.
    "smoke": Budget("smoke", epochs=1, train_size=1024, batch_size=64, lr=0.1),
    # Laptops / CPU runs: a few minutes per trial on the whole local training split.
    "cpu": Budget("cpu", epochs=4, train_size=None, batch_size=128, lr=0.2),
    # Real searches on a GPU with the full CIFAR-10.
    "gpu": Budget("gpu", epochs=15, train_size=None, batch_size=256, lr=0.4, channels_last=True),
}


def get_budget(name: str, **overrides: object) -> Budget:
    """A preset with some fields overridden (None means keep the preset's value)."""
    if name not in BUDGETS:
        raise ValueError(f"unknown --budget {name!r}; choose from {', '.join(BUDGETS)}")
    changes = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(changes) - set(Budget.__dataclass_fields__) - {"name"}
    if unknown:
        raise ValueError(f"unknown budget fields: {', '.join(sorted(unknown))}")
    return replace(BUDGETS[name], **changes)


@dataclass(frozen=True)
class ProxyFidelity:
    """What `benchmarks/proxy_fidelity.py` measured: how well the best CPU-affordable proxy budget ranks
    architectures like a training 4x longer (Kendall τ of seed means, bootstrap 95 % interval).

    The search quotes it when it trains on the CPU, so a user knows how far the
    front can be trusted; tests/test_budget_note.py recomputes it from the
    benchmark's committed CSV, so the figure cannot drift from the data.
    """

    budget: str  # the benchmark's name of the best proxy budget
    epochs: int
    images: int
    tau: float
    lo: float
    hi: float
    seconds: float  # CPU seconds per trial at one thread
    archs: int
    seeds: int = 2
    target: float = 0.6

    def line(self) -> str:
        where = (f"proxy fidelity on CPU (benchmarks/proxy_fidelity.py, {self.archs} architectures x {self.seeds} "
                 f"seeds against 4x longer training): ")
        this = (f"{self.epochs} epoch{'s' if self.epochs != 1 else ''} on {self.images:,} images, "
                f"Kendall tau={self.tau:.2f} [{self.lo:.2f}, {self.hi:.2f}], {self.seconds:.0f} CPU-s/trial")
        if self.tau >= self.target:
            return where + f"the cheapest budget ranking with tau >= {self.target:g} is {this}"
        return (where + f"no budget measured reaches tau >= {self.target:g}; the best is {this}. Treat the front "
                "as a shortlist and check it: python -m search.fidelity RUN --epochs E --sample N")


CPU_FIDELITY = ProxyFidelity(budget="p2", epochs=1, images=1500, tau=0.27, lo=-0.26, hi=0.74, seconds=30.2, archs=12)
