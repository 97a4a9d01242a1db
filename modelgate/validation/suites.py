"""The expectation suites: which table each one checks, and what every row and column must satisfy.

Each builder reads one table from a run's evidence and returns a ``SuitePlan``: the table, the
expectations (as Great Expectations types and arguments, so this module imports no GX), and either
a reason to skip it (the evaluation did not run: never a silent pass) or a reason it is missing
when it should be there (a failure).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelgate.evidence import Status
from modelgate.validation.evidence import RunEvidence

if TYPE_CHECKING:  # pandas comes with the intake extra; imported where a table is built
    import pandas as pd

SHA256_HEX = r"^[0-9a-f]{64}$"
NORMS = ("linf", "l2")
MEMBERSHIP_STAGES = ("membership", "privacy")
MEMBERSHIP_TABLES = ("membership/scores", "privacy/membership_scores", "membership_scores")


@dataclass(frozen=True)
class ValidationParams:
    """Tolerances from ``params.yaml`` (``validation:``)."""

    min_samples_per_class: int = 10
    robust_accuracy_tolerance: float = 0.02

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> ValidationParams:
        values = values or {}
        return cls(
            min_samples_per_class=int(values.get("min_samples_per_class", cls.min_samples_per_class)),
            robust_accuracy_tolerance=float(values.get("robust_accuracy_tolerance", cls.robust_accuracy_tolerance)),
        )


@dataclass(frozen=True)
class Check:
    """One expectation: its GX type (snake case), arguments, and why it matters (shown in Data Docs)."""

    type: str
    kwargs: dict[str, Any]
    description: str


@dataclass
class SuitePlan:
    """A suite ready to run: the table and its checks, or why it is skipped or missing."""

    name: str
    frame: pd.DataFrame | None = None
    source: str | None = None
    checks: list[Check] = field(default_factory=list)
    skip: str | None = None
    problems: list[str] = field(default_factory=list)  # each one a failed expectation of its own


def _not_null(column: str, why: str) -> Check:
    return Check("expect_column_values_to_not_be_null", {"column": column}, why)


def _rows(count: int, why: str) -> Check:
    return Check("expect_table_row_count_to_equal", {"value": int(count)}, why)


def _labels(count: int) -> list[Check]:
    return [
        _rows(count, "one row per class of the model"),
        Check(
            "expect_column_distinct_values_to_equal_set",
            {"column": "label", "value_set": list(range(count))},
            "every class of the model is present, and no other",
        ),
        Check("expect_column_values_to_be_unique", {"column": "label"}, "each class appears once"),
    ]


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# --------------------------------------------------------------------------- manifest


def manifest_suite(run: RunEvidence, params: ValidationParams) -> SuitePlan:
    """Every file has a 64-hex SHA-256 and a size >= 0, paths are unique, the counts match the metrics."""
    import pandas as pd

    plan = SuitePlan("manifest")
    evidence = run.get("manifest")
    files = evidence.details.get("files") if evidence is not None else None
    if evidence is None:
        plan.problems.append("no manifest evidence in this run: every run records its manifest stage")
        return plan
    if not isinstance(files, list):
        if evidence.status is Status.PASS:
            plan.problems.append("the manifest passed but its file table (details.files) is absent")
        else:
            plan.skip = run.why_not("manifest", "manifest")
        return plan
    plan.frame = pd.DataFrame.from_records(
        [row if isinstance(row, Mapping) else {} for row in files], columns=["path", "size", "sha256"]
    )
    plan.source = f"{run.files['manifest']}: details.files"
    count = _int(evidence.metrics.get("manifest.file_count"))
    total = _int(evidence.metrics.get("manifest.total_bytes"))
    if count is None:
        plan.problems.append("manifest.file_count is missing from the manifest metrics")
    else:
        plan.checks.append(_rows(count, "one row per file: the table matches manifest.file_count"))
    plan.checks += [
        _not_null("path", "every file has a path"),
        Check("expect_column_values_to_be_unique", {"column": "path"}, "no path is listed twice"),
        _not_null("sha256", "every file has a digest"),
        Check("expect_column_values_to_match_regex", {"column": "sha256", "regex": SHA256_HEX}, "SHA-256, 64 hex"),
        _not_null("size", "every file has a size"),
        Check("expect_column_values_to_be_between", {"column": "size", "min_value": 0}, "sizes are >= 0"),
    ]
    if total is None:
        plan.problems.append("manifest.total_bytes is missing from the manifest metrics")
    else:
        plan.checks.append(
            Check(
                "expect_column_sum_to_be_between",
                {"column": "size", "min_value": total, "max_value": total},
                "the sizes add up to manifest.total_bytes",
            )
        )
    return plan


# --------------------------------------------------------------------------- Neural Cleanse norms


def _model(run: RunEvidence, stage: str) -> Mapping[str, Any]:
    evidence = run.get(stage)
    model = evidence.details.get("model") if evidence is not None else None
    return model if isinstance(model, Mapping) else {}


def _classes(run: RunEvidence, stage: str) -> int | None:
    evidence = run.get(stage)
    if evidence is None:
        return None
    data = evidence.details.get("eval_data")
    fallback = data.get("classes") if isinstance(data, Mapping) else None
    return _int(_model(run, stage).get("num_classes")) or _int(fallback)


def _table(run: RunEvidence, relative: str) -> tuple[pd.DataFrame | None, str | None]:
    """An artifact table of the run (``.csv`` or ``.parquet``), if it is inside the evidence folder."""
    import pandas as pd

    for suffix in (".csv", ".parquet"):
        path = run.folder / f"{relative}{suffix}"
        if path.is_file():
            frame = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
            return frame, str(path.relative_to(run.folder))
    return None, None


def norms_suite(run: RunEvidence, params: ValidationParams) -> SuitePlan:
    """Neural Cleanse: one finite, positive trigger norm per class, no class missing."""
    import pandas as pd

    plan = SuitePlan("backdoor_norms")
    if not run.ran("backdoor"):
        plan.skip = run.why_not("backdoor", "backdoor evaluation")
        return plan
    evidence = run.get("backdoor")
    assert evidence is not None
    plan.frame, plan.source = _table(run, "backdoor/norms")
    if plan.frame is None:
        rows = evidence.details.get("neural_cleanse", {}).get("norms")
        if not isinstance(rows, list):
            plan.problems.append("the backdoor evaluation ran but left no norms table (backdoor/norms.csv)")
            return plan
        plan.frame = pd.DataFrame.from_records(rows)
        plan.source = f"{run.files['backdoor']}: details.neural_cleanse.norms"
    for column in ("label", "l1_norm"):
        if column not in plan.frame.columns:
            plan.frame[column] = math.nan
    classes = _classes(run, "backdoor")
    if classes is None:
        plan.problems.append("the number of classes is not recorded in the backdoor evidence")
    else:
        plan.checks += _labels(classes)
    shape = _model(run, "backdoor").get("input_shape")
    # A trigger mask lies in [0, 1] per pixel, so its L1 norm is at most the pixel count: finite by construction.
    sides = shape[-2:] if isinstance(shape, list) else []
    bound = float(sides[0] * sides[1]) if len(sides) == 2 and all(isinstance(v, int) for v in sides) else 1e300
    plan.checks += [
        _not_null("l1_norm", "every class has a trigger norm (no NaN)"),
        Check(
            "expect_column_values_to_be_between",
            {"column": "l1_norm", "min_value": 0, "max_value": bound, "strict_min": True},
            "norms are > 0 and finite (at most the mask's pixel count)",
        ),
    ]
    return plan


# --------------------------------------------------------------------------- PGD robust accuracy


def _robustness_from_details(run: RunEvidence) -> pd.DataFrame | None:
    import pandas as pd

    evidence = run.get("adversarial")
    attacks = evidence.details.get("pgd", {}).get("attacks") if evidence is not None else None
    clean = evidence.metrics.get("adversarial.clean_accuracy") if evidence is not None else None
    if not isinstance(attacks, list):
        return None
    rows = [{"eps": 0.0, "norm": norm, "robust_accuracy": clean} for norm in sorted({a.get("norm") for a in attacks})]
    rows += [{"eps": a.get("eps"), "norm": a.get("norm"), "robust_accuracy": a.get("robust_accuracy")} for a in attacks]
    return pd.DataFrame.from_records(rows, columns=["eps", "norm", "robust_accuracy"])


def _expected_points(run: RunEvidence) -> int | None:
    """Attacks recorded in the evidence plus one eps=0 (clean) point per norm: the CSV's row count."""
    evidence = run.get("adversarial")
    attacks = evidence.details.get("pgd", {}).get("attacks") if evidence is not None else None
    if not isinstance(attacks, list):
        return None
    return len(attacks) + len({a.get("norm") for a in attacks if isinstance(a, Mapping)})


def with_increase(frame: pd.DataFrame) -> pd.DataFrame:
    """Add ``accuracy_increase``: robust accuracy minus that of the next smaller eps of the same norm."""
    import pandas as pd

    out = frame.copy()
    for column in ("eps", "norm", "robust_accuracy"):
        if column not in out.columns:
            out[column] = math.nan
    out["eps"] = pd.to_numeric(out["eps"], errors="coerce")
    out["robust_accuracy"] = pd.to_numeric(out["robust_accuracy"], errors="coerce")
    out = out.sort_values(["norm", "eps"], kind="stable").reset_index(drop=True)
    previous = out.groupby("norm", sort=False)["robust_accuracy"].shift(1)
    out["accuracy_increase"] = (out["robust_accuracy"] - previous).where(previous.notna(), 0.0)
    return out


def robustness_suite(run: RunEvidence, params: ValidationParams) -> SuitePlan:
    """PGD: robust accuracy per (norm, eps) in [0, 1], no NaN, non-increasing in eps within tolerance."""
    plan = SuitePlan("robust_accuracy")
    if not run.ran("adversarial"):
        plan.skip = run.why_not("adversarial", "adversarial evaluation")
        return plan
    frame, plan.source = _table(run, "adversarial/robustness")
    if frame is None:
        frame = _robustness_from_details(run)
        plan.source = f"{run.files['adversarial']}: details.pgd.attacks"
    if frame is None:
        plan.problems.append("the adversarial evaluation ran but left no robustness table (adversarial/robustness.csv)")
        return plan
    plan.frame = with_increase(frame)
    expected = _expected_points(run)
    if expected is not None:
        plan.checks.append(_rows(expected, "one row per attack recorded in the evidence, plus eps=0 per norm"))
    tolerance = params.robust_accuracy_tolerance
    plan.checks += [
        _not_null("robust_accuracy", "every (norm, eps) point has a robust accuracy (no NaN)"),
        Check(
            "expect_column_values_to_be_between",
            {"column": "robust_accuracy", "min_value": 0, "max_value": 1},
            "accuracies are in [0, 1]",
        ),
        _not_null("eps", "every point has an epsilon"),
        Check("expect_column_values_to_be_between", {"column": "eps", "min_value": 0}, "epsilons are >= 0"),
        Check("expect_column_values_to_be_in_set", {"column": "norm", "value_set": list(NORMS)}, "known norms"),
        Check(
            "expect_column_values_to_be_between",
            {"column": "accuracy_increase", "max_value": tolerance},
            f"robust accuracy does not grow with eps (tolerance {tolerance:g})",
        ),
    ]
    return plan


# --------------------------------------------------------------------------- membership scores


def membership_suite(run: RunEvidence, params: ValidationParams) -> SuitePlan:
    """Membership inference scores: no NaN, and both members and non-members are scored."""
    plan = SuitePlan("membership_scores")
    for relative in MEMBERSHIP_TABLES:
        plan.frame, plan.source = _table(run, relative)
        if plan.frame is not None:
            break
    if plan.frame is None:
        ran = [stage for stage in MEMBERSHIP_STAGES if run.ran(stage)]
        plan.skip = (
            f"{ran[0]} ran but left no membership scores table (membership/scores.csv or .parquet)"
            if ran
            else "no membership scores in this run (membership inference not run)"
        )
        return plan
    if "score" not in plan.frame.columns:  # the membership stage writes one column per attack
        for attack in ("lira", "loss"):
            if attack in plan.frame.columns:
                plan.frame["score"] = plan.frame[attack]
                break
    for column in ("score", "member"):
        if column not in plan.frame.columns:
            plan.frame[column] = math.nan
    if plan.frame["member"].dtype == bool:
        plan.frame["member"] = plan.frame["member"].astype(int)
    plan.checks = [
        _not_null("score", "every sample has a score (no NaN)"),
        _not_null("member", "every sample is labelled member or non-member"),
        Check(
            "expect_column_distinct_values_to_equal_set",
            {"column": "member", "value_set": [0, 1]},
            "both members (1) and non-members (0) are scored",
        ),
    ]
    return plan


# --------------------------------------------------------------------------- evaluation data


def eval_data_suite(run: RunEvidence, params: ValidationParams) -> SuitePlan:
    """The evaluation data covers every class of the model with at least the minimum samples."""
    import pandas as pd

    plan = SuitePlan("eval_data")
    stage = next((s for s in ("backdoor", "adversarial") if run.ran(s)), None)
    summary = run.stages[stage].details.get("eval_data") if stage else None
    if stage is None or not isinstance(summary, Mapping):
        if stage is None:
            plan.skip = "no evaluation data summary: " + "; ".join(
                run.why_not(s, f"{s} evaluation") for s in ("backdoor", "adversarial")
            )
        else:
            plan.problems.append(f"the {stage} evaluation ran but recorded no evaluation data summary")
        return plan
    counts = summary.get("per_class")
    per_class: Mapping[str, Any] = counts if isinstance(counts, Mapping) else {}
    names = [str(n) for n in _model(run, stage).get("label_names") or []]
    rows = [
        {"label": names.index(str(name)) if str(name) in names else i, "name": str(name), "count": count}
        for i, (name, count) in enumerate(per_class.items())
    ]
    plan.frame = pd.DataFrame.from_records(rows, columns=["label", "name", "count"])
    plan.source = f"{run.files[stage]}: details.eval_data"
    classes = _classes(run, stage)
    if classes is None:
        plan.problems.append("the number of classes is not recorded in the evaluation evidence")
    else:
        plan.checks += _labels(classes)
    minimum = params.min_samples_per_class
    plan.checks += [
        _not_null("count", "every class has a sample count"),
        Check(
            "expect_column_values_to_be_between",
            {"column": "count", "min_value": minimum},
            f"at least {minimum} samples per class",
        ),
    ]
    samples = _int(summary.get("samples"))
    if samples is not None:
        plan.checks.append(
            Check(
                "expect_column_sum_to_be_between",
                {"column": "count", "min_value": samples, "max_value": samples},
                "the per-class counts add up to the sample count",
            )
        )
    return plan


BUILDERS: tuple[Callable[[RunEvidence, ValidationParams], SuitePlan], ...] = (
    manifest_suite,
    norms_suite,
    robustness_suite,
    membership_suite,
    eval_data_suite,
)


def plan_suites(run: RunEvidence, params: ValidationParams) -> list[SuitePlan]:
    """Every suite for this run, in a fixed order."""
    return [build(run, params) for build in BUILDERS]
