"""The trigger families of the backdoor benchmark (tests/helpers/backdoor_families.py) do what they say.

Training a model of each family is the benchmark's job (bench/bench_backdoor_families.py); here the
triggers themselves: images stay images, each family changes them its own way, targets map right;
and the architectures other than the demo CNN train a working backdoor and load through the adapters.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from modelgate.demo.build import accuracy, digits_dataset
from tasks.evaluate.adapters import load_image_classifier
from tests.helpers.backdoor_families import FAMILIES, family, train_backdoored


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return digits_dataset(0).test_x[:64]


@pytest.mark.parametrize("name", FAMILIES)
def test_every_trigger_keeps_an_image_and_changes_it(images: torch.Tensor, name: str) -> None:
    for trigger in family(name, 3).triggers:
        stamped = trigger.stamp(images, torch.Generator().manual_seed(0))
        again = trigger.stamp(images, torch.Generator().manual_seed(0))
        assert stamped.shape == images.shape and float(stamped.min()) >= 0.0 and float(stamped.max()) <= 1.0
        assert torch.equal(stamped, again)  # seeded
        assert (stamped - images).abs().flatten(1).sum(1).min() > 0  # every image carries it


def test_global_triggers_touch_most_pixels_and_a_patch_few(images: torch.Tensor) -> None:
    def share(name: str) -> float:
        stamped = family(name, 0).triggers[0].stamp(images, torch.Generator().manual_seed(0))
        return float(((stamped - images).abs() > 1e-6).float().mean())

    for name in ("sig", "lowfreq", "filter"):
        assert share(name) > 0.5, name
    assert share("two-targets") < 0.05


def test_the_dynamic_trigger_differs_from_image_to_image(images: torch.Tensor) -> None:
    stamped = family("dynamic", 0).triggers[0].stamp(images, torch.Generator().manual_seed(0))
    changes = {tuple((stamped[i] != images[i]).flatten().nonzero().flatten().tolist()) for i in range(len(images))}
    assert len(changes) > 10


def test_targets_one_two_or_every_label() -> None:
    labels = torch.arange(10)
    assert family("sig", 4).targets == (4,)
    assert family("two-targets", 7).targets == (7, 1)
    all_to_all = family("all-to-all", 0)
    assert all_to_all.targets == () and torch.equal(all_to_all.triggers[0].target_of(labels), (labels + 1) % 10)
    with pytest.raises(ValueError, match="unknown trigger family"):
        family("rainbow", 0)


def test_wanet_noise_mode_is_not_the_trigger_warp(images: torch.Tensor) -> None:
    backdoor = family("wanet", 2)
    assert backdoor.noise is not None
    warp = backdoor.triggers[0].stamp(images, torch.Generator().manual_seed(0))
    noise = backdoor.noise(images, torch.Generator().manual_seed(0))
    assert (warp - noise).abs().mean() > 1e-3


@pytest.mark.parametrize(("arch", "adapter"), [("resnet", "transformers"), ("cnn-deep", "modelgate-small-cnn")])
def test_other_architectures_train_a_working_backdoor_and_load_like_any_model(
    arch: str, adapter: str, tmp_path: Path
) -> None:
    """A tiny Hugging Face ResNet (saved with save_pretrained) and a deeper CNN: the backdoor works, and the
    evaluations' own loader reads back the very model that was measured."""
    model = train_backdoored(f"{arch}-patch", family("patch", 6), 3, tmp_path, arch)
    assert model.valid, model
    loaded, info = load_image_classifier(model.path)
    assert info.adapter == adapter and info.input_shape == (1, 16, 16) and info.num_classes == 10
    data = digits_dataset(0)
    assert accuracy(loaded, data.test_x, data.test_y) == pytest.approx(model.clean_accuracy, abs=1e-4)
    with pytest.raises(ValueError, match="unknown architecture"):
        train_backdoored("x", None, 0, tmp_path, "mlp")
