"""Settings: names and defaults from the deployment guide; bad values stop start-up clearly."""

from pathlib import Path

import pytest

from config.settings import SETTING_NAMES, SettingsError, load_settings


def test_defaults_match_the_deployment_guide() -> None:
    settings = load_settings({})
    assert settings.database_url is None
    assert settings.session_timeout_seconds == 120
    assert settings.max_failed_pin_attempts == 3
    assert settings.lockout_duration_seconds == 1800
    assert settings.daily_withdrawal_limit == 50000
    assert settings.daily_transfer_limit == 250000
    assert settings.environment == "development"
    assert settings.bcrypt_rounds == 12


def test_environment_overrides_yaml(tmp_path: Path) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text("DAILY_WITHDRAWAL_LIMIT: 1000\nSESSION_TIMEOUT_SECONDS: 30\n")
    settings = load_settings({"SESSION_TIMEOUT_SECONDS": "45"}, yaml_path=path)
    assert settings.daily_withdrawal_limit == 1000
    assert settings.session_timeout_seconds == 45


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        (
            "SESSION_TIMEOUT_SECONDS",
            "soon",
            "SESSION_TIMEOUT_SECONDS='soon': expected a whole number",
        ),
        ("DAILY_WITHDRAWAL_LIMIT", "-5", "DAILY_WITHDRAWAL_LIMIT='-5'"),
        ("ENVIRONMENT", "staging", "expected one of development, testing, production"),
        ("DATABASE_URL", "mysql://x", "expected a postgresql:// URL"),
        ("BCRYPT_ROUNDS", "40", "bcrypt cost from 4 to 31"),
        ("PIN_PEPPER", "short", "PIN_PEPPER: expected at least 16"),
    ],
)
def test_bad_value_names_the_variable(name: str, value: str, fragment: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({name: value})
    assert fragment in str(caught.value)
    assert "\n" not in str(caught.value)


def test_production_refuses_default_secrets() -> None:
    with pytest.raises(SettingsError, match="SECRET_KEY"):
        load_settings({"ENVIRONMENT": "production"})
    with pytest.raises(SettingsError, match="PIN_PEPPER"):
        load_settings({"ENVIRONMENT": "production", "SECRET_KEY": "a-real-production-key"})
    settings = load_settings(
        {
            "ENVIRONMENT": "production",
            "SECRET_KEY": "a-real-production-key",
            "PIN_PEPPER": "a-real-production-pepper",
        }
    )
    assert settings.environment == "production"


def test_env_example_names_every_setting() -> None:
    text = (Path(__file__).parents[2] / ".env.example").read_text()
    names = {line.split("=", 1)[0].lstrip("# ") for line in text.splitlines() if "=" in line}
    assert set(SETTING_NAMES) <= names


def test_repr_hides_the_secrets() -> None:
    settings = load_settings(
        {
            "SECRET_KEY": "s3cret-key-value-0123",
            "PIN_PEPPER": "pepper-value-0123456",
            "DATABASE_URL": "postgresql://atm:hunter2@db:5432/atm",
        }
    )
    text = repr(settings)
    assert "s3cret-key-value-0123" not in text and "pepper-value-0123456" not in text
    assert "hunter2" not in text and "bcrypt_rounds=12" in text
