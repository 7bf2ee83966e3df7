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
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.rank import bootstrap_interval, kendall_tau  # noqa: E402
from benchmarks.oneshot_compare import arch_of  # noqa: E402
from space import SearchSpace  # noqa: E402

DATA = Path(__file__).resolve().parent / "data"
TOP = 5


def supernet_scores(folder: Path, archs, data_path: str, bn_images: int, split_seed: int) -> pd.DataFrame:
    """One column per saved supernet: each architecture's inherited score."""
    import torch

    from space.supernet import Supernet, supernet_space
    from trainer.budget import get_budget
    from trainer.data import load_cifar10
    from trainer.supernet import score_subnets

    torch.set_num_threads(1)
    data = load_cifar10(data_path)
    budget = get_budget("cpu")
    columns = {}
    for path in sorted(folder.glob("seed-*.pt")):
        seed = int(path.stem.split("-")[1])
        net = Supernet(supernet_space(SearchSpace(), budget.proxy_width))
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        columns[f"supernet_{seed}"] = score_subnets(net.eval(), archs, data, budget, seed, bn_images=bn_images,
                                                    split_seed=split_seed)
    return pd.DataFrame(columns, index=[a.key for a in archs])


def top_precision(a: pd.Series, b: pd.Series, k: int = TOP) -> float:
    return len(set(a.nlargest(k).index) & set(b.nlargest(k).index)) / k


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--supernets", required=True, help="folder of seed-S.pt (oneshot_fidelity.py --keep)")
    p.add_argument("--data", default="../shared/cifar10-jpeg/cifar10-jpeg.tar.gz")
    p.add_argument("--standalone", default=str(DATA / "proxy_fidelity.csv"))
    p.add_argument("--bn-images", type=int, default=512)
    p.add_argument("--split-seed", type=int, default=0, help="the split the supernets trained on")
    p.add_argument("--out", default=str(DATA / "oneshot_vs_standalone.txt"))
    args = p.parse_args()

    alone = pd.read_csv(args.standalone)
    space = SearchSpace()
    in_menu = {key: arch_of(key) for key in alone["key"].unique()}
    in_menu = {k: a for k, a in in_menu.items() if a.ratio in space.ratios and a.kernels in space.kernel_sets}
    scores = supernet_scores(Path(args.supernets), list(in_menu.values()), args.data, args.bn_images,
                             args.split_seed)
    score = scores.mean(axis=1)
    lines = [f"fidelity: {scores.shape[1]} supernets ({args.supernets}) against the stand-alone trainings of "
             f"{args.standalone}; {len(score)} architectures the menu holds; BN on {args.bn_images} images, "
             f"validation split of seed {args.split_seed}; chance top-{TOP} precision {TOP / len(score):.2f}"]
    if scores.shape[1] > 1:
        a, b = scores.iloc[:, 0], scores.iloc[:, 1]
        lo, hi = bootstrap_interval(kendall_tau, a, b)
        lines.append(f"  supernet vs supernet on these: tau {kendall_tau(a, b):+.2f} [{lo:+.2f}, {hi:+.2f}]")
    for budget, rows in alone[alone["key"].isin(in_menu)].groupby("budget", sort=False):
        by_seed = rows.pivot_table(index="key", columns="seed", values="val_acc").loc[score.index]
        mean = by_seed.mean(axis=1)
        tau = kendall_tau(score, mean)
        lo, hi = bootstrap_interval(kendall_tau, score.to_numpy(), mean.to_numpy())
        s0, s1 = by_seed.iloc[:, 0], by_seed.iloc[:, 1]
        slo, shi = bootstrap_interval(kendall_tau, s0.to_numpy(), s1.to_numpy())
        lines.append(f"  stand-alone {budget} (mean of {by_seed.shape[1]} seeds): tau {tau:+.2f} [{lo:+.2f}, "
                     f"{hi:+.2f}], top-{TOP} precision {top_precision(score, mean):.2f}; its own seed-vs-seed tau "
                     f"{kendall_tau(s0, s1):+.2f} [{slo:+.2f}, {shi:+.2f}]")
    text = "\n".join(lines)
    print(text)
    Path(args.out).write_text(text + "\n")
    scores.assign(mean=score).to_csv(Path(args.out).with_suffix(".csv"), index_label="key")
    return 0


if __name__ == "__main__":
    sys.exit(main())
