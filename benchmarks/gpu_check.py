"""The GPU check: what the `gpu` budget gets from one GPU, in one command and about 8 minutes.

Three measurements, one table:
  1. training throughput of the `gpu` budget per preset (its batch size, bf16 autocast as the
     trainer does on CUDA) in NCHW and channels_last, side by side;
  2. aggregate throughput of 1, 2, 4 and 8 trainings packed on the GPU through Ray Tune
     fractional GPUs (`--gpus-per-trial 1/k`), all measured over one common time window;
  3. the `gpu` budget's seed-vs-seed Kendall tau (bootstrap 95 % interval) on 8 architectures
     (the 4 presets + 4 seeded random ones) x 2 seeds, its epochs scaled from (1) and (2) so the
     trainings fit the time left, packed at the best k of (2).

    python benchmarks/gpu_check.py --data ../shared/cifar10-jpeg/cifar10-jpeg.tar.gz      # on a CUDA machine
    python benchmarks/gpu_check.py --dry-run            # the same code on the CPU, tiny sizes (CI runs it)

On a machine without CUDA only --dry-run runs: the figures would say nothing about a GPU.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # verbose=0 then means quiet: the table is the output

import numpy as np  # noqa: E402
import torch  # noqa: E402

from analysis.rank import bootstrap_interval, kendall_tau  # noqa: E402
from benchmarks.proxy_fidelity import architectures  # noqa: E402
from space import PRESETS, build_model  # noqa: E402
from trainer.budget import get_budget  # noqa: E402
from trainer.data import load_cifar10  # noqa: E402
from trainer.loader import DeviceLoader  # noqa: E402
from trainer.loop import make_training, train_epoch  # noqa: E402

# Sizes of a real run (on CUDA) and of --dry-run (the CPU, seconds in all).
# `batches`: steps per timed loader pass; `start_s`: how long packed trainings get to start before their
# common window opens (Ray starts a worker and it loads the data).
REAL = {"seconds": 10.0, "packs": (1, 2, 4, 8), "pack_seconds": 20.0, "archs": 4, "budget_s": 240.0, "threads": 4,
        "max_epochs": 15, "batches": 4, "start_s": 15.0}
DRY = {"seconds": 0.5, "packs": (1, 2), "pack_seconds": 1.0, "archs": 0, "budget_s": 8.0, "threads": 1,
       "max_epochs": 1, "batch_size": 32, "train_size": 128, "val_size": 100, "batches": 1, "start_s": 4.0}


def throughput(arch, data, budget, device: torch.device, seconds: float, channels_last: bool, batches: int,
               start_at: float | None = None) -> float:
    """Training images/s of `arch` at `budget`'s batch size: the trainer's own loader and step, time-boxed
    in loader passes of `batches` steps.

    With `start_at` (a time.time()), it trains until then (warm-up) and counts only
    the images of [start_at, start_at + seconds]: packed trainings share one window.
    """
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = build_model(arch).to(device, memory_format=fmt)
    n = min(len(data.train_labels), 8192)
    loader = DeviceLoader(data.train_images[:n], data.train_labels[:n], budget.batch_size, device, seed=0,
                          channels_last=channels_last, epoch_images=budget.batch_size * batches)
    training = make_training(model, loader, budget, epochs=10**6)  # a long schedule: the lr stays in warm-up
    step = lambda: train_epoch(model, loader, training.optimizer, training.scheduler, training.criterion)  # noqa: E731
    step()  # warm-up (cuDNN picks its kernels)
    while start_at is not None and time.time() < start_at:
        step()
    images, begin = 0, time.perf_counter()
    while time.perf_counter() - begin < seconds:
        images += step().images
    return images / (time.perf_counter() - begin)


def _packed_trial(config: dict) -> None:
    from ray import tune

    torch.set_num_threads(config["threads"])
    device = torch.device(config["device"])
    data = load_cifar10(config["data"])
    budget = get_budget("gpu", **config["budget"])
    rate = throughput(PRESETS["ghostnet"], data, budget, device, config["seconds"], True, config["batches"],
                      config["start_at"])
    tune.report({"images_per_s": rate})


def _tau_trial(config: dict) -> None:
    from ray import tune

    from space import ArchConfig
    from trainer.proxy import train_proxy

    torch.set_num_threads(config["threads"])
    data = load_cifar10(config["data"])
    budget = get_budget("gpu", **config["budget"])
    result = train_proxy(ArchConfig.from_dict(config["arch"]), data, budget, config["device"], seed=config["seed"],
                         eval_every=budget.epochs)
    tune.report({"val_acc": result.val_acc if result.val_acc is not None else float("nan"),
                 "seconds": result.seconds, "name": config["name"], "seed": config["seed"]})


def run_tune(trainable, configs: list[dict], gpu_fraction: float, storage: str, name: str) -> list[dict]:
    """Every config as one Ray Tune trial, up to 1/gpu_fraction at once on the GPU (or the CPUs on --dry-run)."""
    from ray import tune

    per_trial = {"cpu": configs[0]["threads"], "gpu": gpu_fraction if configs[0]["device"] == "cuda" else 0}
    tuner = tune.Tuner(tune.with_resources(trainable, per_trial),
                       param_space={"job": tune.grid_search(configs)},
                       # One worker process serves several trials: a new one per trial costs seconds (torch's
                       # import, the data, a CUDA context) that are no part of what is measured.
                       tune_config=tune.TuneConfig(max_concurrent_trials=max(1, round(1 / gpu_fraction)),
                                                   reuse_actors=True),
                       run_config=tune.RunConfig(name=name, storage_path=storage, verbose=0))
    results = tuner.fit()
    errors = [r.error for r in results if r.error]
    if errors:
        raise RuntimeError(f"{len(errors)} trial(s) failed: {errors[0]}")
    return [r.metrics for r in results]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.environ.get("CIFAR10_DIR", str(REPO.parent / "shared" / "cifar10-jpeg"
                                                                       / "cifar10-jpeg.tar.gz")))
    p.add_argument("--dry-run", action="store_true", help="the same code on the CPU with tiny sizes (CI)")
    p.add_argument("--out", default=None, help="also write the printout to this file")
    args = p.parse_args()
    cuda = torch.cuda.is_available()
    if not cuda and not args.dry_run:
        print("gpu_check: CUDA is not available here; run it on a GPU machine, or --dry-run to test it on the CPU",
              file=sys.stderr)
        return 2
    if args.dry_run and not Path(args.data).exists():
        args.data = str(REPO.parent / "shared" / "cifar10-subset")
    args.data = str(Path(args.data).resolve())  # Ray Tune's workers run in another directory
    size = DRY if args.dry_run else REAL
    device = torch.device("cuda" if cuda and not args.dry_run else "cpu")
    torch.set_num_threads(size["threads"])
    lines: list[str] = []

    def say(text: str = "") -> None:
        lines.append(text)
        print(text, flush=True)

    started = time.perf_counter()
    data = load_cifar10(args.data)
    shrink = {k: size[k] for k in ("batch_size", "train_size", "val_size") if k in size}
    budget = get_budget("gpu", **shrink)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({size['threads']} threads)"
    say(f"gpu check on {where}{' [dry run: tiny sizes, figures mean nothing]' if args.dry_run else ''}; "
        f"budget gpu: batch {budget.batch_size}, {budget.epochs} epochs, bf16 autocast on CUDA")

    # 1. Per preset, both layouts.
    say(f"\n1. training throughput (images/s, {size['seconds']:g} s each)")
    say(f"{'preset':<14} {'nchw':>9} {'ch_last':>9} {'ratio':>6}")
    rates = {}
    for name, arch in PRESETS.items():
        nchw = throughput(arch, data, budget, device, size["seconds"], False, size["batches"])
        cl = throughput(arch, data, budget, device, size["seconds"], True, size["batches"])
        rates[name] = max(nchw, cl)
        say(f"{name:<14} {nchw:>9.0f} {cl:>9.0f} {cl / nchw:>5.2f}x")

    # 2. Packing through Ray Tune fractional GPUs.
    import ray

    ray.init(address="local",  # its own cluster, even where `ray start` left one running
             num_cpus=max(size["packs"]) * size["threads"], num_gpus=1 if device.type == "cuda" else 0,
             include_dashboard=False, log_to_driver=False, configure_logging=False)
    storage = tempfile.mkdtemp(prefix="gpu_check_")
    say(f"\n2. trainings packed on one {'GPU' if device.type == 'cuda' else 'CPU set'} through Ray Tune "
        f"(ghostnet, channels_last; common {size['pack_seconds']:g} s window)")
    say(f"{'k':>2} {'--gpus-per-trial':>16} {'aggregate img/s':>16} {'vs k=1':>7}")
    packed = {}
    for k in size["packs"]:
        start_at = time.time() + size["start_s"]
        configs = [{"threads": size["threads"], "device": device.type, "data": args.data, "budget": shrink,
                    "seconds": size["pack_seconds"], "start_at": start_at, "batches": size["batches"], "i": i}
                   for i in range(k)]
        metrics = run_tune(lambda c: _packed_trial(c["job"]), configs, 1 / k, storage, f"pack{k}")
        packed[k] = sum(m["images_per_s"] for m in metrics)
        say(f"{k:>2} {1 / k:>16.3g} {packed[k]:>16.0f} {packed[k] / packed[size['packs'][0]]:>6.2f}x")
    best_k = max(packed, key=packed.get)
    say(f"recommended --gpus-per-trial {1 / best_k:g} ({best_k} trainings per GPU)")

    # 3. Seed-vs-seed tau of the gpu budget, scaled to the time left.
    archs = architectures(size["archs"]) if size["archs"] else list(PRESETS.items())
    jobs = len(archs) * 2
    mean_rate = float(np.mean(list(rates.values()))) * packed[best_k] / packed[size["packs"][0]]
    train_images = (size.get("train_size") or len(data.train_labels) - 5000)
    epoch_s = train_images / mean_rate
    epochs = int(max(1, min(budget.epochs, size["max_epochs"], size["budget_s"] / (jobs * epoch_s))))
    epoch_images = None if epochs * jobs * epoch_s <= size["budget_s"] * 1.01 else \
        max(budget.batch_size, int(size["budget_s"] / jobs * mean_rate))
    tau_budget = {**shrink, "epochs": epochs, "epoch_images": epoch_images}
    say(f"\n3. seed-vs-seed ranking of the gpu budget: {len(archs)} architectures x 2 seeds, "
        f"{epochs} epoch(s){f' of {epoch_images} images' if epoch_images else ''} (of {budget.epochs}, "
        f"scaled to ~{size['budget_s']:.0f} s), {best_k} per device")
    configs = [{"threads": size["threads"], "device": device.type, "data": args.data, "budget": tau_budget,
                "arch": cfg.to_dict(), "name": name, "seed": seed} for name, cfg in archs for seed in (0, 1)]
    metrics = run_tune(lambda c: _tau_trial(c["job"]), configs, 1 / best_k, storage, "tau")
    acc = {(m["name"], m["seed"]): m["val_acc"] for m in metrics}
    s0 = np.array([acc[(n, 0)] for n, _ in archs])
    s1 = np.array([acc[(n, 1)] for n, _ in archs])
    tau = kendall_tau(s0, s1)
    lo, hi = bootstrap_interval(kendall_tau, s0, s1, n_boot=2000, seed=0)
    seed_sd = float(np.sqrt(np.mean((s0 - s1) ** 2) / 2))
    arch_sd = float(((s0 + s1) / 2).std(ddof=1))
    say(f"{'arch':<14} {'seed 0':>7} {'seed 1':>7}")
    for (name, _), a, b in zip(archs, s0, s1):
        say(f"{name:<14} {100 * a:>6.2f}% {100 * b:>6.2f}%")
    say(f"seed-vs-seed tau={tau:+.2f} [{lo:+.2f}, {hi:+.2f}], seed sd {100 * seed_sd:.2f}p, "
        f"arch sd {100 * arch_sd:.2f}p, signal/noise {arch_sd / seed_sd if seed_sd else float('inf'):.2f}")
    say(f"\ntotal {time.perf_counter() - started:.0f} s")
    ray.shutdown()
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
