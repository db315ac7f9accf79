"""Datasets as whole uint8 tensors on the run's device, with batch-level normalization and augmentation.

``digits`` (scikit-learn's bundled 8×8 handwritten digits, no download) is the embedded default; ``mnist``,
``fashion_mnist``, ``cifar10`` and ``cifar100`` load through torchvision under :func:`data_dir`.
Fashion-MNIST is also found where Debian's ``dataset-fashion-mnist`` package installs it.
"""

from __future__ import annotations

import gzip
import os
import shutil
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

DATASETS = ("digits", "fashion_mnist", "mnist", "cifar10", "cifar100")

#: where Debian's dataset-fashion-mnist package puts the gzipped IDX files
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

_TORCHVISION = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "cifar10": "CIFAR10", "cifar100": "CIFAR100"}
_HOW_TO_SUPPLY = {
    "mnist": "put the four MNIST IDX files (un-gzipped) in {root}/MNIST/raw/",
    "fashion_mnist": "install Debian's dataset-fashion-mnist package (apt-get install dataset-fashion-mnist), "
    "or put the four Fashion-MNIST IDX files (un-gzipped) in {root}/FashionMNIST/raw/",
    "cifar10": "extract cifar-10-python.tar.gz so that {root}/cifar-10-batches-py/ exists",
    "cifar100": "extract cifar-100-python.tar.gz so that {root}/cifar-100-python/ exists",
}

#: what the book says about each dataset: its title, native image size, split sizes (digits: after our split) and classes
DATASET_INFO = {
    "digits": {"title": "scikit-learn's handwritten digits", "image_size": 8, "train_examples": 1347, "test_examples": 450, "classes": 10},
    "mnist": {"title": "MNIST", "image_size": 28, "train_examples": 60000, "test_examples": 10000, "classes": 10},
    "fashion_mnist": {"title": "Fashion-MNIST", "image_size": 28, "train_examples": 60000, "test_examples": 10000, "classes": 10},
    "cifar10": {"title": "CIFAR-10", "image_size": 32, "train_examples": 50000, "test_examples": 10000, "classes": 10},
    "cifar100": {"title": "CIFAR-100", "image_size": 32, "train_examples": 50000, "test_examples": 10000, "classes": 100},
}

#: the digits test split is fixed for every run, so that test numbers are comparable across seeds
DIGITS_TEST_FRACTION = 0.25
DIGITS_SPLIT_SEED = 0


class DatasetUnavailableError(RuntimeError, ValueError):
    """A dataset is not on disk and could not be downloaded (bad input, like every other ValueError here)."""


def data_dir() -> Path:
    """Root of the datasets: ``$OPTBENCH_DATA_DIR``, else ``~/.cache/optbench/data``."""
    return Path(os.environ.get("OPTBENCH_DATA_DIR", Path.home() / ".cache" / "optbench" / "data")).expanduser()


@dataclass
class ImageData:
    """A dataset held in memory: images as uint8 (N, C, H, W), labels as int64 (N,)."""

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def in_channels(self) -> int:
        return int(self.train_images.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.train_images.shape[-1])

    def to(self, device: torch.device | str) -> "ImageData":
        return ImageData(
            self.name,
            self.train_images.to(device),
            self.train_labels.to(device),
            self.test_images.to(device),
            self.test_labels.to(device),
            self.num_classes,
            self.mean,
            self.std,
        )


def check_dataset_name(name: str) -> None:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(DATASETS)}")


def ensure_available(name: str) -> None:
    """Raise :class:`DatasetUnavailableError` now, before any training, if dataset ``name`` cannot be had.

    A check writes nothing: the dataset is on disk (in torchvision's layout under :func:`data_dir`, or
    Debian's Fashion-MNIST package), or its download address answers; the download itself (or unpacking
    Debian's files) waits for the first run that loads it.
    """
    check_dataset_name(name)
    if name == "digits" or (name == "fashion_mnist" and _debian_fashion_mnist_files()):
        return
    try:
        _load_torchvision(name, download=False)
        return
    except DatasetUnavailableError:
        pass
    dataset_class = getattr(__import__("torchvision").datasets, _TORCHVISION[name])
    mirrors = getattr(dataset_class, "mirrors", None)
    url = f"{mirrors[0]}{dataset_class.resources[0][0]}" if mirrors else dataset_class.url
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=20).close()
    except Exception as error:  # URLError, HTTPError, timeouts: the download would fail the same way
        raise _unavailable(name, error) from None


def load_dataset(name: str, image_size: int | None = None, device: torch.device | str = "cpu", download: bool = True) -> ImageData:
    """Load dataset ``name`` whole, resized to ``image_size`` (None keeps the native size) on ``device``."""
    check_dataset_name(name)
    if image_size is not None and (not isinstance(image_size, int) or image_size < 4):
        raise ValueError(f"invalid image_size {image_size!r}: it must be an integer >= 4")
    if name == "digits":
        train_images, train_labels, test_images, test_labels, num_classes = _load_digits()
    else:
        train_images, train_labels, test_images, test_labels, num_classes = _load_torchvision(name, download)
    if image_size is not None and image_size != train_images.shape[-1]:
        train_images, test_images = _resize(train_images, image_size), _resize(test_images, image_size)
    scaled = train_images.double() / 255.0
    mean = tuple(scaled.mean(dim=(0, 2, 3)).tolist())
    std = tuple(scaled.std(dim=(0, 2, 3)).clamp_min(1e-6).tolist())
    data = ImageData(name, train_images, train_labels, test_images, test_labels, num_classes, mean, std)
    return data.to(device)


def _load_digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    # pixel values are 0..16; stretch them to the 0..255 range of every other dataset
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[:, None, :, :]
    labels = digits.target.astype(np.int64)
    train_x, test_x, train_y, test_y = train_test_split(
        images, labels, test_size=DIGITS_TEST_FRACTION, random_state=DIGITS_SPLIT_SEED, stratify=labels
    )
    return torch.from_numpy(train_x), torch.from_numpy(train_y), torch.from_numpy(test_x), torch.from_numpy(test_y), 10


def _unavailable(name: str, error: Exception) -> DatasetUnavailableError:
    root = data_dir()
    how = _HOW_TO_SUPPLY[name].format(root=root)
    return DatasetUnavailableError(
        f"dataset {name!r} is not in {root} and could not be downloaded ({type(error).__name__}: {error}). "
        f"To supply it: {how}; or set OPTBENCH_DATA_DIR to the directory that holds it."
    )


def _debian_fashion_mnist_files() -> list[Path]:
    """Debian's four gzipped Fashion-MNIST files, or [] where the package is not installed."""
    files = sorted(DEBIAN_FASHION_MNIST.glob("*-ubyte.gz")) if DEBIAN_FASHION_MNIST.is_dir() else []
    return files if len(files) == 4 else []


def _provide_debian_fashion_mnist(root: Path) -> None:
    """Un-gzip Debian's Fashion-MNIST files where torchvision's loader looks for them."""
    raw = root / "FashionMNIST" / "raw"
    for gz_path in _debian_fashion_mnist_files():
        target = raw / gz_path.name[: -len(".gz")]
        if target.exists():
            continue
        raw.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        with gzip.open(gz_path, "rb") as source, open(partial, "wb") as sink:
            shutil.copyfileobj(source, sink)
        partial.replace(target)


def _load_torchvision(name: str, download: bool):
    import torchvision

    root = data_dir()
    if name == "fashion_mnist":
        _provide_debian_fashion_mnist(root)
    dataset_class = getattr(torchvision.datasets, _TORCHVISION[name])
    try:
        train = dataset_class(str(root), train=True, download=download)
        test = dataset_class(str(root), train=False, download=download)
    except Exception as error:  # torchvision raises RuntimeError, URLError or OSError depending on what failed
        raise _unavailable(name, error) from None
    return (*_as_tensors(train), *_as_tensors(test), len(train.classes))


def _as_tensors(dataset):
    images = dataset.data
    images = torch.as_tensor(np.asarray(images))
    if images.ndim == 3:  # MNIST-like: (N, H, W)
        images = images[:, None]
    else:  # CIFAR: (N, H, W, C)
        images = images.permute(0, 3, 1, 2)
    labels = torch.as_tensor(np.asarray(dataset.targets), dtype=torch.int64)
    return images.contiguous().to(torch.uint8), labels


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    resized = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return resized.round().clamp(0, 255).to(torch.uint8)


class Normalization:
    """Per-channel standardization of uint8 (N, C, H, W) batches into float32 model inputs.

    x ↦ (x / 255 − mean) / std, with the constants made once on ``device`` (not once per batch), in
    ``memory_format`` (channels_last on a GPU; plain NCHW strides everywhere else).
    """

    def __init__(self, mean, std, device: torch.device | str = "cpu", memory_format: torch.memory_format = torch.contiguous_format):
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.memory_format = memory_format

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        # Plain NCHW strides on the CPU, kept by the in-place ops: out-of-place broadcasting gives
        # single-channel batches a stride-1 channel dim, which torch 2.14's CPU convolution mishandles on
        # one thread (heap corruption).
        normalized = images.to(torch.float32, memory_format=self.memory_format, copy=True)
        return normalized.div_(255.0).sub_(self.mean).div_(self.std)


def normalize(images: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 (N, C, H, W) → float32, scaled to [0, 1] and standardized per channel."""
    return Normalization(mean, std, images.device)(images)


#: the reports' augmentation: zero padding by 4 pixels, a random crop back to size, a random horizontal flip
AUGMENT_PADDING = 4


def draw_augmentation(count: int, generator: torch.Generator, padding: int = AUGMENT_PADDING, flip: bool = True):
    """Random (crop offsets (2, count) in [0, 2·padding], flips (count,) or None) for ``count`` images."""
    offsets = torch.randint(0, 2 * padding + 1, (2, count), generator=generator)
    flips = torch.rand(count, generator=generator) < 0.5 if flip else None
    return offsets, flips


def crop_and_flip(images: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor | None, padding: int = AUGMENT_PADDING) -> torch.Tensor:
    """Image i: the window at (rows, cols) = ``offsets[:, i]`` of it zero-padded by ``padding``, mirrored if ``flips[i]``.

    Mirroring a window equals taking the mirrored window, at column 2·padding − offset, of the mirrored
    padded image, so one gather from the windows of both does crop and flip at once (on any device).
    """
    count, _, height, width = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    columns = offsets[1]
    if flips is not None:
        padded = torch.stack((padded, padded.flip(3)), dim=1)
        columns = torch.where(flips, 2 * padding - columns, columns)
    windows = padded.unfold(-2, height, 1).unfold(-2, width, 1)  # (N, [2,] C, rows, cols, height, width)
    batch = torch.arange(count, device=images.device)
    if flips is None:
        return windows[batch, :, offsets[0], columns]
    return windows[batch, flips.long(), :, offsets[0], columns]


def augment(images: torch.Tensor, generator: torch.Generator, padding: int = AUGMENT_PADDING, flip: bool = True) -> torch.Tensor:
    """Random crop after zero padding by ``padding`` and random horizontal flip, for a whole batch at once."""
    offsets, flips = draw_augmentation(len(images), generator, padding, flip)
    return crop_and_flip(images, offsets.to(images.device), None if flips is None else flips.to(images.device), padding)


@dataclass(frozen=True)
class Batch:
    """The random draws of one training batch: its examples and, with augmentation, its crops and flips."""

    index: torch.Tensor
    offsets: torch.Tensor | None = None
    flips: torch.Tensor | None = None


def epoch_batches(num_examples: int, batch_size: int, generator: torch.Generator, augment: bool, device: torch.device | str = "cpu") -> list[Batch]:
    """A shuffled epoch's batches, every random number drawn up front and moved to ``device`` at once.

    The draws come from ``generator`` in the order of a batch-by-batch loop (the permutation, then each
    batch's crop offsets and flips), so the numbers do not depend on the device; a GPU gets them in
    three transfers per epoch instead of three per batch, each of which would wait for the queued work.
    """
    order = torch.randperm(num_examples, generator=generator).to(device).split(batch_size)
    sizes = [len(index) for index in order]
    if not augment:
        return [Batch(index) for index in order]
    draws = [draw_augmentation(size, generator) for size in sizes]
    offsets = torch.cat([offsets for offsets, _ in draws], dim=1).to(device).split(sizes, dim=1)
    flips = torch.cat([flips for _, flips in draws]).to(device).split(sizes)
    return [Batch(*batch) for batch in zip(order, offsets, flips)]


def validation_split(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stratified (train, validation) index tensors holding out ``fraction`` of the examples."""
    from sklearn.model_selection import train_test_split

    if not 0.0 < fraction < 1.0:
        raise ValueError(f"invalid validation fraction {fraction!r}: it must lie in (0, 1)")
    labels_np = labels.cpu().numpy()
    train_index, validation_index = train_test_split(
        np.arange(len(labels_np)), test_size=fraction, random_state=seed, stratify=labels_np
    )
    return torch.from_numpy(np.sort(train_index)), torch.from_numpy(np.sort(validation_index))


def stratified_fold(labels: torch.Tensor, num_folds: int, fold: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, held-out) index tensors of part ``fold`` of a shuffled stratified ``num_folds``-fold split
    (scikit-learn's ``StratifiedKFold``): each part holds about 1/``num_folds`` of every class."""
    from sklearn.model_selection import StratifiedKFold

    if not isinstance(num_folds, int) or isinstance(num_folds, bool) or num_folds < 2:
        raise ValueError(f"invalid num_folds {num_folds!r}: it must be an integer >= 2")
    if not isinstance(fold, int) or isinstance(fold, bool) or not 0 <= fold < num_folds:
        raise ValueError(f"invalid fold {fold!r}: it must be an integer from 0 to {num_folds - 1}")
    labels_np = labels.cpu().numpy()
    counts = np.bincount(labels_np)
    rarest = int(counts[counts > 0].min()) if labels_np.size else 0
    if rarest < num_folds:
        raise ValueError(f"invalid num_folds {num_folds}: the rarest class has {rarest} training example(s), fewer than "
                         "the folds, so some fold would lack it; use fewer folds or more training examples")
    splitter = StratifiedKFold(n_splits=num_folds, shuffle=True, random_state=seed)
    train, held_out = list(splitter.split(np.zeros(len(labels_np)), labels_np))[fold]
    return torch.from_numpy(train), torch.from_numpy(held_out)
