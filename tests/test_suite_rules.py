"""The suite's own rule: no test compares two timings (docs: Tests, "what a test may say about time").

Both test layers run two workers at once, so a timing taken in a test shares the
cores with the other worker's trainings: two timings taken at different moments
(or in different processes) are taken under different, unknown loads, and a
bound on their ratio fails at random (CI went red on a 31 % gap against ±25 %).
A test checks *what* was measured; how two timings compare is a benchmark's
figure (`benchmarks/`: interleaved rounds, printed with their spread).

The rule is read from the tests' syntax: an `assert` that combines a timing
taken in the test with a second timing source, or a fixture that hands timings
it took to tests, is refused.  A timing taken in the test is a call of a timer
(`TIMERS`) or a name bound from one; a second source is another such call or a
recorded timing read by its column name (`row["latency_ms"]`, `...["seconds"]`,
what a search measured earlier).  The fields of one measurement
(`lat.p10_ms <= lat.median_ms`) are one source.  Recorded figures compared with
each other (a table's predictions, a front's limits) are data, not timings.
"""
from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
TIMERS = {"measure_latency", "time_network", "run_protocol", "perf_counter", "perf_counter_ns", "monotonic",
          "monotonic_ns", "time", "time_ns", "process_time", "thread_time"}
TIMING_KEYS = ("_ms", "seconds", "_s")


def _is_timer(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    return name in TIMERS


def _is_recorded(node: ast.AST) -> bool:
    key = node.slice if isinstance(node, ast.Subscript) else None
    return isinstance(key, ast.Constant) and isinstance(key.value, str) and key.value.endswith(TIMING_KEYS)


def _sources(expr: ast.AST, timed: dict[str, frozenset[str]]) -> frozenset[str]:
    """The timing sources `expr` reads: one id per timer call, timed name or measured record."""
    found: set[str] = set()
    for node in ast.walk(expr):
        if _is_timer(node):
            found.add(f"call@{node.lineno}:{node.col_offset}")
        elif isinstance(node, ast.Name) and node.id in timed:
            found |= timed[node.id]
        elif _is_recorded(node):
            found.add(f"record:{ast.dump(node.value)}")
    return frozenset(found)


def _live(sources: frozenset[str]) -> frozenset[str]:
    return frozenset(s for s in sources if s.startswith("call@"))


def _compares_a_live_timing(sources: frozenset[str]) -> bool:
    return len(sources) >= 2 and bool(_live(sources))


def _targets(target: ast.AST) -> list[str]:
    return [n.id for n in ast.walk(target) if isinstance(n, ast.Name)]


def _is_fixture(func: ast.FunctionDef) -> bool:
    return any("fixture" in ast.unparse(d) for d in func.decorator_list)


def violations(source: str, filename: str = "<test>") -> list[str]:
    """`file:line: what` for each assert comparing two timings, and each fixture handing timings out."""
    found = []
    for func in ast.walk(ast.parse(source)):
        if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        timed: dict[str, frozenset[str]] = {}
        for _ in range(3):  # names bound from names bound from timers: a short fixpoint
            for node in ast.walk(func):
                if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)) and node.value is not None:
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    sources = _sources(node.value, timed)
                elif isinstance(node, (ast.For, ast.comprehension)):
                    targets, sources = [node.target], _sources(node.iter, timed)
                else:
                    continue
                if sources:
                    for name in (n for t in targets for n in _targets(t)):
                        timed[name] = timed.get(name, frozenset()) | sources
        for node in ast.walk(func):
            if isinstance(node, ast.Assert) and _compares_a_live_timing(_sources(node.test, timed)):
                found.append(f"{filename}:{node.lineno}: an assert compares two timings")
            if (isinstance(node, (ast.Return, ast.Yield)) and node.value is not None and _is_fixture(func)
                    and _live(_sources(node.value, timed))):
                found.append(f"{filename}:{node.lineno}: fixture {func.name} hands timings to tests")
    return found


def suite_findings(rule) -> list[str]:
    """`rule(source, filename)` over every file of the suite."""
    return [v for path in sorted(TESTS.glob("*.py")) for v in rule(path.read_text(), path.name)]


def test_no_test_compares_two_timings():
    found = suite_findings(violations)
    assert found == [], "\n".join(found)


def test_the_rule_catches_what_it_forbids_and_allows_what_a_test_should_check():
    forbidden = {
        "two latencies": "def test_x():\n    a = measure_latency(m)\n    b = time_network(m)\n"
                         "    assert a.median_ms < b.median_ms\n",
        "a recorded latency against one timed now": "def test_x(rows):\n    alone = measure_latency(m).median_ms\n"
                                                    "    recorded = float(rows['cnn']['latency_ms'])\n"
                                                    "    assert abs(recorded / alone - 1) <= 0.25\n",
        "a wall-clock bound": "def test_x():\n    started = time.monotonic()\n    run()\n"
                              "    assert time.monotonic() - started < 2\n",
        "a fixture's timings": "@pytest.fixture\ndef f():\n    t0 = time.perf_counter()\n    x = load()\n"
                               "    return x, time.perf_counter() - t0\n",
    }
    for what, source in forbidden.items():
        assert violations(source), what
    allowed = [
        "def test_x():\n    lat = measure_latency(m)\n    assert 0 < lat.p10_ms <= lat.median_ms <= lat.p90_ms\n",
        "def test_x():\n    for b in BACKENDS:\n        t = time_network(m, backend=b)\n"
        "        assert t.median_ms > 0\n",
        "def test_x(entry):\n    assert entry['ci_low_ms'] <= entry['median_ms'] <= entry['ci_high_ms']\n",
        "def test_x(a, b):\n    assert a['k']['latency_ms'] == b['k']['latency_ms']\n",  # two predictions
        "def test_x():\n    deadline = time.monotonic() + 30\n    while time.monotonic() < deadline:\n"
        "        poll()\n    assert done()\n",
    ]
    for source in allowed:
        assert violations(source) == [], source


# A second rule: no test writes into the checkout.  Both layers run two workers at once, and other tests read the
# tree (the layering check, the docs' floors table, the duplicate scan): a file planted in the checkout, even for a
# moment, is seen by them (the docs build once found an import circle record -> search -> analysis -> record
# through the layering test's probe).  Tests write under tmp_path, a copy of the tree where they need one.
WRITERS = {"write_text", "write_bytes", "touch", "mkdir", "unlink", "rename", "replace", "symlink_to", "rmdir"}
CHECKOUT = {"REPO", "ROOT"}


def writes_into_checkout(source: str, filename: str = "<test>") -> list[str]:
    """`file:line: what` for each write (pathlib's writers) to a path built from REPO/ROOT."""
    found = []
    for func in ast.walk(ast.parse(source)):
        if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        inside = set(CHECKOUT)
        for _ in range(3):
            for node in ast.walk(func):
                if isinstance(node, ast.Assign) and any(isinstance(n, ast.Name) and n.id in inside
                                                        for n in ast.walk(node.value)):
                    inside |= {n for t in node.targets for n in _targets(t)}
        for node in ast.walk(func):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in WRITERS
                    and any(isinstance(n, ast.Name) and n.id in inside for n in ast.walk(node.func.value))):
                found.append(f"{filename}:{node.lineno}: {node.func.attr} into the checkout")
    return found


def test_no_test_writes_into_the_checkout():
    found = suite_findings(writes_into_checkout)
    assert found == [], "\n".join(found)


def test_the_checkout_rule_catches_a_probe_and_allows_a_copy():
    assert writes_into_checkout("def test_x():\n    probe = REPO / 'record' / 'p.py'\n    probe.write_text('x')\n")
    assert writes_into_checkout("def test_x():\n    (REPO / 'a').unlink()\n")
    assert writes_into_checkout("def test_x(tmp_path):\n    (tmp_path / 'a').write_text(REPO.name)\n") == []
    assert writes_into_checkout("def test_x(tmp_path):\n    text = (REPO / 'a').read_text()\n"
                                "    (tmp_path / 'a').write_text(text)\n") == []
