"""MetaInit: the gradient quotient against an explicit Hessian, and what MetaInit may and may not change."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from optbench.metainit import gradient_quotient, metainit


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 3)).double()
    with torch.no_grad():
        model[0].bias[0] = -100.0  # a dead ReLU unit: exact zeros in g, the sgn(0) = +1 branch
    return model


def explicit_gradient_quotient(model: nn.Module, inputs, targets, eps: float) -> torch.Tensor:
    """GQ from the full Hessian of the loss as a function of the flattened parameter vector."""
    names = [name for name, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def loss_of(vector: torch.Tensor) -> torch.Tensor:
        pieces, start = {}, 0
        for name, shape in zip(names, shapes):
            size = shape.numel()
            pieces[name] = vector[start:start + size].reshape(shape)
            start += size
        return F.cross_entropy(functional_call(model, pieces, (inputs,)), targets)

    gradient = torch.autograd.functional.jacobian(loss_of, flat)
    hessian = torch.autograd.functional.hessian(loss_of, flat)
    sign = torch.where(gradient >= 0, 1.0, -1.0).to(gradient.dtype)
    return ((gradient - hessian @ gradient) / (gradient + eps * sign) - 1).abs().mean(), gradient


@pytest.mark.parametrize("eps", [1e-5, 1e-2])
def test_gradient_quotient_matches_an_explicit_hessian(eps):
    model = tiny_model()
    generator = torch.Generator().manual_seed(1)
    inputs = torch.randn(5, 3, generator=generator, dtype=torch.float64)
    targets = torch.randint(0, 3, (5,), generator=generator)
    expected, gradient = explicit_gradient_quotient(model, inputs, targets, eps)
    assert (gradient == 0).sum() >= 4  # the dead unit's weights and bias
    quotient = gradient_quotient(model, inputs, targets, eps)
    torch.testing.assert_close(quotient, expected, rtol=1e-10, atol=1e-12)
    # differentiable in the parameters, as MetaInit needs
    assert quotient.requires_grad


def mlp(seed: int = 0, width: int = 64) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(16, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10))


def conv_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(4 * 8 * 8, 10),
    )


def median_quotient(model: nn.Module, input_shape, seed: int = 123, repeats: int = 8) -> float:
    """GQ's median over fixed evaluation batches (GQ is heavy-tailed across batches), not MetaInit's batches."""
    generator = torch.Generator().manual_seed(seed)
    model.eval()
    values = []
    for _ in range(repeats):
        inputs = torch.randn((64, *input_shape), generator=generator)
        targets = torch.randint(0, 10, (64,), generator=generator)
        values.append(float(gradient_quotient(model, inputs, targets).detach()))
    return sorted(values)[repeats // 2]


def test_metainit_lowers_the_gradient_quotient_of_a_small_mlp():
    ratios = []
    for seed in range(4):
        model = mlp(seed)
        before = median_quotient(model, (16,))
        history = metainit(model, (16,), num_classes=10, steps=100, batch_size=32, seed=seed)
        assert len(history) == 100 and all(isinstance(value, float) for value in history)
        ratios.append(median_quotient(model, (16,)) / before)
    assert max(ratios) < 0.9
    assert sum(ratios) / len(ratios) < 0.8


@pytest.mark.parametrize("build, input_shape", [(mlp, (16,)), (conv_net, (1, 8, 8))])
def test_metainit_changes_only_the_norms_of_weight_tensors(build, input_shape):
    model = build()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    metainit(model, input_shape, num_classes=10, steps=15, batch_size=16, seed=0)
    changed = 0
    for name, p in model.named_parameters():
        old = before[name]
        if p.dim() >= 2:
            ratio = p.detach().norm() / old.norm()
            # same direction: the new tensor is a positive multiple of the old one
            assert ratio > 0
            torch.testing.assert_close(p.detach(), ratio * old, rtol=1e-5, atol=1e-7)
            changed += not torch.isclose(ratio, torch.tensor(1.0), atol=1e-3)
        else:
            assert torch.equal(p.detach(), old), name  # biases untouched
    assert changed == len([p for p in model.parameters() if p.dim() >= 2])


def test_metainit_restores_modes_and_leaves_buffers_and_grads_alone():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 3))
    model.train()
    model[3].eval()  # a mixed state, restored module by module
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    seen_modes = []
    model.register_forward_pre_hook(lambda module, args: seen_modes.append(module.training))
    metainit(model, (6,), num_classes=3, steps=3, seed=0)
    assert seen_modes and not any(seen_modes)  # eval mode during MetaInit
    assert [m.training for m in model.modules()] == [True, True, True, True, False, True]
    for name, b in model.named_buffers():
        assert torch.equal(b, buffers[name]), name
    assert all(p.grad is None for p in model.parameters())


def test_metainit_is_reproducible_with_a_seed():
    first, second = mlp(), mlp()
    history_first = metainit(first, (16,), num_classes=10, steps=5, seed=7)
    history_second = metainit(second, (16,), num_classes=10, steps=5, seed=7)
    assert history_first == history_second
    for p, q in zip(first.parameters(), second.parameters()):
        assert torch.equal(p, q)


@pytest.mark.parametrize(
    "options, name",
    [({"steps": -1}, "steps"), ({"lr": -0.1}, "lr"), ({"lr": 0.0}, "lr"), ({"momentum": 1.0}, "momentum"),
     ({"momentum": -0.5}, "momentum"), ({"eps": 0.0}, "eps"), ({"batch_size": 0}, "batch_size"),
     ({"num_classes": 0}, "num_classes")],
)
def test_invalid_arguments_raise_naming_them(options, name):
    arguments = {"input_shape": (16,), "num_classes": 10, **options}
    with pytest.raises(ValueError, match=f"invalid {name} "):
        metainit(mlp(), **arguments)
