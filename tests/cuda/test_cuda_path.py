"""The CUDA path of the training loop: data on the GPU, channels_last, bf16, CUDA-event timing.

Collected only with ``--cuda`` (``make test-cuda``), which refuses to start on a machine without a CUDA device.
"""

from __future__ import annotations

import pytest
import torch

from optbench import data
from optbench.config import RunConfig
from optbench.training import set_up, train


def test_on_cuda_the_data_stays_uint8_on_the_gpu_and_model_and_inputs_are_channels_last():
    config = RunConfig(optimizer="sgd", num_epochs=1, model="resnet18", model_options={"width": 0.0625}, image_size=8,
                       max_train_examples=128, batch_size=32, augment=True)
    state = set_up(config, "cuda")
    assert state.train_images.is_cuda and state.train_images.dtype == torch.uint8 and state.eval_images.is_cuda
    convolution = state.model.stem[0].weight
    assert convolution.is_cuda and convolution.is_contiguous(memory_format=torch.channels_last)
    inputs = state.to_inputs(state.train_images[:32])
    assert inputs.is_cuda and inputs.is_contiguous(memory_format=torch.channels_last)


def test_on_cuda_the_epochs_draws_equal_the_cpus_and_augmentation_runs_on_the_gpu():
    images = data.load_dataset("digits").train_images[:200]
    on_cpu = data.epoch_batches(200, 32, torch.Generator().manual_seed(3), augment=True, device="cpu")
    on_gpu = data.epoch_batches(200, 32, torch.Generator().manual_seed(3), augment=True, device="cuda")
    gpu_images = images.cuda()
    for cpu_batch, gpu_batch in zip(on_cpu, on_gpu, strict=True):
        assert gpu_batch.index.is_cuda and torch.equal(gpu_batch.index.cpu(), cpu_batch.index)
        augmented = data.crop_and_flip(gpu_images[gpu_batch.index], gpu_batch.offsets, gpu_batch.flips)
        assert augmented.is_cuda
        assert torch.equal(augmented.cpu(), data.crop_and_flip(images[cpu_batch.index], cpu_batch.offsets, cpu_batch.flips))


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_cuda_run_trains_and_times_its_epochs_with_events(precision):
    config = RunConfig(optimizer="adam", num_epochs=2, model="resnet18", model_options={"width": 0.0625}, image_size=8,
                       max_train_examples=128, batch_size=32, augment=True, precision=precision)
    record = train(config, device="cuda", progress=False)
    cpu_record = train(config, device="cpu", progress=False)
    assert record["status"] == "finished" and record["provenance"]["device"] != cpu_record["provenance"]["device"]
    assert [row["grad_evals"] for row in record["epochs"]] == [row["grad_evals"] for row in cpu_record["epochs"]]
    assert all(row["seconds"] > 0 for row in record["epochs"])
    # the same draws and initial weights: the first epoch's loss agrees with the CPU's to rounding
    assert record["epochs"][0]["train_loss"] == pytest.approx(cpu_record["epochs"][0]["train_loss"], rel=0.02)
