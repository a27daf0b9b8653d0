"""Training steps that do not wait on the device: frozen calibrations are not read back from it, and the progress
bar's loss is fetched only on logging steps; on a GPU (marker ``gpu``), a frozen temporal balance under CUDA's sync
check."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from .conftest import no_host_sync, small_module


def test_a_frozen_temporal_balance_never_reads_the_device():
    from styletrain.loss_weights import TemporalBalance

    balance = TemporalBalance(0.5, steps=2)
    for _ in range(2):
        balance.observe(torch.tensor(2.0), torch.tensor(1.0))
    # Make any further read of the buffer fail: a meta tensor has no value to turn into a Python int.
    balance.seen = torch.empty((), dtype=torch.long, device="meta")
    assert balance.frozen is True
    balance.observe(torch.tensor(9.0), torch.tensor(1.0))  # a no-op, without touching the buffer
    # Loading a state dict makes the host copy stale: it is read again from the loaded buffer.
    fresh = TemporalBalance(0.5, steps=2)
    assert fresh.frozen is False
    done = TemporalBalance(0.5, steps=2)
    for _ in range(2):
        done.observe(torch.tensor(2.0), torch.tensor(1.0))
    fresh.load_state_dict(done.state_dict())
    assert fresh.frozen is True
    import pickle

    assert pickle.loads(pickle.dumps(done)).frozen is True  # no hook that would stop ddp_spawn from pickling it


@pytest.mark.gpu
def test_a_frozen_temporal_balance_on_cuda_never_syncs():
    from styletrain.loss_weights import TemporalBalance

    balance = TemporalBalance(0.5, steps=2).cuda()
    content, temporal = torch.tensor(2.0, device="cuda"), torch.tensor(1.0, device="cuda")  # made outside the check
    for _ in range(2):
        balance.observe(content, temporal)
    assert balance.frozen
    with no_host_sync():
        for _ in range(5):
            assert balance.frozen  # int() of the CUDA step counter here was a wait for the device every step
            balance.observe(content, temporal)


def test_a_frozen_perceptual_balance_never_reads_the_device():
    from styletrain.loss_weights import PerceptualBalance

    terms = {"ref_content": torch.tensor(1.0), "ref_style": torch.tensor(2.0), "ref_tv": torch.tensor(3.0)}
    balance = PerceptualBalance(1.0, 0.5, steps=2)
    for _ in range(2):
        balance.observe(terms)
    balance.seen = torch.empty((), dtype=torch.long, device="meta")  # any read of the buffer now fails
    assert balance.frozen is True
    balance.observe(terms)
    fresh, done = PerceptualBalance(1.0, 0.5, steps=2), PerceptualBalance(1.0, 0.5, steps=2)
    assert fresh.frozen is False
    for _ in range(2):
        done.observe(terms)
    fresh.load_state_dict(done.state_dict())
    assert fresh.frozen is True


def test_the_progress_bar_loss_is_read_only_on_logging_steps(style_path, content):
    module = small_module(style_path, style_layers=("relu1_2",))
    logged: list[tuple[str, bool, int]] = []
    step = {"i": 0}
    module.log = lambda name, value, prog_bar=False, **kw: logged.append((name, prog_bar, step["i"]))
    module.log_dict = lambda *a, **k: None
    optimizer = torch.optim.Adam(module.net.parameters())
    module.optimizers = lambda: optimizer
    module.trainer = SimpleNamespace(log_every_n_steps=3, global_step=0)
    for i in range(6):
        step["i"] = i
        module.training_step({"content": content}, i)
    bar_steps = [s for name, bar, s in logged if bar]
    assert bar_steps == [0, 2, 5]  # first step, then every log_every_n_steps: not every step
    assert [s for name, bar, s in logged if name == "train/total" and not bar] == list(range(6))
