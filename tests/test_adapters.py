"""Model adapters: each kind of folder says what it is, loads from safetensors only, and refuses with a reason."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from modelgate.evidence import Status
from tasks.evaluate.adapters import (
    IMAGE_CLASSIFICATION,
    TEXT_GENERATION,
    NotEvaluable,
    describe_model,
    load_causal_lm,
    load_image_classifier,
)
from tasks.evaluate.device import describe_device, select_device
from tasks.evaluate.stage import adversarial_stage, backdoor_stage


@pytest.fixture(scope="module")
def vit_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    """A tiny transformers ViT image classifier (1x16x16, 10 labels) saved with safetensors."""
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    config = ViTConfig(
        image_size=16, patch_size=4, num_channels=1, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, num_labels=10, id2label={i: f"digit-{i}" for i in range(10)},
    )  # fmt: skip
    model = ViTForImageClassification(config).eval()
    folder = tmp_path_factory.mktemp("vit")
    model.save_pretrained(folder, safe_serialization=True)
    (folder / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.4], "image_std": [0.3]}))
    return folder, model


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    """A tiny transformers GPT-2 causal LM (tied embeddings) saved with safetensors."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=64, n_positions=32, bos_token_id=0, eos_token_id=0)
    model = GPT2LMHeadModel(config).eval()
    folder = tmp_path_factory.mktemp("gpt2")
    model.save_pretrained(folder, safe_serialization=True)
    return folder, model


@pytest.fixture(scope="module")
def cnn_dir(examples: dict[str, Path]) -> Path:
    return examples["digits-cnn"]


def test_small_cnn_is_described_and_loaded(cnn_dir: Path) -> None:
    info = describe_model(cnn_dir)
    assert (info.adapter, info.task, info.num_classes, info.input_shape) == (
        "modelgate-small-cnn", IMAGE_CLASSIFICATION, 10, (1, 16, 16)
    )  # fmt: skip
    model, _ = load_image_classifier(cnn_dir)
    assert model(torch.rand(3, 1, 16, 16)).shape == (3, 10)


def test_transformers_image_classifier_normalizes_inside(vit_dir: tuple[Path, torch.nn.Module]) -> None:
    folder, original = vit_dir
    info = describe_model(folder)
    assert info.adapter == "transformers" and info.task == IMAGE_CLASSIFICATION
    assert info.architecture == "transformers:ViTForImageClassification"
    assert info.input_shape == (1, 16, 16) and info.num_classes == 10 and info.label_names[3] == "digit-3"
    model, _ = load_image_classifier(folder)
    images = torch.rand(4, 1, 16, 16)
    with torch.no_grad():
        expected = original(pixel_values=(images - 0.4) / 0.3).logits
        assert torch.allclose(model(images), expected, atol=1e-5)


def test_transformers_causal_lm_loads_with_tied_weights(gpt2_dir: tuple[Path, torch.nn.Module]) -> None:
    folder, original = gpt2_dir
    info = describe_model(folder)
    assert (info.task, info.architecture) == (TEXT_GENERATION, "transformers:GPT2LMHeadModel")
    model, _ = load_causal_lm(folder)
    tokens = torch.randint(0, 64, (2, 8))
    with torch.no_grad():
        assert torch.allclose(model(tokens).logits, original(tokens).logits, atol=1e-5)
    with pytest.raises(NotEvaluable, match="text-generation model; this evaluation needs an image classifier"):
        load_image_classifier(folder)


def test_text_model_is_skipped_by_the_image_evaluations(gpt2_dir: tuple[Path, torch.nn.Module], tmp_path: Path) -> None:
    folder, _ = gpt2_dir
    for stage in (backdoor_stage, adversarial_stage):
        evidence = stage(folder, "sklearn:digits", None, tmp_path)
        assert evidence.status is Status.SKIPPED
        assert evidence.reason and "text-generation model" in evidence.reason
        assert evidence.metrics == {}


def test_pickle_only_and_remote_code_folders_are_refused(tmp_path: Path, vit_dir: tuple[Path, torch.nn.Module]) -> None:
    folder, _ = vit_dir
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    shutil.copy(folder / "config.json", pickled / "config.json")
    (pickled / "pytorch_model.bin").write_bytes(b"never read")
    with pytest.raises(NotEvaluable, match="pickle-based weights are never loaded"):
        load_image_classifier(pickled)
    remote = tmp_path / "remote"
    remote.mkdir()
    config = json.loads((folder / "config.json").read_text())
    (remote / "config.json").write_text(json.dumps({**config, "auto_map": {"AutoModel": "evil.Model"}}))
    with pytest.raises(NotEvaluable, match="remote code is never run"):
        describe_model(remote)


def test_mismatched_weights_are_refused(tmp_path: Path, vit_dir: tuple[Path, torch.nn.Module]) -> None:
    from safetensors.torch import load_file, save_file

    folder, _ = vit_dir
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    tensors = load_file(str(folder / "model.safetensors"))
    tensors.pop(sorted(tensors)[0])
    save_file(tensors, str(broken / "model.safetensors"))
    with pytest.raises(NotEvaluable, match="weights do not match the config: 1 missing"):
        load_image_classifier(broken)


def test_unknown_config_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"layers": 3}))
    with pytest.raises(NotEvaluable, match="unknown model format"):
        describe_model(tmp_path)
    (tmp_path / "config.json").unlink()
    with pytest.raises(NotEvaluable, match="config.json: missing"):
        describe_model(tmp_path)


def test_torchvision_architecture_is_described_and_loads_or_is_refused(tmp_path: Path) -> None:
    """torchvision is optional: where it does not import beside this torch, the refusal says so."""
    config = {"architecture": "torchvision:resnet18", "num_classes": 10, "input_shape": [3, 32, 32]}
    (tmp_path / "config.json").write_text(json.dumps(config))
    info = describe_model(tmp_path)
    assert (info.adapter, info.task, info.input_shape) == ("torchvision", IMAGE_CLASSIFICATION, (3, 32, 32))
    try:
        import torchvision.models as tv_models
    except Exception:  # noqa: BLE001 - a torchvision built for another torch raises RuntimeError
        with pytest.raises(NotEvaluable, match="torchvision does not import beside torch"):
            load_image_classifier(tmp_path)
        return
    from safetensors.torch import save_file

    reference = tv_models.get_model("resnet18", weights=None, num_classes=10).eval()
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(tmp_path / "model.safetensors"))
    model, _ = load_image_classifier(tmp_path)
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_device_is_chosen_and_recorded() -> None:
    device = select_device("auto")
    assert device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    info = describe_device(device)
    assert info["device"] == str(device) and info["torch"] == torch.__version__ and info["device_name"]
    assert select_device("cpu").type == "cpu"
    with pytest.raises(ValueError, match="device: expected one of auto, cpu, cuda"):
        select_device("tpu")
