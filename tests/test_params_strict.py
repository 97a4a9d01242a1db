"""Issue 14: a mistyped parameter stops the run before it starts, naming the file, the key and the nearest name.

Before, ``anomaly_treshold: 9`` under ``neural_cleanse`` (or ``p_value_treshold`` under ``mmbd``) was
ignored and the defaults applied: the gate was weakened without a word. Every section of the
params file, and the evaluate flow's ``params`` override, is now checked against the defaults the
stages use.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from modelgate.params import ParamsError
from tasks.params import check_evaluate_override, check_params_file

REPO = Path(__file__).resolve().parents[1]
PROJECT_PARAMS = (REPO / "params.yaml").read_text()

# (what is replaced in the shipped params.yaml, by what, what the error must say)
TYPOS = [
    (
        "anomaly_threshold: 2.0",
        "anomaly_treshold: 9",
        "evaluate.neural_cleanse.anomaly_treshold: unknown key (did you mean 'anomaly_threshold'?)",
    ),
    (
        "p_value_threshold: 0.05",
        "p_value_treshold: 0.05",
        "evaluate.mmbd.p_value_treshold: unknown key (did you mean 'p_value_threshold'?)",
    ),
    ("  pgd:", "  pdg:", "evaluate.pdg: unknown key (did you mean 'pgd'?)"),
    ("margin: 0.05", "margn: 0.05", "evaluate.privacy_audit.margn: unknown key (did you mean 'margin'?)"),
    ("steps: 20", "steps: twenty", "evaluate.pgd.steps: expected a whole number, got 'twenty'"),
    ("steps: 20", "steps: 20.5", "evaluate.pgd.steps: expected a whole number, got 20.5"),
    ("fixed_variance: true", "fixed_variance: 1", "evaluate.membership.fixed_variance: expected true or false, got 1"),
    (
        "anomaly_threshold: 2.0",
        "anomaly_threshold: true",
        "evaluate.neural_cleanse.anomaly_threshold: expected a number, got True",
    ),
    (
        "anomaly_threshold: 2.0",
        "anomaly_threshold:",
        "evaluate.neural_cleanse.anomaly_threshold: expected a number (null",
    ),
    ("seeds: [0, 1]", "seeds: [0, one]", "evaluate.neural_cleanse.seeds.1: expected a whole number, got 'one'"),
    ("fprs: [0.01, 0.001]", "fprs: 0.01", "evaluate.membership.fprs: expected a list, got 0.01"),
    (
        "    shadow: {epochs: 30,",
        "    shadow: {epochz: 30,",
        "evaluate.membership.shadow.epochz: unknown key (did you mean 'epochs'?)",
    ),
    ("publish: false", "publsh: false", "intake.publsh: unknown key (did you mean 'publish'?)"),
    ("publish: false", 'publish: "no"', "intake.publish: Input should be a valid boolean"),
    ("validation:", "validaton:", "validaton: unknown section (did you mean 'validation'?)"),
    (
        "robust_accuracy_tolerance: 0.02",
        "robust_accuracy_tolerence: 0.02",
        "validation.robust_accuracy_tolerence: unknown key",
    ),
    ("  epochs: 80", "  epochs: 80\n    epochs: 3", "evaluate.neural_cleanse.epochs: duplicate key"),
]


def _variant(tmp_path: Path, old: str, new: str) -> Path:
    assert old in PROJECT_PARAMS, old
    path = tmp_path / "params.yaml"
    path.write_text(PROJECT_PARAMS.replace(old, new, 1))
    return path


def test_the_shipped_params_file_passes() -> None:
    assert check_params_file(REPO / "params.yaml") == REPO / "params.yaml"


@pytest.mark.parametrize(("old", "new", "says"), TYPOS, ids=[t[1].split(":")[0].strip() for t in TYPOS])
def test_a_typo_in_the_params_file_names_the_file_the_line_and_the_nearest_key(
    tmp_path: Path, old: str, new: str, says: str
) -> None:
    path = _variant(tmp_path, old, new)
    with pytest.raises(ParamsError) as caught:
        check_params_file(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:"), message
    line = int(message.split(":")[1])
    assert new.split("\n")[-1].strip() in path.read_text().splitlines()[line - 1], (line, message)
    assert says in message, message


@pytest.mark.parametrize(
    ("override", "says"),
    [
        (
            {"neural_cleanse": {"anomaly_treshold": 9}},
            "evaluate.neural_cleanse.anomaly_treshold: unknown key (did you mean",
        ),
        (
            {"mmbd": {"p_value_treshold": 0.5}},
            "evaluate.mmbd.p_value_treshold: unknown key (did you mean 'p_value_threshold'?)",
        ),
        ({"pgd": {"restarts": "2"}}, "evaluate.pgd.restarts: expected a whole number, got '2'"),
        ({"devce": "cpu"}, "evaluate.devce: unknown key (did you mean 'device'?)"),
        ({"pgd": 5}, "evaluate.pgd: expected a mapping"),
    ],
)
def test_an_override_is_checked_like_the_file(override: dict, says: str) -> None:
    with pytest.raises(ParamsError, match="the evaluate run's params") as caught:
        check_evaluate_override(override)
    assert says in str(caught.value)


def test_valid_overrides_and_partial_sections_pass(tmp_path: Path) -> None:
    check_evaluate_override({"neural_cleanse": {"anomaly_threshold": 3}, "pgd": {"epsilons": {"linf": [0.05]}}})
    check_evaluate_override(None)
    small = tmp_path / "params.yaml"
    small.write_text(yaml.safe_dump({"evaluate": {"membership": {"shadow": {"epochs": 2}}, "inversion": {"steps": 5}}}))
    assert check_params_file(small) == small


def test_a_named_params_file_that_does_not_exist_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELGATE_PARAMS_FILE", str(tmp_path / "nope.yaml"))
    with pytest.raises(ParamsError, match="no such params file"):
        check_params_file()


def _cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    code = "import sys; from modelgate.cli import main; sys.argv[0] = 'modelgate'; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300
    )


@pytest.mark.services
def test_intake_with_a_typo_stops_before_the_flow_run_exists(
    prefect_server: str, examples: dict[str, Path], tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    path = _variant(tmp_path, "anomaly_threshold: 2.0", "anomaly_treshold: 9")
    env = {**os.environ, "PREFECT_API_URL": prefect_server, "MODELGATE_PARAMS_FILE": str(path)}
    args = ["intake", str(examples["digits-cnn-signed"]), "--name", "typo-cnn", "--version", "1.0.0"]
    done = _cli([*args, "--eval-data", "sklearn:digits"], env, tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "anomaly_treshold: unknown key (did you mean 'anomaly_threshold'?)" in lines[0], lines
    assert f"{path}:" in lines[0]
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=["typo-cnn-1.0.0"])))
    assert runs == []  # the run never started


def test_dvc_stage_with_a_typo_exits_2(tmp_path: Path) -> None:
    path = _variant(tmp_path, "p_value_threshold: 0.05", "p_value_treshold: 0.05")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELGATE_PARAMS")}
    done = _cli(["stage", "request", "--params", str(path), "--evidence", str(tmp_path / "ev")], env, tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "mmbd.p_value_treshold: unknown key (did you mean 'p_value_threshold'?)" in done.stderr
    assert not (tmp_path / "ev" / "request.json").exists()
