"""``modelgate demo``: build the example models the walkthrough and ``make run`` take in."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from modelgate.cli.common import GuardedGroup
from modelgate.settings import load_settings


def default_out_dir() -> Path:
    return load_settings().home / "examples"


@click.group("demo", cls=GuardedGroup)
def demo_group() -> None:
    """Example models for demos and tests."""


@demo_group.command("build")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder to write the examples into (default: $MODELGATE_HOME/examples).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the data split and the training.")
@click.option("--overwrite", is_flag=True, help="Replace the examples in a non-empty folder.")
def build_command(out_dir: Path | None, seed: int, overwrite: bool) -> None:
    """Train the digits CNN and write it plain, signed, unsigned and tampered."""
    from modelgate.demo.build import build_examples, example_summary

    target = out_dir or default_out_dir()
    start = time.perf_counter()
    built = build_examples(target, seed=seed, overwrite=overwrite)
    click.echo(f"built {len(built)} example models in {time.perf_counter() - start:.1f} s (seed {seed}):")
    for name, path in built.items():
        summary = example_summary(path)
        click.echo(f"  {name:<20} test accuracy {summary['test_accuracy']:.4f}  {summary['description']}")
        click.echo(f"  {'':<20} {path}")


@demo_group.command("run")
@click.option("--seed", default=0, show_default=True, help="Seed of the example models.")
def run_command(seed: int) -> None:
    """Build the example models and run the intake flow on each; print the decision table."""
    from flows.demo_run import run_demo
    from modelgate.cli.common import use_running_services

    use_running_services(registry_role="publisher")
    sys.exit(run_demo(seed=seed))
