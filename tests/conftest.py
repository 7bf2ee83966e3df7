"""Shared fixtures: every test uses the real CIFAR-10 sample shipped beside the repo."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NETNS_MARK = "GHOSTNAS_TEST_NETNS"


def pytest_configure(config) -> None:
    """Run the whole suite in a network namespace of its own, where Ray binds 127.0.0.1.

    Outside one, Ray advertises the machine's interface address even for a
    local cluster, and the tests that join, kill or overload Ray processes would
    send traffic to it; inside, only loopback exists.  Where it can, the suite
    also gets a process namespace of its own, so `ray stop --force` and the
    fault tests' kills see only the suite's Ray processes (never a search the
    user runs beside it), and every leftover process dies with the suite.
    Needs `unshare -n` (root or CAP_SYS_ADMIN); where that is refused the suite
    runs as it is.  Set GHOSTNAS_TEST_NETNS=off to run in the machine's namespace anyway.
    """
    import shutil
    import subprocess
    import sys
    import tempfile

    # The suite's own node slot (runtime.slot): a search running elsewhere on the machine would otherwise
    # hold every latency measurement of the tests until its epochs end (minutes each on full CIFAR-10).
    os.environ.setdefault("GHOSTNAS_SLOT_DIR", tempfile.mkdtemp(prefix="ghostnas-test-slot-"))
    _one_thread_per_worker()
    if os.environ.get(NETNS_MARK) or sys.platform != "linux":
        return
    unshare, ip = shutil.which("unshare"), shutil.which("ip")
    if not unshare or not ip or subprocess.run([unshare, "-n", "true"], capture_output=True).returncode:
        return
    pid_ns = ["-p", "-f", "--mount-proc"]
    if subprocess.run([unshare, "-n", *pid_ns, "true"], capture_output=True).returncode:
        pid_ns = []
    os.environ[NETNS_MARK] = "1"
    capture = config.pluginmanager.getplugin("capturemanager")
    if capture is not None:
        capture.stop_global_capturing()  # the new process writes to the real terminal
    sys.stdout.flush()
    os.execv(unshare, [unshare, "-n", *pid_ns, "sh", "-c", f'"{ip}" link set lo up && exec "$0" -m pytest "$@"',
                       sys.executable, *config.invocation_params.args])


def _one_thread_per_worker() -> None:
    """Under pytest-xdist, each worker (and what it starts) computes on one thread.

    Two workers each running torch's default one-thread-per-core pool on a 2-core
    machine oversubscribe it: measured, the fast layer took 240 s that way and
    145 s with one thread per worker.  Tests that time or choose thread counts
    set them themselves.
    """
    if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) < 2:
        return
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    import torch

    torch.set_num_threads(1)


E2E_FIXTURES = ("ray_cluster", "smoke_run")  # a test that uses one of these starts Ray: it belongs to the e2e layer


# The end-to-end files that take longest (measured on 2 cores: minutes each), in that order.  Collected
# first, and run with --no-loadscope-reorder, pytest-xdist starts them first, so the two workers finish
# together instead of one running the 4-minute cluster test alone at the end.
LONGEST_FIRST = ("test_cluster_faults.py", "test_search.py", "test_resume.py", "test_backbone_search.py", "test_docs.py",
                 "test_confirm.py", "test_gpu_check.py", "test_early_stopping.py", "test_latency_backends.py",
                 "test_interrupt.py")


def _longest_first(item) -> int:
    name = item.path.name
    return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)


def pytest_collection_modifyitems(config, items) -> None:
    """Keep the fast layer fast: a test that starts Ray through a fixture must be marked e2e.

    Also leaves out tests marked slow (hour-long quality bars) unless the -m expression names them,
    and puts the longest end-to-end files first (LONGEST_FIRST; a stable sort keeps each file's order).
    """
    items.sort(key=_longest_first)
    unmarked = [item.nodeid for item in items if not item.get_closest_marker("e2e")
                and set(E2E_FIXTURES) & set(getattr(item, "fixturenames", ()))]
    if unmarked:
        raise pytest.UsageError(f"mark these @pytest.mark.e2e (they start Ray): {', '.join(unmarked)}")
    if "slow" in (config.getoption("markexpr") or ""):
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker("slow")]


@pytest.fixture
def one_thread():
    """Forward passes in latency tests are tiny: one torch thread, so a busy 2-core machine does not make them crawl."""
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture(scope="session")
def cifar_dir() -> Path:
    """The real CIFAR-10 sample (../shared/cifar10-subset); $CIFAR10_SUBSET overrides."""
    path = Path(os.environ.get("CIFAR10_SUBSET", REPO.parent / "shared" / "cifar10-subset"))
    if not (path / "cifar-10-batches-py" / "data_batch_1").is_file():
        pytest.fail(f"CIFAR-10 sample not found at {path}; set CIFAR10_SUBSET")
    return path


@pytest.fixture(scope="session")
def ray_cluster() -> str:
    """A real Ray head started with `ray start`, joined by tests through --address.

    Sharing one cluster saves a Ray start per search test, and exercises the
    multi-machine path (`--address`) that users take with a real cluster. The
    cluster uses Ray's token authentication, as a secured cluster does:
    RAY_AUTH_MODE=token is set for the head and for every search the tests
    start, with the token in ~/.ray/auth_token.
    """
    import fcntl
    import shutil
    import subprocess
    import sys

    ray_bin = Path(sys.executable).with_name("ray")
    ray = str(ray_bin) if ray_bin.exists() else shutil.which("ray")
    from commands import free_port

    port = free_port()
    saved = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "token"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    # One token for every worker's cluster: two workers generating it at once would each write their own.
    token_lock = Path.home() / ".ray" / "auth_token.lock"
    token_lock.parent.mkdir(exist_ok=True)
    with open(token_lock, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        subprocess.run([ray, "get-auth-token", "--generate"], check=True, capture_output=True, env=env, timeout=120)
    # Every process of this head inherits the marker, so the teardown stops this cluster only
    # (`ray stop` would stop every Ray on the machine: another xdist worker's, or the user's own).
    marker = f"GHOSTNAS_TEST_CLUSTER={port}\0"  # NUL ends the entry: port 3562 never matches 35629
    subprocess.run(
        [ray, "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
         "--disable-usage-stats", f"--temp-dir=/tmp/rayt-{port}"],
        check=True, capture_output=True, env={**env, "GHOSTNAS_TEST_CLUSTER": str(port)}, cwd=REPO, timeout=300,
    )
    yield f"127.0.0.1:{port}"
    from cluster_faults import kill_marked  # the fault scenario's own clean-up, by the same marker

    kill_marked(marker)
    shutil.rmtree(f"/tmp/rayt-{port}", ignore_errors=True)
    if saved is None:
        os.environ.pop("RAY_AUTH_MODE", None)
    else:
        os.environ["RAY_AUTH_MODE"] = saved


@pytest.fixture(scope="session")
def smoke_run(cifar_dir, tmp_path_factory):
    """The getting-started tour's search, run as the docs write it: (run dir, finished process).

    A real 6-trial smoke search on a local Ray (the first line of the tour in
    docs/getting-started.md, `CIFAR` pointed at the sample).  The analysis
    tests read this run directory and the tour's test runs its other commands
    on a copy, so it is made once per session, and once for all pytest-xdist
    workers: the first to need it runs the search (the others wait on a lock)
    and leaves the finished process's output beside it.  One seed per baseline
    (`--baseline-seeds 1`), so its 6 trials are 6 architectures; the accuracy
    axis trains half-width copies (`--proxy-width 0.5`); costs are the real
    networks'.
    """
    import fcntl
    import json
    import subprocess

    from commands import shell_env, tour_search_line

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the session's base folder, which every worker's folder sits in
    where = shared / "tour"  # the folder the user runs the tour in
    with open(shared / "smoke-run.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        finished = where / "search.process.json"
        if not finished.exists():
            where.mkdir(exist_ok=True)
            done = subprocess.run(["bash", "-c", f"set -e\nexport CIFAR={cifar_dir}\n{tour_search_line()}"],
                                  cwd=where, capture_output=True, text=True, timeout=900, env=shell_env())
            finished.write_text(json.dumps({"args": done.args, "returncode": done.returncode,
                                            "stdout": done.stdout, "stderr": done.stderr}))
    proc = subprocess.CompletedProcess(**json.loads(finished.read_text()))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return where / "runs" / "tour", proc


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium driven by Playwright (never a downloaded browser); $CHROMIUM overrides the path."""
    chromium = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
    if not chromium.exists():
        message = f"Chromium not found at {chromium} (install Debian's chromium package)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(chromium), args=["--no-sandbox"], headless=True)
        yield b
        b.close()
