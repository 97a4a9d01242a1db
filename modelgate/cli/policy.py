"""``modelgate policy``: validate, test and explain policies before they gate real models.

Policy authors run these locally and in CI, so a broken rule or waiver is caught
at review time, with file and line, instead of failing (closed) an intake run.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import click

from modelgate.cli.common import GuardedGroup, fail
from modelgate.policy.loader import KINDS, YAML_SUFFIXES, LoadedPolicy, document_kind, load_policy, validate_file
from modelgate.policy.model import Comparison, Condition, Group
from modelgate.policy.testing import CaseResult, run_policy_tests
from modelgate.policy.yamlio import load_yaml
from modelgate.settings import load_settings
from modelgate.terminal import echo, table

POLICY_DIR_HELP = "Folder of policies (default: the configured policy folder, $MODELGATE_POLICY_DIR)."


def _policy_dir(option: Path | None) -> Path:
    return option if option is not None else load_settings().policy_dir


@click.group(name="policy", cls=GuardedGroup)
def policy_group() -> None:
    """Validate, test and explain intake policies and waivers."""


# --- validate ------------------------------------------------------------------------------


@policy_group.command("validate")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--policy-dir", type=click.Path(path_type=Path, file_okay=False), help=POLICY_DIR_HELP)
def validate_command(paths: tuple[Path, ...], policy_dir: Path | None) -> None:
    """Check policy, waiver and policy-test files (or folders of them) against their schemas.

    Prints OK per valid file and one line per problem (file:line: field: message);
    exits 1 if any file is invalid, 2 if a path does not exist.
    """
    folder = _policy_dir(policy_dir)
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        fail(f"no such file or folder: {', '.join(missing)}")
    invalid = checked = 0
    for path in _documents(paths):
        checked += 1
        problems = validate_file(path, policy_dir=folder)
        invalid += bool(problems)
        for line in [str(p) for p in problems] or [f"OK {path}"]:
            click.echo(line)
    click.echo(f"{checked} file(s) checked, {invalid} invalid", err=True)
    raise SystemExit(1 if invalid else 0)


def _documents(paths: Iterable[Path]) -> list[Path]:
    """Files as given; folders expanded to their policy documents (other YAML kinds are skipped)."""
    found: list[Path] = []
    for path in paths:
        found += _folder_documents(path) if path.is_dir() else [path]
    return list(dict.fromkeys(found))


def _folder_documents(folder: Path) -> list[Path]:
    documents = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).parts
        if path.suffix not in YAML_SUFFIXES or not path.is_file() or any(p.startswith(".") for p in relative):
            continue
        doc, _ = load_yaml(path)
        kind = document_kind(doc) if doc is not None else None
        if doc is not None and kind is not None and kind not in KINDS:
            click.echo(f"SKIP {path} (kind {kind} is not a policy document)", err=True)
            continue
        documents.append(path)
    return documents


# --- test ----------------------------------------------------------------------------------


@policy_group.command("test")
@click.option(
    "--dir",
    "test_dir",
    type=click.Path(path_type=Path),
    help="Folder of PolicyTest files (default: <policy-dir>/tests).",
)
@click.option("--policy-dir", type=click.Path(path_type=Path, file_okay=False), help=POLICY_DIR_HELP)
def test_command(test_dir: Path | None, policy_dir: Path | None) -> None:
    """Run the policy test cases: evidence in, expected decision out.

    Exits 1 when a case fails, 2 when the cases cannot run (a broken test file, none found).
    """
    folder = _policy_dir(policy_dir)
    where = test_dir or folder / "tests"
    results = run_policy_tests(where, folder)  # a broken file: PolicyError, one line, exit 2
    if not results:
        fail(f"no policy test cases found in {where}")
    for result in results:
        _echo_case(result)
    failed = sum(not r.passed for r in results)
    click.echo(f"{len(results) - failed} passed, {failed} failed")
    raise SystemExit(1 if failed else 0)


def _echo_case(result: CaseResult) -> None:
    click.echo(f"{'PASS' if result.passed else 'FAIL'} {Path(result.file).name}: {result.name}")
    if result.passed:
        return
    for line in result.diff:
        click.echo(f"    {line}")
    for line in result.reasons:
        click.echo(f"    policy said: {line}")


# --- explain -------------------------------------------------------------------------------


@policy_group.command("explain")
@click.argument("name_or_path")
@click.option("--policy-dir", type=click.Path(path_type=Path, file_okay=False), help=POLICY_DIR_HELP)
def explain_command(name_or_path: str, policy_dir: Path | None) -> None:
    """Show a policy's rules as a table: what each checks, how severe, and whether it rejects."""
    policy = load_policy(name_or_path, _policy_dir(policy_dir))  # not found / invalid: one line, exit 2
    echo(f"{policy.name}  {policy.path}  {policy.digest}")
    if policy.document.metadata.description:
        echo(policy.document.metadata.description)
    echo(rules_table(policy))


def rules_table(policy: LoadedPolicy) -> str:
    spec = policy.document.spec
    rows = [
        [
            rule.id,
            rule.severity.value,
            (rule.failure_action or spec.failure_action).value,
            "\n".join(condition_lines(rule.condition)),
            rule.message,
        ]
        for rule in spec.rules
    ]
    title = f"{len(spec.rules)} rules (default failureAction {spec.failure_action.value})"
    wrap = {"passes when": 56, "message": 48}
    return table(("id", "severity", "action", "passes when", "message"), rows, title=title, wrap=wrap)


def condition_lines(condition: Condition, indent: str = "") -> list[str]:
    """A condition tree as indented lines; a single-condition group collapses to its condition."""
    if isinstance(condition, Comparison):
        return [indent + condition.describe()]
    return _group_lines(condition, indent)


def _group_lines(group: Group, indent: str) -> list[str]:
    if len(group.conditions) == 1:
        return condition_lines(group.conditions[0], indent)
    lines = [f"{indent}{group.mode} of:"]
    for child in group.conditions:
        lines += condition_lines(child, indent + "  ")
    return lines
