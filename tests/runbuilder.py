"""Synthetic run directories, for tests and demos of the analysis without training.

The architectures are real (`space.PRESETS` and draws from `SearchSpace`) and
so are their MACs and parameter counts (`count_macs` on the built model);
only `val_acc` and `latency_ms` are made up (a smooth function of the
architecture plus seeded noise; with `seeds` > 1 every architecture gets
that many rows, one per seed, with seed-to-seed noise of `seed_sd`).  The directory is written through
`record.rundir` exactly as a search writes it, so `load_run` cannot tell the
difference — which is what edge-case tests (failures, a single trial, a torn
last line, no latency) need.
"""
from __future__ import annotations

import random
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

from record.arch import to_flat
from record.objectives import OBJECTIVES
from record.rundir import RunDir
from space import N_BLOCKS, PRESETS, ArchConfig, SearchSpace, build_model, count_macs, count_params

PRESET_BY_KEY = {cfg.key: name for name, cfg in PRESETS.items()}


@lru_cache(maxsize=None)
def _cost(key: str, config: ArchConfig) -> tuple[int, int]:
    model = build_model(config)
    return count_macs(model), count_params(model)


def sample_archs(n: int, seed: int = 0, space: SearchSpace | None = None) -> list[ArchConfig]:
    """`n` distinct random architectures of `space` (seeded)."""
    space = space or SearchSpace()
    rng = random.Random(seed)
    out: dict[str, ArchConfig] = {}
    while len(out) < n:
        cfg = ArchConfig(
            mca=tuple(rng.random() < 0.3 for _ in range(N_BLOCKS)),
            kernels=rng.choice(space.kernel_sets),
            ratio=rng.choice(space.ratios),
            width=space.width,
            dw_size=space.dw_size,
        )
        out.setdefault(cfg.key, cfg)
    return list(out.values())


def build_run(
    path: Path,
    n_sampled: int = 6,
    *,
    seed: int = 0,
    name: str | None = None,
    objectives: Sequence[str] = ("val_acc", "macs"),
    baselines: bool = True,
    statuses: Sequence[str] | None = None,
    latency: bool = True,
    trials: int | None = None,
    torn_tail: bool = False,
    seeds: int = 1,
    seed_sd: float = 0.02,
    val_size: int | None = 1034,
    accuracy: Callable[[ArchConfig, int, int], float] | None = None,
    meta: dict | None = None,
) -> Path:
    """Write a run directory at `path` with the baselines then `n_sampled` random archs.

    `statuses[i]` overrides the status of architecture i (default all "ok");
    non-ok rows get no accuracy, as in a real run.  `torn_tail` leaves a
    half-written last line, as a search killed mid-append would.  Each
    architecture is trained `seeds` times (seeds `seed`, `seed` + 1, ...),
    one row each; `accuracy(config, macs, seed)` replaces the made-up
    accuracy.  `val_size` is recorded as the run's validation size
    (run.json `data_sizes`; None: not recorded, as in older runs).  `meta` adds
    run.json entries (a one-shot run: {"strategy": "oneshot"}, every seed a supernet).
    """
    archs = (list(PRESETS.values()) if baselines else []) + sample_archs(n_sampled, seed)
    rng = random.Random(seed + 1)
    meta_ = {
        "name": name or path.name,
        "objectives": list(objectives),
        "directions": [OBJECTIVES[o].direction for o in objectives],
        "sampler": "random",
        "seed": seed,
        "budget": "synthetic",
        "trials": trials if trials is not None else len(archs) * seeds,
        "search_space": {"kernel_sets": [[3, 5, 7], [5, 7, 11], [7, 11, 21]], "ratios": [2, 3, 4], "width": 1.0},
        "baselines": list(PRESETS) if baselines else [],
        "data_dir": "",
        "baseline_seeds": seeds,
        "repeats": 1,
    }
    if val_size is not None:
        meta_["val_size"] = val_size
        meta_["data_sizes"] = {"pool": 5170, "train": 5170 - val_size, "val": val_size}
    meta = {**meta_, **(meta or {})}
    run = RunDir.create(Path(path), meta)
    try:
        for i, cfg in enumerate(archs):
            status = statuses[i] if statuses is not None and i < len(statuses) else "ok"
            macs, params = _cost(cfg.key, cfg)
            acc = 0.30 + 0.015 * cfg.n_mca + 0.02 * (cfg.ratio == 1) + 0.05 * rng.random()
            lat = 1.0 + macs / 1e7 + 0.2 * cfg.n_mca + 0.1 * rng.random()
            for s in range(seed, seed + seeds):
                this = accuracy(cfg, macs, s) if accuracy is not None else \
                    acc + (rng.gauss(0.0, seed_sd) if seeds > 1 else 0.0)
                row = {
                    "trial_id": f"synthetic_{i:05d}_{s}", "status": status, "key": cfg.key,
                    "preset": PRESET_BY_KEY.get(cfg.key, ""), "seed": s, **to_flat(cfg),
                    "macs": macs, "params": params, "epochs": 1,
                    "error": "" if status == "ok" else f"synthetic {status} trial",
                }
                if status == "infeasible":
                    row["seed"] = None
                if status == "ok":
                    row.update(val_acc=round(this, 4), train_seconds=1.0, images_per_s=1000.0, wall_seconds=2.0)
                    if latency:
                        row.update(latency_ms=round(lat, 4), latency_p10_ms=round(lat * 0.95, 4),
                                   latency_p90_ms=round(lat * 1.05, 4))
                run.table.append(row)
                if status == "infeasible":
                    break  # never trained: one row, no seed
    finally:
        run.close()
    if torn_tail:
        with open(Path(path) / "trials.csv", "a") as f:
            f.write(f"{len(archs)},synthetic_torn,ok,mca=0000")
    return Path(path)


__all__ = ["build_run", "sample_archs"]
