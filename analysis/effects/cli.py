"""`python -m analysis.effects RUN`: which bottlenecks deserve MCA, answered from all trainings at once.

    python -m analysis.effects runs/my-search
    python -m analysis.effects runs/my-search --by stage --json effects.json
    python -m analysis.effects runs/my-search --max-macs 20e6      # + the data's Selective MCA

Prints the effect of MCA on each bottleneck, of the kernel set and of the
ratio s on `val_acc`, each with its 95 % interval (additive OLS over every ok
training, seeds averaged per architecture: `analysis.effects.model`) and its
exact cost; which bottleneck effects survive Holm's control over the 16; the
smallest effect the run can resolve and the trainings a target would take;
the design's variance inflation; and whether the additive model holds on the
run's own data (`analysis.effects.checks`).  Effects print in points of
val_acc (0.5 = half a percentage point); `--json` keeps val_acc's own unit.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from ..cli import Parser, UserError, run_main
from .answer import DEFAULT_TARGET, PROG, check_budget, load_effects, placement_of, report_text, to_json


def write_json(path: Path, payload: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(payload, indent=2) + "\n")
        tmp.replace(path)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None


def build_parser() -> Parser:
    p = Parser(prog=f"python -m {PROG}", description="Estimate the effect of MCA on each bottleneck, of the kernel "
               "set and of the ratio s on val_acc, from all ok trainings of a run, with intervals.")
    p.add_argument("run", help="run directory (<storage-path>/<name>)")
    p.add_argument("--json", metavar="FILE", default=None, help="also write the table and sentences as JSON")
    p.add_argument("--by", choices=["stage"], default=None, help="stage: group bottlenecks by resolution")
    p.add_argument("--target", type=float, default=DEFAULT_TARGET,
                   help="effect (points) the 'architectures needed' sentence is stated for (default %(default)g)")
    p.add_argument("--max-macs", type=float, default=None, help="also print the best placement within N MACs")
    p.add_argument("--max-latency-ms", type=float, default=None, help="... within T ms (predicted latency)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for flag, value in (("--target", args.target), ("--max-macs", args.max_macs),
                        ("--max-latency-ms", args.max_latency_ms)):
        check_budget(flag, value)
    e = load_effects(args.run, by_stage=args.by == "stage")
    placement = None
    if args.max_macs is not None or args.max_latency_ms is not None:
        placement = placement_of(e, args.max_macs, args.max_latency_ms)
    if args.json:
        write_json(Path(args.json), to_json(e, args.target, placement))
    print(report_text(e, args.target, placement))
    return 0


__all__ = ["PROG", "main", "run_main"]
