"""Named training budgets: how much a proxy training may spend on one architecture.

A search compares architectures trained the same short way, so the budget is
part of the run's settings; presets keep the choices few and comparable.
"""
from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class Budget:
    """Hyper-parameters of one proxy training (SGD + Nesterov or AdamW, one-cycle)."""

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
    # The layout before a run measures: search.run times both at the run's budget on its machine and sets this
    # (trainer.layout; the faster one moves with the machine and the budget). Deterministic under a seed in either.
    channels_last: bool = True
    bn_images: int = 512  # training images used to recalibrate BatchNorm before each validation; 0 = off
    # Proxy knobs (the accuracy axis only: MACs, params and latency stay the real architecture's).
    proxy_width: float = 1.0  # train a copy with width x this (GhostNet only); 1.0 = the architecture itself
    epoch_images: int | None = None  # images per epoch, drawn afresh each epoch from the training split
    # Recipe: evaluate an exponential moving average of the weights (0 = the weights themselves) and
    # average the logits of each validation image and its mirror image (flip test-time augmentation).
    ema: float = 0.0
    tta: bool = False
    optimizer: str = "sgd"  # "sgd" (Nesterov, `momentum`) or "adamw" (betas 0.9, 0.999)
    zero_init: bool = False  # residual branches (Ghost bottlenecks, MCA blocks) start at zero

    def __post_init__(self) -> None:
        checks = {
            "epochs": self.epochs >= 1,
            "train_size": self.train_size is None or self.train_size >= 1,
            "batch_size": self.batch_size >= 1,
            "lr": self.lr > 0,
            "val_size": self.val_size is None or self.val_size >= 1,
            "val_fraction": self.val_fraction is None or 0 < self.val_fraction < 1,
            "proxy_width": 0 < self.proxy_width <= 1,
            "epoch_images": self.epoch_images is None or self.epoch_images >= 1,
            "ema": 0 <= self.ema < 1,
            "optimizer": self.optimizer in ("sgd", "adamw"),
        }
        for name, ok in checks.items():
            if not ok:
                flag = "--" + name.replace("_", "-")
                bounds = {"val_fraction": "in (0, 1)", "proxy_width": "in (0, 1]", "ema": "in [0, 1)",
                          "optimizer": "sgd or adamw"}
                raise ValueError(f"{flag} must be {bounds.get(name, 'positive')} (got {getattr(self, name)!r})")

    def trained_as(self) -> str:
        """What the accuracy axis was trained as, in words (run.json and the report quote it)."""
        per_epoch = f"{self.epoch_images:,} images per epoch from " if self.epoch_images else ""
        pool = f"{self.train_size:,} training images" if self.train_size else "the whole training split"
        width = f" at proxy width x{self.proxy_width:g}" if self.proxy_width != 1.0 else ""
        extras = [x for x in (f"EMA {self.ema:g}" if self.ema else "", "flip TTA" if self.tta else "") if x]
        return (f"{self.epochs} epoch{'s' if self.epochs != 1 else ''} of {per_epoch}{pool}{width}, batch "
                f"{self.batch_size}, peak lr {self.lr:g}" + (f", {', '.join(extras)}" if extras else ""))


BUDGETS: dict[str, Budget] = {
    # Tests: seconds per trial on 2 CPU cores, still a real training.
    "smoke": Budget("smoke", epochs=1, train_size=1024, batch_size=64, lr=0.1),
    # Laptops / CPU runs, overnight: the budget and recipe benchmarks/proxy_fidelity.py and
    # benchmarks/recipe.py measured (more, smaller steps, light weight decay and residual branches that
    # start at zero learn more per CPU-second and swing less between seeds).
    "cpu": Budget("cpu", epochs=1, train_size=None, batch_size=64, lr=0.1, weight_decay=5e-5, proxy_width=0.5,
                  zero_init=True),
    # Real searches on a GPU with the full CIFAR-10 (the recipe changes above are measured on the CPU only;
    # benchmarks/gpu_check.py measures this budget's own seed-vs-seed tau).
    "gpu": Budget("gpu", epochs=15, train_size=None, batch_size=256, lr=0.4),
}


# The presets as runs created before run.json recorded every budget field ("budget_settings") trained them:
# such a run resumes with the recipe it started with, not today's.
LEGACY_BUDGETS: dict[str, Budget] = {
    "smoke": Budget("smoke", epochs=1, train_size=1024, batch_size=64, lr=0.1, channels_last=False),
    "cpu": Budget("cpu", epochs=4, train_size=None, batch_size=128, lr=0.2, channels_last=False),
    "gpu": Budget("gpu", epochs=15, train_size=None, batch_size=256, lr=0.4, channels_last=True),
}


def get_budget(name: str, *, legacy: bool = False, **overrides: object) -> Budget:
    """A preset (`legacy`: as runs from before recorded budgets knew it) with some fields overridden
    (None means keep the preset's value)."""
    presets = LEGACY_BUDGETS if legacy else BUDGETS
    if name not in presets:
        raise ValueError(f"unknown --budget {name!r}; choose from {', '.join(presets)}")
    changes = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(changes) - set(Budget.__dataclass_fields__) - {"name"}
    if unknown:
        raise ValueError(f"unknown budget fields: {', '.join(sorted(unknown))}")
    return replace(presets[name], **changes)


def _recipe(budget: Budget) -> dict:
    """How a budget trains, without its name, validation split and memory layout (which do not change what a
    training learns; the layout is chosen per machine, trainer.layout)."""
    return {k: v for k, v in asdict(budget).items() if k not in ("name", "val_size", "val_fraction", "channels_last")}


LEGACY_VAL_FRACTION = 0.1  # runs created before --val-size validate on 10 % of each class


def run_split(meta: dict) -> dict[str, object]:
    """A run's validation split as budget overrides: its `val_size`, or 10 % per class for older runs."""
    if "val_size" in meta:
        return {"val_size": meta["val_size"], "val_fraction": None}
    return {"val_size": None, "val_fraction": LEGACY_VAL_FRACTION}


def run_budget(meta: dict, **overrides: object) -> Budget:
    """The budget a run directory's run.json says its proxies train with (plus `overrides`, None = keep).

    Every field is recorded ("budget_settings") since proxy recipes started to
    change between versions; older runs get their preset as it was then.
    """
    settings = meta.get("budget_settings")
    if settings:
        changes = {k: v for k, v in overrides.items() if v is not None}
        return replace(Budget(**settings), **changes)
    return get_budget(meta.get("budget", "cpu"), legacy=True, **dict(meta.get("budget_overrides") or {}), **overrides)


@dataclass(frozen=True)
class ProxyFidelity:
    """What `benchmarks/proxy_fidelity.py` measured for the `cpu` budget on all of CIFAR-10: how well it
    ranks architectures like itself under another seed (Kendall tau of the two seeds' accuracies,
    bootstrap 95 % interval) and what a training costs.

    The search quotes it when it trains on the CPU, with the whole search's
    expected duration, so a user knows how far the front can be trusted and
    how long it takes before anything finishes; tests/test_budget_note.py
    recomputes it from the benchmark's committed CSV, so the figures cannot
    drift from the data.
    """

    budget: str  # the benchmark's name of the budget
    epochs: int
    epoch_images: int | None
    width: float
    tau: float  # seed 0 vs seed 1
    lo: float
    hi: float
    seconds: float  # mean CPU seconds per training at one thread, over the calibration's architectures
    archs: int
    seed_sd: float = 0.0  # points: one architecture's accuracy between seeds
    signal: float = 0.0  # points: the SD of the architectures' own accuracies (their spread less the seed noise)
    images: int = 45_000  # the training split the figures were measured on
    seeds: int = 2
    goal: float = 0.8
    floor: float = 0.6
    preset: str = "cpu"  # the preset whose recipe was measured (tests/test_budget_note.py checks it)

    def covers(self, budget: Budget) -> bool:
        """Whether `budget` trains as the calibration did (the validation split aside): only then are its
        figures about the run."""
        return _recipe(budget) == _recipe(BUDGETS[self.preset])

    def start_lines(self, budget: Budget, trainings: int, concurrent: int, train_images: int,
                    run: str = "RUN") -> list[str]:
        """What a search on the CPU says before it starts: how far its ranking can be trusted — the
        calibration only for the budget it measured, else that nobody measured it and the command that
        does — and how long the `trainings` take."""
        check = f"python -m search.fidelity {shlex.quote(run)} --epochs {3 * budget.epochs} --sample 8"
        if self.covers(budget):
            ranking = self.line(check)
        else:
            preset = BUDGETS.get(budget.name)
            changed = " with overrides" if preset is not None and _recipe(preset) != _recipe(budget) else ""
            ranking = (f"proxy ranking: not measured for budget {budget.name}{changed} (only the {self.preset} "
                       f"budget's is); measure it once the search ends: {check}")
        return [ranking, self.duration_line(trainings, concurrent, budget, train_images)]

    def hours(self, trials: int, concurrent: int, budget: Budget | None = None,
              train_images: int | None = None) -> float | None:
        """Expected hours of a `trials`-training search, `concurrent` one-thread trainings at a time.

        For another budget or data size the measured seconds are scaled by the
        images trained (per-image cost is fixed by the layout, width and
        architecture); None for a proxy width that was not measured.
        """
        seconds = self.seconds
        if budget is not None:
            if budget.proxy_width != self.width:
                return None
            pool = train_images or self.images
            measured = self.epochs * (self.epoch_images or self.images)
            seconds *= budget.epochs * min(budget.epoch_images or pool, pool) / measured
        return trials * seconds / max(1, concurrent) / 3600

    def duration_line(self, trainings: int, concurrent: int, budget: Budget, train_images: int) -> str:
        """The start-up estimate of `trainings` trainings (a search, a confirmation) from the measured CPU
        seconds per training, scaled to `budget` on `train_images` images."""
        hours = self.hours(trainings, concurrent, budget, train_images)
        if hours is None:
            return (f"expected duration: not measured for proxy width x{budget.proxy_width:g} "
                    f"(the calibration measured x{self.width:g})")
        return (f"expected duration: about {hours:.1f} h for {trainings} trainings, {concurrent} at a time on one "
                f"thread each ({self.seconds:.0f} CPU-s per training measured for {self.epochs} epoch(s) of "
                f"{self.epoch_images or self.images:,} images, scaled to "
                f"{budget.epochs} x {min(budget.epoch_images or train_images, train_images):,})")

    def line(self, check: str = "python -m search.fidelity RUN --epochs E --sample N") -> str:
        """The calibration in a sentence; `check`: the command that checks a front, where the figure is weak."""
        per_epoch = f"{self.epoch_images:,} images per epoch" if self.epoch_images else "all images"
        this = (f"{self.epochs} epoch{'s' if self.epochs != 1 else ''} of {per_epoch} at width x{self.width:g}: "
                f"seed 0 vs seed 1 Kendall tau={self.tau:.2f} [{self.lo:.2f}, {self.hi:.2f}] over {self.archs} "
                f"architectures, {self.seconds:.0f} CPU-s/training")
        where = f"proxy fidelity on CPU (benchmarks/proxy_fidelity.py, {self.images:,} training images): "
        if self.tau >= self.goal:
            return where + this
        if self.tau >= self.floor:
            return where + this + f" (below the goal tau {self.goal:g}: check the front with {check})"
        return (where + f"no budget measured within 8 hours reaches tau >= {self.floor:g}; the default, {this} (the "
                f"architectures' own spread, {self.signal:.1f} points, against a seed SD of {self.seed_sd:.1f}). "
                f"Treat the front as a shortlist and check it: {check}")


CPU_FIDELITY = ProxyFidelity(budget="h-1", epochs=1, epoch_images=None, width=0.5, tau=0.08, lo=-0.37, hi=0.52,
                             seconds=167.2, archs=16, seed_sd=2.13, signal=0.43)
