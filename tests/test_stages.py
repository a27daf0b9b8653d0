"""StageClock.timed: the one timed iterator of the pipeline (decoding in convert and in the video reader); on a GPU
(marker ``gpu``), the Stylizer's network stage timed by its CUDA events."""

from __future__ import annotations

import time

import pytest

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


@pytest.mark.gpu
def test_the_network_stage_on_cuda_times_the_networks_kernels():
    """The network's span must cover the network's kernels: a 1080p johnson batch takes milliseconds."""
    import numpy as np

    from inference.engine.options import RuntimeOptions
    from inference.engine.stylizer import Stylizer
    from inference.model.networks import build_network

    st = Stylizer(build_network("johnson"), RuntimeOptions(device="cuda", precision="fp16", batch_size=4))
    frames = [np.zeros((1080, 1920, 3), np.uint8)] * 8
    clock = StageClock()
    list(st.process(((f, None) for f in frames), clock=clock))
    assert clock.busy["network"] > 1e-3
