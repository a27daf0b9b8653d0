"""The quick-suite guard in conftest: an unmarked test over the CPU budget fails, a ``slow`` one does not."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from .conftest import QUICK_BUDGET_KEY, QUICK_TEST_BUDGET_ENV, pytest_runtest_call, quick_test_budget


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
