"""Optimizers of the studies: torch.optim's own, and ours, one module per algorithm, in one registry.

Training-loop protocol. The loop in :mod:`optbench.training` drives every optimizer through
``optimizer.step(closure)``; an optimizer declares what else it needs by class attributes and methods:

``create_graph`` (bool, default False)
    the loop calls ``loss.backward(create_graph=True)`` so that ``step`` can take Hessian-vector products.
``gradient_evaluations_per_step`` (int, default 1)
    per-example gradients computed per training example of a step (closure calls and Hessian-vector
    products included); the loop multiplies it by the batch size to count gradient evaluations.
``needs_full_gradient`` (bool, default False)
    at the start of every epoch the loop calls ``optimizer.take_snapshot(full_gradient)``, where
    ``full_gradient()`` leaves the mean training-set gradient at the current parameters in ``p.grad``
    (train mode, BatchNorm running statistics untouched) and the loop counts ``n`` evaluations.
``on_epoch_start(epoch, num_epochs)``
    called, if defined, before each epoch (``epoch`` counts from 0): per-epoch schedules of weights, betas, p.
``uses_closure`` (bool, default False)
    the loop calls ``step(closure)`` instead of ``step()`` (torch.optim's optimizers evaluate any closure
    they are given, so it is passed only to optimizers that ask for it: SVRG, STORM).
``step(closure)``
    the closure re-evaluates the *same* batch (same augmentation) at the parameters' current values,
    zeroes and recomputes ``p.grad``, leaves BatchNorm running statistics untouched and returns the loss.
"""

# Importing a module registers its optimizers.
from . import torch_builtin  # noqa: F401
# adaptive-family block (padam, adabelief, lookahead, adam_scheduled_betas)
from . import adabelief  # noqa: F401
from . import adam_scheduled_betas  # noqa: F401
from . import lookahead  # noqa: F401
from . import padam  # noqa: F401
# end adaptive-family block
# hybrid/second-order block (atmo, padam_sgd, adahessian, adasgd)
from . import atmo  # noqa: F401
from . import padam_sgd  # noqa: F401
from . import adahessian  # noqa: F401
from . import adasgd  # noqa: F401
# end hybrid/second-order block
# variance-reduction block (svrg, storm)
from . import storm  # noqa: F401
from . import svrg  # noqa: F401
# end variance-reduction block
from .registry import available, default_hyperparameters, make_optimizer, register, resolve_hyperparameters, spec

__all__ = ["available", "default_hyperparameters", "make_optimizer", "register", "resolve_hyperparameters", "spec"]
