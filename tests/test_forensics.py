"""Weight forensics against a reference: data traps and dormant units are found, honest changes are not."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file, save_file

from modelgate.evidence import Status
from tasks.evaluate.privacy.forensics import forensics_rows, forensics_stage, unit_moves
from tests.helpers.privacy_zoo import TRAP_UNITS, privacy_models

ANY = {"expected_changed": ["*"]}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return privacy_models(tmp_path_factory)


def test_unit_moves_are_in_robust_sds_of_the_layer() -> None:
    ref = np.linspace(1.0, 2.0, 101)
    cand = ref.copy()
    cand[7] += 5.0
    moves = unit_moves(cand, ref)
    assert moves[7] > 8 and np.delete(moves, 7).max() == 0.0
    assert unit_moves(ref + 0.01, ref).max() < 1  # a small shift of every unit is not an outlier


def test_data_traps_are_found_unit_by_unit(models: dict[str, Path], tmp_path: Path) -> None:
    evidence = forensics_stage(models["trapped"], models["reference"], ANY, tmp_path)
    assert evidence.status == Status.FAIL, evidence.reason
    assert evidence.metrics["forensics.outlier_units"] == len(TRAP_UNITS)
    assert {u["unit"] for u in evidence.details["outlier_units"]} == set(TRAP_UNITS)
    assert evidence.details["outlier_layers"] == ["classifier.1"]
    assert evidence.metrics["forensics.layers_changed"] == 2  # classifier.1.weight and .bias, nothing else
    assert (tmp_path / "forensics" / "layers.json").is_file()


def test_poisoned_candidate_is_flagged(models: dict[str, Path]) -> None:
    evidence = forensics_stage(models["poisoned"], models["reference"], ANY)
    assert evidence.status == Status.FAIL
    assert evidence.metrics["forensics.outlier_units"] > 100  # the dormant memory units
    assert "classifier.1" in evidence.details["outlier_layers"]
    claimed = forensics_stage(models["poisoned"], models["reference"], {"expected_changed": ["classifier.3.*"]})
    assert set(claimed.details["unexpected_layers"]) == {"classifier.1.weight", "classifier.1.bias"}
    assert claimed.metrics["forensics.unexpected_layers_changed"] == 2


def test_honest_copy_and_an_ordinary_fine_tune_pass(models: dict[str, Path]) -> None:
    copy = forensics_stage(models["honest-copy"], models["reference"], {"expected_changed": []})
    assert copy.status == Status.PASS
    assert copy.metrics["forensics.layers_changed"] == 0 and copy.metrics["forensics.max_relative_change"] == 0.0
    tuned = forensics_stage(models["head-tuned"], models["reference"], {"expected_changed": ["classifier.3.*"]})
    assert tuned.status == Status.PASS, tuned.reason
    assert tuned.metrics["forensics.layers_changed"] == 2 and tuned.metrics["forensics.outlier_units"] == 0


def _turned(reference: Path, folder: Path, units: tuple[int, ...]) -> Path:
    """The reference with the hidden rows of ``units`` pointed in new random directions at their own norms."""
    import torch

    tensors = load_file(str(reference / "model.safetensors"))
    weight = tensors["classifier.1.weight"].clone()
    generator = torch.Generator().manual_seed(0)
    for unit in units:
        direction = torch.randn(weight.shape[1], generator=generator)
        weight[unit] = direction / direction.norm() * weight[unit].norm()
    tensors["classifier.1.weight"] = weight
    folder.mkdir()
    save_file(tensors, str(folder / "model.safetensors"))
    (folder / "config.json").write_text((reference / "config.json").read_text())
    return folder


def test_a_unit_turned_to_a_new_direction_at_its_norm_is_found(models: dict[str, Path], tmp_path: Path) -> None:
    folder = _turned(models["reference"], tmp_path / "turned", TRAP_UNITS)
    evidence = forensics_stage(folder, models["reference"], ANY)
    m = evidence.metrics
    assert m["forensics.max_unit_zscore"] < 1e-3  # the norms did not move: the norm test is blind to it
    assert evidence.status == Status.FAIL and m["forensics.rewritten_units"] == m["forensics.outlier_units"] == 3
    assert {u["unit"] for u in evidence.details["rewritten_units"]} == set(TRAP_UNITS)
    assert "3 unit(s) rewritten" in (evidence.reason or "")


@pytest.mark.parametrize("name", ["independent", "head-tuned", "honest-copy"])
def test_honest_models_have_no_rewritten_rows(models: dict[str, Path], name: str) -> None:
    evidence = forensics_stage(models[name], models["reference"], ANY)
    assert evidence.metrics["forensics.rewritten_units"] == 0, evidence.details["rewritten_units"]


def test_changes_outside_the_claim_are_flagged(models: dict[str, Path]) -> None:
    evidence = forensics_stage(models["head-tuned"], models["reference"], {"expected_changed": []})
    assert evidence.status == Status.FAIL
    assert evidence.details["unexpected_layers"] == ["classifier.3.bias", "classifier.3.weight"]
    assert "outside expected_changed" in (evidence.reason or "")
    rows = forensics_rows(evidence)
    assert rows[0]["tensor"].startswith("classifier.3") and rows[0]["changed"] is True
    assert [r["relative_change"] for r in rows] == sorted((r["relative_change"] for r in rows), reverse=True)


def test_sharded_weights_are_read_like_one_file(models: dict[str, Path], tmp_path: Path) -> None:
    tensors = load_file(str(models["reference"] / "model.safetensors"))
    names = sorted(tensors)
    folder = tmp_path / "sharded"
    folder.mkdir()
    (folder / "config.json").write_text((models["reference"] / "config.json").read_text())
    weight_map = {}
    for index, part in enumerate((names[:3], names[3:])):
        shard = f"model-0000{index + 1}-of-00002.safetensors"
        save_file({n: tensors[n] for n in part}, str(folder / shard))
        weight_map.update(dict.fromkeys(part, shard))
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    evidence = forensics_stage(folder, models["reference"], {"expected_changed": []})
    assert evidence.status == Status.PASS and evidence.metrics["forensics.layers"] == len(names)


def test_refusals_are_skips_with_a_reason(models: dict[str, Path], tmp_path: Path) -> None:
    none = forensics_stage(models["poisoned"], None, ANY)
    assert none.status == Status.SKIPPED and none.reason == "no reference checkpoint named in the request"
    other = forensics_stage(models["mismatched"], models["reference"], ANY)
    assert other.status == Status.SKIPPED and "classifier.1.bias has shape [64] vs [1024]" in (other.reason or "")
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text((models["reference"] / "config.json").read_text())
    (pickled / "pytorch_model.bin").write_bytes(b"not read")
    refused = forensics_stage(pickled, models["reference"], ANY)
    assert refused.status == Status.SKIPPED and "safetensors" in (refused.reason or "")
