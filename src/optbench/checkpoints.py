"""Checkpoints of runs in progress: everything a run needs to go on exactly where it stopped.

A checkpoint holds, at the end of an epoch: the model's state (parameters and BatchNorm buffers), the
optimizer's state dict (which carries the extra state of the wrappers and variance-reduced methods:
Lookahead's slow weights, SVRG's snapshot, AdaHessian's probe generators), the LR scheduler's state, the
state of the run's data generator (shuffling, augmentation), torch's global RNG state (and CUDA's on a
GPU), the epoch metrics so far, the gradient evaluations and the seconds spent. On the CPU a resumed run's
metrics equal an uninterrupted run's (only the measured seconds differ).

Checkpoints are written atomically (temporary file, then rename; a full disk is reported by path) and read with
``torch.load(..., weights_only=True)``: tensors, numbers, strings and containers only, never arbitrary
pickled objects. A checkpoint that cannot be read, or that belongs to another configuration, is reported
with a :class:`CheckpointWarning` and ignored (the run starts from scratch).
"""

from __future__ import annotations

import collections
import io
import warnings
from pathlib import Path

import torch

from .config import RunConfig, canonical_json
from .files import read_regular_file, write_atomically

CHECKPOINT_FORMAT = 1
_KEYS = {
    "format", "run_id", "config", "epochs", "grad_evals", "elapsed_seconds", "model", "optimizer", "scheduler",
    "generator", "torch_rng", "cuda_rng",
}


class CheckpointWarning(UserWarning):
    """A checkpoint could not be used; the run starts from scratch."""


def check_checkpoint_every(checkpoint_every: object) -> None:
    """Raise ``ValueError`` unless ``checkpoint_every`` is None (never) or an integer >= 1."""
    if checkpoint_every is None:
        return
    if not isinstance(checkpoint_every, int) or isinstance(checkpoint_every, bool) or checkpoint_every < 1:
        raise ValueError(
            f"invalid checkpoint_every {checkpoint_every!r}: give a number of epochs >= 1, or None for no checkpoints"
        )


def _scheduler_state(scheduler) -> dict | None:
    if scheduler is None:
        return None
    # MultiStepLR keeps its milestones in a Counter; a plain dict is what weights_only loading accepts everywhere
    return {key: dict(value) if isinstance(value, collections.Counter) else value for key, value in scheduler.state_dict().items()}


def save_checkpoint(
    path: Path,
    config: RunConfig,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    generator: torch.Generator,
    epochs: list[dict],
    grad_evals: int,
    elapsed_seconds: float,
    device: torch.device,
) -> None:
    """Write the state of a run at the end of epoch ``len(epochs)`` to ``path``, atomically."""
    content = {
        "format": CHECKPOINT_FORMAT,
        "run_id": config.run_id,
        "config": canonical_json(config.to_dict()),
        "epochs": [dict(row) for row in epochs],
        "grad_evals": int(grad_evals),
        "elapsed_seconds": float(elapsed_seconds),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": _scheduler_state(scheduler),
        "generator": generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
    }
    write_atomically(Path(path), lambda stream: torch.save(content, stream))


def load_checkpoint(path: Path, config: RunConfig) -> dict | None:
    """The content of the checkpoint at ``path`` if it is a readable checkpoint of ``config``, else None.

    Loads with ``weights_only=True``; a file that is not a checkpoint of this configuration is warned about.
    """
    path = Path(path)
    try:
        # never follows a symlink nor opens a FIFO or device (which could block the run forever)
        data, not_regular, _ = read_regular_file(path)
        if data is None and not_regular is None:
            return None
        if not_regular is not None:
            raise ValueError(f"it is {not_regular}, not a regular file")
        content = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        if not isinstance(content, dict) or set(content) != _KEYS:
            raise ValueError("it is not an optbench checkpoint")
        if content["format"] != CHECKPOINT_FORMAT:
            raise ValueError(f"checkpoint format {content['format']!r}, expected {CHECKPOINT_FORMAT}")
        if content["run_id"] != config.run_id or content["config"] != canonical_json(config.to_dict()):
            raise ValueError(f"it belongs to run {content['run_id']!r}, not {config.run_id!r}")
        epochs = content["epochs"]
        if not isinstance(epochs, list) or not 0 < len(epochs) < config.num_epochs:
            raise ValueError("its epoch count does not fit the configuration")
        if [row.get("epoch") if isinstance(row, dict) else None for row in epochs] != list(range(1, len(epochs) + 1)):
            raise ValueError("its epoch rows are not epochs 1, 2, ...")
    except Exception as error:  # unreadable, unsafe (not weights-only) or foreign: start over
        warnings.warn(
            f"ignoring checkpoint {path}: {_reason(error)}; the run starts from scratch", CheckpointWarning, stacklevel=3
        )
        return None
    return content


def _reason(error: Exception) -> str:
    """A one-line reason: torch's weights-only refusal is a page of advice around one line that matters."""
    text = str(error)
    marker = "WeightsUnpickler error:"
    if marker in text:
        detail = text.split(marker, 1)[1].strip().splitlines()[0]
        return f"it holds more than tensors and plain data, which weights-only loading refuses ({detail})"
    return " ".join(text.split()) or type(error).__name__


def restore_checkpoint(
    content: dict,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    generator: torch.Generator,
    device: torch.device,
) -> tuple[list[dict], int, float]:
    """Put a loaded checkpoint's state into a freshly built run; return (epoch rows, grad_evals, seconds).

    Raises if the state does not fit (then the objects may be half restored: build them anew).
    """
    model.load_state_dict(content["model"])
    optimizer.load_state_dict(content["optimizer"])
    if (scheduler is None) != (content["scheduler"] is None):
        raise ValueError("the checkpoint's scheduler does not match the configuration's")
    if scheduler is not None:
        state = {
            key: collections.Counter(value) if isinstance(getattr(scheduler, key, None), collections.Counter) else value
            for key, value in content["scheduler"].items()
        }
        scheduler.load_state_dict(state)
    generator.set_state(content["generator"])
    torch.set_rng_state(content["torch_rng"])
    if device.type == "cuda" and content["cuda_rng"] is not None:
        torch.cuda.set_rng_state(content["cuda_rng"], device)
    return [dict(row) for row in content["epochs"]], int(content["grad_evals"]), float(content["elapsed_seconds"])
