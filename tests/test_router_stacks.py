"""Which model the green router stack serves (``stevie.services.router.stack.candidate``) and
the settings-driven fault plan that proves the automatic rollback."""

from __future__ import annotations

import pytest

from stevie.contracts.evidence import ModelView
from stevie.services.router.stack import FaultPlan, candidate


def model(mid: str, created: int, kind: str = "manual", current: bool = False, posterior: bool = True) -> ModelView:
    return ModelView(mid, kind, created, "t", None, "", None, current, {"p_flat": 3} if posterior else {}, {}, {})


def test_the_newest_model_never_current_is_the_candidate():
    cur = model("ckpt-a", 100, "checkpoint", current=True)
    assert candidate([cur], set()) is None  # nothing else: green serves the current model
    assert candidate([cur, model("m1", 50), model("m2", 200)], {"ckpt-a"}) == "m2"
    assert candidate([model("m2", 200), cur, model("m1", 50)], {"ckpt-a"}) == "m2"  # listing order does not matter
    assert candidate([cur, model("m1", 50), model("m2", 200)], {"ckpt-a", "m2"}) == "m1"  # m2 was promoted once
    assert candidate([cur, model("ckpt-b", 300, "checkpoint"), model("m1", 150)], set()) == "m1"  # blue's rows
    assert candidate([cur, model("pbt", 300, "pbt", posterior=False), model("m1", 150)], set()) == "m1"  # no posterior
    assert candidate([model("m1", 150), model("m1b", 150)], set()) == "m1b"  # ties by id


def test_fault_plan_fails_the_share_of_calls_evenly():
    f = FaultPlan(0.0, 0.25)
    assert [f.next_fails() for _ in range(8)] == [False, False, False, True] * 2
    all_fail, none = FaultPlan(0.0, 1.0), FaultPlan(0.0, 0.0)
    assert all(all_fail.next_fails() for _ in range(10)) and not any(none.next_fails() for _ in range(10))
    assert FaultPlan(5.0).active and FaultPlan(5.0).delay_s == 0.005 and not FaultPlan().active
    with pytest.raises(ValueError):
        FaultPlan(0.0, 1.5)
