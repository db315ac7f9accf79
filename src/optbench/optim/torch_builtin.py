"""torch.optim's optimizers, registered under the names the studies use (no reimplementation)."""

from __future__ import annotations

import torch

from .registry import register


def _sgd(params, lr, momentum, weight_decay, nesterov):
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)


def _adam(params, lr, betas, eps, weight_decay):
    return torch.optim.Adam(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


def _amsgrad(params, lr, betas, eps, weight_decay):
    return torch.optim.Adam(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=True)


def _adamw(params, lr, betas, eps, weight_decay):
    return torch.optim.AdamW(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


def _nadam(params, lr, betas, eps, weight_decay):
    return torch.optim.NAdam(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


def _radam(params, lr, betas, eps, weight_decay):
    return torch.optim.RAdam(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


def _adagrad(params, lr, eps, weight_decay):
    return torch.optim.Adagrad(params, lr=lr, eps=eps, weight_decay=weight_decay)


def _rmsprop(params, lr, alpha, eps, weight_decay, momentum):
    return torch.optim.RMSprop(params, lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum)


_ADAM_DEFAULTS = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0}

register("sgd", _sgd, {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.0, "nesterov": False},
         "torch.optim.SGD with (heavy-ball) momentum")
register("adam", _adam, _ADAM_DEFAULTS, "torch.optim.Adam (Kingma & Ba 2015)")
register("amsgrad", _amsgrad, _ADAM_DEFAULTS, "torch.optim.Adam(amsgrad=True) (Reddi et al. 2018)")
register("adamw", _adamw, {**_ADAM_DEFAULTS, "weight_decay": 1e-2},
         "torch.optim.AdamW, decoupled weight decay (Loshchilov & Hutter 2019)")
register("nadam", _nadam, {**_ADAM_DEFAULTS, "lr": 2e-3}, "torch.optim.NAdam (Dozat 2016)")
register("radam", _radam, _ADAM_DEFAULTS, "torch.optim.RAdam (Liu et al. 2020)")
register("adagrad", _adagrad, {"lr": 1e-2, "eps": 1e-10, "weight_decay": 0.0}, "torch.optim.Adagrad (Duchi et al. 2011)")
register("rmsprop", _rmsprop, {"lr": 1e-2, "alpha": 0.99, "eps": 1e-8, "weight_decay": 0.0, "momentum": 0.0},
         "torch.optim.RMSprop (Tieleman & Hinton 2012)")
