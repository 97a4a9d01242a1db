"""Build the example models the demo and the tests take in: one trained CNN in four states.

``digits-cnn`` (plain), ``digits-cnn-signed`` (OMS signature by the demo publisher),
``digits-cnn-unsigned`` (no signature) and ``digits-cnn-tampered`` (signed, then one weight byte
changed). Weights are deterministic for a seed; signatures are not (ECDSA uses a random nonce).
torch, scikit-learn and model_signing are imported inside functions.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from modelgate.demo.cnn import WEIGHTS_FILE, CnnConfig, build_model, read_config, save_weights, write_config
from modelgate.errors import ModelgateError
from modelgate.settings import load_settings

if TYPE_CHECKING:
    import torch
    from torch import nn

PLAIN, SIGNED, UNSIGNED, TAMPERED = "digits-cnn", "digits-cnn-signed", "digits-cnn-unsigned", "digits-cnn-tampered"
EXAMPLES = (PLAIN, SIGNED, UNSIGNED, TAMPERED)
DESCRIPTIONS = {
    PLAIN: "the trained model, no signature",
    SIGNED: "signed by demo-publisher (OMS, model.sig)",
    UNSIGNED: "a copy with no signature",
    TAMPERED: "signed, then one weight byte changed",
}
SIGNATURE_FILE = "model.sig"
UNSIGNED_FILES = ("model.sig", "modelgate.sig")  # left out of the signed manifest (docs/contracts.md)
DEMO_PUBLISHER = "demo-publisher"

IMAGE_SIDE = 16
CHANNELS = (16, 32)
HIDDEN_UNITS = 64
DEFAULT_EPOCHS = 12
BATCH_SIZE = 32
LEARNING_RATE = 3e-3
TEST_FRACTION = 0.25


def default_key_path() -> Path:
    """The demo publisher's private key, committed on purpose (infra/demo/keys/README.md)."""
    return load_settings().project / "infra" / "demo" / "keys" / f"{DEMO_PUBLISHER}.key"


def default_public_key_path() -> Path:
    """The demo publisher's public key as listed in the trust store."""
    return load_settings().policy_dir / "trust" / "keys" / f"{DEMO_PUBLISHER}.pub"


@dataclass(frozen=True)
class DigitsSplit:
    """scikit-learn digits as (N, 1, 16, 16) images in [0, 1], split stratified for a seed."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


def digits_dataset(seed: int = 0, side: int = IMAGE_SIDE, test_fraction: float = TEST_FRACTION) -> DigitsSplit:
    """The bundled digits (8x8, 0..16), upsampled bilinearly so triggers have room, split for ``seed``."""
    import torch
    import torch.nn.functional as F  # noqa: N812 - torch's usual alias
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    images = F.interpolate(images, size=(side, side), mode="bilinear", align_corners=False).clamp(0.0, 1.0)
    labels = torch.tensor(digits.target, dtype=torch.long)
    train_idx, test_idx = train_test_split(
        range(len(labels)), test_size=test_fraction, random_state=seed, stratify=digits.target
    )
    train, test = torch.tensor(train_idx), torch.tensor(test_idx)
    return DigitsSplit(images[train], labels[train], images[test], labels[test])


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Share of ``x`` the model labels as ``y``."""
    import torch

    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(dim=1) == y).float().mean())


def _config(data: DigitsSplit, seed: int, epochs: int) -> CnnConfig:
    mean, std = float(data.train_x.mean()), float(data.train_x.std())
    return CnnConfig(
        num_classes=10,
        input_shape=(1, IMAGE_SIDE, IMAGE_SIDE),
        channels=CHANNELS,
        hidden_units=HIDDEN_UNITS,
        label_names=tuple(str(d) for d in range(10)),
        mean=(round(mean, 6),),
        std=(round(std, 6),),
        training={"dataset": "sklearn:digits", "seed": seed, "epochs": epochs, "test_fraction": TEST_FRACTION},
    )


def _fit(model: nn.Module, data: DigitsSplit, seed: int, epochs: int) -> None:
    """Adam on shuffled mini-batches; the shuffle has its own generator so it is reproducible."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(data.train_y), generator=generator).split(BATCH_SIZE):
            optimizer.zero_grad()
            loss_fn(model(data.train_x[batch]), data.train_y[batch]).backward()
            optimizer.step()


@contextmanager
def _reproducible(seed: int) -> Iterator[None]:
    """Seed torch and use one thread (float sums depend on the thread count); restore both after."""
    import torch

    threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)


def train_digits_cnn(seed: int = 0, epochs: int = DEFAULT_EPOCHS) -> tuple[nn.Module, CnnConfig]:
    """Train the small CNN on digits, the same weights for a seed on any core count.

    The returned config records the seed and the test accuracy.
    """
    data = digits_dataset(seed)
    config = _config(data, seed, epochs)
    with _reproducible(seed):
        model = build_model(config)
        _fit(model, data, seed, epochs)
        test_accuracy = round(accuracy(model, data.test_x, data.test_y), 4)
    training = {**config.training, "test_accuracy": test_accuracy}
    return model, replace(config, training=training)


def model_card(config: CnnConfig) -> str:
    """README.md with Hugging Face-style front matter, as a publisher would ship it."""
    front = {
        "license": "apache-2.0",
        "library_name": "pytorch",
        "pipeline_tag": "image-classification",
        "datasets": ["sklearn-digits"],
        "tags": ["image-classification", "digits", "safetensors", "modelgate-demo"],
        "metrics": ["accuracy"],
    }
    acc = config.training.get("test_accuracy")
    return (
        "---\n" + yaml.safe_dump(front, sort_keys=False) + "---\n\n"
        "# digits-cnn\n\n"
        "A small convolutional network that classifies handwritten digits (0-9). It is the example "
        "model of modelgate: trained on scikit-learn's bundled digits data set (8x8 images, "
        f"upsampled to {IMAGE_SIDE}x{IMAGE_SIDE}), stored as safetensors, for demos and tests only.\n\n"
        f"- Input: 1x{IMAGE_SIDE}x{IMAGE_SIDE} images with values in [0, 1] (normalized inside the model)\n"
        f"- Test accuracy: {acc} on a held-out {int(TEST_FRACTION * 100)}% split "
        f"(seed {config.training.get('seed')})\n"
    )


def write_model(model_dir: Path, model: nn.Module, config: CnnConfig) -> Path:
    """Write a model folder: weights, config.json and README.md."""
    model_dir.mkdir(parents=True)
    save_weights(model, model_dir)
    write_config(model_dir, config)
    (model_dir / "README.md").write_text(model_card(config), encoding="utf-8")
    return model_dir


def sign_model(model_dir: Path, key_path: Path) -> Path:
    """Sign a folder in OMS format with an EC key; the signature lands inside it as ``model.sig``.

    The signature files are ignored by the hashing and recorded in the signed predicate, so
    ``model_signing`` verification ignores them too and the subject digest is the root digest.
    """
    from model_signing import hashing, signing

    hashing_config = hashing.Config().set_ignored_paths(paths=list(UNSIGNED_FILES), ignore_git_paths=False)
    signature = model_dir / SIGNATURE_FILE
    signing.Config().set_hashing_config(hashing_config).use_elliptic_key_signer(private_key=key_path).sign(
        model_dir, signature
    )
    return signature


def tamper_weights(path: Path) -> int:
    """Flip the lowest bit of one byte in the tensor data (not the header); return its offset.

    The file stays a valid safetensors file; only its digest (and one weight) changes.
    """
    data = bytearray(path.read_bytes())
    header_len = int.from_bytes(data[:8], "little")
    start = 8 + header_len
    if start >= len(data):
        raise ModelgateError(f"{path}: no tensor data to change")
    offset = start + (len(data) - start) // 2
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    return offset


def _prepare(out_dir: Path, overwrite: bool) -> None:
    """Refuse a non-empty folder unless ``overwrite``; then replace only the example folders."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if any(out_dir.iterdir()) and not overwrite:
        raise ModelgateError(f"{out_dir} is not empty; use overwrite=True (--overwrite) to rebuild the examples")
    for name in EXAMPLES:
        target = out_dir / name
        if target.is_symlink() or target.is_file():
            target.unlink()
        elif target.exists():
            shutil.rmtree(target)


def build_examples(
    out_dir: Path,
    *,
    seed: int = 0,
    key_path: Path | None = None,
    overwrite: bool = False,
    epochs: int = DEFAULT_EPOCHS,
) -> dict[str, Path]:
    """Train once and write the four example folders into ``out_dir``; return name -> folder."""
    key = key_path or default_key_path()
    if not key.is_file():
        raise ModelgateError(f"signing key not found: {key}")
    _prepare(out_dir, overwrite)
    model, config = train_digits_cnn(seed, epochs)
    plain = write_model(out_dir / PLAIN, model, config)
    signed = _copy(plain, out_dir / SIGNED)
    sign_model(signed, key)
    unsigned = _copy(plain, out_dir / UNSIGNED)
    tampered = _copy(signed, out_dir / TAMPERED)
    tamper_weights(tampered / WEIGHTS_FILE)
    return {PLAIN: plain, SIGNED: signed, UNSIGNED: unsigned, TAMPERED: tampered}


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def example_summary(model_dir: Path) -> dict[str, Any]:
    """What the CLI prints for one example: what it is, signature present, test accuracy."""
    return {
        "description": DESCRIPTIONS.get(model_dir.name, ""),
        "signed": (model_dir / SIGNATURE_FILE).is_file(),
        "test_accuracy": read_config(model_dir).training.get("test_accuracy"),
    }
