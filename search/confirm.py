"""`python -m search.confirm RUN`: the study's answer — the chosen architecture(s) against the four presets.

Trains the architecture(s) picked from the run's front and the backbone's
four presets (GhostNet: cnn, ghostnet, all_mca, selective_mca; VGG-16 and
ResNet-56: plain, ghost, all_mca, selective_mca) with several seeds each, on
the whole training split, scored on the CIFAR-10 test batch, through the same
Ray Tune trainable as the search (a cluster with `--address`; lost nodes
restart trainings, as in the search).  Each (system, seed) is appended to
`RUN/confirm.csv` as it finishes, so a killed confirmation resumes without
training a pair again; the table (`analysis.confirm`) is printed and kept in
`RUN/confirm.md`, and the report draws it in "The answer".
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any, Sequence

from cli_kit import Parser, UserError, require_at_least, run_main
from record.rundir import CONFIRM_FILE, CONFIRM_TABLE_FILE, INT8_COLUMNS, AppendTable, open_confirm
from search.watchdog import job_of
from search.retrain import (RetrainWriter, add_execution_flags, again_command, checked_data, execution_of, locked_table,
                            run_recipe, train_jobs, with_run_backend)

PROG = "search.confirm"
CUDA_EPOCHS = 200  # a full CIFAR training, as the papers train
CPU_EPOCH_FACTOR = 3  # on the CPU: a few times the run's proxy, so the table takes hours, not days


def build_parser() -> Parser:
    p = Parser(prog=f"python -m {PROG}", description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="run directory (<storage-path>/<name>)")
    pick = p.add_argument_group("which architectures (one of; default --pick knee)").add_mutually_exclusive_group()
    pick.add_argument("--pick", choices=["knee", "effects"], default=None,
                      help="knee: the knee of the front (as analysis.select); effects: the placement analysis.effects "
                           "predicts best (within --max-macs / --max-latency-ms if given)")
    budget = p.add_argument_group("budget (alone: the most accurate ok trial within it; with --pick effects: the "
                                  "best predicted placement within it)")
    budget.add_argument("--max-macs", type=float, default=None, help="N MACs")
    budget.add_argument("--max-latency-ms", type=float, default=None, help="T ms")
    pick.add_argument("--keys", default=None, help="these architecture keys, comma-separated")
    pick.add_argument("--front", action="store_true", help="every member of the Pareto front")
    t = p.add_argument_group("training")
    t.add_argument("--seeds", type=int, default=3, help="seeds per system (default %(default)s)")
    t.add_argument("--epochs", type=int, default=None,
                   help=f"epochs (default: {CUDA_EPOCHS} with CUDA, full width; on the CPU {CPU_EPOCH_FACTOR} x "
                        "the run's proxy epochs at its recipe)")
    t.add_argument("--budget", default=None, help="trainer preset smoke|cpu|gpu (default: the run's)")
    t.add_argument("--train-size", type=int, default=None, help="training images (default: the whole training split)")
    t.add_argument("--data-dir", default=None, help="CIFAR-10 (default: the run's data directory)")
    t.add_argument("--int8", action="store_true",
                   help="also quantize each trained network to int8 (ONNX Runtime, runtime.quantize): its test accuracy, "
                        "agreement with fp32 and latency beside fp32's (pairs confirmed without it train again)")
    add_execution_flags(p)
    return p


def _checked(argv: Sequence[str] | None):
    args = build_parser().parse_args(argv)
    require_at_least(args, {"seeds": 1, "epochs": 1, "train_size": 1})
    if (args.max_macs is not None or args.max_latency_ms is not None) and (
            args.pick == "knee" or args.keys is not None or args.front):
        raise UserError("--max-macs / --max-latency-ms pick on their own or with --pick effects, "
                        "not with --pick knee, --keys or --front")
    return args


def picked(data, args) -> list[tuple[str, Any]]:
    """(label, ArchConfig) of the architectures the flags pick from the run; a pick of nothing is refused."""
    from analysis.pareto import pareto_front
    from analysis.select import best_under, knee_point

    ok = data.ok
    if ok.empty:
        raise UserError(f"run {data.path} has no ok trial: no front to pick from")
    if args.keys is not None:
        keys = [k.strip() for k in args.keys.split(",") if k.strip()]
        unknown = [k for k in keys if k not in set(ok["key"])]
        if unknown or not keys:
            raise UserError(f"--keys: {unknown[0] if unknown else '(none)'} is not an ok architecture of {data.path}")
        rows = [ok[ok["key"] == k].iloc[0] for k in keys]
    elif args.front:
        rows = [r for _, r in pareto_front(ok, data.objectives).sort_values("number").iterrows()]
    elif args.pick == "effects":
        from analysis.effects import effects_pick

        return [("effects", effects_pick(data.path, args.max_macs, args.max_latency_ms))]
    elif args.max_macs is not None or args.max_latency_ms is not None:
        rows = [best_under(ok, max_macs=args.max_macs, max_latency_ms=args.max_latency_ms)]
    else:
        rows = [knee_point(pareto_front(ok, data.objectives), data.objectives)]
    label = (lambda r: "chosen") if len(rows) == 1 else (lambda r: f"chosen #{int(r['number'])}")
    return [(label(r), data.arch(r)) for r in rows]


def systems(data, args) -> tuple[list[tuple[str, Any]], list[str]]:
    """The picked architectures, then the backbone's presets, and the picks' names: a pick that is a preset
    keeps the preset's name (and is trained once, as the preset)."""
    from space import presets_for

    presets = presets_for(data.meta.get("backbone", "ghostnet"))
    by_key = {cfg.key: name for name, cfg in presets.items()}
    chosen, out = [], []
    for label, arch in picked(data, args):
        name = by_key.get(arch.key, label)
        chosen.append(name)
        if name not in by_key.values():
            out.append((name, arch))
    return out + list(presets.items()), chosen


def confirm_budget(args, meta: dict, cuda: bool):
    """The run's recipe (or --budget) trained longer on the whole training split: on CUDA as the papers
    train (full width), on the CPU a few times the run's proxy."""
    base = run_recipe(meta, args.budget)
    if cuda:
        base = dataclasses.replace(base, proxy_width=1.0, epoch_images=None)
    epochs = args.epochs or (CUDA_EPOCHS if cuda else CPU_EPOCH_FACTOR * base.epochs)
    return dataclasses.replace(base, epochs=epochs, train_size=args.train_size)


def main(argv: Sequence[str] | None = None) -> int:
    args = _checked(argv)
    execution = execution_of(args)
    from analysis.load import load_run
    from host.device import cuda_available

    data = load_run(args.run)
    execution = with_run_backend(execution, args.latency_backend, data.meta)
    todo_systems, picks = systems(data, args)
    budget = confirm_budget(args, data.meta, cuda=execution.device == "cuda" and cuda_available())
    data_dir, split_images = checked_data(args.data_dir, data.meta)
    seed0 = int(data.meta.get("seed", 0))
    seeds = [seed0 + i for i in range(args.seeds)]
    with locked_table(data.path, CONFIRM_FILE, open_confirm) as (rundir, table):
        done = {(r["system"], int(r["seed"])) for r in table.rows}
        if args.int8:  # a pair confirmed without int8 trains again; its new row is the one the table reads
            done = {(r["system"], int(r["seed"])) for r in table.rows if r["test_acc_int8"] != "" or r["status"] != "ok"}
        jobs = [{"arch": arch.to_dict(), "seed": s, "system": name}
                for name, arch in todo_systems for s in seeds if (name, s) not in done]
        print(f"{PROG}: picked {', '.join(picks)}; {len(todo_systems)} systems x {len(seeds)} seeds, {len(jobs)} "
              f"to train for {budget.epochs} epochs ({budget.trained_as()}), scored on the test batch, latency in "
              f"{execution.latency_backend}{' and int8 (onnxruntime-int8)' if args.int8 else ''}; results in "
              f"{table.path}", flush=True)
        if jobs:
            train_jobs(execution, rundir, _Writer(table, len(jobs), budget), jobs, name=f"confirm-{len(table.rows)}",
                       data_dir=data_dir, budget=budget, seed=seed0, split_images=split_images, evaluate_on="test",
                       again=again_command(PROG, argv), int8=args.int8)
    return summary(data.path, data.meta.get("backbone", "ghostnet"))


class _Writer(RetrainWriter):
    """One confirm.csv row per finished (system, seed)."""

    def __init__(self, table: AppendTable, todo: int, budget) -> None:
        super().__init__(table, todo)
        self.budget = budget

    def row(self, trial, status: str, result: dict[str, Any], error: str) -> tuple[dict[str, Any], str]:
        job = job_of(trial)
        acc = result.get("val_acc") if status == "ok" else None  # the test batch's (evaluate_on="test")
        row = {"system": job["system"], "key": result.get("key", ""), "seed": job["seed"], "status": status,
               "test_acc": acc, "macs": result.get("macs"), "params": result.get("params"),
               "latency_ms": result.get("latency_ms"), "epochs": result.get("epochs"),
               "train_images": self.budget.train_size or "all", "budget": self.budget.name,
               "train_seconds": result.get("train_seconds"), "error": error,
               **{c: result.get(c) for c in INT8_COLUMNS}}
        shown = f"test_acc={100 * acc:.2f}%" if acc is not None else error
        if acc is not None and result.get("test_acc_int8") is not None:
            shown += f" int8 {100 * result['test_acc_int8']:.2f}% (agrees {100 * result['int8_agreement']:.1f}%)"
        return row, f"{job['system']} seed={job['seed']} {shown}"


def summary(run_path: Path, backbone: str) -> int:
    """The study's table and its one-sentence answer: printed, and kept in confirm.md."""
    from analysis.confirm import reference_of, study_answer

    answer = study_answer(run_path, backbone)
    if answer is None:
        print(f"{PROG}: no ok result of the reference {reference_of(backbone)} yet: no table")
        return 0
    _, table, sentence = answer
    text = table + "\n\n" + sentence
    (Path(run_path) / CONFIRM_TABLE_FILE).write_text(text + "\n")
    print(text)
    print(f"table: {Path(run_path) / CONFIRM_TABLE_FILE}; the report shows it: "
          f"python -m analysis.report {run_path} -o report.html")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, prog=PROG))
