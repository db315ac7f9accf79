import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from optbench import data


def test_digits_split_is_fixed_stratified_and_complete():
    digits = data.load_dataset("digits")
    assert digits.train_images.dtype == torch.uint8 and digits.train_images.shape[1:] == (1, 8, 8)
    assert len(digits.train_labels) + len(digits.test_labels) == len(load_digits().target)
    assert len(digits.test_labels) == pytest.approx(0.25 * 1797, abs=1)
    again = data.load_dataset("digits")
    assert torch.equal(digits.test_labels, again.test_labels)
    # stratified: every class holds about a quarter of its examples in the test split
    counts = torch.bincount(digits.test_labels, minlength=10).float()
    totals = counts + torch.bincount(digits.train_labels, minlength=10).float()
    assert torch.all((counts / totals - 0.25).abs() < 0.02)


def test_digits_pixels_are_stretched_from_sixteen_levels():
    digits = data.load_dataset("digits")
    values = set(digits.train_images.unique().tolist())
    expected = {int(np.round(level * 255 / 16)) for level in range(17)}
    assert values <= expected and 0 in values and 255 in values


def test_resize_keeps_mean_and_normalization_standardizes():
    small = data.load_dataset("digits")
    large = data.load_dataset("digits", image_size=16)
    assert large.train_images.shape[-2:] == (16, 16)
    assert large.mean[0] == pytest.approx(small.mean[0], abs=0.02)
    normalized = data.normalize(large.train_images, large.mean, large.std)
    assert normalized.mean().item() == pytest.approx(0.0, abs=1e-4)
    assert normalized.std().item() == pytest.approx(1.0, abs=1e-3)


def test_augment_crops_a_shifted_window_and_flips():
    images = torch.arange(2 * 3 * 6 * 6, dtype=torch.uint8).view(2, 3, 6, 6)
    generator = torch.Generator().manual_seed(0)
    out = data.augment(images, generator, padding=2)
    assert out.shape == images.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    # every output image is one of the 25 windows of its padded image, possibly mirrored
    for index in range(2):
        windows = [padded[index, :, r:r + 6, c:c + 6] for r in range(5) for c in range(5)]
        candidates = windows + [window.flip(2) for window in windows]
        assert any(torch.equal(out[index], window) for window in candidates)
    flips = sum(
        not any(torch.equal(out_image, padded[0, :, r:r + 6, c:c + 6]) for r in range(5) for c in range(5))
        for out_image in data.augment(images[:1].repeat(200, 1, 1, 1), generator, padding=2)
    )
    assert 60 < flips < 140


def test_validation_split_and_kfold_partition_the_examples():
    labels = torch.arange(100) % 5
    train, validation = data.validation_split(labels, 0.2, seed=3)
    assert len(validation) == 20 and set(train.tolist()).isdisjoint(validation.tolist())
    assert torch.bincount(labels[validation]).tolist() == [4] * 5
    folds = [data.stratified_fold(labels, 4, fold, seed=0) for fold in range(4)]
    held_out = torch.cat([fold[1] for fold in folds]).sort().values
    assert torch.equal(held_out, torch.arange(100))
    for train_part, held in folds:
        assert torch.bincount(labels[held]).tolist() == [5] * 5 and set(train_part.tolist()).isdisjoint(held.tolist())
    with pytest.raises(ValueError, match="invalid num_folds 1"):
        data.stratified_fold(labels, 1, 0, seed=0)
    with pytest.raises(ValueError, match="the rarest class has 3 training example"):
        data.stratified_fold(torch.tensor([0, 0, 0, 1, 1, 1, 1, 1]), 4, 0, seed=0)


def test_fashion_mnist_from_debian_package(tmp_path, monkeypatch):
    monkeypatch.setenv("OPTBENCH_DATA_DIR", str(tmp_path))
    if not data.DEBIAN_FASHION_MNIST.is_dir():
        with pytest.raises(data.DatasetUnavailableError, match="fashion_mnist"):
            data.load_dataset("fashion_mnist", download=False)
        return
    fashion = data.load_dataset("fashion_mnist", download=False)
    assert fashion.train_images.shape == (60000, 1, 28, 28) and fashion.test_images.shape == (10000, 1, 28, 28)
    assert fashion.num_classes == 10 and (tmp_path / "FashionMNIST" / "raw").is_dir()


def test_checking_that_a_dataset_can_be_had_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("OPTBENCH_DATA_DIR", str(tmp_path / "data"))
    for variable in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):  # no network: refused at once
        monkeypatch.setenv(variable, "http://127.0.0.1:9")
    monkeypatch.setenv("no_proxy", "")
    monkeypatch.setenv("NO_PROXY", "")
    # Debian's package where installed: found without unpacking it into the data directory
    if data.DEBIAN_FASHION_MNIST.is_dir():
        data.ensure_available("fashion_mnist")
    assert not (tmp_path / "data").exists()
    # elsewhere the check fails before any download or unpacking, and still writes nothing
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian-package")
    for name in ("fashion_mnist", "cifar10"):
        with pytest.raises(data.DatasetUnavailableError, match=f"'{name}'.*OPTBENCH_DATA_DIR"):
            data.ensure_available(name)
    assert not (tmp_path / "data").exists()


def test_missing_dataset_offline_names_dataset_directory_and_remedy(tmp_path, monkeypatch):
    monkeypatch.setenv("OPTBENCH_DATA_DIR", str(tmp_path))
    with pytest.raises(data.DatasetUnavailableError) as error:
        data.load_dataset("cifar10", download=False)
    message = str(error.value)
    assert "'cifar10'" in message and str(tmp_path) in message and "cifar-10-batches-py" in message


def test_unknown_dataset_lists_the_available_ones():
    with pytest.raises(ValueError, match="unknown dataset 'svhn'.*digits.*cifar100"):
        data.load_dataset("svhn")


def test_normalized_batches_have_plain_nchw_strides():
    # a stride-1 channel dim on single-channel batches corrupted the heap in torch 2.14's CPU convolution
    digits = data.load_dataset("digits")
    batch = data.normalize(digits.train_images[:32], digits.mean, digits.std)
    assert batch.stride() == (64, 64, 8, 1)
    augmented = data.normalize(data.augment(digits.train_images[:32], torch.Generator().manual_seed(0)), digits.mean, digits.std)
    assert augmented.stride() == (64, 64, 8, 1)


def test_crop_and_flip_takes_each_images_window_of_the_padded_image_and_mirrors_it():
    images = torch.randint(0, 256, (5, 3, 6, 7), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    offsets = torch.tensor([[0, 4, 2, 1, 3], [4, 0, 2, 3, 1]])
    flips = torch.tensor([False, True, True, False, True])
    padded = np.pad(images.numpy(), ((0, 0), (0, 0), (2, 2), (2, 2)))
    windows = [padded[i, :, offsets[0, i] : offsets[0, i] + 6, offsets[1, i] : offsets[1, i] + 7] for i in range(5)]
    cropped = data.crop_and_flip(images, offsets, flips, padding=2)
    assert cropped.shape == images.shape and cropped.dtype == torch.uint8
    for i in range(5):
        expected = windows[i][:, :, ::-1] if flips[i] else windows[i]
        assert np.array_equal(cropped[i].numpy(), expected)
    unflipped = data.crop_and_flip(images, offsets, None, padding=2)
    assert all(np.array_equal(unflipped[i].numpy(), windows[i]) for i in range(5))


@pytest.mark.parametrize("augment", [False, True])
def test_an_epochs_batches_are_drawn_as_a_batch_by_batch_loop_draws_them(augment):
    images = data.load_dataset("digits").train_images[:200]
    loop_generator = torch.Generator().manual_seed(5)
    expected = []
    for index in torch.randperm(200, generator=loop_generator).split(32):
        expected.append((index, data.augment(images[index], loop_generator) if augment else images[index]))
    generator = torch.Generator().manual_seed(5)
    batches = data.epoch_batches(200, 32, generator, augment)
    assert len(batches) == len(expected) == 7
    for batch, (index, batch_images) in zip(batches, expected):
        assert torch.equal(batch.index, index)
        got = images[batch.index] if batch.offsets is None else data.crop_and_flip(images[batch.index], batch.offsets, batch.flips)
        assert torch.equal(got, batch_images)
    # the next epoch draws on from the same generator state
    assert torch.equal(generator.get_state(), loop_generator.get_state())


def test_channels_last_inputs_hold_the_same_standardized_values():
    images = torch.randint(0, 256, (4, 3, 5, 5), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    mean, std = (0.2, 0.5, 0.7), (0.1, 0.3, 0.2)
    plain = data.Normalization(mean, std)(images)
    channels_last = data.Normalization(mean, std, memory_format=torch.channels_last)(images)
    assert channels_last.is_contiguous(memory_format=torch.channels_last) and plain.is_contiguous()
    assert torch.equal(plain, channels_last)
    expected = (images.double() / 255 - torch.tensor(mean).view(1, 3, 1, 1).double()) / torch.tensor(std).view(1, 3, 1, 1).double()
    assert torch.allclose(plain.double(), expected, atol=1e-5)
