"""StageClock.timed: the one timed iterator of the pipeline (decoding in convert and in the video reader)."""

from __future__ import annotations

import time

from inference.core.stages import StageClock


def test_timed_yields_every_item_and_counts_producing_time_as_the_stage():
    def slow_items():
        for item in (0, None, "", 3):  # falsy items are items too
            time.sleep(0.01)
            yield item

    clock = StageClock()
    consumed = []
    for item in clock.timed(slow_items(), "decode"):
        consumed.append(item)
        time.sleep(0.05)  # the consumer's time is not the stage's
    assert consumed == [0, None, "", 3]
    assert 0.035 <= clock.busy["decode"] < 0.2  # counting the consumer too would give over 0.2
    assert sum(clock.busy.values()) == clock.busy["decode"]
