"""The fold of a call's events into its row (elasticcode/runtime/events.py), for any order in which a
batch holds them: where and when a call ran come from its latest delivery (README, Reliability: a
call that ran twice is one row; `tests/test_cluster.py` kills a node mid-run), its first receipt is
kept, and its state only moves forward."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from elasticcode.runtime.events import POSTRUN, PRERUN, QUEUED, RECEIVED, CallEvent, fold_all

CALL = "5b0c7a9e-4d47-4c35-9e0b-2f4c1f1d3a10"


def _events() -> list[CallEvent]:
    """A call queued at t=0, taken and started on node1 (delivery 1, which never ended: the node
    died), then run again on node2 (delivery 2) seconds later."""
    common = dict(socket="s", processor="p", user="u")
    return [
        CallEvent(CALL, QUEUED, 100.0, **common),
        CallEvent(CALL, RECEIVED, 101.0, worker="p@node1", host="node1", **common),
        CallEvent(CALL, PRERUN, 101.1, worker="p@node1", host="node1", **common),
        CallEvent(CALL, RECEIVED, 109.0, worker="p@node2", host="node2", **common),
        CallEvent(CALL, PRERUN, 109.1, worker="p@node2", host="node2", **common),
        CallEvent(CALL, POSTRUN, 109.3, worker="p@node2", host="node2", duration=0.2, deliveries=2, result="1",
                  started=109.1, **common),
    ]


@given(st.permutations(_events()))
def test_a_call_folds_to_its_latest_delivery_whatever_the_order_in_a_batch(events):
    row = fold_all(events)[CALL]
    assert (row["worker"], row["host"]) == ("p@node2", "node2")
    assert row["started"].timestamp() == 109.1 and row["finished"].timestamp() == 109.3
    assert row["received"].timestamp() == 101.0  # the first receipt
    assert row["state"] == "finished" and row["deliveries"] == 2
