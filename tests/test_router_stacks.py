"""Which model the green router stack serves (``stevie.services.router.stack.candidate``) and
the settings-driven fault plan that proves the automatic rollback."""

from __future__ import annotations

import pytest

from stevie.contracts.evidence import ModelView
from stevie.services.router.stack import FaultPlan, candidate


def model(mid: str, created: int, kind: str = "manual", current: bool = False, posterior: bool = True) -> ModelView:
    return ModelView(mid, kind, created, "t", None, "", None, current, {"p_flat": 3} if posterior else {}, {}, {})


def test_the_newest_registered_model_after_the_current_one_is_the_candidate():
    cur = model("ckpt-a", 100, "checkpoint", current=True)
    assert candidate([cur]) is None  # nothing newer: green serves the current model
    assert candidate([cur, model("old", 50)]) is None  # registered before the current one: history
    assert candidate([cur, model("m1", 150), model("m2", 200)]) == "m2"
    assert candidate([model("m2", 200), cur, model("m1", 150)]) == "m2"  # order of the listing does not matter
    assert candidate([cur, model("ckpt-b", 300, "checkpoint"), model("m1", 150)]) == "m1"  # checkpoints are blue's
    assert candidate([cur, model("pbt", 300, "pbt", posterior=False), model("m1", 150)]) == "m1"  # no posterior
    assert candidate([model("m1", 150), model("m1b", 150)]) == "m1b"  # no current model: newest, ties by id


def test_fault_plan_fails_the_share_of_calls_evenly():
    f = FaultPlan(0.0, 0.25)
    assert [f.next_fails() for _ in range(8)] == [False, False, False, True] * 2
    all_fail, none = FaultPlan(0.0, 1.0), FaultPlan(0.0, 0.0)
    assert all(all_fail.next_fails() for _ in range(10)) and not any(none.next_fails() for _ in range(10))
    assert FaultPlan(5.0).active and FaultPlan(5.0).delay_s == 0.005 and not FaultPlan().active
    with pytest.raises(ValueError):
        FaultPlan(0.0, 1.5)
