"""AdaBelief against its equations and against torch_optimizer.AdaBelief (0.3.0)."""

from __future__ import annotations

import math

import pytest
import torch
import torch_optimizer

from optbench.optim import default_hyperparameters, make_optimizer
from optbench.optim.adabelief import AdaBelief
from optbench.protocol import optimizer_step

from optim_helpers import DTYPE, round_trip, softplus_loss, softplus_problem


def gradient_sequence(shape, steps, seed=0):
    """Gradients that flip sign and shrink, so that s rises then falls (the AMSGrad max then matters)."""
    generator = torch.Generator().manual_seed(seed)
    scales = [2.0, -2.0] + [0.05] * (steps - 2)
    return [scale * (1 + torch.rand(shape, generator=generator, dtype=DTYPE)) for scale in scales]


def adabelief_reference(theta, grads, lr, betas, eps, weight_decay, amsgrad, decoupled_weight_decay):
    """AdaBelief's equations on plain tensors; the parameter after every step."""
    beta1, beta2 = betas
    theta = theta.clone()
    m = torch.zeros_like(theta)
    s = torch.zeros_like(theta)
    s_max = torch.zeros_like(theta)
    trajectory = []
    for t, g in enumerate(grads, start=1):
        if decoupled_weight_decay:
            theta = theta * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * theta
        m = beta1 * m + (1 - beta1) * g
        s = beta2 * s + (1 - beta2) * (g - m) ** 2 + eps
        s_max = torch.maximum(s_max, s)
        s_hat = s_max if amsgrad else s
        theta = theta - lr / (1 - beta1**t) * m / (s_hat.sqrt() / math.sqrt(1 - beta2**t) + eps)
        trajectory.append(theta.clone())
    return trajectory


@pytest.mark.parametrize("decoupled_weight_decay", [False, True])
@pytest.mark.parametrize("amsgrad", [False, True])
def test_first_steps_match_the_equations(amsgrad, decoupled_weight_decay):
    settings = dict(lr=0.05, betas=(0.8, 0.9), eps=1e-4, weight_decay=0.1, amsgrad=amsgrad,
                    decoupled_weight_decay=decoupled_weight_decay)
    shapes = [(4,), (3, 2)]
    inits = [torch.randn(shape, generator=torch.Generator().manual_seed(5 + i), dtype=DTYPE)
             for i, shape in enumerate(shapes)]
    grads = [gradient_sequence(shape, 6, seed=i) for i, shape in enumerate(shapes)]
    params = [init.clone().requires_grad_() for init in inits]
    frozen = torch.randn(3, dtype=DTYPE, requires_grad=True)  # never gets a gradient: must stay put
    frozen_before = frozen.detach().clone()
    optimizer = AdaBelief([*params, frozen], **settings)

    for step, step_grads in enumerate(zip(*grads)):
        for param, grad in zip(params, step_grads):
            param.grad = grad.clone()
        optimizer.step()
        for index, (init, param_grads) in enumerate(zip(inits, grads)):
            expected = adabelief_reference(init, param_grads[: step + 1], **settings)[-1]
            torch.testing.assert_close(params[index].detach(), expected, rtol=1e-12, atol=1e-14)
    assert torch.equal(frozen.detach(), frozen_before)
    torch.testing.assert_close(params[1].grad, grads[1][-1], rtol=0, atol=0)  # p.grad is not modified
    # the AMSGrad max and the kind of weight decay both change this trajectory, so each is really tested
    other_max = adabelief_reference(inits[0], grads[0], **{**settings, "amsgrad": not amsgrad})
    other_decay = adabelief_reference(
        inits[0], grads[0], **{**settings, "decoupled_weight_decay": not decoupled_weight_decay}
    )
    assert (params[0].detach() - other_max[-1]).abs().max() > 1e-4
    assert (params[0].detach() - other_decay[-1]).abs().max() > 1e-4


@pytest.mark.parametrize("eps", [1e-8, 1e-16])
@pytest.mark.parametrize("decoupled_weight_decay", [False, True])
def test_matches_torch_optimizer_adabelief(decoupled_weight_decay, eps):
    """torch_optimizer.AdaBelief with rectify=False, fixed_decay=False follows the same equations.

    Its AMSGrad branch adds eps to the running maximum in place at every step (the maximum then grows by
    eps per step), so only amsgrad=False is compared; the AMSGrad branch is checked against the equations.
    """
    init, data = softplus_problem()
    settings = dict(lr=0.01, betas=(0.9, 0.999), eps=eps, weight_decay=5e-2)
    ours_theta = init.clone().requires_grad_()
    theirs_theta = init.clone().requires_grad_()
    ours = AdaBelief([ours_theta], decoupled_weight_decay=decoupled_weight_decay, **settings)
    theirs = torch_optimizer.AdaBelief([theirs_theta], amsgrad=False, weight_decouple=decoupled_weight_decay,
                                       fixed_decay=False, rectify=False, **settings)
    for _ in range(30):
        optimizer_step(ours, lambda: softplus_loss(ours_theta, data))
        optimizer_step(theirs, lambda: softplus_loss(theirs_theta, data))
        torch.testing.assert_close(ours_theta.detach(), theirs_theta.detach(), rtol=1e-12, atol=1e-14)
    assert (ours_theta.detach() - init).abs().max() > 0.1  # it moved: the comparison is not vacuous


@pytest.mark.parametrize("amsgrad", [False, True])
def test_state_dict_round_trip_continues_identically(amsgrad):
    init, data = softplus_problem(seed=3)
    settings = dict(lr=0.02, weight_decay=1e-2, amsgrad=amsgrad)

    def train(optimizer, theta, steps):
        for _ in range(steps):
            optimizer_step(optimizer, lambda: softplus_loss(theta, data))

    theta_full = init.clone().requires_grad_()
    train(AdaBelief([theta_full], **settings), theta_full, 20)

    theta_first = init.clone().requires_grad_()
    first = AdaBelief([theta_first], **settings)
    train(first, theta_first, 8)
    checkpoint = round_trip({"theta": theta_first.detach(), "optimizer": first.state_dict()})

    theta_resumed = checkpoint["theta"].clone().requires_grad_()
    resumed = AdaBelief([theta_resumed])  # defaults: the checkpoint must bring lr, weight decay, amsgrad
    resumed.load_state_dict(checkpoint["optimizer"])
    train(resumed, theta_resumed, 12)

    assert torch.equal(theta_resumed.detach(), theta_full.detach())


@pytest.mark.parametrize(
    "hyperparameters, message",
    [
        ({"lr": 0.0}, "invalid lr 0.0"),
        ({"lr": -1e-3}, "invalid lr -0.001"),
        ({"eps": -1e-8}, "invalid eps -1e-08"),
        ({"weight_decay": -1.0}, "invalid weight_decay -1.0"),
        ({"betas": (1.0, 0.999)}, r"invalid betas\[0\] 1.0"),
        ({"betas": (0.9, 1.5)}, r"invalid betas\[1\] 1.5"),
        ({"betas": (-0.1, 0.999)}, r"invalid betas\[0\] -0.1"),
    ],
)
def test_invalid_hyperparameters_raise(hyperparameters, message):
    with pytest.raises(ValueError, match=message):
        AdaBelief([torch.zeros(2, dtype=DTYPE, requires_grad=True)], **hyperparameters)
    with pytest.raises(ValueError, match=message):
        make_optimizer("adabelief", [torch.zeros(2, dtype=DTYPE, requires_grad=True)], **hyperparameters)


def test_registry_builds_adabelief_with_its_defaults():
    expected = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0, "amsgrad": False,
                "decoupled_weight_decay": False}
    assert default_hyperparameters("adabelief") == expected
    optimizer = make_optimizer("adabelief", [torch.zeros(2, dtype=DTYPE, requires_grad=True)])
    assert isinstance(optimizer, AdaBelief)
    group = optimizer.param_groups[0]
    assert {key: group[key] for key in expected} == expected
    cifar = make_optimizer("adabelief", [torch.zeros(2, requires_grad=True)], weight_decay=5e-4)
    assert cifar.param_groups[0]["weight_decay"] == 5e-4
