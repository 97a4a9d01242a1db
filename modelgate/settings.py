"""Where modelgate keeps things, from environment variables with sane defaults.

Every path can be overridden, so tests and multi-machine installs point the same
code at other folders and servers.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from modelgate.errors import ModelgateError, SettingError

GiB = 1024**3


def positive_int(
    name: str, default: int, env: Mapping[str, str] | None = None, error: type[ModelgateError] = SettingError
) -> int:
    """A count from the environment (``default`` when unset): a whole number of at least 1, else ``error``."""
    raw = (os.environ if env is None else env).get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise error(f"{name}={raw!r}: expected a whole number of at least 1")
    return value


def _number(name: str, env: Mapping[str, str] | None, *, above_zero: bool, error: type[ModelgateError]) -> float | None:
    """A finite number from the environment (None when unset), > 0 or >= 0; anything else is ``error``."""
    raw = (os.environ if env is None else env).get(name)
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0 or (above_zero and value == 0):
        raise error(f"{name}={raw!r}: expected a number {'greater than 0' if above_zero else 'of at least 0'}")
    return value


def positive_number(
    name: str, default: float, env: Mapping[str, str] | None = None, error: type[ModelgateError] = SettingError
) -> float:
    """A duration or size from the environment (``default`` when unset): a finite number above 0, else ``error``."""
    value = _number(name, env, above_zero=True, error=error)
    return default if value is None else value


def non_negative_number(name: str, env: Mapping[str, str] | None = None) -> float | None:
    """A delay from the environment (``None`` when unset): a finite number of at least 0, else ``SettingError``."""
    return _number(name, env, above_zero=False, error=SettingError)


def switch(name: str, default: bool, env: Mapping[str, str] | None = None) -> bool:
    """An on/off setting: on/true/yes/1 or off/false/no/0 (any case); anything else is ``SettingError``."""
    raw = (os.environ if env is None else env).get(name)
    if not raw:
        return default
    word = raw.strip().lower()
    if word in ("on", "true", "yes", "1"):
        return True
    if word in ("off", "false", "no", "0"):
        return False
    raise SettingError(f"{name}={raw!r}: expected on or off")


def port(name: str, default: int, env: Mapping[str, str] | None = None) -> int:
    """A TCP port from the environment: a whole number from 1 to 65535, else ``SettingError``."""
    value = positive_int(name, default, env)
    if value > 65535:
        raise SettingError(f"{name}={value}: expected a port from 1 to 65535")
    return value


def _project_root() -> Path:
    """The project checkout: $MODELGATE_PROJECT, else the checkout this package lives in, else cwd."""
    if env := os.environ.get("MODELGATE_PROJECT"):
        return Path(env).resolve()
    here = Path(__file__).resolve().parents[1]
    if (here / "policies").is_dir() and (here / "pyproject.toml").is_file():
        return here
    return Path.cwd().resolve()


@dataclass(frozen=True)
class Settings:
    project: Path
    home: Path
    policy_dir: Path
    evidence_dir: Path
    workspace_dir: Path
    trust_store: Path
    max_fetch_bytes: int
    max_files: int
    http_timeout_s: float
    s3_endpoint: str | None
    s3_region: str

    @property
    def services_dir(self) -> Path:
        return self.home / "services"


def load_settings() -> Settings:
    env = os.environ.get
    project = _project_root()
    home = Path(env("MODELGATE_HOME", str(project / ".modelgate"))).resolve()
    policy_dir = Path(env("MODELGATE_POLICY_DIR", str(project / "policies"))).resolve()
    return Settings(
        project=project,
        home=home,
        policy_dir=policy_dir,
        evidence_dir=Path(env("MODELGATE_EVIDENCE_DIR", str(project / "evidence"))).resolve(),
        workspace_dir=Path(env("MODELGATE_WORKSPACE_DIR", str(home / "workspace"))).resolve(),
        trust_store=Path(env("MODELGATE_TRUST_STORE", str(policy_dir / "trust" / "publishers.yaml"))).resolve(),
        max_fetch_bytes=positive_int("MODELGATE_MAX_FETCH_BYTES", 50 * GiB),
        max_files=positive_int("MODELGATE_MAX_FILES", 10000),
        http_timeout_s=positive_number("MODELGATE_HTTP_TIMEOUT_S", 60.0),
        s3_endpoint=env("MODELGATE_S3_ENDPOINT") or env("AWS_ENDPOINT_URL_S3") or env("AWS_ENDPOINT_URL"),
        s3_region=env("AWS_DEFAULT_REGION", "us-east-1"),
    )
