"""The privacy-backdoor benchmark set: our attack variants and honest fine-tunes, through the real audit.

For each trusted reference (the test zoo's wide digits CNN, one per seed) it builds:

* attacks (tests/helpers/privacy_attacks.py and privacy_zoo.py): a trap per target with the
  targets' loss raised, aimed at one class (two classes), at 20 random records (two draws), each
  of those also norm-preserving (but class 3), and the zoo's all-data candidate (dormant units +
  loss anomaly, aimed at every evaluation record);
* honest models: an independently trained model, two head-only fine-tunes and a full fine-tune
  of the reference on its own training data.

Every attack is first checked on a simulated victim (head-only fine-tune on half its targets, a
plain LOSS attack; the figure is the candidate's AUC minus the reference's). Then the audit runs
with the default parameters (params.yaml's privacy_audit section) and the row says whether it
flagged, by which mechanism, and in how long. The goal: every attack that really exposes its
victim flagged, no honest model flagged.

    python bench/bench_privacy_backdoors.py [--references 2] [--threads 2] [--quick]
    python bench/bench_privacy_backdoors.py --scaling 50 100 200 400 1000   # time against the canary count
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.records import append_record  # noqa: E402
from tasks.evaluate.privacy.audit import privacy_audit_stage  # noqa: E402
from tasks.evaluate.privacy.forensics import forensics_stage  # noqa: E402
from tests.helpers import privacy_attacks as attacks  # noqa: E402
from tests.helpers import privacy_zoo as zoo  # noqa: E402

OUT = ROOT / "bench" / "out" / "privacy_backdoors.jsonl"


def honest_full_finetune(reference: Path, folder: Path, seed: int = 5) -> Path:
    """An ordinary fine-tune of every layer on the reference's own training split (one epoch, small lr)."""
    from modelgate.demo.build import _reproducible
    from modelgate.demo.cnn import load_model, read_config

    model = load_model(reference)
    with _reproducible(seed):
        zoo._fit(model, 1, seed, lr=1e-4)
    return zoo._save(model, read_config(reference), folder)


def mechanism(reason: str | None) -> str:
    """Which test flagged, from the reason's first clause (pooled, a class, records); more after a '+'."""
    if not reason:
        return "-"
    first = "pooled" if reason.startswith("privacy backdoor:") else ""
    if reason.startswith("privacy backdoor:") and "calibrated (LiRA-style)" in reason.split(";")[0]:
        first = "calibrated"
    if reason.startswith("privacy backdoor concentrated on "):
        first = "class " + reason.removeprefix("privacy backdoor concentrated on ").split(" ", 1)[0]
    if reason.startswith("privacy backdoor aimed at a few records"):
        return "records"
    return f"{first} + records" if "one by one" in reason else first


def models_for(reference: Path, root: Path, quick: bool) -> list[tuple[str, str, Path, Any]]:
    """(name, kind, folder, target mask or None) for every attack and honest model of one reference."""
    x, y = attacks.eval_images(reference)
    built: list[tuple[str, str, Path, Any]] = []

    def attack(name: str, mask: Any, **options: Any) -> None:
        chosen = torch.from_numpy(mask)
        folder = attacks.privacy_backdoor(reference, root / name, x[chosen], y[chosen], **options)
        built.append((name, "attack", folder, mask))

    attack("class-3", attacks.target_mask(y, "class", target_class=3))
    attack("records-0", attacks.target_mask(y, "records", seed=0))
    attack("records-0-norm-preserving", attacks.target_mask(y, "records", seed=0), norm_preserving=True)
    if not quick:
        attack("class-7", attacks.target_mask(y, "class", target_class=7))
        attack("class-7-norm-preserving", attacks.target_mask(y, "class", target_class=7), norm_preserving=True)
        attack("records-1", attacks.target_mask(y, "records", seed=1))
        attack("records-1-norm-preserving", attacks.target_mask(y, "records", seed=1), norm_preserving=True)
        poisoned = zoo.poisoned_candidate(reference, root / "all-data")
        built.append(("all-data (zoo)", "attack", poisoned, np.ones(len(y), dtype=bool)))
    honest: list[tuple[str, Callable[[], Path]]] = [
        ("independent", lambda: zoo.train_reference(root / "independent", seed=101)),
        ("head-tuned-1", lambda: zoo.head_tuned(reference, root / "head-tuned-1", epochs=1, seed=3)),
    ]
    if not quick:
        honest += [
            ("head-tuned-3", lambda: zoo.head_tuned(reference, root / "head-tuned-3", epochs=3, seed=4)),
            ("full-fine-tune", lambda: honest_full_finetune(reference, root / "full-fine-tune")),
        ]
    built += [(name, "honest", make(), None) for name, make in honest]
    return built


def run(references: int, quick: bool) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="modelgate-bench-privacy-") as tmp:
        for seed in range(references):
            root = Path(tmp) / f"ref-{seed}"
            reference = zoo.train_reference(root / "reference", seed=seed)
            for name, kind, folder, mask in models_for(reference, root, quick):
                victim = None if mask is None else attacks.victim_amplification(folder, reference, mask, head_only=True)
                start = time.perf_counter()
                evidence = privacy_audit_stage(folder, reference, "sklearn:digits")
                seconds = time.perf_counter() - start
                forensics = forensics_stage(folder, reference)
                m = evidence.metrics
                rows.append(
                    {
                        "reference": seed,
                        "model": name,
                        "kind": kind,
                        "victim_tpr": round(victim.candidate_tpr, 3) if victim else None,
                        "victim_reference_tpr": round(victim.reference_tpr, 3) if victim else None,
                        "victim_auc_gain": round(victim.candidate_auc - victim.reference_auc, 3) if victim else None,
                        "status": str(evidence.status),
                        "flagged": bool(m.get("privacy.flagged")),
                        "mechanism": mechanism(evidence.reason),
                        "variant": evidence.details.get("variant"),
                        "pooled_ci_low": m.get("privacy.amplification_ci_low"),
                        "worst_class_auc_ci_low": m.get("privacy.worst_stratum_auc_ci_low"),
                        "outlier_records": m.get("privacy.outlier_records"),
                        "calibrated_ci_low": m.get("privacy.calibrated_amplification_ci_low"),
                        "calibrated_auc_ci_low": m.get("privacy.calibrated_auc_ci_low"),
                        "forensics_flagged": bool(forensics.metrics.get("forensics.flagged")),
                        "forensics_outlier_units": forensics.metrics.get("forensics.outlier_units"),
                        "forensics_rewritten_units": forensics.metrics.get("forensics.rewritten_units"),
                        "rejected": bool(m.get("privacy.flagged")) or bool(forensics.metrics.get("forensics.flagged")),
                        "seconds": round(seconds, 2),
                    }
                )
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def scaling(counts: list[int]) -> list[dict[str, Any]]:
    """The default audit's time and verdict against the canary count, on one attack and one honest model.

    The reference's runs are forgotten before each count, so every row pays for both models' fine-tunes
    (the first audit of a reference); ``steps`` stays the default, as an organization's recipe would.
    """
    from tasks.evaluate.privacy import audit

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="modelgate-bench-privacy-scaling-") as tmp:
        root = Path(tmp)
        reference = zoo.train_reference(root / "reference", seed=0)
        x, y = attacks.eval_images(reference)
        chosen = torch.from_numpy(attacks.target_mask(y, "class", target_class=3))
        models = {
            "class-3 (attack)": attacks.privacy_backdoor(reference, root / "class-3", x[chosen], y[chosen]),
            "head-tuned-1 (honest)": zoo.head_tuned(reference, root / "head-tuned-1", epochs=1, seed=3),
        }
        for count in counts:
            for name, folder in models.items():
                audit._REFERENCE_RUNS.clear()
                start = time.perf_counter()
                evidence = privacy_audit_stage(folder, reference, "sklearn:digits", {"canaries": count})
                m = evidence.metrics
                rows.append(
                    {
                        "canaries_asked": count,
                        "canaries": m.get("privacy.canaries"),
                        "model": name,
                        "variants": m.get("privacy.variants"),
                        "flagged": bool(m.get("privacy.flagged")),
                        "by": mechanism(evidence.reason),
                        "seconds": round(time.perf_counter() - start, 2),
                    }
                )
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def scaling_table(rows: list[dict[str, Any]]) -> str:
    head = "| canaries (asked) | model | variants | flagged | by | audit s (both models fine-tuned) |"
    lines = [head, "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['canaries']} ({r['canaries_asked']}) | {r['model']} | {r['variants']} "
            f"| {'**yes**' if r['flagged'] else 'no'} | {r['by']} | {r['seconds']} |"
        )
    return "\n".join(lines)


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| ref | model | kind | victim TPR@1% (ref) | victim AUC gain | audit flags | by | pooled CI low "
        "| worst class AUC CI low | outlier records | forensics flags (units, rewritten) | rejected | audit s |"
    )
    lines = [head, "|" + "---|" * 13]
    for r in rows:
        victim = f"{r['victim_tpr']} ({r['victim_reference_tpr']})" if r["victim_tpr"] is not None else "-"
        lines.append(
            f"| {r['reference']} | {r['model']} | {r['kind']} | {victim} | {r['victim_auc_gain'] or '-'} "
            f"| {'**yes**' if r['flagged'] else 'no'} | {r['mechanism']} | {r['pooled_ci_low']} "
            f"| {r['worst_class_auc_ci_low']} | {r['outlier_records']} "
            f"| {'yes' if r['forensics_flagged'] else 'no'} ({r['forensics_outlier_units']}, "
            f"{r['forensics_rewritten_units']}) "
            f"| {'**yes**' if r['rejected'] else 'no'} | {r['seconds']} |"
        )
    attacks_rows = [r for r in rows if r["kind"] == "attack"]
    honest_rows = [r for r in rows if r["kind"] == "honest"]
    lines += [
        "",
        f"attacks flagged by the audit: {sum(r['flagged'] for r in attacks_rows)}/{len(attacks_rows)}, "
        f"rejected (audit or forensics): {sum(r['rejected'] for r in attacks_rows)}/{len(attacks_rows)}; "
        f"honest flagged by the audit: {sum(r['flagged'] for r in honest_rows)}/{len(honest_rows)}, "
        f"rejected: {sum(r['rejected'] for r in honest_rows)}/{len(honest_rows)}; "
        f"median seconds per audit: {sorted(r['seconds'] for r in rows)[len(rows) // 2]}",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--references", type=int, default=2, help="trusted references (seeds 0..N-1)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="three attacks and two honest models per reference")
    parser.add_argument(
        "--scaling", metavar="N", type=int, nargs="+", help="instead: time the audit at these canary counts"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.scaling:
        rows = scaling(args.scaling)
        print(scaling_table(rows))
    else:
        rows = run(args.references, args.quick)
        print(table(rows))
    append_record(OUT, "privacy_backdoors_scaling" if args.scaling else "privacy_backdoors", rows)


if __name__ == "__main__":
    main()
