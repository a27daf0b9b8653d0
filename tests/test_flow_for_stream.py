"""Each stream of frames (a webcam connection beside a file's run) gets its own RAFT state around the shared weights:
inference.engine.device_flow.flow_for_stream, which the live server's webcam path uses to get the device flow."""

from __future__ import annotations

from inference.engine.device_flow import DisFlow, FallbackFlow, RaftFlow, flow_for_stream


def test_raft_gets_its_own_state_around_the_same_model():
    from torchvision.models.optical_flow import raft_small

    model = raft_small(weights=None)
    shared = FallbackFlow(RaftFlow(model, "cpu", name="raft_small from w.pth"), DisFlow())
    mine = flow_for_stream(shared)
    assert isinstance(mine, FallbackFlow) and mine is not shared and mine.primary is not shared.primary
    assert mine.primary.model is model and mine.fallback is shared.fallback and mine.label == shared.label
    shared.failed = "RuntimeError: out of memory"
    assert flow_for_stream(shared) is shared.fallback  # RAFT failed for this model: DIS for the new stream too


def test_dis_keeps_no_state_and_is_shared():
    dis = DisFlow()
    assert flow_for_stream(dis) is dis
