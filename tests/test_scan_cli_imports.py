"""``modelgate scan`` imports only what a scan needs: a CI step must not pay for torch or Prefect.

Each case runs the console-script path (``modelgate.cli:main``) in a fresh interpreter on a
tiny file and reads back ``sys.modules``; no timing is asserted (timings live in
``bench/bench_scan.py --startup``).
"""

from __future__ import annotations

import json
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.live import PAYLOAD_COMMAND, loads_cleanly, runs_payload

REPO = Path(__file__).resolve().parents[1]
SAFETENSORS_LOADER = "import sys; from safetensors.numpy import load_file; load_file(sys.argv[1])"

# What the intake pipeline and the format readers bring in; a scan of a pickle or safetensors file needs none.
HEAVY = (
    "torch",
    "prefect",
    "great_expectations",
    "boto3",
    "botocore",
    "pandas",
    "h5py",
    "onnx",
    "numpy",
    "safetensors",
    "transformers",
    "sklearn",
    "fastapi",
    "dvc",
)
# modelgate modules of the intake flow that the scan command has no use for.
INTAKE_ONLY = ("modelgate.evidence", "modelgate.manifest", "modelgate.services", "modelgate.settings")

CHILD = r"""
import json, sys
out, extra, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
if extra:
    __import__(extra)
from modelgate.cli import main
sys.argv = ["modelgate", *argv]
try:
    main()
    code = 0
except SystemExit as exc:
    code = exc.code
with open(out, "w") as handle:
    json.dump({"code": code, "modules": sorted(sys.modules)}, handle)
"""


def _tiny_safetensors(folder: Path) -> Path:
    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    header += b" " * (-len(header) % 8)
    path = folder / "tiny.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + struct.pack("<2f", 1.0, 2.0))
    return path


def _tiny_pickle(folder: Path) -> Path:
    path = folder / "tiny.pkl"
    path.write_bytes(pickle.dumps({"weight": [0.5, -1.0], "step": 3}, protocol=4))
    return path


def _run_scan(tmp_path: Path, argv: list[str], preload: str = "") -> tuple[int, set[str], str]:
    """Exit code, imported module names and stdout of ``modelgate <argv>`` in a fresh interpreter."""
    out = tmp_path / "modules.json"
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(out), preload, *argv],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=_child_env(tmp_path),
    )
    assert out.is_file(), proc.stderr
    result = json.loads(out.read_text())
    return result["code"], set(result["modules"]), proc.stdout


def _child_env(tmp_path: Path) -> dict[str, str]:
    """This checkout first on the path, nothing from the caller's environment (no PREFECT_*, no plugins)."""
    return {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": str(tmp_path), "COLUMNS": "200"}


def _heavy(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in names or m in names)


def _payload_pickle(folder: Path, protocol_header: bytes, name: str) -> Path:
    """``os.system(PAYLOAD_COMMAND)`` through the text GLOBAL opcode and REDUCE."""
    command = PAYLOAD_COMMAND.encode()
    body = b"cos\nsystem\nX" + struct.pack("<I", len(command)) + command + b"\x85R."
    path = folder / name
    path.write_bytes(protocol_header + body)
    return path


@pytest.mark.parametrize(
    ("make", "loader"),
    [(_tiny_safetensors, SAFETENSORS_LOADER), (_tiny_pickle, "pickle")],
    ids=["safetensors", "pickle"],
)
@pytest.mark.parametrize("flags", [[], ["--json"], ["--sarif", "out.sarif"]], ids=["table", "json", "sarif"])
def test_scan_command_imports_no_heavy_module(tmp_path: Path, make, loader: str, flags: list[str]) -> None:
    path = make(tmp_path)
    assert loads_cleanly(path, loader)
    code, modules, stdout = _run_scan(tmp_path, ["scan", str(path), *flags])
    assert code == 0, stdout
    assert "safe" in stdout or flags[:1] == ["--sarif"]
    assert "modelgate.scan.driver" in modules  # the scan really ran in the child
    assert _heavy(modules, HEAVY) == []
    assert sorted(set(INTAKE_ONLY) & modules) == []
    if flags[:1] == ["--sarif"]:
        assert json.loads((tmp_path / "out.sarif").read_text())["version"] == "2.1.0"


def test_output_needs_no_console_library(tmp_path: Path) -> None:
    """Neither the table nor the JSON pulls in rich, and a safetensors scan skips the pickle machinery."""
    path = _tiny_safetensors(tmp_path)
    for flags in ([], ["--json"]):
        code, modules, stdout = _run_scan(tmp_path, ["scan", str(path), *flags])
        assert code == 0
        assert "safe" in stdout
        assert _heavy(modules, ("rich",)) == []
        assert "modelgate.scan.pickle_trace" not in modules and "hashlib" not in modules
        assert "tarfile" not in modules  # the checksum pre-filter answers for a non-tar head


def test_pickle_scan_loads_the_pickle_machinery(tmp_path: Path) -> None:
    """The probe above can fail: a pickle does bring in the tracer (and --digests brings hashlib)."""
    path = tmp_path / "plain.pkl"
    path.write_bytes(pickle.dumps({"a": [1, 2]}))
    code, modules, _ = _run_scan(tmp_path, ["scan", str(path), "--digests"])
    assert code == 0
    assert "modelgate.scan.pickle_trace" in modules and "hashlib" in modules


def test_probe_sees_a_heavy_import(tmp_path: Path) -> None:
    """The check can fail: a module imported along the way shows up in what the child reports."""
    path = _tiny_safetensors(tmp_path)
    code, modules, _ = _run_scan(tmp_path, ["scan", str(path), "--json"], preload="modelgate.scan.stage")
    assert code == 0
    assert "modelgate.manifest" in modules and "modelgate.evidence" in modules
    code, modules, _ = _run_scan(tmp_path, ["scan", str(path), "--json"], preload="numpy")
    assert code == 0
    assert "numpy" in _heavy(modules, HEAVY)


@pytest.mark.parametrize(("header", "name"), [(b"", "p0.pkl"), (b"\x80\x02", "p2.bin"), (b"\x80\x04", "README.txt")])
def test_unsafe_file_still_unsafe_without_heavy_imports(tmp_path: Path, header: bytes, name: str) -> None:
    """The lazy imports change no verdict: a payload pickle is unsafe from its bytes alone (exit 1)."""
    path = _payload_pickle(tmp_path, header, name)
    assert runs_payload(path, "pickle")
    code, modules, stdout = _run_scan(tmp_path, ["scan", str(path), "--json"])
    assert code == 1
    report = json.loads(stdout)
    assert report["verdict"] == "unsafe"
    assert any(f["global_name"] == "os.system" for f in report["files"][0]["findings"])
    assert _heavy(modules, HEAVY) == []


def test_help_and_version_import_no_scanner(tmp_path: Path) -> None:
    code, modules, stdout = _run_scan(tmp_path, ["--version"])
    assert code == 0 and "0.1.0" in stdout
    assert not any(m.startswith("modelgate.scan") for m in modules)
    assert _heavy(modules, ("rich", "pydantic", *HEAVY)) == []


def test_scan_package_exports_load_on_first_use(tmp_path: Path) -> None:
    """``import modelgate.scan.findings`` does not pull in every format scanner; the public names still resolve."""
    code = (
        "import json, sys\n"
        "import modelgate.scan.findings\n"
        "before = 'modelgate.scan.driver' in sys.modules\n"
        "import modelgate.scan as scan\n"
        "from modelgate.scan import Limits, scan_bytes, scan_path\n"
        "names = {n: type(getattr(scan, n)).__name__ for n in scan.__all__}\n"
        "report = scan_bytes(b'\\x80\\x04K\\x01.', 'x.pkl', limits=Limits())\n"
        "print(json.dumps({'before': before, 'names': names, 'verdict': report.verdict,\n"
        "                  'callable': callable(scan_path)}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env=_child_env(tmp_path),
    )
    result = json.loads(proc.stdout)
    assert result["before"] is False
    assert set(result["names"]) == {
        "SCANNER_VERSION",
        "Category",
        "FileReport",
        "Finding",
        "Limits",
        "ScanContext",
        "ScanError",
        "ScanReport",
        "Severity",
        "scan_bytes",
        "scan_path",
    }
    assert result["verdict"] == "safe" and result["callable"] is True
    import modelgate.scan as scan

    with pytest.raises(AttributeError):
        _ = scan.no_such_name
