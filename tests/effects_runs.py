"""Run directories with a qmc search's design and planted accuracies, for the effects tests (no training).

The rows are what `analysis.effects.sim.qmc_design` draws with Optuna's real
`QMCSampler` over the real `SearchSpace`; MACs and params are the real
networks' (`space.describe` counts, summed as `analysis.effects.costs` does);
`val_acc` is the planted truth plus seeded seed noise and `latency_ms` an
additive function of the placement.  Written through `record.rundir` as a
search writes it, so `load_run` cannot tell the difference.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from analysis.effects.sim import qmc_design, truth
from record.arch import from_flat, to_flat
from record.objectives import OBJECTIVES
from record.rundir import RunDir
from analysis.effects.costs import block_costs, total_cost
from space import ArchConfig


def _cost(arch: ArchConfig) -> dict[str, int]:
    """Exact and additive (tests/test_effects.py checks it against the counted network): the no-MCA net at
    the ratio plus each MCA block, from a handful of cached `space.describe` counts instead of one per net."""
    plain = ArchConfig(mca=(False,) * len(arch.mca), ratio=arch.ratio)
    macs, params = total_cost(plain)
    blocks = block_costs(plain, "-".join(map(str, arch.kernels)))[list(arch.mca)]
    return {"macs": macs + int(blocks["macs"].sum()), "params": params + int(blocks["params"].sum())}


def write_qmc_run(path: Path, n_sampled: int = 60, sd: float = 0.0213, seed: int = 0, limit: int | None = None) -> Path:
    """A run directory of `limit` (default all) trainings of a seeded qmc design."""
    rows = qmc_design(n_sampled, seed)
    if limit is not None:
        rows = rows.iloc[:limit]
    acc = truth(rows) + np.random.default_rng(seed).normal(0.0, sd, len(rows))
    meta = {"name": path.name, "objectives": ["val_acc", "macs"],
            "directions": [OBJECTIVES[o].direction for o in ("val_acc", "macs")], "sampler": "qmc", "seed": seed,
            "budget": "synthetic", "trials": len(rows), "baseline_seeds": 2, "repeats": 1, "data_dir": "",
            "search_space": {"kernel_sets": [[3, 5, 7], [5, 7, 11], [7, 11, 21]], "ratios": [2, 3, 4], "width": 1.0},
            "latency_source": "synthetic (additive in the placement)"}
    run = RunDir.create(Path(path), meta)
    seen: dict[str, int] = {}
    try:
        for i, (row, a) in enumerate(zip(rows.to_dict("records"), acc)):
            arch = from_flat(row)
            total = _cost(arch)
            lat = 2.0 + 0.1 * arch.ratio + sum(0.2 + 0.01 * j for j, b in enumerate(arch.mca) if b)
            seen[arch.key] = seen.get(arch.key, -1) + 1
            run.table.append({"trial_id": f"sim_{i:05d}", "status": "ok", "key": arch.key,
                              "preset": row["label"] if not row["label"].startswith("#") else "",
                              "seed": seed + seen[arch.key], **to_flat(arch), "macs": total["macs"],
                              "params": total["params"], "epochs": 1, "val_acc": round(float(a), 5),
                              "latency_ms": round(lat, 4), "train_seconds": 1.0, "wall_seconds": 1.0})
    finally:
        run.close()
    return Path(path)


def write_oneshot_run(path: Path, n_sampled: int = 60, supernets: int = 3, unit_sd: float = 0.005,
                      score_sd: float = 0.004, seed: int = 0, partial: int = 1) -> Path:
    """A one-shot run directory: every architecture of a seeded qmc design scored on each of `supernets`
    supernets (seed j), score = planted truth + supernet j's own MCA effect per bottleneck (SD `unit_sd`) +
    noise (SD `score_sd`); the last `partial` architectures are scored on all but the last supernet, as a
    search stopped mid-handout leaves them."""
    rows = qmc_design(n_sampled, seed, baseline_seeds=1)
    rows = rows[rows["ratio"] != 1].reset_index(drop=True)  # the CNN is outside a supernet's menu
    rng = np.random.default_rng(seed)
    bits = rows[[c for c in rows.columns if c.startswith("mca_")]].to_numpy(dtype=float)
    meta = {"name": path.name, "objectives": ["val_acc", "macs"], "strategy": "oneshot", "supernets": supernets,
            "directions": [OBJECTIVES[o].direction for o in ("val_acc", "macs")], "sampler": "qmc", "seed": seed,
            "budget": "synthetic", "trials": len(rows), "baseline_seeds": supernets, "repeats": 1, "data_dir": "",
            "search_space": {"kernel_sets": [[3, 5, 7], [5, 7, 11], [7, 11, 21]], "ratios": [2, 3, 4], "width": 1.0}}
    run = RunDir.create(Path(path), meta)
    try:
        for j in range(supernets):
            luck = rng.normal(0.0, unit_sd, bits.shape[1])
            acc = truth(rows) + bits @ luck + rng.normal(0.0, score_sd, len(rows))
            for i, (row, a) in enumerate(zip(rows.to_dict("records"), acc)):
                if j == supernets - 1 and i >= len(rows) - partial:
                    continue
                arch = from_flat(row)
                run.table.append({"trial_id": f"oneshot_{i:05d}_{j}", "status": "ok", "key": arch.key,
                                  "preset": row["label"] if not row["label"].startswith("#") else "",
                                  "seed": seed + j, **to_flat(arch), **_cost(arch), "epochs": 0, "inherited": 1,
                                  "val_acc": round(float(a), 5), "train_seconds": 0.0, "wall_seconds": 1.0})
    finally:
        run.close()
    return Path(path)
