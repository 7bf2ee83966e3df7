"""Run directories with a qmc search's design and planted accuracies, for the effects tests (no training).

The rows are what `analysis.effects.sim.qmc_design` draws with Optuna's real
`QMCSampler` over the real `SearchSpace`; MACs and params are the real
networks' (`space.describe` counts, summed as `analysis.effects.costs` does);
`val_acc` is the planted truth plus seeded seed noise and `latency_ms` the
prediction of a planted per-block latency table (`write_planted_table`).  Written through `record.rundir` as a
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
from space import ArchConfig, SearchSpace


def _cost(arch: ArchConfig) -> dict[str, int]:
    """Exact and additive (tests/test_effects.py checks it against the counted network): the no-MCA net at
    the ratio plus each MCA block, from a handful of cached `space.describe` counts instead of one per net."""
    plain = ArchConfig(mca=(False,) * len(arch.mca), ratio=arch.ratio)
    macs, params = total_cost(plain)
    blocks = block_costs(plain, "-".join(map(str, arch.kernels)))[list(arch.mca)]
    return {"macs": macs + int(blocks["macs"].sum()), "params": params + int(blocks["params"].sum())}


def planted_mca_ms(index: int, kernels: tuple[int, ...]) -> float:
    """What MCA on bottleneck `index` adds in the planted table: more with the index and the kernels."""
    return 0.2 + 0.01 * index + 0.001 * sum(kernels)


def write_planted_table(path: Path, space: SearchSpace = SearchSpace(), noise: float = 0.02) -> Path:
    """A latency table of every block of `space` (and its presets) with planted medians: a unit costs
    0.1 + 0.02 s ms without MCA and `planted_mca_ms` more with it, stem and head 0.05 ms, overhead 0.1 ms;
    each entry's interval is ± `noise` of its median.  Planted data for the effects' latency prices (a real
    table takes minutes to time: tests/test_latency_table.py times one)."""
    from host.device import describe_device
    from runtime.backends import describe_backend
    from runtime.latency_table import table_configs
    from runtime.latency_table.build import new_table
    from space import build_model
    from space.blocks import network_blocks

    table = new_table(describe_device("cpu", 1), backend=describe_backend("onnxruntime", 1), clock="thread")
    for config in table_configs(space):
        for block in network_blocks(build_model(config)):
            ms = 0.05
            if block.kind == "unit":
                ms = 0.1 + 0.02 * config.ratio + (planted_mca_ms(block.index, config.kernels)
                                                  if config.mca[block.index] else 0.0)
            table.entries[block.key] = {"kind": block.kind, "index": block.index, "input_shape":
                                        list(block.input_shape), "params": 0, "median_ms": ms,
                                        "ci_low_ms": ms * (1 - noise), "ci_high_ms": ms * (1 + noise), "n": 30,
                                        "converged": True, "clock": "thread"}
    table.data["menus"] = [space.to_dict()]
    table.data["overhead"] = {"constant_ms": 0.1, "method": "planted", "fit": []}
    table.save(path)
    return path


def _table_latency(prices, arch: ArchConfig) -> float:
    """The table's prediction of `arch` (runtime.latency_table.predict_latency), from the two networks per
    (kernels, ratio) whose blocks it is made of: a unit's key depends on its own settings only."""
    if not any(arch.mca):  # (the s = 1 CNN has no MCA blocks in any table)
        return prices.total(arch)
    plain, blocks = prices.units(arch, arch.kernels, arch.ratio)
    return prices.total(plain) + sum(p.ms for p, on in zip(blocks, arch.mca) if on)


def write_qmc_run(path: Path, n_sampled: int = 60, sd: float = 0.0213, seed: int = 0, limit: int | None = None) -> Path:
    """A run directory of `limit` (default all) trainings of a seeded qmc design, its latency predicted
    from a planted per-block table (`write_planted_table`, beside the run) as a `--latency-table` run's is."""
    from runtime.latency_table import LatencyTable
    from runtime.prices import TablePrices

    rows = qmc_design(n_sampled, seed)
    if limit is not None:
        rows = rows.iloc[:limit]
    acc = truth(rows) + np.random.default_rng(seed).normal(0.0, sd, len(rows))
    table = LatencyTable.load(write_planted_table(Path(path).parent / f"{Path(path).name}-table.json"))
    prices = TablePrices(table)
    meta = {"name": path.name, "objectives": ["val_acc", "macs"],
            "directions": [OBJECTIVES[o].direction for o in ("val_acc", "macs")], "sampler": "qmc", "seed": seed,
            "budget": "synthetic", "trials": len(rows), "baseline_seeds": 2, "repeats": 1, "data_dir": "",
            "search_space": {"kernel_sets": [[3, 5, 7], [5, 7, 11], [7, 11, 21]], "ratios": [2, 3, 4], "width": 1.0},
            "latency_source": f"table {table.device_label} (planted)",
            "latency_table": {"path": str(table.path), "device": table.device_label},
            "latency_backend": {"name": "onnxruntime"}}
    run = RunDir.create(Path(path), meta)
    seen: dict[str, int] = {}
    try:
        for i, (row, a) in enumerate(zip(rows.to_dict("records"), acc)):
            arch = from_flat(row)
            total = _cost(arch)
            lat = _table_latency(prices, arch)
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


def rebuild_committed_run(trials_csv: Path, path: Path) -> Path:
    """A run directory around a committed trials table of a real search (benchmarks/data/effects_repeat_*.csv:
    qmc, the default menu, latency_ms timed in the trials in PyTorch eager, as those runs recorded it)."""
    import csv

    with open(trials_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    meta = {"name": path.name, "objectives": ["val_acc", "macs", "latency_ms"],
            "directions": [OBJECTIVES[o].direction for o in ("val_acc", "macs", "latency_ms")], "sampler": "qmc",
            "budget": "smoke", "trials": len(rows), "baseline_seeds": 2, "repeats": 1, "data_dir": "",
            "search_space": {"kernel_sets": [[3, 5, 7], [5, 7, 11], [7, 11, 21]], "ratios": [2, 3, 4], "width": 1.0},
            "latency_source": "measured in torch on cpu, in the trials (rebuilt from the committed trials table)",
            "latency_backend": {"name": "torch"}}
    run = RunDir.create(Path(path), meta)
    try:
        for row in rows:
            run.table.append({k: v for k, v in row.items() if k != "number"})
    finally:
        run.close()
    return Path(path)
