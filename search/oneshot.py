"""`search.run --strategy oneshot`: train weight-sharing supernets once, then score architectures in seconds.

Two phases in one run directory, both on Ray Tune through `search.ray_runner`:

1. **Supernets.**  `--supernets K` supernets of the run's menu, seeds
   run seed .. run seed + K − 1, each one Tune trial of `--supernet-epochs`
   epochs on the run's budget (`trainer.supernet`).  Every epoch is a Tune
   checkpoint, so a lost node restarts a supernet from its last epoch; a
   killed search restarts it from the last checkpoint its earlier attempt
   left in the run directory.  A finished supernet is written to
   `supernets/seed-S.pt` and never trained again.
2. **The search.**  The usual search (Optuna's sampler, the trials table, the
   front), where a training is a score: every architecture gets one row per
   supernet, `seed` naming the supernet and `inherited` = 1, so the front's
   ± SE is the spread between supernets — the unit of replication, since the
   subnets of one supernet share its luck.  MACs, params and latency stay the
   real architecture's.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cli_kit import UserError, wrap
from record.rundir import RunDir
from search.ray_runner import FinishedTrainings

SUPERNETS_DIR = "supernets"


def supernet_seeds(opts) -> list[int]:
    return list(range(opts.seed, opts.seed + opts.supernets))


def supernet_file(rundir: RunDir, seed: int) -> Path:
    return rundir.path / SUPERNETS_DIR / f"seed-{seed}.pt"


def supernet_meta(space, budget, sampling: str, epochs: int) -> dict[str, Any]:
    """What a supernet file must match to serve this run: its menu (at the proxy width) and how it trained."""
    from space.supernet import supernet_space

    return {"space": supernet_space(space, budget.proxy_width).to_dict(), "path_sampling": sampling,
            "epochs": epochs}


def check_supernet_file(path: Path, want: dict[str, Any]) -> None:
    """Refuse, in one line, a supernet file of another backbone, menu, width or training."""
    import torch

    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)
        meta = saved["meta"]
    except Exception as exc:  # noqa: BLE001 - whatever is wrong with the file, the user gets one line
        raise UserError(f"{path} is not a supernet this service wrote ({type(exc).__name__}); remove it to "
                        "train it again") from None
    for key, value in want.items():
        if meta.get(key) != value:
            raise UserError(f"{path} was trained for another run: its {key} is {json.dumps(meta.get(key))}, this "
                            f"run needs {json.dumps(value)}; remove it (it is trained again) or start a new --name")


def last_checkpoint(rundir: RunDir, seed: int) -> str | None:
    """The newest epoch checkpoint an earlier attempt left for supernet `seed` (a killed search), if any."""
    import torch

    best: tuple[int, str] | None = None
    for path in rundir.ray_dir.glob("supernets-*/*/checkpoint_*/training.pt"):
        params = path.parent.parent / "params.json"
        try:
            job = json.loads(params.read_text()).get("job", {})
        except (OSError, ValueError):
            continue
        if job.get("supernet_seed") != seed:
            continue
        try:
            epoch = int(torch.load(path, map_location="cpu", weights_only=False)["training"]["epoch"])
        except Exception:  # noqa: BLE001 - a torn checkpoint is not a place to resume from
            continue
        if best is None or epoch > best[0]:
            best = (epoch, str(path))
    return best[1] if best else None


class SupernetWriter(FinishedTrainings):
    """Tune callback: a line as each supernet finishes, and the reason of any that did not."""

    def __init__(self) -> None:
        self.failed: dict[int, str] = {}

    def finished(self, trial, status: str, result: dict[str, Any], error: str) -> None:
        from search.progress import say

        seed = trial.config.get("job", {}).get("supernet_seed")
        if status != "ok":
            self.failed[seed] = error or status
        accs = result.get("val_acc")
        say(f"supernet seed {seed}: {status}" + (f", reference path val_acc {accs:.4f}" if accs is not None else "")
            + (f" ({error})" if error else ""))


def train_supernets(plan, rundir: RunDir, execution, attempt: int) -> dict[str, str]:
    """Phase 1: every supernet of the run trained and on disk; {seed: file} for the scoring trials."""
    from search.ray_runner import fit, make_tuner, trial_context

    opts, budget = plan.opts, plan.budget
    want = supernet_meta(plan.space, budget, opts.path_sampling, opts.supernet_epochs)
    files = {seed: supernet_file(rundir, seed) for seed in supernet_seeds(opts)}
    todo = []
    for seed, path in files.items():
        if path.exists():
            check_supernet_file(path, want)
        else:
            todo.append({"supernet_seed": seed, "file": str(path), "resume_from": last_checkpoint(rundir, seed)})
    if todo:
        (rundir.path / SUPERNETS_DIR).mkdir(exist_ok=True)
        epochs_budget = replace(budget, epochs=opts.supernet_epochs)
        ctx = replace(trial_context(execution, opts.data_dir, epochs_budget, opts.seed),
                      oneshot={"space": plan.space.to_dict(), "path_sampling": opts.path_sampling, "meta": want})
        resumed = sum(1 for job in todo if job["resume_from"])
        eta = _eta(execution, epochs_budget, len(todo), plan.sizes["train"])
        print(wrap(f"supernets: {len(todo)} of {len(files)} to train ({resumed} from an earlier attempt's checkpoint), "
                   f"{opts.supernet_epochs} epochs each of {plan.sizes['train']:,} images, path sampling "
                   f"{opts.path_sampling}, up to {execution.max_concurrent} at once{eta}"), flush=True)
        writer = SupernetWriter()
        fit(lambda: make_tuner(execution, ctx, name=f"supernets-{attempt}", storage_path=rundir.ray_dir,
                               callbacks=[writer], configs=todo, events=rundir.events_path))
        missing = [seed for seed, path in files.items() if not path.exists()]
        if missing:
            why = "; ".join(f"seed {s}: {writer.failed.get(s, 'not finished')}" for s in missing)
            raise UserError(f"supernet(s) not trained ({why}); fix the cause and continue with --resume")
    return {str(seed): str(path) for seed, path in files.items()}


def _eta(execution, budget, supernets: int, images: int) -> str:
    """On the CPU, the phase's duration from the stand-alone calibration's CPU-seconds per image (a supernet
    step runs one path of the menu, as a proxy training's step runs its one network)."""
    if execution.device != "cpu":
        return ""
    from trainer.budget import CPU_FIDELITY

    hours = CPU_FIDELITY.hours(supernets, execution.max_concurrent, budget, images)
    return "" if hours is None else f"; about {hours:.1f} h (the cpu calibration's CPU-s per image)"


@dataclass(frozen=True)
class OneshotRepeatability:
    """What `benchmarks/oneshot_fidelity.py --common-split` measured on this machine: two supernets (seeds 0
    and 1) trained `epochs` epochs of the `cpu` budget on all 45,000 training images, ranking the same
    architectures with BatchNorm on `bn_images` images (`benchmarks/data/oneshot_fidelity_common.{txt,csv}`;
    tests/test_oneshot.py recomputes the figures from the CSV).  The CPU default strategy follows it: the one
    that ranks more repeatably at this machine's cost."""

    tau: float
    lo: float
    hi: float
    archs: int
    epochs: int = 6
    supernet_hours: float = 0.64  # CPU-hours per supernet
    bn_images: int = 2048

    def figure(self) -> str:
        return (f"two supernets of {self.epochs} epochs ({self.supernet_hours:.2f} CPU-h each) ranked {self.archs} "
                f"architectures at Kendall tau={self.tau:+.2f} [{self.lo:+.2f}, {self.hi:+.2f}]")

    def standalone_line(self, proxy) -> str:
        """Why a stand-alone search is the CPU default (proxy: trainer.budget.CPU_FIDELITY)."""
        return (f"strategy standalone, the CPU default: it ranks more repeatably at this machine's cost (the cpu "
                f"proxy's two seeds: tau={proxy.tau:+.2f} [{proxy.lo:+.2f}, {proxy.hi:+.2f}]; one-shot: "
                f"{self.figure()}; docs/oneshot.md)")

    def oneshot_line(self) -> str:
        """What a one-shot search on the CPU should expect of its ranking."""
        return (f"one-shot on the CPU: {self.figure()} (docs/oneshot.md); treat this run's ranking as "
                "unrepeatable unless its supernets train far longer (a GPU) and check its front with search.fidelity")


ONESHOT_CPU = OneshotRepeatability(tau=-0.27, lo=-0.41, hi=-0.09, archs=60)


def oneshot_notes(plan) -> list[str]:
    """What the start-up lines say of a one-shot search: the supernets and why the seeds are theirs."""
    opts = plan.opts
    return [f"one-shot: every architecture is scored with the weights it inherits from each of {opts.supernets} "
            f"supernets (seeds {opts.seed}..{opts.seed + opts.supernets - 1}: a row's seed names its supernet), "
            f"BatchNorm re-estimated per subnet on {plan.budget.bn_images:,} training images; the spread between "
            "supernets is each score's noise", *([ONESHOT_CPU.oneshot_line()] if opts.execution.device == "cpu" else [])]


__all__ = ["ONESHOT_CPU", "OneshotRepeatability", "SUPERNETS_DIR", "SupernetWriter", "check_supernet_file",
           "last_checkpoint", "oneshot_notes", "supernet_file", "supernet_meta", "supernet_seeds", "train_supernets"]
