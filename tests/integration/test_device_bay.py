"""The device bay: profiles checked on load, devices on links of each backend, the pytest plugin."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from config.data_files import DataFileError
from device.drivers.base import SerialDriver
from device.drivers.receipt_printer import ReceiptPrinterDriver
from peripherals.emulator import Emulator
from peripherals.harness.bay import BayError, DeviceBay, emulator_class
from peripherals.harness.profile import (
    DEFAULT_PROFILE,
    PROJECT_ROOT,
    LinkSettings,
    load_profile,
    parse_profile,
)
from peripherals.links.backends import BACKENDS, UnknownBackend
from peripherals.links.registry import LIVE

pytest_plugins = ["pytester"]
QUIET = ("-p", "no:cacheprovider", "-W", "ignore::pytest.PytestAssertRewriteWarning")

PRINTER_ONLY: dict[str, Any] = {
    "version": 1,
    "terminal_id": "ATM00002",
    "devices": {"receipt_printer": {"paper_length_lines": 300, "near_end_lines": 10}},
}


class Echo(Emulator):
    NAME = "echo"

    def receive(self, data: bytes) -> None:
        self.send(data)


def write_profile(folder: Path, document: object, name: str = "atm.yaml") -> Path:
    path = folder / name
    text = document if isinstance(document, str) else yaml.safe_dump(document)
    path.write_text(text, encoding="utf-8")
    return path


def echo_once(url: str, data: bytes) -> bytes:
    with SerialDriver(url) as driver:
        driver.write(data)
        deadline = time.monotonic() + 2.0
        out = b""
        while len(out) < len(data) and time.monotonic() < deadline:
            out += driver.read_some(deadline)
        return out


# ----- profiles ---------------------------------------------------------------------------------


def test_default_profile_is_valid_and_keeps_the_host_section() -> None:
    profile = load_profile(DEFAULT_PROFILE)
    assert profile.terminal_id == "ATM00001"
    assert list(profile.devices) == ["card_reader", "pin_pad", "cash_dispenser", "receipt_printer"]
    assert profile.host is not None
    assert (profile.host.address, profile.host.port) == ("127.0.0.1", 8583)
    assert "mac_key" not in repr(profile.host)  # keys stay out of logs
    pin_pad = profile.devices["pin_pad"]
    assert pin_pad.settings["tmk"] == "0123456789ABCDEFFEDCBA9876543210"
    assert "link" not in pin_pad.settings
    assert pin_pad.link == LinkSettings("pty", 9600, False)
    wallet = Path(profile.devices["card_reader"].settings["wallet"])
    assert wallet == PROJECT_ROOT / "config" / "wallet.yaml"


@pytest.mark.parametrize(
    ("document", "key", "reason"),
    [
        ("version: 1\nterminal_id: [", "", "not valid YAML"),
        ("- a list", "", "expected a mapping that starts with version: 1, found list"),
        ({**PRINTER_ONLY, "version": 2}, "version", "2 is not supported; this build reads"),
        ({**PRINTER_ONLY, "terminal_id": 12345678}, "terminal_id", "as a quoted string"),
        ({**PRINTER_ONLY, "terminal_id": "ATM-1"}, "terminal_id", "8 letters or digits"),
        ({"version": 1, "devices": PRINTER_ONLY["devices"]}, "terminal_id", "missing"),
        ({**PRINTER_ONLY, "colour": "blue"}, "colour", "unknown key; known: devices,"),
        ({**PRINTER_ONLY, "devices": {}}, "devices", "no devices"),
        ({**PRINTER_ONLY, "devices": {"coin_hopper": {}}}, "devices.coin_hopper", "unknown key"),
        (
            {**PRINTER_ONLY, "devices": {"receipt_printer": {"link": {"backend": "usb"}}}},
            "devices.receipt_printer.link.backend",
            "'usb' is not one of pty, socket, sim, inline",
        ),
        (
            {**PRINTER_ONLY, "devices": {"receipt_printer": {"link": {"baud": "fast"}}}},
            "devices.receipt_printer.link.baud",
            "expected a whole number",
        ),
        (
            {**PRINTER_ONLY, "devices": {"receipt_printer": {"link": {"line_timing": "yes"}}}},
            "devices.receipt_printer.link.line_timing",
            "expected true or false",
        ),
        (
            {**PRINTER_ONLY, "devices": {"card_reader": {"wallet": "no/such/wallet.yaml"}}},
            "devices.card_reader.wallet",
            "file not found (tried",
        ),
        (
            {**PRINTER_ONLY, "host": {"address": "127.0.0.1", "port": 0, "mac_key": "00" * 16}},
            "host.port",
            "0 is not in 1..65535",
        ),
        (
            {**PRINTER_ONLY, "host": {"address": "127.0.0.1", "port": 8583, "mac_key": "XYZ"}},
            "host.mac_key",
            "32 hex digits",
        ),
        ({**PRINTER_ONLY, "host": {"address": "127.0.0.1", "port": 1}}, "host.mac_key", "missing"),
    ],
)
def test_profile_errors_name_file_line_key_and_reason(
    tmp_path: Path, document: object, key: str, reason: str
) -> None:
    path = write_profile(tmp_path, document)
    with pytest.raises(DataFileError) as caught:
        load_profile(path)
    error = caught.value
    assert error.path == str(path.resolve()) and error.line is not None
    assert str(error).startswith(f"{path.resolve()}:{error.line}: {key}")
    assert reason in error.message
    assert "\n" not in str(error)


def test_missing_profile_file_is_a_profile_error(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match=r"absent\.yaml: cannot read the file"):
        load_profile(tmp_path / "absent.yaml")


def test_relative_paths_try_the_profile_folder_then_the_repository_root(tmp_path: Path) -> None:
    (tmp_path / "my_wallet.yaml").write_text("version: 1\ncards: []\n", encoding="utf-8")
    beside = parse_profile(
        {"terminal_id": "ATM00003", "devices": {"card_reader": {"wallet": "my_wallet.yaml"}}},
        tmp_path / "atm.yaml",
    )
    assert beside.devices["card_reader"].settings["wallet"] == str(tmp_path / "my_wallet.yaml")
    from_root = parse_profile(
        {"terminal_id": "ATM00003", "devices": {"cash_dispenser": {"cassettes": "pyproject.toml"}}},
        tmp_path / "atm.yaml",
    )
    cassettes = from_root.devices["cash_dispenser"].settings["cassettes"]
    assert cassettes == str(PROJECT_ROOT / "pyproject.toml")


def test_a_device_refusing_its_section_is_a_profile_error(tmp_path: Path) -> None:
    document = {**PRINTER_ONLY, "devices": {"receipt_printer": {"paper_length_lines": "long"}}}
    path = write_profile(tmp_path, document)
    with pytest.raises(DataFileError) as caught:
        DeviceBay.from_profile(path)
    assert str(caught.value).startswith(f"{path.resolve()}:2: devices.receipt_printer: ")
    assert "paper_length_lines" in caught.value.message


def test_emulator_classes_are_found_by_device_name() -> None:
    assert emulator_class("receipt_printer").NAME == "receipt_printer"
    with pytest.raises(BayError, match="no emulator for device 'atm'"):
        emulator_class("atm")


# ----- the bay ----------------------------------------------------------------------------------


def test_printer_of_a_profile_answers_its_driver_on_every_backend(
    tmp_path: Path, link_backend: str
) -> None:
    path = write_profile(tmp_path, PRINTER_ONLY)
    with DeviceBay.from_profile(path, backend=link_backend, state_dir=tmp_path / "s") as bay:
        assert bay.terminal_id == "ATM00002"
        assert bay.link("receipt_printer").backend == link_backend
        assert (tmp_path / "s" / "receipt_printer").is_dir()
        with ReceiptPrinterDriver(bay.url("receipt_printer")) as printer:
            assert printer.status().paper == "adequate"
            bay.inject("receipt_printer", "paper_out")
            assert printer.status().paper == "out"


def test_the_profile_chooses_each_link(tmp_path: Path) -> None:
    document = {
        **PRINTER_ONLY,
        "devices": {"receipt_printer": {"link": {"backend": "socket", "baud": 19200}}},
    }
    with DeviceBay.from_profile(write_profile(tmp_path, document)) as bay:
        assert bay.url("receipt_printer").startswith("socket://127.0.0.1:")
        assert bay.runner("receipt_printer").baud == 19200


def test_bay_of_own_emulators_and_its_errors() -> None:
    bay = DeviceBay({"echo": Echo()}, backend="sim")
    with pytest.raises(BayError, match="not running; start"):
        bay.url("echo")
    with bay:
        assert bay.urls() == {"echo": "sim://echo"}
        assert echo_once(bay.url("echo"), b"ping") == b"ping"
        with pytest.raises(BayError, match="already started"):
            bay.start()
        with pytest.raises(BayError, match="no device 'card_reader' in this bay; devices: echo"):
            _ = bay.card_reader
    bay.stop()  # twice is harmless
    assert not any(e.name == "sim://echo" for e in LIVE.entries())
    with pytest.raises(UnknownBackend):
        DeviceBay({"echo": Echo()}, backend="serial")


def test_make_device_bay_stops_its_bays(make_device_bay: Any, link_backend: str) -> None:
    bay = make_device_bay(emulators={"echo": Echo()}, backend=link_backend)
    assert echo_once(bay.url("echo"), bytes(range(256))) == bytes(range(256))


# ----- the pytest plugin, as a user's test suite sees it ------------------------------------------


def test_leak_check_fails_the_test_that_leaks_and_names_the_leak(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        from peripherals.links.backends import open_endpoint
        from peripherals.links.runner import LinkRunner
        from peripherals.emulator import Emulator

        class Echo(Emulator):
            NAME = "leaky"
            def receive(self, data):
                self.send(data)

        def test_leaks():
            LinkRunner(Echo(), open_endpoint("sim", "leaky")).start()

        def test_clean_afterwards():
            runner = LinkRunner(Echo(), open_endpoint("sim", "leaky")).start()
            runner.stop()
        """
    )
    result = pytester.runpytest_inprocess(*QUIET)
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        ["*test_leaks leaked harness resources: runner leaky on sim://leaky*endpoint sim://leaky*"]
    )
    assert not any(e.name == "sim://leaky" for e in LIVE.entries())


def test_leak_check_can_be_switched_off(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        from peripherals.links.backends import open_endpoint

        LEFT = []

        @pytest.mark.atm_sim_no_leak_check
        def test_keeps_an_endpoint_on_purpose():
            LEFT.append(open_endpoint("sim", "kept"))

        def test_then_closes_it():
            LEFT.pop().close()
        """
    )
    result = pytester.runpytest_inprocess(*QUIET)
    result.assert_outcomes(passed=2)


def test_a_users_test_with_device_bay_on_every_backend(pytester: pytest.Pytester) -> None:
    (pytester.path / "printer.yaml").write_text(yaml.safe_dump(PRINTER_ONLY), encoding="utf-8")
    pytester.makeini("[pytest]\natm_sim_profile = printer.yaml\n")
    pytester.makepyfile(
        """
        from device.drivers.receipt_printer import ReceiptPrinterDriver

        def test_printer_status(device_bay, link_backend):
            assert device_bay.terminal_id == "ATM00002"
            assert device_bay.link("receipt_printer").backend == link_backend
            with ReceiptPrinterDriver(device_bay.url("receipt_printer"), timeout=0.3) as printer:
                device_bay.inject("receipt_printer", "cover_open")
                assert printer.status().cover_open is True
                armed = [str(f) for f in device_bay.armed()]
                assert armed == ["receipt_printer: cover_open (persistent)"]

        def test_pty_by_default(device_bay):
            assert device_bay.url("receipt_printer").startswith("/dev/")
        """
    )
    result = pytester.runpytest_inprocess(*QUIET)
    result.assert_outcomes(passed=len(BACKENDS) + 1)


def test_the_default_bay_builds_all_four_devices_with_state(tmp_path: Path) -> None:
    with DeviceBay.from_profile(backend="sim", state_dir=tmp_path) as bay:
        assert bay.urls() == {
            "card_reader": "sim://card_reader",
            "pin_pad": "sim://pin_pad",
            "cash_dispenser": "sim://cash_dispenser",
            "receipt_printer": "sim://receipt_printer",
        }
        for name in bay.names:
            assert name == bay.emulator(name).NAME
            assert (tmp_path / name).is_dir()
        assert len(bay.faults.targets()) == 8


def test_the_guide_names_every_fault_of_every_target() -> None:
    guide = (PROJECT_ROOT / "docs" / "harness.md").read_text(encoding="utf-8")
    rows = {line.split("|")[1].strip(" `"): line for line in guide.splitlines() if "| `" in line}
    for name in ("card_reader", "pin_pad", "cash_dispenser", "receipt_printer"):
        for fault in sorted(emulator_class(name).FAULTS):
            assert f"`{fault}`" in rows[name], f"docs/harness.md: {name} fault {fault} missing"
    for fault in ("drop", "delay", "corrupt", "split", "disconnect"):
        assert f"| `{fault}` |" in guide
