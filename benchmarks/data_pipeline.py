"""Training throughput of optbench's loop against a DataLoader with PIL transforms and the pure-compute floor.

Three ways of training the same model, on the same images, at the same batch size, with plain SGD
(lr 0.01, momentum 0.9), timed an epoch at a time, interleaved round-robin in one process so that a
drift of a shared machine hits all three alike (median over ``--repetitions`` rounds after a warm-up):

* **DataLoader+PIL**: a ``torch.utils.data.DataLoader`` over a dataset that turns each uint8 image into a
  PIL image and applies torchvision transforms per image (``RandomCrop(size, padding=4)``,
  ``RandomHorizontalFlip()``, ``ToTensor()``, ``Normalize``), the style of the source reports' code and of
  common PyTorch CIFAR scripts, including their per-step ``loss.item()`` and accuracy bookkeeping.
* **ours**: :func:`optbench.training.train_epoch`, the epoch of :func:`optbench.training.train` (whole
  dataset as uint8 on the device, batch gather, crop and flip, normalization, the optimizer protocol,
  loss and accuracy kept on the device).
* **floor**: the same model stepping over batches that are already normalized float tensors in memory
  (shuffled once, before timing): forward, cross-entropy, backward, step, and nothing else.

Cases: LeNet-5 at batch 32 and a small ResNet (ResNet-18 at 1/8 width) at batch 128 on the CPU,
each without and with the reports' augmentation (pad-4 crop + flip; the floor has none, so "ours / floor"
with augmentation is what augmentation adds), and ResNet-18 on 32×32 at batch 128 on a GPU when one is
present. Data: Fashion-MNIST (28×28) if it is there (Debian's ``dataset-fashion-mnist`` package or
``$OPTBENCH_DATA_DIR``), else scikit-learn's digits upscaled to 28×28 and repeated to the example count;
on the GPU, CIFAR-10 if present, else random CIFAR-shaped uint8 images.

Targets (issue 16), on the CPU: ours ≤ 1.10 × floor without augmentation, ≤ 1.15 × floor with it, and so
DataLoader+PIL ≥ 2 × ours with augmentation; on a GPU, DataLoader+PIL ≥ 3 × ours with augmentation.

Usage: ``python benchmarks/data_pipeline.py --threads 2 --repetitions 5`` (a few minutes on 2 cores);
``--skip-cpu`` runs only the GPU case, ``--workers N`` gives the DataLoader N worker processes. On a
machine shared with other work, ``--threads 1 --clock cpu`` times this process's CPU seconds instead of
elapsed ones, which the other processes do not inflate.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from optbench import data, models, training
from optbench.config import RunConfig

LR, MOMENTUM = 0.01, 0.9
CPU_OURS_TO_FLOOR = 1.10
CPU_AUGMENTED_OURS_TO_FLOOR = 1.15
CPU_DATALOADER_TO_OURS_AUGMENTED = 2.0
GPU_DATALOADER_TO_OURS_AUGMENTED = 3.0


class PilImages(torch.utils.data.Dataset):
    """uint8 (N, C, H, W) images served one at a time as PIL images through ``transform``, as torchvision's
    MNIST and CIFAR datasets do."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform):
        channels_last = images.permute(0, 2, 3, 1).contiguous().numpy()
        self.images = channels_last[..., 0] if channels_last.shape[-1] == 1 else channels_last
        self.labels = labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[index])), self.labels[index]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def load_images(device: torch.device, num_examples: int) -> tuple[data.ImageData, str]:
    """The benchmark's images on ``device``: Fashion-MNIST or upscaled digits (CPU), CIFAR-10 or random (GPU)."""
    if device.type == "cuda":
        try:
            dataset, description = data.load_dataset("cifar10", download=False), "CIFAR-10"
        except data.DatasetUnavailableError:
            generator = torch.Generator().manual_seed(0)
            images = torch.randint(0, 256, (num_examples, 3, 32, 32), dtype=torch.uint8, generator=generator)
            labels = torch.randint(0, 10, (num_examples,), generator=generator)
            scaled = images.double() / 255
            mean, std = tuple(scaled.mean(dim=(0, 2, 3)).tolist()), tuple(scaled.std(dim=(0, 2, 3)).tolist())
            dataset = data.ImageData("random", images, labels, images[:1000], labels[:1000], 10, mean, std)
            description = "random CIFAR-shaped uint8 images (CIFAR-10 not found)"
    else:
        try:
            dataset, description = data.load_dataset("fashion_mnist", download=False), "Fashion-MNIST"
        except data.DatasetUnavailableError:
            dataset, description = data.load_dataset("digits", image_size=28), "digits upscaled to 28×28 (Fashion-MNIST not found)"
    repeats = -(-num_examples // len(dataset.train_labels))
    images = dataset.train_images.repeat(repeats, 1, 1, 1)[:num_examples].contiguous()
    labels = dataset.train_labels.repeat(repeats)[:num_examples].contiguous()
    subset = data.ImageData(dataset.name, images, labels, images[:1000], labels[:1000], dataset.num_classes, dataset.mean, dataset.std)
    return subset.to(device), f"{description}, {num_examples:,} training images"


def dataloader_epoch(model, optimizer, loader, device) -> None:
    """One epoch as the reports' scripts write it (per-step ``.item()`` bookkeeping included)."""
    model.train()
    train_loss, correct = 0.0, 0
    for inputs, targets in loader:
        inputs, targets = inputs.to(device), targets.to(device)
        optimizer.zero_grad()
        outputs = model(inputs)
        loss = F.cross_entropy(outputs, targets)
        loss.backward()
        optimizer.step()
        train_loss += loss.item()
        correct += outputs.argmax(dim=1).eq(targets).sum().item()


def floor_epoch(model, optimizer, batches) -> None:
    model.train()
    for inputs, targets in batches:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(inputs), targets).backward()
        optimizer.step()


def time_case(model_name, model_options, batch_size, augment, dataset, device, repetitions, workers, clock):
    """Seconds per epoch of DataLoader+PIL, ours and floor for one case: one list each, a value per round."""
    import torchvision.transforms as T

    size, channels = dataset.image_size, dataset.in_channels

    def sgd(model):
        return torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)

    def fresh_model():
        torch.manual_seed(0)
        model = models.make_model(model_name, channels, size, dataset.num_classes, **model_options).to(device)
        return model.to(memory_format=training.input_memory_format(device))

    per_image = [T.RandomCrop(size, padding=data.AUGMENT_PADDING), T.RandomHorizontalFlip()] if augment else []
    transform = T.Compose(per_image + [T.ToTensor(), T.Normalize(dataset.mean, dataset.std)])
    loader = torch.utils.data.DataLoader(
        PilImages(dataset.train_images.cpu(), dataset.train_labels.cpu(), transform), batch_size=batch_size,
        shuffle=True, num_workers=workers, pin_memory=device.type == "cuda", persistent_workers=workers > 0,
    )
    loader_model = fresh_model()
    loader_optimizer = sgd(loader_model)

    config = RunConfig(optimizer="sgd", num_epochs=1_000_000, model=model_name, model_options=model_options,
                       batch_size=batch_size, augment=augment, hyperparameters={"lr": LR, "momentum": MOMENTUM})
    state = training.new_run(config, device, dataset)

    floor_model = fresh_model()
    floor_optimizer = sgd(floor_model)
    normalized = data.Normalization(dataset.mean, dataset.std, device, training.input_memory_format(device))(dataset.train_images)
    order = torch.randperm(len(dataset.train_labels), device=device)
    batches = list(zip(normalized[order].split(batch_size), dataset.train_labels[order].split(batch_size)))

    epochs = iter(range(1_000_000))
    actions = {
        "DataLoader+PIL": lambda: dataloader_epoch(loader_model, loader_optimizer, loader, device),
        "ours": lambda: training.train_epoch(state, next(epochs)),
        "floor": lambda: floor_epoch(floor_model, floor_optimizer, batches),
    }
    samples = {name: [] for name in actions}
    for round_index in range(1 + repetitions):  # round 0 warms up (allocator, cuDNN, DataLoader workers)
        for name, action in actions.items():
            synchronize(device)
            started = clock()
            action()
            synchronize(device)
            if round_index > 0:
                samples[name].append(clock() - started)
    return samples


def median_ratio(numerators: list[float], denominators: list[float]) -> float:
    """The median over rounds of each round's ratio (a drift between rounds cancels within a round)."""
    return statistics.median(top / bottom for top, bottom in zip(numerators, denominators))


def verdict(passed: bool) -> str:
    return "met" if passed else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=20000, help="training images per LeNet epoch")
    parser.add_argument("--resnet-examples", type=int, default=4096, help="training images per small-ResNet epoch (CPU)")
    parser.add_argument("--gpu-examples", type=int, default=10000, help="training images per ResNet-18 epoch (GPU)")
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall: elapsed time; cpu: this process's CPU time, which other processes on a shared machine "
                        "do not inflate (CPU cases with --workers 0 only: it misses worker processes and GPU time)")
    parser.add_argument("--skip-cpu", action="store_true")
    parser.add_argument("--skip-gpu", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.clock == "cpu" and (args.workers > 0 or (torch.cuda.is_available() and not args.skip_gpu)):
        parser.error("--clock cpu measures only this process's CPU time: use it with --workers 0 and without a GPU case (--skip-gpu)")
    clock = time.process_time if args.clock == "cpu" else time.perf_counter

    cases = []
    if not args.skip_cpu:
        cpu = torch.device("cpu")
        lenet_data, lenet_description = load_images(cpu, args.examples)
        resnet_data, resnet_description = load_images(cpu, args.resnet_examples)
        for augment in (False, True):
            cases.append(("LeNet-5", "lenet5", {}, 32, augment, lenet_data, lenet_description, cpu))
        for augment in (False, True):
            cases.append(("ResNet-18 ×1/8", "resnet18", {"width": 0.125}, 128, augment, resnet_data, resnet_description, cpu))
    if torch.cuda.is_available() and not args.skip_gpu:
        gpu = torch.device("cuda")
        gpu_data, gpu_description = load_images(gpu, args.gpu_examples)
        for augment in (False, True):
            cases.append(("ResNet-18", "resnet18", {}, 128, augment, gpu_data, gpu_description, gpu))

    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU thread(s), DataLoader workers {args.workers}, "
          f"{'CPU' if args.clock == 'cpu' else 'wall-clock'} seconds; {args.repetitions} interleaved rounds after one warm-up: "
          "median seconds per epoch, median of the rounds' ratios")
    header = (f"| {'model':<15} | {'device':<6} | batch | augment | {'floor s':>8} | {'ours s':>8} | {'DataLoader+PIL s':>16} "
              f"| ours / floor | DataLoader+PIL / ours | DataLoader+PIL / floor |")
    rows, checks = [], []
    descriptions = {}
    for label, name, options, batch_size, augment, dataset, description, device in cases:
        descriptions[(label, device.type)] = description
        samples = time_case(name, options, batch_size, augment, dataset, device, args.repetitions, args.workers, clock)
        seconds = {pipeline: statistics.median(values) for pipeline, values in samples.items()}
        to_floor = median_ratio(samples["ours"], samples["floor"])
        speedup = median_ratio(samples["DataLoader+PIL"], samples["ours"])
        # the most any loop could gain over the DataLoader: where compute dominates, it is close to 1
        ceiling = median_ratio(samples["DataLoader+PIL"], samples["floor"])
        rows.append(f"| {label:<15} | {device.type:<6} | {batch_size:>5} | {'yes' if augment else 'no':<7} | {seconds['floor']:>8.2f} "
                    f"| {seconds['ours']:>8.2f} | {seconds['DataLoader+PIL']:>16.2f} | {to_floor:>12.2f} | {speedup:>21.2f} "
                    f"| {ceiling:>22.2f} |")
        if device.type == "cpu":
            limit = CPU_AUGMENTED_OURS_TO_FLOOR if augment else CPU_OURS_TO_FLOOR
            checks.append(f"{label} {'with' if augment else 'without'} augmentation, CPU: ours / floor {to_floor:.2f} "
                          f"(target ≤ {limit:.2f}): {verdict(to_floor <= limit)}")
            if augment:
                checks.append(f"{label} with augmentation, CPU: DataLoader+PIL / ours {speedup:.2f} "
                              f"(target ≥ {CPU_DATALOADER_TO_OURS_AUGMENTED:.1f}): {verdict(speedup >= CPU_DATALOADER_TO_OURS_AUGMENTED)}")
        elif augment:
            checks.append(f"{label} with augmentation, GPU: DataLoader+PIL / ours {speedup:.2f} "
                          f"(target ≥ {GPU_DATALOADER_TO_OURS_AUGMENTED:.1f}): {verdict(speedup >= GPU_DATALOADER_TO_OURS_AUGMENTED)}")
        print(f"  done: {label} on {device.type}, augment={augment}", flush=True)
    print()
    for (label, device_type), description in descriptions.items():
        print(f"{label} ({device_type}): {description}")
    print()
    print(header)
    print("|" + "|".join("---" for _ in header.strip("| ").split(" | ")) + "|")
    print("\n".join(rows))
    print()
    print("\n".join(checks))


if __name__ == "__main__":
    main()
