"""What does running trials through Ray Tune + Optuna cost over training them directly?

One process, one Ray cluster, side by side:
  1. warm-up: a 1-trial search (starts Ray's worker, imports torch there) — not timed;
  2. tune:    an N-trial search through the real service (`search.run.main`:
              OptunaSearch on SQLite, the dedup/budget searcher, the table writer),
              one trial at a time with every core;
  3. direct:  the same N architectures (read back from the run's trials.csv)
              measured and proxy-trained by `search.trainable.evaluate` in this
              process, with the same threads, budget and seed.
Prints the total wall times and those after start-up (trials 2..N: from the
first trial's end to the last one's), ending with the after-start-up
`ratio: tune/direct=X.XX` (target ≤ 1.10).
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import io
import os
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ray  # noqa: E402
import torch  # noqa: E402

from search.run import main as search_main  # noqa: E402
from search.trainable import TrialContext, worker_dataset, evaluate  # noqa: E402
from record.arch import from_flat  # noqa: E402
from trainer.budget import get_budget  # noqa: E402


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=os.environ.get("CIFAR10_DIR", "../shared/cifar10-subset"))
    p.add_argument("--trials", type=int, default=6)
    p.add_argument("--budget", default="smoke")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    return p.parse_args()


def search(storage: Path, name: str, trials: int, args: argparse.Namespace, baselines: bool) -> float:
    argv = ["--trials", str(trials), "--budget", args.budget, "--data-dir", args.data_dir,
            "--storage-path", str(storage), "--name", name, "--objectives", "val_acc,macs",
            "--max-concurrent", "1", "--cpus-per-trial", str(args.threads), "--no-report",
            "--baselines" if baselines else "--no-baselines"]
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        code = search_main(argv)
    if code != 0:
        raise SystemExit(f"search failed with exit status {code}")
    return time.perf_counter() - start


def main() -> None:
    args = parse()
    ray.init(address="local", num_cpus=args.threads, include_dashboard=False, log_to_driver=False)
    with tempfile.TemporaryDirectory() as tmp:
        storage = Path(tmp)
        search(storage, "warmup", 1, args, baselines=False)
        tune_s = search(storage, "timed", args.trials, args, baselines=True)
        with open(storage / "timed" / "trials.csv", newline="") as f:
            rows = list(csv.DictReader(f))
    ray.shutdown()
    archs = [from_flat(r) for r in rows]
    finished = [datetime.fromisoformat(r["finished_at"]) for r in rows]

    ctx = TrialContext(data_dir=str(Path(args.data_dir).resolve()), budget=get_budget(args.budget),
                       seed=0, device="cpu" if not torch.cuda.is_available() else "cuda",
                       threads=args.threads, latency_threads=1)
    worker_dataset(ctx.data_dir)  # the Tune worker also loads the data once
    direct = []
    for arch in archs:
        start = time.perf_counter()
        evaluate(arch, ctx, lambda metrics, state=None: None)
        direct.append(time.perf_counter() - start)
    direct_s = sum(direct)
    # After start-up: from the first trial's end to the last one's, against the
    # same trials (2..N) run directly. This leaves out what a search pays once
    # (Tuner set-up, a new worker process importing torch and loading the data,
    # the final summary), which the total includes.
    steady_tune = (finished[-1] - finished[0]).total_seconds()
    steady_direct = sum(direct[1:])

    print(f"trials: {len(archs)} ({args.budget} budget, {args.threads} threads, one at a time)")
    print(f"total:  tune {tune_s:7.2f} s, direct {direct_s:7.2f} s  (tune/direct {tune_s / direct_s:.2f}, "
          "includes Tuner set-up and the worker's start-up)")
    print(f"after start-up (trials 2..{len(archs)}): tune {steady_tune:7.2f} s, direct {steady_direct:7.2f} s")
    print(f"ratio: tune/direct={steady_tune / steady_direct:.2f}")


if __name__ == "__main__":
    main()
