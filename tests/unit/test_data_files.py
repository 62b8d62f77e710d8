"""Every YAML data file is read by config.data_files: `version: 1` required, errors as FILE:LINE."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from config.data_files import DataFile, DataFileError, parse_data_file, read_data_file
from device.screens import load_screens
from device.sim.scenarios.schema import load_scenario
from host.bank_admin import load_seed
from peripherals.cards import load_wallet, parse_wallet
from peripherals.cassettes import load_cassette_file
from peripherals.harness.profile import load_profile

CONFIG = Path(__file__).parents[2] / "config"

# Each kind of data file: its loader, a shipped file, and one value spoilt in it (the first
# occurrence of the text) with the start of the message that must name it.
KINDS: dict[str, tuple[Callable[[Path], object], Path, str, str, str]] = {
    "profile": (
        load_profile,
        CONFIG / "atm_profiles" / "default.yaml",
        "baud: 9600",
        "baud: fast",
        "devices.card_reader.link.baud: expected a whole number, got 'fast'",
    ),
    "wallet": (
        load_wallet,
        CONFIG / "wallet.yaml",
        'expiry: "2912"',
        'expiry: "2913"',
        "cards.bob.expiry: month 13 not in 01..12",
    ),
    "cassettes": (
        load_cassette_file,
        CONFIG / "cassettes" / "default.yaml",
        "count: 400,",
        "count: 4000,",
        "cassettes[1].count: 4000 is not in 0..2500",
    ),
    "bank seed": (
        load_seed,
        CONFIG / "bank_seed.yaml",
        'pin: "4321"',
        'pin: "43"',
        "customers[1].cards[0].pin: expected 4 to 12 digits",
    ),
    "screens": (
        load_screens,
        CONFIG / "screens" / "default.yaml",
        "event: choose_balance}",
        "event: choose_balanse}",
        "screens.transaction_menu.keys.F2.event: unknown event 'choose_balanse'",
    ),
    "scenario": (
        load_scenario,
        CONFIG / "scenarios" / "balance_inquiry.yaml",
        "wait: idle",
        "wait: nowhere",
        "wait: 'nowhere' is not one of",
    ),
}


def error_of(load: Callable[[Path], object], path: Path) -> DataFileError:
    with pytest.raises(DataFileError) as caught:
        load(path)
    assert "\n" not in str(caught.value)
    return caught.value


def copy_of(tmp_path: Path, shipped: Path, old: str = "", new: str = "") -> tuple[Path, int]:
    """The shipped file beside its copy (relative paths in it still resolve from the
    repository), `old` replaced by `new` once; and the line of that change."""
    text = shipped.read_text(encoding="utf-8")
    assert old in text, f"{shipped} no longer holds {old!r}"
    path = tmp_path / shipped.name
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path.resolve(), text[: text.index(old)].count("\n") + 1


@pytest.mark.parametrize("kind", KINDS)
def test_every_shipped_data_file_has_version_1(kind: str) -> None:
    load, shipped, *_ = KINDS[kind]
    load(shipped)
    assert read_data_file(shipped).data["version"] == 1


@pytest.mark.parametrize("kind", KINDS)
def test_a_bad_value_is_reported_at_its_file_and_line(kind: str, tmp_path: Path) -> None:
    load, shipped, old, new, message = KINDS[kind]
    path, line = copy_of(tmp_path, shipped, old, new)
    error = error_of(load, path)
    assert str(error).startswith(f"{path}:{line}: {message}"), str(error)
    assert (error.path, error.line) == (str(path), line)


@pytest.mark.parametrize("kind", KINDS)
def test_a_missing_version_is_reported_with_the_version_this_build_reads(
    kind: str, tmp_path: Path
) -> None:
    load, shipped, *_ = KINDS[kind]
    path, line = copy_of(tmp_path, shipped, "version: 1\n", "")
    error = error_of(load, path)
    # the first entry of the file now sits where `version:` was
    assert str(error) == (
        f"{path}:{line}: version: missing; write version: 1 at the top (this build reads version 1)"
    )


@pytest.mark.parametrize("kind", KINDS)
def test_another_version_is_refused_at_its_line(kind: str, tmp_path: Path) -> None:
    load, shipped, *_ = KINDS[kind]
    path, line = copy_of(tmp_path, shipped, "version: 1\n", "version: 2\n")
    error = error_of(load, path)
    assert str(error) == f"{path}:{line}: version: 2 is not supported; this build reads version 1"


@pytest.mark.parametrize("kind", KINDS)
def test_a_top_level_that_is_not_a_mapping_is_refused(kind: str, tmp_path: Path) -> None:
    load, *_ = KINDS[kind]
    path = (tmp_path / "list.yaml").resolve()
    path.write_text("# a comment first\n- version: 1\n", encoding="utf-8")
    error = error_of(load, path)
    assert str(error) == f"{path}:2: expected a mapping that starts with version: 1, found list"


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("version: 1.0\n", 1, "version: 1.0 is not supported"),
        ('version: "1"\n', 1, "version: '1' is not supported"),
        ("version: true\n", 1, "version: True is not supported"),
        ("# only a comment\n", 1, "the file is empty; a data file starts with version: 1"),
        ("just text\n", 1, "expected a mapping that starts with version: 1, found str"),
        ("version: 1\nkeys: [a\n", 3, "not valid YAML: while parsing a flow sequence, expected"),
        (
            "version: 1\n---\nversion: 1\n",
            2,
            "not valid YAML: expected a single document in the stream, but found another",
        ),
        ("version: 1\nx: !!python/name:os.system\n", 2, "not valid YAML: could not determine"),
    ],
)
def test_the_shared_checks(text: str, line: int, message: str) -> None:
    with pytest.raises(DataFileError) as caught:
        parse_data_file(text, "data.yaml")
    assert (caught.value.path, caught.value.line) == ("data.yaml", line)
    assert str(caught.value).startswith(f"data.yaml:{line}: {message}"), str(caught.value)


def test_an_unreadable_file_names_the_file_without_a_line(tmp_path: Path) -> None:
    error = error_of(read_data_file, tmp_path / "absent.yaml")
    assert error.line is None
    assert (
        str(error)
        == f"{tmp_path / 'absent.yaml'}: cannot read the file (No such file or directory)"
    )


def test_lines_of_nested_entries_aliases_and_missing_keys() -> None:
    file = parse_data_file(
        "version: 1\nkeys: &shared\n  mac: AB\nitems:\n  - name: a\n  - {name: b, keys: *shared}\n",
        "f.yaml",
    )
    assert file.line(()) == 1
    assert file.line(("items", 1, "name")) == 6
    assert file.line(("items", 1, "keys", "mac")) == 3  # where the value is written
    assert file.line(("items", 0, "colour")) == 5  # missing: its parent's line
    assert file.line(("items", 7)) == 4
    assert (
        str(file.error(("items", 0, "name"), "too short")) == "f.yaml:5: items[0].name: too short"
    )
    assert str(file.error((), "empty")) == "f.yaml:1: empty"


def test_a_document_built_in_code_has_no_lines() -> None:
    assert DataFile("<built>", {"a": 1}).line(("a",)) is None
    with pytest.raises(DataFileError) as caught:
        parse_wallet({"cards": {"c": {"pan": "1"}}}, "<wallet>")
    assert caught.value.line is None
    assert str(caught.value) == "<wallet>: cards.c.name: missing"
