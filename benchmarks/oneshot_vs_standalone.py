"""Do supernet scores rank architectures as stand-alone training does?  Fidelity against the stand-alone proxy.

    python benchmarks/oneshot_vs_standalone.py --supernets /work/bench/supernets-common \
        --data ../shared/cifar10-jpeg/cifar10-jpeg.tar.gz

Takes the supernets `benchmarks/oneshot_fidelity.py --keep DIR` saved (seed-S.pt, state_dict only, the `cpu`
budget's proxy width) and the stand-alone trainings of `benchmarks/data/proxy_fidelity.csv` (16 architectures
x 2 seeds at three budgets, on the same 45,000 JPEG training images). It scores every architecture of that
table which the supernet's menu holds, on each supernet, the way the one-shot search scores it (BatchNorm on
`--bn-images` training images, the validation split of `--split-seed`). For each stand-alone budget it then
prints:
- Kendall tau between the supernets' mean score and the stand-alone mean over seeds, with a bootstrap interval;
- the precision of the supernets' top 5 (the share of it in the stand-alone top 5; chance is 5/n);
- the stand-alone seed-vs-seed tau on the same architectures: no reference ranks better than it agrees
  with itself.
Writes benchmarks/data/oneshot_vs_standalone.txt.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.rank import bootstrap_interval, kendall_tau  # noqa: E402
from benchmarks.oneshot_compare import arch_of  # noqa: E402
from space import SearchSpace  # noqa: E402

DATA = Path(__file__).resolve().parent / "data"
TOP = 5


def _score_one(job: dict) -> tuple[str, list[float], list[float]]:
    """One supernet (its own process): each architecture's inherited score and, with `steps`, its score after
    fine-tuning the extracted child for `steps` steps of the budget's batch at `lr` (BN re-estimated after)."""
    import dataclasses

    import torch

    from space.supernet import Supernet, supernet_space
    from trainer.budget import get_budget
    from trainer.data import load_cifar10
    from trainer.loop import evaluate_accuracy, make_training, recalibrate_bn, train_epoch
    from trainer.proxy import proxy_arch, training_loaders
    from trainer.supernet import score_subnets

    torch.set_num_threads(1)
    data = load_cifar10(job["data"])
    budget = get_budget("cpu")
    net = Supernet(supernet_space(SearchSpace(), budget.proxy_width))
    net.load_state_dict(torch.load(job["path"], map_location="cpu", weights_only=True))
    net.eval()
    archs, seed, split = job["archs"], job["seed"], job["split_seed"]
    scores = score_subnets(net, archs, data, budget, seed, bn_images=job["bn_images"], split_seed=split)
    tuned = []
    if job["steps"]:
        ft = dataclasses.replace(budget, epochs=1, epoch_images=job["steps"] * budget.batch_size, lr=job["lr"],
                                 ema=0.0)
        train, val, bn = training_loaders(data, ft, seed, torch.device("cpu"), "val", bn_images=job["bn_images"],
                                          split_seed=split)
        for arch in archs:
            child = net.extract(proxy_arch(arch, ft)).train()
            t = make_training(child, train, ft, epochs=1)
            train_epoch(child, train, t.optimizer, t.scheduler, t.criterion)
            recalibrate_bn(child, bn)
            tuned.append(evaluate_accuracy(child, val, tta=ft.tta))
    return f"supernet_{seed}", scores, tuned


def supernet_scores(folder: Path, archs, data_path: str, bn_images: int, split_seed: int, steps: int = 0,
                    lr: float = 0.01) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """One column per saved supernet (scored in parallel, one process each): each architecture's inherited
    score, and with `steps` its score after a short fine-tune."""
    import multiprocessing as mp

    jobs = [{"path": str(path), "seed": int(path.stem.split("-")[1]), "archs": archs, "data": data_path,
             "bn_images": bn_images, "split_seed": split_seed, "steps": steps, "lr": lr}
            for path in sorted(folder.glob("seed-*.pt"))]
    with mp.get_context("spawn").Pool(len(jobs)) as pool:
        done = pool.map(_score_one, jobs)
    index = [a.key for a in archs]
    scores = pd.DataFrame({name: s for name, s, _ in done}, index=index)
    tuned = pd.DataFrame({name: t for name, _, t in done}, index=index) if steps else None
    return scores, tuned


def top_precision(a: pd.Series, b: pd.Series, k: int = TOP) -> float:
    return len(set(a.nlargest(k).index) & set(b.nlargest(k).index)) / k


def fidelity_lines(what: str, score: pd.Series, alone: pd.DataFrame) -> list[str]:
    """Per stand-alone budget: tau of `score` against the seeds' mean (interval), top-5 precision, and the
    reference's own seed-vs-seed tau, on the architectures that budget trained with both seeds."""
    lines = []
    for budget, rows in alone[alone["key"].isin(score.index)].groupby("budget", sort=False):
        by_seed = rows.pivot_table(index="key", columns="seed", values="val_acc").dropna()
        keys = [k for k in score.index if k in by_seed.index]
        by_seed, s = by_seed.loc[keys], score.loc[keys]
        mean = by_seed.mean(axis=1)
        lo, hi = bootstrap_interval(kendall_tau, s.to_numpy(), mean.to_numpy())
        s0, s1 = by_seed.iloc[:, 0], by_seed.iloc[:, 1]
        slo, shi = bootstrap_interval(kendall_tau, s0.to_numpy(), s1.to_numpy())
        lines.append(f"  {what} vs stand-alone {budget} (mean of {by_seed.shape[1]} seeds, {len(keys)} "
                     f"architectures): tau {kendall_tau(s, mean):+.2f} [{lo:+.2f}, {hi:+.2f}], top-{TOP} precision "
                     f"{top_precision(s, mean):.2f} (chance {TOP / len(keys):.2f}); its own seed-vs-seed tau "
                     f"{kendall_tau(s0, s1):+.2f} [{slo:+.2f}, {shi:+.2f}]")
    return lines


def pair_line(what: str, scores: pd.DataFrame) -> list[str]:
    if scores.shape[1] < 2:
        return []
    a, b = scores.iloc[:, 0], scores.iloc[:, 1]
    lo, hi = bootstrap_interval(kendall_tau, a, b)
    return [f"  {what}, supernet vs supernet: tau {kendall_tau(a, b):+.2f} [{lo:+.2f}, {hi:+.2f}]"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--supernets", required=True, help="folder of seed-S.pt (oneshot_fidelity.py --keep)")
    p.add_argument("--data", default="../shared/cifar10-jpeg/cifar10-jpeg.tar.gz")
    p.add_argument("--standalone", default=str(DATA / "proxy_fidelity.csv"))
    p.add_argument("--bn-images", type=int, default=512)
    p.add_argument("--split-seed", type=int, default=0, help="the split the supernets trained on")
    p.add_argument("--finetune-steps", type=int, default=0,
                   help="also score each child after this many fine-tuning steps from its inherited weights")
    p.add_argument("--finetune-lr", type=float, default=0.01, help="peak one-cycle lr of the fine-tune")
    p.add_argument("--out", default=str(DATA / "oneshot_vs_standalone.txt"))
    args = p.parse_args()

    started = time.perf_counter()
    alone = pd.read_csv(args.standalone)
    space = SearchSpace()
    in_menu = {key: arch_of(key) for key in alone["key"].unique()}
    in_menu = {k: a for k, a in in_menu.items() if a.ratio in space.ratios and a.kernels in space.kernel_sets}
    scores, tuned = supernet_scores(Path(args.supernets), list(in_menu.values()), args.data, args.bn_images,
                                    args.split_seed, args.finetune_steps, args.finetune_lr)
    score = scores.mean(axis=1)
    lines = [f"fidelity: {scores.shape[1]} supernets ({args.supernets}) against the stand-alone trainings of "
             f"{Path(args.standalone).name}; {len(score)} architectures the menu holds; BN on {args.bn_images} "
             f"images, validation split of seed {args.split_seed}",
             *pair_line("inherited", scores), *fidelity_lines("inherited (mean of supernets)", score, alone)]
    if tuned is not None:
        lines += [f"after fine-tuning each child {args.finetune_steps} steps of the cpu budget's batch from its "
                  f"inherited weights (lr {args.finetune_lr:g}, one cycle; BN re-estimated after):",
                  *pair_line("fine-tuned", tuned), *fidelity_lines("fine-tuned (mean of supernets)",
                                                                  tuned.mean(axis=1), alone)]
    lines.append(f"  wall {(time.perf_counter() - started) / 60:.1f} min on {scores.shape[1]} processes")
    text = "\n".join(lines)
    print(text)
    Path(args.out).write_text(text + "\n")
    out = scores.assign(mean=score)
    if tuned is not None:
        out = out.join(tuned.add_suffix("_finetuned"))
    out.to_csv(Path(args.out).with_suffix(".csv"), index_label="key")
    return 0


if __name__ == "__main__":
    sys.exit(main())
