"""How much of the code that decides the answer would the tests notice breaking?  Mutation testing, measured.

    python benchmarks/mutation.py                 # every file of [tool.mutmut] only_mutate (about an hour)
    python benchmarks/mutation.py --only "analysis.pareto*"
    python benchmarks/mutation.py --report-only   # the table of the last run, without running

mutmut (3.x) copies the packages into `mutants/`, plants one small change at a
time in the files that `pyproject.toml`'s `[tool.mutmut] only_mutate` lists:
configs, keys and costs of `space/`, `record/`, `analysis/pareto.py`, the
effects model and its checks, `search/ledger.py` and the runtime's export
check. For each change it runs the fast tests that cover the changed function.
A mutant is *killed* when a test fails; it *survives* when every covering test
still passes; it has *no tests* when no test reaches the function.

Our tests run in their own network namespace (tests/conftest.py re-runs pytest
inside one). mutmut's fork server cannot follow that re-run, and these tests
start no Ray, so it is switched off here (GHOSTNAS_TEST_NETNS=off).

The score is caught / (all mutants − those listed as equivalent), where caught
means killed or timed out. Equivalent mutants change no behaviour any caller
can see. Each is listed, with a one-line reason, in
`benchmarks/data/mutation_equivalent.txt` (`name  reason`). Prints a table per
module and writes it to `benchmarks/data/mutation.txt`. Not in CI: it is slow.
"""
from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / "data"
EQUIVALENT = DATA / "mutation_equivalent.txt"
CAUGHT = {"killed", "timeout"}
COLUMNS = ("killed", "timeout", "survived", "no tests", "suspicious", "skipped", "not checked")


def mutmut(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mutmut", *args], cwd=ROOT, env=env, text=True,
                          capture_output=True)


def results(env: dict[str, str]) -> dict[str, str]:
    """Mutant name -> status, from `mutmut results --all true`."""
    done = mutmut("results", "--all", "true", env=env)
    out = {}
    for line in done.stdout.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep:
            out[name] = status.strip()
    return out


def equivalents() -> dict[str, str]:
    """Mutant name -> why it changes nothing a caller can see."""
    if not EQUIVALENT.exists():
        return {}
    out = {}
    for line in EQUIVALENT.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, reason = line.strip().partition(" ")
            out[name] = reason.strip()
    return out


def module_of(name: str) -> str:
    """`analysis.pareto.x_front_mask__mutmut_3` -> `analysis/pareto.py`."""
    dotted = name.split(".x_")[0].split(".xǁ")[0]
    return dotted.replace(".", "/") + ".py"


def table(status: dict[str, str], equivalent: dict[str, str]) -> list[str]:
    per = collections.defaultdict(collections.Counter)
    for name, s in status.items():
        per[module_of(name)]["equivalent" if name in equivalent and s == "survived" else s] += 1
    head = f"{'module':<32} {'mutants':>7} " + " ".join(f"{c:>11}" for c in (*COLUMNS, "equivalent")) + "   score"
    lines = [head, "-" * len(head)]
    total = collections.Counter()
    for module in sorted(per):
        total.update(per[module])
        lines.append(row(module, per[module]))
    lines += ["-" * len(head), row("all", total)]
    return lines


def row(module: str, c: collections.Counter) -> str:
    n = sum(c.values())
    scored = n - c["equivalent"] - c["not checked"] - c["skipped"]
    score = sum(c[k] for k in CAUGHT) / scored if scored else float("nan")
    cells = " ".join(f"{c[k]:>11}" for k in (*COLUMNS, "equivalent"))
    return f"{module:<32} {n:>7} {cells}   {score:6.1%}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="*", default=[], help="mutant name globs (mutmut run's arguments)")
    p.add_argument("--max-children", type=int, default=os.cpu_count() or 1)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "cifar10-subset"))
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--out", default=str(DATA / "mutation.txt"))
    args = p.parse_args()
    env = {**os.environ, "GHOSTNAS_TEST_NETNS": "off", "CIFAR10_SUBSET": args.data}
    started = time.time()
    if not args.report_only:
        done = subprocess.run([sys.executable, "-m", "mutmut", "run", *args.only, "--max-children",
                               str(args.max_children)], cwd=ROOT, env=env)
        if done.returncode:
            print(f"mutmut run exited {done.returncode}", file=sys.stderr)
            return done.returncode
    status = results(env)
    equivalent = equivalents()
    survivors = sorted(n for n, s in status.items() if s in ("survived", "no tests") and n not in equivalent)
    lines = [f"# python benchmarks/mutation.py {' '.join(sys.argv[1:])}".rstrip(),
             f"# mutmut {mutmut('--version', env=env).stdout.strip().split()[-1]}, fast tests of "
             f"[tool.mutmut] (pyproject.toml); {len(equivalent)} listed equivalent "
             f"({EQUIVALENT.relative_to(ROOT)}); wall {(time.time() - started) / 60:.0f} min",
             "", *table(status, equivalent), "", f"survivors not listed equivalent: {len(survivors)}",
             *(f"  {n}: {status[n]}" for n in survivors)]
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
