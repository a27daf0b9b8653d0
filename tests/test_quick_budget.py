"""The quick-suite guard in conftest: an unmarked test over the CPU budget fails, a ``slow`` one does not."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from .conftest import (
    QUICK_BUDGET_KEY,
    QUICK_TEST_BUDGET_ENV,
    pytest_runtest_call,
    quick_test_budget,
    threads_per_test_process,
)


class _Item:
    """What the guard reads from a pytest item: its node id, its markers and the run's budget."""

    def __init__(self, slow: bool, budget: float) -> None:
        self.nodeid = "tests/test_x.py::test_y"
        self.config = SimpleNamespace(stash={QUICK_BUDGET_KEY: budget})
        self._slow = slow

    def get_closest_marker(self, name: str):
        return pytest.mark.slow.mark if (name == "slow" and self._slow) else None


def _call(item: _Item, cpu_s: float) -> str:
    """Drive the guard around a call phase that burns ``cpu_s`` CPU seconds; return the call's result."""
    guard = pytest_runtest_call(item)
    next(guard)
    start = time.process_time()
    while time.process_time() - start < cpu_s:
        pass
    with pytest.raises(StopIteration) as stop:
        guard.send("result")
    return stop.value.value


def test_an_unmarked_test_over_budget_fails_naming_the_marker_and_the_variable():
    with pytest.raises(
        pytest.fail.Exception, match=rf"test_x.py::test_y.*CPU s.*0.05 s.*slow.*{QUICK_TEST_BUDGET_ENV}"
    ):
        _call(_Item(slow=False, budget=0.05), 0.1)


def test_under_budget_slow_marked_or_disabled_passes_the_result_through():
    assert _call(_Item(slow=False, budget=0.05), 0.0) == "result"
    assert _call(_Item(slow=True, budget=0.05), 0.1) == "result"
    assert _call(_Item(slow=False, budget=0.0), 0.1) == "result"


def test_the_budget_comes_from_the_environment_default_five_seconds():
    assert quick_test_budget({}) == 5.0
    assert quick_test_budget({QUICK_TEST_BUDGET_ENV: " 2.5 "}) == 2.5
    assert quick_test_budget({QUICK_TEST_BUDGET_ENV: "0"}) == 0.0
    with pytest.raises(pytest.UsageError, match=QUICK_TEST_BUDGET_ENV):
        quick_test_budget({QUICK_TEST_BUDGET_ENV: "five"})


def test_xdist_workers_share_the_cores_and_a_lone_process_keeps_two_threads():
    assert threads_per_test_process({}, cores=2) == 2
    assert threads_per_test_process({}, cores=16) == 2  # the suite's figures are for two cores
    assert threads_per_test_process({"PYTEST_XDIST_WORKER_COUNT": "2"}, cores=2) == 1
    assert threads_per_test_process({"PYTEST_XDIST_WORKER_COUNT": "4"}, cores=2) == 1  # never zero
    assert threads_per_test_process({"PYTEST_XDIST_WORKER_COUNT": "2"}, cores=8) == 2
