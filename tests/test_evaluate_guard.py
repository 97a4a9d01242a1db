"""An evaluation started on its own never reads a folder that did not come through scan + safe load."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from flows.evaluate import main as evaluate_main
from tasks.load import LOAD_RECORD, EvaluationRefused, load_record_problem, prepare_for_evaluation


class _Exploit:
    """Pickles to a call of os.system: what the scan must catch before anything loads it."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("echo pwned > /tmp/modelgate-guard-pwned",))


def _model(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"architecture": "unknown"}), encoding="utf-8")
    save_file({"w": torch.arange(6, dtype=torch.float32).reshape(2, 3)}, str(folder / "model.safetensors"))
    return folder


def test_a_raw_folder_is_scanned_and_loaded_first(tmp_path: Path) -> None:
    raw = _model(tmp_path / "raw")
    assert "no load record" in (load_record_problem(raw) or "")
    folder, evidence = prepare_for_evaluation(raw, tmp_path / "work")
    assert folder == tmp_path / "work" / "eval-model"
    assert [e.stage for e in evidence] == ["scan", "load"]
    assert load_record_problem(folder) is None
    assert sorted(p.name for p in folder.iterdir()) == sorted(["config.json", LOAD_RECORD, "model.safetensors"])


def test_a_verified_load_output_is_used_as_it_is(tmp_path: Path) -> None:
    loaded, _ = prepare_for_evaluation(_model(tmp_path / "raw"), tmp_path / "work")
    again, evidence = prepare_for_evaluation(loaded, tmp_path / "other")
    assert again == loaded and evidence == []


def test_a_weight_changed_after_the_load_is_noticed(tmp_path: Path) -> None:
    loaded, _ = prepare_for_evaluation(_model(tmp_path / "raw"), tmp_path / "work")
    save_file({"w": torch.zeros(2, 3)}, str(loaded / "model.safetensors"))
    assert "changed since it was loaded" in (load_record_problem(loaded) or "")


def test_an_unrecorded_file_beside_the_record_is_noticed(tmp_path: Path) -> None:
    loaded, _ = prepare_for_evaluation(_model(tmp_path / "raw"), tmp_path / "work")
    (loaded / "pytorch_model.bin").write_bytes(pickle.dumps(_Exploit()))
    assert "pytorch_model.bin is not in the load record" in (load_record_problem(loaded) or "")


def test_a_forged_record_cannot_vouch_for_a_pickle(tmp_path: Path) -> None:
    folder = tmp_path / "forged"
    folder.mkdir()
    (folder / "config.json").write_text("{}", encoding="utf-8")
    data = pickle.dumps(_Exploit())
    (folder / "model.bin").write_bytes(data)
    import hashlib

    record = {"schema": "modelgate.load/v1", "files": {"model.bin": "sha256:" + hashlib.sha256(data).hexdigest()}}
    (folder / LOAD_RECORD).write_text(json.dumps(record), encoding="utf-8")
    assert "not safetensors" in (load_record_problem(folder) or "")
    with pytest.raises(EvaluationRefused, match="the scan did not pass"):
        prepare_for_evaluation(folder, tmp_path / "work")
    assert not (tmp_path / "work" / "eval-model").exists()


def test_the_standalone_evaluation_refuses_a_malicious_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _model(tmp_path / "evil")
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(_Exploit()))
    marker = Path("/tmp/modelgate-guard-pwned")
    marker.unlink(missing_ok=True)
    code = evaluate_main([str(folder), "--out", str(tmp_path / "out")])
    assert code == 2
    assert "not evaluated: the scan did not pass" in capsys.readouterr().out
    assert not marker.exists()
    assert not list((tmp_path / "out").glob("eval-backdoor*"))
