"""The evaluations' one contract (tasks/evaluate/harness.py): fail closed, one digest, one section parser.

Every stage runs its body under ``guarded``: a refusal is ``skipped``, bad data an ``error`` with its
one line, any other exception ``error`` evidence, never a pass. Params come from one parser, and the
strict check of ``params.yaml`` still refuses what the parser would silently keep. No module of the
intake side reaches into another's private names: the harness is what they share.
"""

from __future__ import annotations

import ast
import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from modelgate.evidence import StageEvidence, Status, sha256_bytes
from modelgate.params import ParamsError
from tasks.evaluate.adapters import NotEvaluable
from tasks.evaluate.data import EvalDataError
from tasks.evaluate.harness import (
    NO_EVAL_DATA,
    file_digest,
    guarded,
    image_classifier_info,
    opened_evidence,
    output_dir,
    refuse_unknown,
    require_eval_data,
    section_params,
    stage_device,
)
from tasks.evaluate.privacy.audit import DEFAULT_AUDIT_PARAMS, privacy_audit_stage
from tasks.evaluate.privacy.forensics import forensics_stage
from tasks.evaluate.privacy.inversion import inversion_stage
from tasks.evaluate.privacy.leakage import leakage_stage
from tasks.evaluate.privacy.mia import DEFAULT_MEMBERSHIP_PARAMS, membership_stage
from tasks.evaluate.privacy.stage import SECTIONS
from tasks.evaluate.stage import DEFAULT_PARAMS, adversarial_stage, backdoor_stage, merge_params
from tasks.params import check_evaluate_override, evaluate_schema

REPO = Path(__file__).resolve().parents[1]
FIRST_PARTY = ("tasks", "flows", "modelgate", "tests")


# ----------------------------------------------------------------------------------------------- guarded


def _raise(exc: Exception) -> StageEvidence:
    raise exc


def test_a_refusal_is_skipped_with_its_reason() -> None:
    evidence = guarded("probe", lambda: _raise(NotEvaluable("a text model; this evaluation needs an image classifier")))
    assert evidence.stage == "probe" and evidence.status is Status.SKIPPED
    assert evidence.reason == "a text model; this evaluation needs an image classifier"


def test_bad_evaluation_data_is_an_error_with_its_one_line() -> None:
    evidence = guarded("probe", lambda: _raise(EvalDataError("eval data x.npz: 3 classes, the model has 10")))
    assert evidence.status is Status.ERROR
    assert evidence.reason == "eval data x.npz: 3 classes, the model has 10"
    assert "traceback" not in evidence.details  # a data problem is the user's one line, not a crash


@pytest.mark.parametrize("exc", [RuntimeError("boom"), ValueError("bad k"), KeyError("pgd"), AssertionError()])
def test_any_other_exception_fails_closed_as_error_evidence(exc: Exception) -> None:
    evidence = guarded("probe", lambda: _raise(exc))
    assert evidence.status is Status.ERROR and evidence.status is not Status.PASS
    assert evidence.reason == f"{type(exc).__name__}: {exc}"
    assert type(exc).__name__ in evidence.details["traceback"]
    assert evidence.finished_at is not None and evidence.duration_s is not None


def test_a_body_that_returns_keeps_its_evidence_and_is_timed() -> None:
    made = StageEvidence(stage="probe", status=Status.FAIL, reason="flagged", metrics={"probe.x": 1})
    evidence = guarded("probe", lambda: made)
    assert evidence.status is Status.FAIL and evidence.reason == "flagged" and evidence.metrics == {"probe.x": 1}
    assert evidence.finished_at is not None and evidence.duration_s is not None


STAGES = {
    "backdoor": lambda d: backdoor_stage(d, "sklearn:digits", {}, d / "out"),
    "adversarial": lambda d: adversarial_stage(d, "sklearn:digits", {}, d / "out"),
    "membership": lambda d: membership_stage(d, "sklearn:digits", {}, d / "out"),
    "inversion": lambda d: inversion_stage(d, "sklearn:digits", {}, d / "out"),
    "privacy": lambda d: privacy_audit_stage(d, d, "sklearn:digits", {}, d / "out"),
    "forensics": lambda d: forensics_stage(d, d, {}, d / "out"),
    "leakage": lambda d: leakage_stage(d, "builtin:synthetic-text", {}, d / "out"),
}


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_stage_skips_a_folder_it_cannot_read_instead_of_raising(stage: str, tmp_path: Path) -> None:
    evidence = STAGES[stage](tmp_path)
    assert evidence.stage == stage and evidence.status is Status.SKIPPED
    assert evidence.reason == "config.json: missing"


# ----------------------------------------------------------------------------------------------- the opening


def test_output_dir_is_the_folder_given_else_a_fresh_temporary_one(tmp_path: Path) -> None:
    assert output_dir(tmp_path / "out") == tmp_path / "out"
    assert output_dir(str(tmp_path)) == tmp_path
    first, second = output_dir(None), output_dir("")
    assert first.is_dir() and second.is_dir() and first != second
    assert first.name.startswith("modelgate-eval-") and first != Path.cwd()


def test_file_digest_is_the_sha256_of_the_bytes(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(b'{"architecture": "modelgate-small-cnn"}\n')
    expected = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    assert file_digest(path) == expected == sha256_bytes(path.read_bytes())
    with pytest.raises(FileNotFoundError):
        file_digest(tmp_path / "missing.json")


def test_the_opening_refuses_what_it_cannot_run_on(tmp_path: Path) -> None:
    with pytest.raises(NotEvaluable, match="config.json: missing"):
        image_classifier_info(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}')
    with pytest.raises(NotEvaluable, match="needs an image classifier"):
        image_classifier_info(tmp_path)
    with pytest.raises(NotEvaluable) as caught:
        require_eval_data("")
    assert str(caught.value) == NO_EVAL_DATA == "no evaluation data named in the request"
    with pytest.raises(NotEvaluable, match="no evaluation text"):
        require_eval_data(None, "no evaluation text named in the request")
    assert require_eval_data("sklearn:digits") == "sklearn:digits"


def test_the_device_is_auto_unless_the_params_name_one() -> None:
    assert stage_device({"device": "cpu"}).type == "cpu"
    assert stage_device({}).type in ("cpu", "cuda")
    with pytest.raises(ValueError, match="device: expected one of"):
        stage_device({"device": "tpu"})


def test_opened_evidence_records_inputs_then_the_device() -> None:
    import torch

    evidence = opened_evidence(
        "probe", torch.device("cpu"), {"eval_data": "sha256:aa", "config.json": "sha256:bb"}, {"model": {"m": 1}}
    )
    assert evidence.status is Status.PASS and evidence.reason is None
    assert list(evidence.inputs) == ["eval_data", "config.json"]
    assert evidence.tools == {"torch": torch.__version__, "device": "cpu"}
    assert list(evidence.details) == ["model", "device"] and evidence.details["device"]["device"] == "cpu"


# ----------------------------------------------------------------------------------------------- params


def test_a_partial_nested_section_keeps_the_other_defaults() -> None:
    settings = {"membership": {"reference_models": 4, "shadow": {"epochs": 2}}}
    merged = section_params(settings, "membership", DEFAULT_MEMBERSHIP_PARAMS)
    assert merged["reference_models"] == 4 and merged["shadow"]["epochs"] == 2
    assert merged["shadow"]["lr"] == DEFAULT_MEMBERSHIP_PARAMS["shadow"]["lr"]
    assert merged["bootstrap"] == DEFAULT_MEMBERSHIP_PARAMS["bootstrap"]
    assert DEFAULT_MEMBERSHIP_PARAMS["shadow"]["epochs"] == 30  # the defaults are never written to
    merged["fprs"].append(0.5)
    assert DEFAULT_MEMBERSHIP_PARAMS["fprs"] == [0.01, 0.001]


def test_an_absent_or_empty_section_is_the_defaults() -> None:
    for settings in (None, {}, {"membership": None}, {"membership": {}}, {"membership": {"shadow": None}}):
        assert section_params(settings, "membership", DEFAULT_MEMBERSHIP_PARAMS) == DEFAULT_MEMBERSHIP_PARAMS


def test_the_device_is_inherited_only_where_the_section_has_one() -> None:
    settings = {"device": "cuda", "privacy_audit": {"k": 2}, "forensics": {}, "leakage": {"device": "cpu"}}
    assert section_params(settings, "privacy_audit", DEFAULT_AUDIT_PARAMS)["device"] == "cuda"
    assert section_params(settings, *SECTIONS["leakage"])["device"] == "cpu"  # its own wins
    assert "device" not in section_params(settings, *SECTIONS["forensics"])  # forensics runs on no device
    assert "device" not in section_params(settings, "membership", DEFAULT_MEMBERSHIP_PARAMS)


def test_without_a_name_the_settings_are_the_section() -> None:
    merged = section_params({"pgd": {"steps": 3}, "device": "cpu"}, None, DEFAULT_PARAMS)
    assert merged["pgd"]["steps"] == 3 and merged["pgd"]["restarts"] == DEFAULT_PARAMS["pgd"]["restarts"]
    assert merged["device"] == "cpu" and merged["mmbd"] == DEFAULT_PARAMS["mmbd"]
    assert merge_params({"pgd": {"steps": 3}, "device": "cpu"}) == merged  # the DVC stages' old name
    assert merge_params({"x": 1}, base={"x": 0, "y": {"z": 1}}) == {"x": 1, "y": {"z": 1}}


def test_an_unknown_parameter_is_named() -> None:
    refuse_unknown({"k": 1, "device": "cpu"}, {"k": 4}, "probe", also=("device",))
    with pytest.raises(ValueError, match="^probe: unknown parameter 'finetunes'$"):
        refuse_unknown({"k": 1, "finetunes": 3, "zeta": 1}, {"k": 4}, "probe")


def test_the_strict_check_reads_the_defaults_the_stages_merge_over() -> None:
    schema = evaluate_schema()
    for name, defaults in SECTIONS.values():
        assert schema[name] == dict(defaults), name
    for key, value in DEFAULT_PARAMS.items():
        assert schema[key] == value, key


@pytest.mark.parametrize(
    ("override", "says"),
    [
        ({"membership": {"shadow": {"epochz": 2}}}, "evaluate.membership.shadow.epochz: unknown key"),
        ({"leakage": {"canaries": "8"}}, "evaluate.leakage.canaries: expected a whole number, got '8'"),
        ({"forensics": {"tolerence": 0.1}}, "evaluate.forensics.tolerence: unknown key (did you mean 'tolerance'?)"),
        ({"membership": {"shadow": None}}, "evaluate.membership.shadow: expected a mapping"),
        ({"privacy_audit": {"recipe": {"steps": 1.5}}}, "evaluate.privacy_audit.recipe.steps: expected a whole"),
    ],
)
def test_what_the_parser_would_keep_the_strict_check_refuses(override: dict, says: str) -> None:
    with pytest.raises(ParamsError) as caught:
        check_evaluate_override(override)
    assert says in str(caught.value)


# ----------------------------------------------------------------------------------------------- no private reach


def private_imports(source: str, path: str = "<source>") -> list[tuple[int, str]]:
    """Every first-party import of an underscore name (``from tasks.x import _y``, ``import tasks._x``)."""

    def private(name: str) -> bool:
        return name.startswith("_") and not name.startswith("__")

    found = []
    for node in ast.walk(ast.parse(source, path)):
        if isinstance(node, ast.ImportFrom) and (node.level > 0 or (node.module or "").split(".")[0] in FIRST_PARTY):
            parts = (node.module or "").split(".")
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names if private(a.name)]
            found += [(node.lineno, str(node.module))] if any(private(p) for p in parts) else []
        elif isinstance(node, ast.Import):
            found += [
                (node.lineno, a.name)
                for a in node.names
                if a.name.split(".")[0] in FIRST_PARTY and any(private(p) for p in a.name.split("."))
            ]
    return found


def test_no_module_of_the_intake_side_imports_another_modules_private_name() -> None:
    offenders = [
        f"{path.relative_to(REPO)}:{line}: {name}"
        for root in ("tasks", "flows")
        for path in sorted((REPO / root).rglob("*.py"))
        for line, name in private_imports(path.read_text(), str(path))
    ]
    assert offenders == []


@pytest.mark.parametrize(
    "source",
    [
        "from tasks.evaluate.stage import _guarded\n",
        "from tasks.evaluate.stage import guarded, _out\n",
        "def f():\n    from tasks.evaluate.privacy.mia import _batches  # a lazy import hides nothing\n",
        "import tasks.evaluate._private\n",
        "from . import _helper\n",
    ],
)
def test_the_check_catches_a_private_import(source: str) -> None:
    assert private_imports(source) != []


def test_the_check_leaves_public_and_dunder_names_alone() -> None:
    assert private_imports("from tasks.evaluate.harness import guarded\nfrom modelgate import __version__\n") == []


def test_the_harness_imports_no_prefect_and_no_stage() -> None:
    tree = ast.parse((REPO / "tasks" / "evaluate" / "harness.py").read_text())
    modules = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    modules |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not {m for m in modules if m.startswith(("prefect", "tasks.evaluate.stage", "tasks.evaluate.privacy"))}
    code = "import sys, tasks.evaluate.harness; print(sorted(m for m in sys.modules if m.startswith('prefect')))"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr[-2000:]
