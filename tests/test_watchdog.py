"""The Watchdog's event lines name the node Ray says was lost (fast: Tune's own Trial, no cluster).

The errors are Ray's own `ActorDiedError`, built from the death context the
GCS sends (its message as Ray 2.60 writes it); tests/test_cluster_faults.py
checks the same lines against a real three-node cluster's lost nodes.
"""
from __future__ import annotations

import pytest
from ray.core.generated.common_pb2 import ActorDiedErrorContext
from ray.exceptions import ActorDiedError
from ray.tune.experiment import Trial

from search.watchdog import Watchdog, _lost, error_line

NODE = "37cbd3e1cd590c90bc843457ba543732782ddc6b7504a0ed279ae0ed"


def actor_died(message: str) -> str:
    """The text Tune writes to a trial's error file for an actor that died."""
    context = ActorDiedErrorContext(class_name="ImplicitFunc", actor_id=bytes(16), pid=17281,
                                    node_ip_address="127.0.0.1", error_message=message)
    return f"Failure # 1 (occurred at 2026-12-06_15-39-45)\n{ActorDiedError(context)}"


NODE_DIED = actor_died(f"The actor died because its node has died. Node Id: {NODE}\n"
                       "\tthe actor's node was terminated unexpectedly: health check failed due to missing too "
                       "many heartbeats")
WORKER_DIED = actor_died("The actor died unexpectedly: worker process exited with SIGKILL")


def trial(last_result: dict) -> Trial:
    t = Trial("run_trial", config={}, stub=True)
    t.run_metadata.last_result = dict(last_result)
    return t


@pytest.mark.parametrize("reported", [{}, {"node": "9d2925341234"}], ids=["before its first epoch", "after"])
def test_a_node_lost_is_named_from_rays_error(reported):
    """Ray's error names the dead node even for a training that never reported (was `node ?`)."""
    assert _lost(trial(reported), NODE_DIED) == f"node {NODE[:8]} lost"
    assert error_line(trial(reported), NODE_DIED).startswith("the actor's node was terminated unexpectedly")


def test_without_a_node_in_the_error_the_last_reporting_node_is_named():
    assert _lost(trial({"node": "9d2925341234"}), WORKER_DIED) == "node 9d292534 lost"
    assert _lost(trial({}), WORKER_DIED) == "node ? lost"


def test_an_event_is_one_terminal_line_and_the_error_below_it_in_events_log(tmp_path, capsys):
    events = tmp_path / "events.log"
    watchdog = Watchdog(epochs=4, events=events)
    watchdog.event("node 37cbd3e1 lost: training a (k, seed 0) restarts from epoch 1 (restart 1 of 3)",
                   error_line(trial({}), NODE_DIED))
    watchdog.event("training a (k, seed 0) finished after 1 restart(s)")
    assert capsys.readouterr().out.splitlines() == [
        "node 37cbd3e1 lost: training a (k, seed 0) restarts from epoch 1 (restart 1 of 3)",
        "training a (k, seed 0) finished after 1 restart(s)"]
    logged = [ln.split(" ", 1)[1] if not ln.startswith(" ") else ln for ln in events.read_text().splitlines()]
    assert logged == [
        "node 37cbd3e1 lost: training a (k, seed 0) restarts from epoch 1 (restart 1 of 3)",
        "    the actor's node was terminated unexpectedly: health check failed due to missing too many heartbeats",
        "training a (k, seed 0) finished after 1 restart(s)"]
