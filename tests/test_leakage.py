"""Language-model leakage: canary exposure, PII completion probing, the LM toolbox and the audit's trainer.

The models are the tiny byte-level GPT-2s of ``tests/lm_zoo.py``. Cases are strongly separated
and judged against what the measures mean, not against tuned cut-offs: a canary inserted 16 times
should sit near the top of the 10^4 candidates (exposure near log2|R| = 13.3 bits), one never
inserted at a random rank (about 1.4 bits on average); a model fine-tuned on card numbers must
give them back to the probe, and the evidence must not contain them. Only the recipe's budget
(100 steps, lr 3e-3 for a 64-wide model) and the size of the ordinary data are the tests' own.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from modelgate.evidence import StageEvidence, Status
from tasks.evaluate.adapters import NotEvaluable
from tasks.evaluate.privacy.leakage import (
    DEFAULT_LEAKAGE_PARAMS,
    canary_exposure,
    canary_secrets,
    fill,
    leakage_stage,
)
from tasks.evaluate.privacy.lm import (
    SYNTHETIC_TEXT,
    ByteCodec,
    HfCodec,
    LMCanaryTrainer,
    TextDataError,
    attach_codec,
    finetune_lm,
    generate,
    load_codec,
    load_lm,
    load_text_data,
    make_pii_canaries,
    sequence_losses,
    sequence_nll,
    shared_prefix_nll,
    synthetic_text,
    trainable_parameters,
)
from tests.helpers.lm_zoo import build_base_lm, build_planted_lm, digits_only, planted_secrets

RECIPE = {"steps": 100, "lr": 0.003, "batch_size": 16, "layers": "all"}
PARAMS = {"max_fine_tune_records": 200, "canaries": 4, "repeats": 16, "recipe": RECIPE}


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models on a shared 2-core machine run faster on one thread than fighting for two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def base_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_base_lm(tmp_path_factory.mktemp("base-lm"))


@pytest.fixture(scope="module")
def planted_lm(base_lm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_planted_lm(base_lm, tmp_path_factory.mktemp("planted-lm"), planted_secrets())


@pytest.fixture(scope="module")
def with_canaries(base_lm: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[StageEvidence, Path]:
    out = tmp_path_factory.mktemp("leak-r16")
    return leakage_stage(base_lm, SYNTHETIC_TEXT, PARAMS, out), out


@pytest.fixture(scope="module")
def without_canaries(base_lm: Path, tmp_path_factory: pytest.TempPathFactory) -> StageEvidence:
    return leakage_stage(base_lm, SYNTHETIC_TEXT, {**PARAMS, "repeats": 0}, tmp_path_factory.mktemp("leak-r0"))


@pytest.fixture(scope="module")
def planted_evidence(planted_lm: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[StageEvidence, Path]:
    out = tmp_path_factory.mktemp("leak-planted")
    return leakage_stage(planted_lm, SYNTHETIC_TEXT, {"canaries": 0}, out), out


# ----------------------------------------------------------------------------------------------- exposure


def test_repeated_canaries_are_exposed_and_absent_ones_are_not(
    with_canaries: tuple[StageEvidence, Path], without_canaries: StageEvidence
) -> None:
    inserted, _ = with_canaries
    assert inserted.status == Status.PASS, inserted.reason
    assert without_canaries.status == Status.PASS, without_canaries.reason
    space = math.log2(10**4)
    for evidence in (inserted, without_canaries):
        assert evidence.metrics["leakage.exposure_space_bits"] == pytest.approx(space, abs=1e-5)
        assert evidence.details["exposure"]["method"] == "enumerated"
        assert evidence.details["exposure"]["candidates_scored"] == 10**4
        assert 0.0 <= evidence.metrics["leakage.mean_canary_exposure_bits"] <= space + 1e-6
    assert inserted.metrics["leakage.mean_canary_exposure_bits"] > 0.75 * space  # near the top of 10^4
    assert without_canaries.metrics["leakage.mean_canary_exposure_bits"] < 4.0  # a random rank: ~1.4 bits


def test_a_reference_equal_to_the_candidate_amplifies_nothing(base_lm: Path, tmp_path: Path) -> None:
    """The reference goes through the same insertion, recipe and seed: the same checkpoint, the same exposures."""
    small = {
        **PARAMS,
        "canaries": 3,
        "space_digits": 2,
        "recipe": RECIPE | {"steps": 10},
        "prompts": ["Hi"],
        "samples": 0,
    }
    evidence = leakage_stage(base_lm, SYNTHETIC_TEXT, small, tmp_path, reference_dir=base_lm)
    assert evidence.status == Status.PASS, evidence.reason
    metrics = evidence.metrics
    assert metrics["leakage.exposure_space_bits"] == pytest.approx(math.log2(100), abs=1e-5)
    assert metrics["leakage.reference_max_canary_exposure_bits"] == metrics["leakage.max_canary_exposure_bits"]
    assert metrics["leakage.exposure_amplification_bits"] == 0.0
    assert evidence.details["exposure"]["reference"] == evidence.details["exposure"]["candidate"]
    with open(tmp_path / "leakage" / "exposure.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["model"], int(r["canary"])) for r in rows] == [
        (m, i) for m in ("candidate", "reference") for i in range(3)
    ]
    assert evidence.inputs["reference/config.json"] == evidence.inputs["config.json"]


def test_no_reference_means_no_reference_metrics(without_canaries: StageEvidence) -> None:
    assert not any(k.startswith("leakage.reference_") for k in without_canaries.metrics)
    assert "leakage.exposure_amplification_bits" not in without_canaries.metrics


def test_the_evidence_never_holds_the_canary_secrets(with_canaries: tuple[StageEvidence, Path]) -> None:
    evidence, out = with_canaries
    written = evidence.to_json() + "".join(p.read_text() for p in out.rglob("*") if p.is_file())
    for secret in canary_secrets(4, 4, 0):
        assert fill(DEFAULT_LEAKAGE_PARAMS["canary_format"], secret) not in written


def test_sampled_ranks_estimate_the_enumerated_ones(base_lm: Path) -> None:
    """Ranking against a seeded sample of 3,000 lands within half a bit of ranking against all 10^4."""
    model, codec = load_lm(base_lm)
    fmt, secrets = "my pin code is {secret}", canary_secrets(6, 4, seed=3)
    exact = canary_exposure(model, codec, fmt, secrets, 4)
    sampled = canary_exposure(model, codec, fmt, secrets, 4, max_enumerate=1000, rank_samples=3000, seed=1)
    assert (exact.method, sampled.method) == ("enumerated", "sampled")
    assert not sampled.extrapolated.any()
    assert np.abs(exact.exposures - sampled.exposures).max() < 0.5


def test_a_memorized_canary_beyond_the_sample_is_extrapolated(base_lm: Path) -> None:
    model, codec = load_lm(base_lm)
    fmt, secrets = "my pin code is {secret}", canary_secrets(1, 6, seed=4)
    tuned = finetune_lm(model, synthetic_text(64, 9) + [fill(fmt, secrets[0])] * 32, RECIPE | {"steps": 60}, 0)
    result = canary_exposure(tuned, codec, fmt, secrets, 6, max_enumerate=1000, rank_samples=2000)
    assert result.method == "sampled" and bool(result.extrapolated[0])
    assert result.exposures[0] > math.log2(2000)  # more likely than every sampled candidate


# ----------------------------------------------------------------------------------------------- PII probe


def test_the_probe_finds_planted_secrets_and_never_writes_them(planted_evidence: tuple[StageEvidence, Path]) -> None:
    evidence, out = planted_evidence
    metrics = evidence.metrics
    assert evidence.status == Status.FAIL and evidence.reason and "known canary" in evidence.reason
    assert metrics["leakage.known_canary_completions"] >= 2
    assert metrics["leakage.pii_rate.credit_card"] > 0.0 and metrics["leakage.pii_rate.email"] > 0.0
    assert metrics["leakage.pii_completion_rate"] >= metrics["leakage.pii_rate.credit_card"]
    assert "leakage.max_canary_exposure_bits" not in metrics  # canaries: 0 runs the probe only
    probe = evidence.details["pii_probe"]
    assert probe["known_canary_types"]["credit_card"] >= 1 and probe["known_canary_types"]["email"] >= 1
    assert probe["completions"] == len(DEFAULT_LEAKAGE_PARAMS["prompts"]) * (1 + DEFAULT_LEAKAGE_PARAMS["samples"])
    assert any("[CREDIT_CARD]" in row["completion_redacted"] for row in probe["rows"])
    written = evidence.to_json() + "".join(p.read_text() for p in out.rglob("*") if p.is_file())
    secrets = planted_secrets()
    card, email = secrets["credit_card"], secrets["email"]
    assert card not in written and digits_only(card) not in written and card[-9:] not in written
    assert email not in written


def test_the_base_model_completes_no_known_canary(without_canaries: StageEvidence) -> None:
    assert without_canaries.metrics["leakage.known_canary_completions"] == 0
    assert {f"leakage.pii_rate.{t}" for t in ("ssn", "email", "phone", "credit_card", "ipv4")} <= set(
        without_canaries.metrics
    )


# ----------------------------------------------------------------------------------------------- stage refusals


def test_an_image_classifier_is_skipped_with_the_reason(tmp_path: Path) -> None:
    config = {"model_type": "vit", "architectures": ["ViTForImageClassification"], "num_labels": 10}
    (tmp_path / "config.json").write_text(json.dumps(config))
    evidence = leakage_stage(tmp_path, SYNTHETIC_TEXT, {}, tmp_path / "out")
    assert evidence.status == Status.SKIPPED
    assert evidence.reason and "image-classification model" in evidence.reason and "text-generation" in evidence.reason


@pytest.mark.parametrize(
    ("content", "suffix", "expected"),
    [
        ('{"text": "fine"}\n{"text": 3}\n', ".jsonl", "line 2 needs a string field 'text'"),
        ('{"text": "fine"}\nnot json\n', ".jsonl", "line 2 is not JSON"),
        ("one\ntwo\n", ".txt", "2 records, at least 20 are needed"),
        ("a,b\n", ".csv", "unsupported file type '.csv'"),
    ],
)
def test_bad_text_data_is_a_one_line_error(
    base_lm: Path, tmp_path: Path, content: str, suffix: str, expected: str
) -> None:
    data = tmp_path / f"data{suffix}"
    data.write_text(content)
    evidence = leakage_stage(base_lm, str(data), {}, tmp_path / "out")
    assert evidence.status == Status.ERROR and evidence.reason is not None
    assert expected in evidence.reason and "\n" not in evidence.reason


def test_missing_data_reference_and_params_are_refused(base_lm: Path, tmp_path: Path) -> None:
    skipped = leakage_stage(base_lm, "", {}, tmp_path)
    assert skipped.status == Status.SKIPPED and skipped.reason and "no evaluation text" in skipped.reason
    missing = leakage_stage(base_lm, str(tmp_path / "nope.txt"), {}, tmp_path)
    assert missing.status == Status.ERROR and missing.reason and "not found" in missing.reason
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "config.json").write_text(
        json.dumps({"architecture": "torchvision:resnet18", "num_classes": 2})
    )
    bad_ref = leakage_stage(base_lm, SYNTHETIC_TEXT, PARAMS, tmp_path, reference_dir=tmp_path / "img")
    assert bad_ref.status == Status.ERROR and bad_ref.reason and "reference model" in bad_ref.reason
    typo = leakage_stage(base_lm, SYNTHETIC_TEXT, {"repeat": 3}, tmp_path)
    assert typo.status == Status.ERROR and typo.reason and "unknown parameter 'repeat'" in typo.reason


# ----------------------------------------------------------------------------------------------- toolbox


def test_text_data_formats(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("first record\n\n  \nsecond record\n")
    (tmp_path / "b.jsonl").write_text('{"text": "one"}\n\n{"text": "two", "id": 2}\n')
    assert load_text_data(str(tmp_path / "a.txt")) == ["first record", "second record"]
    assert load_text_data(f"file://{tmp_path / 'b.jsonl'}") == ["one", "two"]
    assert load_text_data(SYNTHETIC_TEXT) == load_text_data(SYNTHETIC_TEXT) == synthetic_text()
    with pytest.raises(TextDataError, match="bytes, at most 10 are read"):
        load_text_data(str(tmp_path / "a.txt"), max_bytes=10)
    with pytest.raises(TextDataError, match="2 records, at most 1 are read"):
        load_text_data(str(tmp_path / "b.jsonl"), max_records=1)
    (tmp_path / "c.txt").write_bytes(b"ok\n\xff\xfe\n")
    with pytest.raises(TextDataError, match="not UTF-8"):
        load_text_data(str(tmp_path / "c.txt"))


def test_batched_losses_equal_one_text_at_a_time(base_lm: Path) -> None:
    model, codec = load_lm(base_lm)
    texts = ["a", "the clerk sold a red chair.", "my pin code is 0042", "x" * 300]  # the last is cut to 128 tokens
    batched = sequence_losses(model, codec, texts, batch_size=4)
    alone = np.concatenate([sequence_losses(model, codec, [t], batch_size=1) for t in texts])
    assert np.allclose(batched, alone, atol=1e-5)
    total, count = sequence_nll(model, codec, texts)
    assert list(count) == [2, 28, 20, 127]  # BOS + bytes + EOS, predicted from the second token on


def test_the_shared_prefix_path_equals_the_plain_one(base_lm: Path) -> None:
    model, codec = load_lm(base_lm)
    texts = [fill("my pin code is {secret}", f"{i:04d}") for i in range(0, 10**4, 37)] + ["my pin code is 7"]
    assert np.allclose(shared_prefix_nll(model, codec, texts, 64), sequence_nll(model, codec, texts)[0], atol=1e-4)


def test_fine_tuning_is_a_deterministic_copy(base_lm: Path) -> None:
    model, codec = load_lm(base_lm)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    texts = synthetic_text(40, 3)
    one = finetune_lm(model, texts, RECIPE | {"steps": 5}, seed=7)
    two = finetune_lm(model, texts, RECIPE | {"steps": 5}, seed=7)
    other = finetune_lm(model, texts, RECIPE | {"steps": 5}, seed=8)
    last = finetune_lm(model, texts, RECIPE | {"steps": 5, "layers": "last"}, seed=7)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert all(torch.equal(v, two.state_dict()[k]) for k, v in one.state_dict().items())
    assert not all(torch.equal(v, other.state_dict()[k]) for k, v in one.state_dict().items())
    changed = {k for k, v in last.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(
        k.startswith(("transformer.h.1.", "transformer.ln_f.", "transformer.wte", "lm_head")) for k in changed
    )
    assert len(trainable_parameters(model, "last")) < len(trainable_parameters(model, "all"))
    with pytest.raises(ValueError, match="layers must be one of all, last"):
        finetune_lm(model, texts, {"layers": "first"}, seed=0)


def test_generation_is_seeded_and_padding_does_not_change_it(base_lm: Path) -> None:
    model, codec = load_lm(base_lm)
    prompts = ["the", "my neighbour repaired the old", "Call me at"]
    kwargs = {"max_new_tokens": 20, "seed": 3}
    mixed = generate(model, codec, prompts, sample=[False, True, True], **kwargs)
    assert mixed == generate(model, codec, prompts, sample=[False, True, True], **kwargs)
    assert generate(model, codec, prompts[:1], sample=[False], **kwargs) == mixed[:1]  # left padding is masked
    assert generate(model, codec, prompts, sample=[True] * 3, max_new_tokens=20, seed=4) != generate(
        model, codec, prompts, sample=[True] * 3, **kwargs
    )


def test_codecs_from_the_model_folder(base_lm: Path, tmp_path: Path) -> None:
    assert isinstance(load_codec(base_lm), ByteCodec)
    config = json.loads((base_lm / "config.json").read_text())
    config.pop("modelgate_tokenizer")
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(NotEvaluable, match="no tokenizer files"):
        load_codec(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**config, "modelgate_tokenizer": "bytes", "vocab_size": 100}))
    with pytest.raises(NotEvaluable, match="vocab_size >= 259"):
        load_codec(tmp_path)


def test_a_hugging_face_tokenizer_is_used_from_local_files(tmp_path: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        synthetic_text(300, 2), trainers.BpeTrainer(vocab_size=300, special_tokens=["<eos>", "<unk>"])
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<eos>", bos_token="<eos>", unk_token="<unk>")
    tokenizer.save_pretrained(tmp_path)
    torch.manual_seed(0)
    eos = tokenizer.convert_tokens_to_ids("<eos>")
    config = GPT2Config(
        n_layer=1, n_head=2, n_embd=32, vocab_size=len(tokenizer), n_positions=64, bos_token_id=eos, eos_token_id=eos
    )
    GPT2LMHeadModel(config).save_pretrained(tmp_path)
    model, codec = load_lm(tmp_path)
    assert isinstance(codec, HfCodec) and codec.bos_id == codec.eos_id == eos
    texts = [fill("the clerk sold {secret} chairs", f"{i:02d}") for i in range(30)]
    plain = sequence_nll(model, codec, texts)[0]
    assert np.allclose(shared_prefix_nll(model, codec, texts, 8), plain, atol=1e-4)
    assert codec.decode(codec.encode_batch(["the old map"])[0]) == "the old map"
    assert len(generate(model, codec, ["the clerk"], sample=[True], max_new_tokens=5, seed=0)) == 1


# ----------------------------------------------------------------------------------------------- audit trainer


def auc(scores: np.ndarray, members: np.ndarray) -> float:
    """Probability that a member outscores a non-member (ties half)."""
    diff = scores[members][:, None] - scores[~members][None, :]
    return float((diff > 0).mean() + 0.5 * (diff == 0).mean())


def test_the_canary_trainer_scores_members_higher(base_lm: Path) -> None:
    """Each half of 12 PII canaries in turn is fine-tuned on (~40 passes): members must outscore non-members."""
    canaries = make_pii_canaries(12, seed=3)
    trainer = LMCanaryTrainer(
        base_lm, canaries, synthetic_text(24, 7), synthetic_text(32, 8), RECIPE | {"steps": 80}, "cpu"
    )
    assert trainer.canary_count() == 12
    mask = np.arange(12) % 2 == 0
    for members in (mask, ~mask):
        scores, utility = trainer.finetune_and_score(members, seed=0)
        assert scores.shape == (12,) and np.isfinite(scores).all()
        assert auc(scores, members) >= 0.95
        assert math.isfinite(utility) and utility < 0  # -mean NLL of held-out text
    with pytest.raises(ValueError, match=r"expected shape \(12,\)"):
        trainer.finetune_and_score(np.ones(3, dtype=bool), seed=0)


def test_attach_codec_is_what_finetune_needs(base_lm: Path) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    bare = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=259, n_positions=32))
    with pytest.raises(ValueError, match="carries no codec"):
        finetune_lm(bare, ["text"], {"steps": 1}, seed=0)
    tuned = finetune_lm(attach_codec(bare, ByteCodec()), ["text"], {"steps": 1}, seed=0)
    assert tuned is not bare
