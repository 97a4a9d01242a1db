"""The scan report models are plain dataclasses (``modelgate scan`` starts without pydantic), and dump as before.

The JSON they produce lands in evidence (scan.json), SARIF and ``modelgate scan --json``: its keys, order
and values are pinned here to what the former pydantic models wrote.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

from modelgate.scan.driver import scan_path
from modelgate.scan.findings import Category, FileReport, Finding, ScanReport, Severity
from tasks.scan import rebase

REPO = Path(__file__).resolve().parents[1]


def _report() -> ScanReport:
    finding = Finding(
        rule_id="pickle.dangerous-global",
        category=Category.DANGEROUS,
        severity=Severity.CRITICAL,
        message="imports os.system",
        file="m.pkl",
        member="archive/data.pkl",
        offset=12,
        global_name="os.system",
    )
    note = Finding(rule_id="x.note", category=Category.INFO, severity=Severity.INFO, message="fyi", file="m.pkl")
    files = [
        FileReport(
            path="m.pkl",
            format="pytorch-zip",
            size=50,
            sha256="sha256:00",
            findings=[finding, note],
            globals=["os.system"],
            members={"archive/data.pkl": "pickle"},
        ),
        FileReport(path="c.json", format="json", size=2),
    ]
    return ScanReport(root="/models/m", files=files, scanner_version="modelgate-scan test", duration_s=0.25)


# Byte for byte what pydantic's ``model_dump(mode="json")`` of the same report gave, through json.dumps.
EXPECTED_JSON = (
    '{"root": "/models/m", "files": [{"path": "m.pkl", "format": "pytorch-zip", "size": 50, "sha256": "sha256:00", '
    '"findings": [{"rule_id": "pickle.dangerous-global", "category": "dangerous", "severity": "critical", '
    '"message": "imports os.system", "file": "m.pkl", "member": "archive/data.pkl", "offset": 12, '
    '"global_name": "os.system"}, {"rule_id": "x.note", "category": "info", "severity": "info", "message": "fyi", '
    '"file": "m.pkl", "member": null, "offset": null, "global_name": null}], "globals": ["os.system"], '
    '"members": {"archive/data.pkl": "pickle"}}, {"path": "c.json", "format": "json", "size": 2, "sha256": null, '
    '"findings": [], "globals": [], "members": {}}], "scanner_version": "modelgate-scan test", "duration_s": 0.25}'
)


def test_json_dump_keeps_pydantic_keys_order_and_values() -> None:
    dumped = _report().model_dump(mode="json")
    assert json.dumps(dumped) == EXPECTED_JSON
    assert type(dumped["files"][0]["findings"][0]["category"]) is str  # a plain string, not the enum


def test_python_dump_keeps_enums_and_copies_containers() -> None:
    report = _report()
    dumped = report.model_dump()
    assert dumped["files"][0]["findings"][0]["category"] is Category.DANGEROUS
    dumped["files"][0]["globals"].append("changed")
    assert report.files[0].globals == ["os.system"]
    assert report.files[0].findings[1].model_dump() == {
        "rule_id": "x.note",
        "category": Category.INFO,
        "severity": Severity.INFO,
        "message": "fyi",
        "file": "m.pkl",
        "member": None,
        "offset": None,
        "global_name": None,
    }


def test_verdict_counts_and_string_categories() -> None:
    report = _report()
    assert report.verdict == "unsafe" and report.files[0].verdict == "unsafe" and report.files[1].verdict == "safe"
    assert report.counts()["scan.dangerous_count"] == 1 and report.counts()["scan.info_count"] == 1
    assert report.counts()["scan.unrecognized_count"] == 0
    # pydantic turned strings into the enums; the dataclass does too, so BLOCKING and counts() still see them
    coerced = Finding(rule_id="r", category="unknown", severity="high", message="m", file="f")  # type: ignore[arg-type]
    assert coerced.category is Category.UNKNOWN and coerced.severity is Severity.HIGH
    assert FileReport(path="f", format="pickle", size=1, findings=[coerced]).verdict == "unsafe"
    empty = ScanReport(root="/", files=[], scanner_version="v", duration_s=0)
    assert json.dumps(empty.model_dump(mode="json")).endswith('"duration_s": 0.0}')


def test_report_does_not_alias_the_lists_it_was_built_from() -> None:
    findings: list[Finding] = []
    report = FileReport(path="f", format="pickle", size=1, findings=findings)
    findings.append(Finding(rule_id="r", category=Category.CODE, severity=Severity.HIGH, message="m", file="f"))
    assert report.findings == [] and report.verdict == "safe"


def test_model_copy_update_and_deep() -> None:
    report = _report()
    moved = report.model_copy(update={"root": "/elsewhere"})
    assert moved.root == "/elsewhere" and report.root == "/models/m" and moved.files is report.files
    deep = report.model_copy(deep=True)
    assert deep == report and deep.files[0] is not report.files[0]
    deep.files[0].findings.clear()
    assert report.verdict == "unsafe"


def test_rebase_names_the_new_folder_and_leaves_the_cached_report_alone(tmp_path: Path) -> None:
    (tmp_path / "m.pkl").write_bytes(pickle.dumps({"w": [1.0]}, protocol=4))
    from modelgate.scan.stage import scan_stage

    evidence, report = scan_stage(tmp_path)
    new_evidence, new_report = rebase(evidence, report, tmp_path / "other")
    assert new_report.root == str(tmp_path / "other") and report.root == str(tmp_path)
    assert new_evidence.details["reused_scan_of"] == str(tmp_path) and "reused_scan_of" not in evidence.details
    assert new_report.files == report.files and new_report.verdict == "safe"


def test_pickle_round_trip_for_prefect_results() -> None:
    """Prefect persists the scan task's result with its pickle serializer."""
    report = _report()
    again = pickle.loads(pickle.dumps(report))
    assert again == report and again.verdict == "unsafe" and again.files[0].findings[0].category is Category.DANGEROUS


def test_one_and_many_workers_give_the_same_report(tmp_path: Path) -> None:
    for i in range(3):
        (tmp_path / f"m{i}.pkl").write_bytes(pickle.dumps({"step": i}, protocol=4))
    (tmp_path / "odd.pkl").write_bytes(b"\x80\x04cno_such_module\nThing\n)R.")  # an unknown global
    one, many = scan_path(tmp_path, workers=1), scan_path(tmp_path, workers=4)
    one.duration_s = many.duration_s = 0.0
    assert one == many and one.verdict == "unsafe"


def test_scan_command_imports_neither_pydantic_nor_a_thread_pool(tmp_path: Path) -> None:
    """One file, one worker: the start-up path stays free of pydantic and concurrent.futures."""
    target = tmp_path / "tiny.pkl"
    target.write_bytes(pickle.dumps({"weight": [0.5]}, protocol=4))
    code = (
        "import json, sys\n"
        "sys.argv = ['modelgate', 'scan', sys.argv[1], '--json']\n"
        "from modelgate.cli import main\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    code = exc.code\n"
        "sys.stderr.write(json.dumps({'code': code, 'modules': sorted(sys.modules)}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(target)], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    result = json.loads(proc.stderr.strip().splitlines()[-1])
    assert result["code"] == 0 and json.loads(proc.stdout)["verdict"] == "safe"
    modules = set(result["modules"])
    assert not {m for m in modules if m.split(".")[0] == "pydantic" or m.startswith("pydantic_core")}
    assert "concurrent.futures" not in modules
