"""PADAM-SGD against its equations, its AMSGrad and ATMO limits, the weight schedule, checkpoints, validation."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from optbench.optim import default_hyperparameters, make_optimizer
from optbench.optim.atmo import ATMO
from optbench.optim.padam_sgd import PadamSGD
from optbench.protocol import call_epoch_hook

from optim_helpers import DTYPE, assert_same_parameters, regression_batches, round_trip, tiny_model, train


def reference_padam_sgd(thetas, grads, *, lr, momentum, betas, eps, weight_decay, p, sgd_weight, adam_weight,
                        amsgrad):
    """PADAM-SGD written out on plain tensors (nicolalandro/Padam's PadamSGDWeighted equations)."""
    beta1, beta2 = betas
    result = []
    for i, theta in enumerate(thetas):
        buffer, m, v, v_max = None, torch.zeros_like(theta), torch.zeros_like(theta), torch.zeros_like(theta)
        for t, step_grads in enumerate(grads, start=1):
            g = step_grads[i] + weight_decay * theta
            buffer = g.clone() if buffer is None else momentum * buffer + g
            m = beta1 * m + (1 - beta1) * g
            v = beta2 * v + (1 - beta2) * g**2
            v_max = torch.maximum(v_max, v)
            denominator = ((v_max if amsgrad else v).sqrt() + eps) ** (2 * p)
            padam_step = lr * math.sqrt(1 - beta2**t) / (1 - beta1**t)
            merged_lr = sgd_weight * lr + adam_weight * padam_step
            theta = theta - merged_lr * (sgd_weight * buffer + adam_weight * m / denominator)
        result.append(theta)
    return result


@pytest.mark.parametrize("fused", [False, True], ids=["foreach", "fused"])
@pytest.mark.parametrize("p, amsgrad", [(0.125, False), (0.125, True), (0.3, True)])
def test_steps_match_the_equations(p, amsgrad, fused):
    generator = torch.Generator().manual_seed(0)
    shapes = [(3, 4), (4,), (2, 1, 3, 3)]
    thetas = [torch.randn(s, generator=generator, dtype=DTYPE) for s in shapes]
    # shrinking gradients make v decrease, so the AMSGrad max matters
    grads = [[torch.randn(s, generator=generator, dtype=DTYPE) / (1 + 3 * k) for s in shapes] for k in range(5)]
    hyperparameters = dict(lr=0.05, momentum=0.9, betas=(0.8, 0.9), eps=1e-3, weight_decay=0.025, p=p,
                           sgd_weight=0.4, adam_weight=0.6, amsgrad=amsgrad)
    params = [t.clone().requires_grad_() for t in thetas]
    optimizer = PadamSGD(params, fused=fused, **hyperparameters)
    for step_grads in grads:
        for param, g in zip(params, step_grads):
            param.grad = g.clone()
        optimizer.step()
    for param, expected in zip(params, reference_padam_sgd(thetas, grads, **hyperparameters)):
        torch.testing.assert_close(param.detach(), expected, rtol=1e-12, atol=1e-14)


def test_amsgrad_changes_the_trajectory():
    """Guards the test above: with shrinking gradients, the max is not a no-op."""
    data = regression_batches(6)
    runs = []
    for amsgrad in (False, True):
        model = tiny_model()
        train(model, PadamSGD(model.parameters(), amsgrad=amsgrad, betas=(0.5, 0.5)), data)
        runs.append(torch.cat([p.detach().reshape(-1) for p in model.parameters()]))
    assert (runs[0] - runs[1]).abs().max() > 1e-8


@pytest.mark.parametrize("fused", [False, True], ids=["foreach", "fused"])
def test_one_step_on_a_linear_loss_is_the_authors_number(fused):
    """θ = 1, loss θ (g = 1), lr 0.01, μ 0.95, weights 1/2, p = 1/2, no decay. By hand: m = 0.1, v = 0.001,
    η_A = 0.01·sqrt(0.001)/0.1, d_A = 0.1/(sqrt(0.001) + 1e-8), so θ moves by 0.013696 (ATMO: 0.030250)."""
    theta = torch.ones((), dtype=DTYPE, requires_grad=True)
    optimizer = PadamSGD([theta], lr=0.01, momentum=0.95, weight_decay=0.0, p=0.5, sgd_weight=0.5,
                         adam_weight=0.5, fused=fused)
    theta.grad = torch.ones((), dtype=DTYPE)
    optimizer.step()
    assert theta.item() - 1.0 == pytest.approx(-0.013696, abs=5e-7)


def test_half_power_is_atmo_alone_but_not_mixed():
    """p = 1/2 without the max puts Adam's bias corrections elsewhere than ATMO (the authors' two classes
    differ so too): with eps = 0 and λ_A = 1 that is the same step, mixed with SGD it is not."""
    data = regression_batches(8)
    hyperparameters = dict(lr=0.02, momentum=0.9, weight_decay=0.01, eps=0.0)
    for weights, same in (({"sgd_weight": 0.0, "adam_weight": 1.0}, True),
                          ({"sgd_weight": 0.3, "adam_weight": 0.8}, False)):
        model, reference_model = tiny_model(), tiny_model()
        train(model, PadamSGD(model.parameters(), p=0.5, **hyperparameters, **weights), data)
        train(reference_model, ATMO(reference_model.parameters(), **hyperparameters, **weights), data)
        if same:
            assert_same_parameters(model, reference_model)
        else:
            difference = max((a - b).abs().max().item()
                             for a, b in zip(model.parameters(), reference_model.parameters()))
            assert difference > 1e-4


def test_adaptive_limit_with_half_power_and_max_is_torch_amsgrad():
    """λ_A = 1, p = 1/2, AMSGrad max: torch's Adam(amsgrad=True) once its eps is eps/sqrt(bc2) at each step."""
    eps, betas = 1e-3, (0.9, 0.99)
    model, reference_model = tiny_model(), tiny_model()
    ours = PadamSGD(model.parameters(), lr=0.01, betas=betas, eps=eps, weight_decay=0.01, p=0.5, amsgrad=True,
                    sgd_weight=0.0, adam_weight=1.0)
    reference = torch.optim.Adam(reference_model.parameters(), lr=0.01, betas=betas, eps=eps, weight_decay=0.01,
                                 amsgrad=True)

    def set_reference_eps(index):
        reference.param_groups[0]["eps"] = eps / math.sqrt(1 - betas[1] ** (index + 1))

    data = regression_batches(12)
    train(model, ours, data)
    train(reference_model, reference, data, before_step=set_reference_eps)
    assert_same_parameters(model, reference_model)


def test_dynamic_weights_and_their_checkpoint():
    data = regression_batches(8)
    model = tiny_model()
    optimizer = PadamSGD(model.parameters(), dynamic_weights=True, dynamic_epochs=8)
    for epoch in range(3):
        call_epoch_hook(optimizer, epoch, 200)
        train(model, optimizer, data[epoch * 2: epoch * 2 + 2])
    assert optimizer.param_groups[0]["adam_weight"] == pytest.approx(1 - 2 / 8)

    resumed_model = copy.deepcopy(model)
    resumed = PadamSGD(resumed_model.parameters(), dynamic_weights=True, dynamic_epochs=8)
    resumed.load_state_dict(round_trip(optimizer.state_dict()))
    assert resumed.param_groups[0]["sgd_weight"] == pytest.approx(2 / 8)
    train(model, optimizer, data[6:])
    train(resumed_model, resumed, data[6:])
    assert_same_parameters(model, resumed_model, rtol=0, atol=0)


def test_registered_defaults():
    assert default_hyperparameters("padam_sgd") == {
        "lr": 0.01, "momentum": 0.9, "weight_decay": 0.025, "betas": (0.9, 0.999), "eps": 1e-8, "p": 0.125,
        "sgd_weight": 0.5, "adam_weight": 0.5, "dynamic_weights": False, "dynamic_epochs": None,
    }
    optimizer = make_optimizer("padam_sgd", tiny_model().parameters(), amsgrad=True)
    assert isinstance(optimizer, PadamSGD)
    group = optimizer.param_groups[0]
    assert (group["p"], group["amsgrad"], group["weight_decay"]) == (0.125, True, 0.025)


@pytest.mark.parametrize(
    "hyperparameters, name",
    [
        ({"p": 0.0}, "p"),
        ({"p": 0.6}, "p"),
        ({"amsgrad": 1}, "amsgrad"),
        ({"lr": -1.0}, "lr"),
        ({"momentum": 1.5}, "momentum"),
        ({"weight_decay": -0.1}, "weight_decay"),
        ({"adam_weight": -1.0}, "adam_weight"),
        ({"dynamic_epochs": -3}, "dynamic_epochs"),
    ],
)
def test_invalid_hyperparameters_raise(hyperparameters, name):
    with pytest.raises(ValueError, match=name):
        PadamSGD(tiny_model().parameters(), **hyperparameters)
