"""The screen set is data: checked on load, rendered with placeholders."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.data_files import DataFileError
from device.controller.atm_controller import STATES
from device.screens import DEFAULT_SCREENS, ScreenError, load_screens


def test_default_screen_set_renders_placeholders() -> None:
    screens = load_screens(DEFAULT_SCREENS)
    shown = screens.render("presenting_cash", amount="EUR 50.00")
    assert shown.lines == ("Please take your cash", "EUR 50.00")
    menu = screens.render("transaction_menu")
    assert menu.keys["F1"].event == "choose_withdrawal"
    assert "[F8] Cancel" in menu.text()
    with pytest.raises(ScreenError, match="no screen named 'nowhere'"):
        screens.render("nowhere")


def test_every_waiting_state_has_a_screen() -> None:
    screens = load_screens(DEFAULT_SCREENS)
    missing = {s for s in STATES if s not in screens.screens} - {"showing_result"}
    assert missing == set()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("version: 2\nscreens: {}\n", ":1: version: 2 is not supported"),
        ("version: 1\nscreens:\n  idle: {lines: hello}\n", ":3: screens.idle: expected `lines:`"),
        (
            "version: 1\nscreens:\n  idle: {lines: [a], keys: {F9: {label: x, event: y}}}\n",
            ":3: screens.idle.keys.F9: expected one of F1..F8",
        ),
        ("version: 1\nscreens:\n  idle: {lines: [a], keys: [F1]}\n", ":3: screens.idle.keys:"),
        ("version: 1\nscreens: [unclosed\n", ":3: not valid YAML"),
    ],
)
def test_invalid_screen_set_is_refused_with_the_reason(
    tmp_path: Path, text: str, fragment: str
) -> None:
    path = tmp_path / "screens.yaml"
    path.write_text(text)
    with pytest.raises(DataFileError) as caught:
        load_screens(path)
    assert str(caught.value).startswith(f"{path}{fragment}")


def test_a_misspelt_key_event_is_refused_at_its_line(tmp_path: Path) -> None:
    path = tmp_path / "screens.yaml"
    path.write_text(
        "version: 1\nscreens:\n  idle:\n    lines: [Welcome]\n    keys:\n"
        "      F1: {label: Withdraw, event: choose_withdrawal}\n"
        "      F2:\n        label: Balance\n        event: choose_balanse\n"
    )
    with pytest.raises(DataFileError) as caught:
        load_screens(path)
    assert str(caught.value).startswith(f"{path}:9: screens.idle.keys.F2.event: ")
    assert "unknown event 'choose_balanse'" in str(caught.value)


def test_a_screen_file_changed_on_disk_is_read_again_and_a_missing_one_named(
    tmp_path: Path,
) -> None:
    path = tmp_path / "screens.yaml"
    path.write_text("version: 1\nscreens:\n  idle: {lines: [Welcome]}\n")
    first = load_screens(path)
    assert load_screens(path).screens == first.screens
    path.write_text("version: 1\nscreens:\n  idle: {lines: [Hello]}\n")
    assert load_screens(path).render("idle").lines == ("Hello",)
    path.unlink()
    with pytest.raises(DataFileError, match=r"screens.yaml: cannot read the file"):
        load_screens(path)


def test_screens_shared_by_every_atm_cannot_be_changed_by_one() -> None:
    menu = load_screens(DEFAULT_SCREENS).screens["transaction_menu"]
    with pytest.raises(TypeError):
        menu.keys["F1"] = menu.keys["F2"]  # type: ignore[index]
    assert load_screens(DEFAULT_SCREENS).screens["transaction_menu"].keys["F1"].label == (
        menu.keys["F1"].label
    )


def test_state_diagram_in_docs_is_current() -> None:
    from device.controller.diagram import DIAGRAM_DOC, diagram_document

    assert DIAGRAM_DOC.read_text(encoding="utf-8") == diagram_document()
