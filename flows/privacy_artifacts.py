"""The privacy evaluations in the Prefect UI: ROC curves, the amplification with its interval, inversions.

Keys are per model (``membership-<model>``, ``privacy-audit-<model>``, ``forensics-<model>``,
``inversion-<model>``, ``leakage-<model>``), so the Artifacts page shows each model's history.
Images are inlined as PNG data URIs (the UI needs no file server). Nothing here decides: the
evidence is already complete; these pages are what a reviewer reads.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from modelgate.evidence import StageEvidence, Status
from tasks.evaluate.privacy.forensics import forensics_rows
from tasks.evaluate.privacy.inversion import inversion_markdown

RAN = (Status.PASS, Status.FAIL)
nan = float("nan")


def publish_privacy_artifacts(results: Mapping[str, StageEvidence], key: str, name: str) -> None:
    """One page or table per privacy evaluation that ran."""
    membership = results.get("membership")
    if membership is not None and membership.status in RAN:
        create_markdown_artifact(
            membership_markdown(membership, name), key=f"membership-{key}", description="Membership inference ROC"
        )
    audit = results.get("privacy")
    if audit is not None and audit.status in RAN:
        create_markdown_artifact(
            audit_markdown(audit, name), key=f"privacy-audit-{key}", description="Privacy-backdoor audit"
        )
    forensics = results.get("forensics")
    if forensics is not None and forensics.status in RAN:
        create_table_artifact(forensics_rows(forensics), key=f"forensics-{key}", description="Weight forensics")
    inversion = results.get("inversion")
    if inversion is not None and inversion.status in RAN:
        create_markdown_artifact(
            inversion_markdown(inversion, name), key=f"inversion-{key}", description="Model inversion (one per class)"
        )
    leakage = results.get("leakage")
    if leakage is not None and leakage.status in RAN:
        create_table_artifact(leakage_rows(leakage), key=f"leakage-{key}", description="Language-model leakage")


def _image(path: str | None, alt: str) -> str:
    if not path or not Path(path).is_file():
        return ""
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f"![{alt}](data:image/png;base64,{data})"


def _interval(figure: Mapping[str, Any]) -> str:
    return f"{figure['value']:.3f} [{figure['ci_low']:.3f}, {figure['ci_high']:.3f}]"


def membership_markdown(evidence: StageEvidence, name: str) -> str:
    """Both attacks' AUC and TPR at low FPR with their 95% intervals, and the ROC (log FPR axis)."""
    details, metrics = evidence.details, evidence.metrics
    lines = [
        f"# Membership inference: {name}",
        "",
        f"{metrics.get('membership.members')} known members vs {metrics.get('membership.non_members')} non-members; "
        f"train accuracy {metrics.get('membership.train_accuracy', float('nan')):.3f}, "
        f"test accuracy {metrics.get('membership.test_accuracy', float('nan')):.3f}; "
        f"LiRA with {metrics.get('membership.reference_models')} reference models trained on non-members.",
        "",
        "| attack | AUC [95% CI] | TPR @ 1% FPR | TPR @ 0.1% FPR |",
        "|---|---|---|---|",
    ]
    for attack in ("loss", "lira"):
        figures = details.get(attack)
        if not figures:
            continue
        tpr = figures["tpr_at_fpr"]
        lines.append(
            f"| {attack.upper() if attack == 'lira' else 'LOSS'} | {_interval(figures['auc'])} "
            f"| {_interval(tpr['1pct'])} | {_interval(tpr['0_1pct']) if '0_1pct' in tpr else '-'} |"
        )
    lines += ["", _image(details.get("artifacts", {}).get("roc_png"), "ROC"), ""]
    return "\n".join(lines) + "\n"


def audit_markdown(evidence: StageEvidence, name: str) -> str:
    """The amplification with its interval first (the verdict), then both models' figures and utility."""
    m = evidence.metrics
    flagged = bool(m.get("privacy.flagged"))
    verdict = "**privacy backdoor suspected**" if flagged else "no amplified leakage found"
    lines = [
        f"# Privacy-backdoor audit: {name}",
        "",
        f"Verdict: {verdict}. TPR @ 1% FPR amplification (candidate - reference): "
        f"**{m.get('privacy.amplification_tpr_at_1pct_fpr', float('nan')):+.3f}** "
        f"[{m.get('privacy.amplification_ci_low', float('nan')):+.3f}, "
        f"{m.get('privacy.amplification_ci_high', float('nan')):+.3f}] ({_level(evidence)} paired bootstrap, "
        f"{evidence.details.get('variant', 'one variant')}), over "
        f"{m.get('privacy.canaries')} canaries x {m.get('privacy.finetunes')} fine-tunes of each model; "
        f"{m.get('privacy.variants', 1)} variant(s) run, {m.get('privacy.variants_flagged', 0)} flagged.",
        "",
        "| model | TPR @ 1% FPR | AUC | utility after fine-tuning |",
        "|---|---|---|---|",
    ]
    for model in ("candidate", "reference"):
        tpr, auc = m.get(f"privacy.{model}_tpr_at_1pct_fpr", nan), m.get(f"privacy.{model}_auc", nan)
        lines.append(f"| {model} | {tpr:.3f} | {auc:.3f} | {m.get(f'privacy.{model}_utility', nan):.3f} |")
    if "privacy.calibrated_amplification" in m:
        lines += [
            "",
            f"Calibrated (LiRA-style) attack: TPR @ 1% FPR candidate "
            f"{m.get('privacy.calibrated_candidate_tpr_at_1pct_fpr', nan):.3f}, reference "
            f"{m.get('privacy.calibrated_reference_tpr_at_1pct_fpr', nan):.3f}, amplification "
            f"{m.get('privacy.calibrated_amplification', nan):+.3f} (lower bound over the variants "
            f"{m.get('privacy.calibrated_amplification_ci_low', nan):+.3f}; AUC "
            f"{m.get('privacy.calibrated_auc_ci_low', nan):+.3f}).",
        ]
    if evidence.reason:
        lines += ["", f"Reason: {evidence.reason}"]
    artifacts = evidence.details.get("artifacts", {}) if isinstance(evidence.details.get("artifacts"), dict) else {}
    image = _image(artifacts.get("roc_png"), "ROC candidate vs reference")
    if image:
        lines += ["", image]
    lines += _roc_table(evidence.details)
    lines += _strata_table(evidence.details)
    return "\n".join(lines) + "\n"


def _level(evidence: StageEvidence) -> str:
    """The interval's level as run (Bonferroni-corrected over the audit's variants and statistics)."""
    candidate = evidence.details.get("candidate")
    level = candidate.get("confidence") if isinstance(candidate, Mapping) else None
    return f"{float(level):.1%}" if isinstance(level, int | float) else "95%"


def _strata_table(details: Mapping[str, Any]) -> list[str]:
    """The amplification per stratum (class) with its corrected interval, the flagged ones marked."""
    strata = details.get("strata")
    if not isinstance(strata, Mapping) or not strata.get("rows"):
        return []
    level = float(strata.get("confidence") or 0.0)
    lines = [
        "",
        f"Per stratum ({strata.get('kind')}; {strata.get('correction')}, each interval at {level:.1%}; "
        f"strata under {strata.get('min_canaries')} canaries are reported, not tested):",
        "",
        "| stratum | canaries | TPR @ 1% FPR candidate | reference | amplification [CI] | flagged |",
        "|---|---|---|---|---|---|",
    ]
    for row in strata["rows"]:
        if row.get("tested"):
            amp = f"{row['amplification']:+.3f} [{row['ci_low']:+.3f}, {row['ci_high']:+.3f}]"
        else:
            amp = "not tested"
        lines.append(
            f"| {row['stratum']} | {row['canaries']} | {row['candidate_tpr_at_1pct_fpr']:.3f} "
            f"| {row['reference_tpr_at_1pct_fpr']:.3f} | {amp} | {'**yes**' if row.get('flagged') else 'no'} |"
        )
    return lines


def _roc_table(details: Mapping[str, Any]) -> list[str]:
    """Low-FPR points of both ROC curves, when the evidence carries them."""
    curves: dict[str, list[dict[str, float]]] = {
        model: (details.get(model) or {}).get("roc") or [] for model in ("candidate", "reference")
    }
    if not all(curves.values()):
        return []
    lines = ["", "| FPR | TPR candidate | TPR reference |", "|---|---|---|"]
    for target in (0.001, 0.01, 0.1, 0.5):
        row = [target]
        for model in ("candidate", "reference"):
            points = [p["tpr"] for p in curves[model] if p["fpr"] <= target + 1e-12]
            row.append(max(points) if points else 0.0)
        lines.append(f"| {row[0]:g} | {row[1]:.3f} | {row[2]:.3f} |")
    return lines


def leakage_rows(evidence: StageEvidence) -> list[dict[str, Any]]:
    """Exposure and PII-probe figures as rows (metric, value): no secret ever reaches them."""
    return [{"metric": key, "value": value} for key, value in sorted(evidence.metrics.items())]
