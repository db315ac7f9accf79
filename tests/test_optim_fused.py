"""The fused (torch.compile) steps of Padam, ATMO and PADAM-SGD: same trajectories as the foreach steps
(whose equations the per-optimizer tests check), no recompilation as step sizes move, checkpoints that
move between the two paths, and clear refusals before any step."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch._dynamo.utils import counters

from optbench.optim._moments import square_root_count
from optbench.optim import make_optimizer
from optbench.protocol import call_epoch_hook, optimizer_step

from optim_helpers import DTYPE, flat_parameters, regression_batches, tiny_model, train


def compiled_graphs() -> int:
    return counters["stats"]["unique_graphs"]


@pytest.mark.parametrize(
    "name, hyperparameters",
    [
        # the p schedule crosses from square roots (2p = 1/4) to a general power within the run
        ("padam", {"lr": 0.05, "p_final": 0.4, "lr_final": 0.01}),
        # dynamic weights: epoch 0 is pure Padam, the middle ones mixed (all fused), the last pure SGD
        # momentum (foreach: the adaptive state must stand still)
        ("padam_sgd", {"dynamic_weights": True, "dynamic_epochs": 3, "amsgrad": True}),
        ("atmo", {"momentum": 0.8, "sgd_weight": 0.3, "adam_weight": 0.9}),
    ],
)
def test_fused_training_follows_the_foreach_trajectory(name, hyperparameters):
    data = regression_batches(5)
    final = {}
    for fused in (False, True):
        model = tiny_model(hidden=6)
        optimizer = make_optimizer(name, model.parameters(), fused=fused, **hyperparameters)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.5)
        for epoch in range(4):
            call_epoch_hook(optimizer, epoch, 4)
            train(model, optimizer, data, after_step=scheduler.step)
        final[fused] = flat_parameters(model)
    moved = (final[False] - flat_parameters(tiny_model(hidden=6))).abs().max()
    assert moved > 1e-3  # the runs went somewhere, so agreement means something
    torch.testing.assert_close(final[True], final[False], rtol=1e-12, atol=1e-13)


def test_moving_step_sizes_and_weights_do_not_recompile():
    model = tiny_model(hidden=6)
    optimizer = make_optimizer("padam_sgd", model.parameters(), fused=True, dynamic_weights=True,
                               dynamic_epochs=10)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.9)
    weights_seen = set()
    for epoch in range(6):
        call_epoch_hook(optimizer, epoch, 10)  # new mixing weights every epoch
        weights_seen.add(optimizer.param_groups[0]["adam_weight"])
        for inputs, targets in regression_batches(3):  # new lr and bias corrections every step
            optimizer_step(optimizer, lambda: ((model(inputs) - targets) ** 2).mean(), model)
            scheduler.step()
        if epoch == 0:
            after_first_epoch = compiled_graphs()  # the first fused step compiled
    assert len(weights_seen) == 6
    assert compiled_graphs() == after_first_epoch


@pytest.mark.parametrize("name", ["padam", "padam_sgd"])
def test_checkpoints_move_between_fused_and_foreach(name):
    data = regression_batches(6)
    model = tiny_model(hidden=6)
    uninterrupted = make_optimizer(name, model.parameters(), fused=True)
    train(model, uninterrupted, data)

    resumed_model = tiny_model(hidden=6)
    first = make_optimizer(name, resumed_model.parameters(), fused=True)
    train(resumed_model, first, data[:3])
    second = make_optimizer(name, resumed_model.parameters(), fused=False)
    second.load_state_dict(first.state_dict())
    assert second.param_groups[0]["fused"] is True  # torch restores the saved group settings...
    for group in second.param_groups:
        group["fused"] = False  # ...so switching paths is a setting of the loaded groups
    train(resumed_model, second, data[3:])
    torch.testing.assert_close(flat_parameters(resumed_model), flat_parameters(model), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("name", ["padam", "atmo", "padam_sgd"])
def test_fused_must_be_a_bool(name):
    with pytest.raises(ValueError, match=r"invalid fused 'yes': fused must be True or False"):
        make_optimizer(name, [nn.Parameter(torch.zeros(2))], fused="yes")


@pytest.mark.parametrize("name", ["padam", "atmo", "padam_sgd"])
def test_fused_without_a_compiler_is_refused_when_built(name, monkeypatch):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setenv("PATH", "")
    with pytest.raises(RuntimeError, match="needs a C.. compiler.*use fused=False"):
        make_optimizer(name, [nn.Parameter(torch.zeros(2))], fused=True)
    make_optimizer(name, [nn.Parameter(torch.zeros(2))], fused=False)  # the foreach path needs none


def test_fused_group_must_share_device_and_dtype():
    params = [nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(2, dtype=DTYPE))]
    with pytest.raises(ValueError, match="one device with one floating dtype.*torch.float64"):
        make_optimizer("padam", params, fused=True)
    optimizer = make_optimizer("padam", params[:1], fused=True)
    with pytest.raises(ValueError, match="one floating dtype"):
        optimizer.add_param_group({"params": [nn.Parameter(torch.zeros(1)), params[1]]})
    assert len(optimizer.param_groups) == 1  # the refused group was not added


def test_square_root_counts():
    assert [square_root_count(e) for e in (1.0, 0.5, 0.25, 0.125, 0.0625)] == [0, 1, 2, 3, 4]
    assert square_root_count(0.3) is None
    assert square_root_count(0.03125) is None  # 2^-5 is left to pow


def test_the_optimizer_listing_names_the_fused_option(capsys):
    from optbench import cli, optim

    assert cli.main(["optimizers"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert sorted(lines) == optim.available()
    for name in ("padam", "atmo", "padam_sgd"):
        assert "fused" in lines[name].split("also accepts:")[1]
    assert "also accepts" not in lines["adam"]
