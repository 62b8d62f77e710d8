"""Typed settings read from environment variables (and optionally a YAML file), checked at load.

A bad value stops start-up with one line naming the variable and what it accepts.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

DEFAULT_SECRET_KEY = "dev-secret-key-change-me"  # noqa: S105 - refused in production
DEFAULT_PIN_PEPPER = "dev-pin-pepper-change-me"
ENVIRONMENTS = ("development", "testing", "production")
TASK_BROKERS = ("auto", "redis", "database")  # auto: Redis when REDIS_URL is set
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("auto", "json", "text")  # auto: text on a terminal, JSON otherwise


class SettingsError(ValueError):
    """A setting has a value the product cannot start with."""


@dataclass(frozen=True)
class Settings:
    # Secrets stay out of repr: settings objects reach logs and test reports.
    database_url: str | None = field(default=None, repr=False)  # may hold a password
    secret_key: str = field(default=DEFAULT_SECRET_KEY, repr=False)
    pin_pepper: str = field(default=DEFAULT_PIN_PEPPER, repr=False)
    session_timeout_seconds: int = 120
    max_failed_pin_attempts: int = 3
    lockout_duration_seconds: int = 1800
    daily_withdrawal_limit: int = 50000
    daily_transfer_limit: int = 250000
    statement_output_dir: Path = Path("statements")
    log_level: str = "INFO"
    log_format: str = "auto"
    environment: str = "development"
    bcrypt_rounds: int = 12
    atm_sim_home: Path = Path.home() / ".atm-sim"
    redis_url: str | None = None
    statement_bucket: str | None = None
    task_broker: str = "auto"

    @property
    def embedded_database_dir(self) -> Path:
        return self.atm_sim_home / "pgdata"


def _positive_int(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r}: expected a whole number greater than 0") from None
    if value <= 0:
        raise SettingsError(f"{name}={raw!r}: expected a whole number greater than 0")
    return value


def _bcrypt_rounds(name: str, raw: str) -> int:
    value = _positive_int(name, raw)
    if not 4 <= value <= 31:
        raise SettingsError(f"{name}={raw!r}: expected a bcrypt cost from 4 to 31")
    return value


def _choice(choices: tuple[str, ...], *, upper: bool = False) -> Callable[[str, str], str]:
    def parse(name: str, raw: str) -> str:
        value = raw.upper() if upper else raw.lower()
        if value not in choices:
            raise SettingsError(f"{name}={raw!r}: expected one of {', '.join(choices)}")
        return value

    return parse


def _database_url(name: str, raw: str) -> str | None:
    if not raw:
        return None
    if not raw.startswith(("postgresql://", "postgresql+psycopg://", "postgres://")):
        raise SettingsError(f"{name}={raw!r}: expected a postgresql:// URL, or unset it")
    return raw


def _redis_url(name: str, raw: str) -> str | None:
    if not raw:
        return None
    if not raw.startswith(("redis://", "rediss://", "unix://")):
        raise SettingsError(f"{name}={raw!r}: expected a redis:// or rediss:// URL, or unset it")
    return raw


def _bucket(name: str, raw: str) -> str | None:
    if not raw:
        return None
    # S3's own naming rule, checked here so a typo stops start-up instead of the first upload.
    if not (3 <= len(raw) <= 63 and re.fullmatch(r"[a-z0-9][a-z0-9.-]*[a-z0-9]", raw)):
        raise SettingsError(
            f"{name}={raw!r}: expected an S3 bucket name (3-63 lowercase letters, digits, "
            "dots, hyphens), or unset it"
        )
    return raw


def _secret(name: str, raw: str) -> str:
    if len(raw) < 16:
        raise SettingsError(f"{name}: expected at least 16 characters")
    return raw


def _path(name: str, raw: str) -> Path:
    if not raw:
        raise SettingsError(f"{name}: expected a directory path")
    return Path(raw).expanduser()


_PARSERS: dict[str, tuple[str, Callable[[str, str], Any]]] = {
    "DATABASE_URL": ("database_url", _database_url),
    "SECRET_KEY": ("secret_key", _secret),
    "PIN_PEPPER": ("pin_pepper", _secret),
    "SESSION_TIMEOUT_SECONDS": ("session_timeout_seconds", _positive_int),
    "MAX_FAILED_PIN_ATTEMPTS": ("max_failed_pin_attempts", _positive_int),
    "LOCKOUT_DURATION_SECONDS": ("lockout_duration_seconds", _positive_int),
    "DAILY_WITHDRAWAL_LIMIT": ("daily_withdrawal_limit", _positive_int),
    "DAILY_TRANSFER_LIMIT": ("daily_transfer_limit", _positive_int),
    "STATEMENT_OUTPUT_DIR": ("statement_output_dir", _path),
    "LOG_LEVEL": ("log_level", _choice(LOG_LEVELS, upper=True)),
    "LOG_FORMAT": ("log_format", _choice(LOG_FORMATS)),
    "ENVIRONMENT": ("environment", _choice(ENVIRONMENTS)),
    "BCRYPT_ROUNDS": ("bcrypt_rounds", _bcrypt_rounds),
    "ATM_SIM_HOME": ("atm_sim_home", _path),
    "REDIS_URL": ("redis_url", _redis_url),
    "STATEMENT_BUCKET": ("statement_bucket", _bucket),
    "TASK_BROKER": ("task_broker", _choice(TASK_BROKERS)),
}

SETTING_NAMES: tuple[str, ...] = tuple(_PARSERS)


def _read_yaml(path: Path) -> dict[str, str]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise SettingsError(f"{path}: cannot read settings file ({err})") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: expected a mapping of setting names to values")
    unknown = sorted(set(data) - set(_PARSERS))
    if unknown:
        raise SettingsError(f"{path}: unknown setting {unknown[0]!r}")
    return {str(k): "" if v is None else str(v) for k, v in data.items()}


def load_settings(env: Mapping[str, str] | None = None, yaml_path: Path | None = None) -> Settings:
    """Build Settings from a YAML file (if given) overlaid by environment variables."""
    source: dict[str, str] = {}
    if yaml_path is not None:
        source.update(_read_yaml(yaml_path))
    environ = os.environ if env is None else env
    source.update({k: v for k, v in environ.items() if k in _PARSERS})
    values: dict[str, Any] = {}
    for name, raw in source.items():
        attribute, parse = _PARSERS[name]
        values[attribute] = parse(name, raw.strip())
    settings = Settings(**values)
    if settings.environment == "production":
        if settings.secret_key == DEFAULT_SECRET_KEY:
            raise SettingsError("SECRET_KEY: production refuses the default key; set your own")
        if settings.pin_pepper == DEFAULT_PIN_PEPPER:
            raise SettingsError("PIN_PEPPER: production refuses the default pepper; set your own")
    return settings


def describe(settings: Settings) -> dict[str, str]:
    """Settings as printable text, secrets hidden."""
    hidden = {"secret_key", "pin_pepper"}
    return {
        f.name: "***" if f.name in hidden else str(getattr(settings, f.name))
        for f in fields(settings)
    }
