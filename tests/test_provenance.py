"""The provenance stage: model card parsing (bounded, safe) and the facts it hands the gate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelgate.evidence import StageEvidence, Status
from modelgate.provenance import MAX_NODES, provenance_stage, read_model_card

SHA = "0123456789abcdef0123456789abcdef01234567"


def write_card(folder: Path, text: str, name: str = "README.md") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text, encoding="utf-8")
    return folder


def stage(model_dir: Path, **overrides: object) -> StageEvidence:
    args: dict[str, object] = {
        "scheme": "local",
        "source_host": "",
        "revision": None,
        "revision_requested": None,
        "expected_digest": None,
        "model_dir": model_dir,
    }
    args.update(overrides)
    return provenance_stage(**args)  # type: ignore[arg-type]


def test_card_with_lists_takes_first_and_keeps_all_in_details(tmp_path: Path) -> None:
    card = """---
license: [MIT, Apache-2.0]
base_model:
  - meta-llama/Llama-3.1-8B
  - mistralai/Mistral-7B-v0.1
datasets:
  - imdb
  - squad
library_name: transformers
tags: [text-generation]
---
# A model
"""
    evidence = stage(write_card(tmp_path / "m", card))
    assert evidence.status is Status.PASS
    m = evidence.metrics
    assert m["provenance.has_model_card"] is True
    assert m["provenance.license"] == "mit"
    assert m["provenance.base_model"] == "meta-llama/Llama-3.1-8B"
    assert m["provenance.datasets"] == ["imdb", "squad"]
    assert m["provenance.library_name"] == "transformers"
    assert evidence.details["licenses"] == ["MIT", "Apache-2.0"]
    assert evidence.details["base_models"] == ["meta-llama/Llama-3.1-8B", "mistralai/Mistral-7B-v0.1"]
    assert evidence.details["front_matter"]["tags"] == ["text-generation"]
    assert evidence.inputs["model_card"].startswith("sha256:")
    json.loads(evidence.to_json())


def test_scalar_fields_and_single_dataset_string(tmp_path: Path) -> None:
    card = "---\nlicense: Apache-2.0\nbase_model: org/base\ndatasets: sklearn-digits\n---\n"
    m = stage(write_card(tmp_path / "m", card)).metrics
    assert m["provenance.license"] == "apache-2.0"
    assert m["provenance.base_model"] == "org/base"
    assert m["provenance.datasets"] == ["sklearn-digits"]
    assert m["provenance.library_name"] is None


def test_no_readme_is_a_fact_not_an_error(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    evidence = stage(tmp_path / "m")
    assert evidence.status is Status.PASS
    assert evidence.metrics["provenance.has_model_card"] is False
    assert evidence.metrics["provenance.license"] is None
    assert evidence.metrics["provenance.datasets"] == []
    assert evidence.details["model_card_error"] is None
    assert evidence.inputs == {}


def test_readme_without_front_matter(tmp_path: Path) -> None:
    card = read_model_card(write_card(tmp_path / "m", "# Just a title\n\nlicense: mit\n"))
    assert card.present is False
    assert card.metadata == {}
    assert card.error is None
    assert card.file_name == "README.md"


def test_readme_name_is_case_insensitive(tmp_path: Path) -> None:
    card = read_model_card(write_card(tmp_path / "m", "---\nlicense: mit\n---\n", name="readme.MD"))
    assert card.present and card.metadata == {"license": "mit"}


def test_malformed_yaml_front_matter(tmp_path: Path) -> None:
    folder = write_card(tmp_path / "m", "---\nlicense: [mit\nbase_model: x\n---\nbody\n")
    card = read_model_card(folder)
    assert card.present is True
    assert card.metadata == {}
    assert card.error is not None and card.error.startswith("README.md front matter: ")
    assert "\n" not in card.error
    evidence = stage(folder)
    assert evidence.status is Status.PASS
    assert evidence.metrics["provenance.has_model_card"] is False
    assert evidence.details["model_card_error"] == card.error


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("---\n- a\n- b\n---\n", "expected a mapping, got list"),
        ("---\nlicense: mit\n", "no closing"),
        ("---\n!!python/object/apply:os.system ['echo hi']\n---\n", "README.md front matter: "),
        ("---\n" + "[" * 5000 + "]" * 5000 + "\n---\n", "README.md front matter: "),
        ("---\nsize: " + "9" * 5000 + "\n---\n", "README.md front matter: Exceeds the limit"),
    ],
)
def test_bad_front_matter_is_reported_in_one_line(tmp_path: Path, text: str, message: str) -> None:
    card = read_model_card(write_card(tmp_path / "m", text))
    assert card.present and card.metadata == {}
    assert card.error is not None and message in card.error and "\n" not in card.error


def test_empty_front_matter_is_a_card_without_metadata(tmp_path: Path) -> None:
    card = read_model_card(write_card(tmp_path / "m", "---\n---\n# Title\n"))
    assert card.present and card.error is None and card.metadata == {}


def test_huge_readme_is_read_bounded(tmp_path: Path) -> None:
    folder = write_card(tmp_path / "m", "---\nlicense: MIT\n---\n" + "x" * 5_000_000)
    card = read_model_card(folder, max_bytes=10_000)
    assert card.truncated is True
    assert card.metadata == {"license": "MIT"}
    assert stage(folder).metrics["provenance.license"] == "mit"


def test_front_matter_past_the_size_bound(tmp_path: Path) -> None:
    folder = write_card(tmp_path / "m", "---\ndescription: " + "y" * 50_000 + "\n---\n")
    card = read_model_card(folder, max_bytes=1_000)
    assert card.present and card.truncated and card.metadata == {}
    assert card.error == "README.md front matter: not closed within the first 1000 bytes"


def test_front_matter_values_are_json_safe_and_bounded(tmp_path: Path) -> None:
    bomb = "\n".join(
        ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
        + [
            f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]"
            for i in range(8)
        ]
    )
    text = f"---\ndate: 2024-05-01\n1: one\nlong: {'z' * 10_000}\nbig: 0x{'f' * 5000}\nnan: .nan\n{bomb}\n---\n"
    card = read_model_card(write_card(tmp_path / "m", text))
    assert card.error is None and card.clipped is True
    assert card.metadata["big"] == "<integer of 20000 bits>"
    assert card.metadata["nan"] == "nan"
    assert card.metadata["date"] == "2024-05-01"
    assert card.metadata["1"] == "one"
    assert len(card.metadata["long"]) == 4096
    assert len(json.dumps(card.metadata)) < MAX_NODES * 100


def test_single_file_model_has_no_card(tmp_path: Path) -> None:
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"\x00" * 16)
    evidence = stage(model)
    assert evidence.status is Status.PASS
    assert evidence.metrics["provenance.has_model_card"] is False


def test_symlinked_readme_is_not_followed(tmp_path: Path) -> None:
    secret = write_card(tmp_path / "outside", "---\nlicense: secret\n---\n")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "README.md").symlink_to(secret / "README.md")
    card = read_model_card(tmp_path / "m")
    assert card.present is False and card.metadata == {}
    assert card.error == "README.md: not a regular file"


def test_hf_pinned_to_full_commit(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    m = stage(tmp_path / "m", scheme="hf", source_host="huggingface.co", revision=SHA, revision_requested=SHA).metrics
    assert m["provenance.source_scheme"] == "hf"
    assert m["provenance.source_host"] == "huggingface.co"
    assert m["provenance.revision"] == SHA
    assert m["provenance.revision_pinned"] is True


@pytest.mark.parametrize("requested", ["main", "v1.0", SHA[:12], None])
def test_hf_branch_tag_or_short_sha_is_not_pinned(tmp_path: Path, requested: str | None) -> None:
    (tmp_path / "m").mkdir()
    evidence = stage(tmp_path / "m", scheme="hf", source_host="hf.co", revision=SHA, revision_requested=requested)
    assert evidence.metrics["provenance.revision"] == SHA
    assert evidence.metrics["provenance.revision_pinned"] is False
    assert evidence.details["revision_requested"] == requested


def test_hf_digest_pin_does_not_pin_the_revision(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    m = stage(
        tmp_path / "m", scheme="hf", revision=SHA, revision_requested="main", expected_digest="sha256:" + "0" * 64
    )
    assert m.metrics["provenance.revision_pinned"] is False


@pytest.mark.parametrize(("digest", "pinned"), [("sha256:" + "a" * 64, True), (None, False)])
def test_local_pinned_by_expected_digest(tmp_path: Path, digest: str | None, pinned: bool) -> None:
    (tmp_path / "m").mkdir()
    m = stage(tmp_path / "m", scheme="local", expected_digest=digest).metrics
    assert m["provenance.source_scheme"] == "local"
    assert m["provenance.revision"] is None
    assert m["provenance.revision_pinned"] is pinned


def test_metric_keys_match_the_contract(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    assert set(stage(tmp_path / "m").metrics) == {
        "provenance.source_scheme",
        "provenance.source_host",
        "provenance.revision",
        "provenance.revision_pinned",
        "provenance.has_model_card",
        "provenance.license",
        "provenance.base_model",
        "provenance.datasets",
        "provenance.library_name",
    }


def test_crash_becomes_error_evidence(tmp_path: Path) -> None:
    evidence = stage(tmp_path / "does-not-exist")
    assert evidence.status is Status.ERROR
    assert evidence.reason and "FileNotFoundError" in evidence.reason
