"""The fault board: one inject / clear / list over every device and link, with clear errors."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from device.drivers.base import SerialDriver
from peripherals.emulator import Emulator
from peripherals.faults import FaultError
from peripherals.harness.bay import DeviceBay
from peripherals.harness.fault_board import FaultBoard, UnknownTarget


class Latching(Emulator):
    """Echoes; a fault that fired stays latched until the operator clears it."""

    NAME = "card_reader"
    FAULTS = frozenset({"jam", "unresponsive"})

    def __init__(self) -> None:
        super().__init__()
        self.latched: set[str] = set()

    def receive(self, data: bytes) -> None:
        self.faults.command_seen()
        if self.faults.take("jam") is not None:
            self.latched.add("jam")
        self.send(b"J" if "jam" in self.latched else data)

    def clear_fault(self, name: str | None = None) -> None:
        self.faults.clear(name)
        if name is None:
            self.latched.clear()
        else:
            self.latched.discard(name)


class Printer(Emulator):
    NAME = "receipt_printer"
    FAULTS = frozenset({"paper_out", "jam"})

    def receive(self, data: bytes) -> None:
        self.send(data)


@pytest.fixture
def bay() -> Iterator[DeviceBay]:
    with DeviceBay(
        {"card_reader": Latching(), "receipt_printer": Printer()}, backend="sim"
    ) as started:
        yield started


def exchange(driver: SerialDriver, data: bytes, count: int, seconds: float = 2.0) -> bytes:
    driver.write(data)
    deadline = time.monotonic() + seconds
    out = b""
    while len(out) < count and time.monotonic() < deadline:
        out += driver.read_some(deadline)
    return out


def test_targets_are_devices_and_their_links(bay: DeviceBay) -> None:
    assert bay.faults.targets() == [
        "card_reader",
        "card_reader.link",
        "receipt_printer",
        "receipt_printer.link",
    ]
    assert bay.faults.known("card_reader.link") == [
        "corrupt",
        "delay",
        "disconnect",
        "drop",
        "split",
    ]


def test_unknown_target_is_one_line_naming_the_valid_targets(bay: DeviceBay) -> None:
    with pytest.raises(UnknownTarget) as caught:
        bay.inject("cash_dispenser", "jam")
    message = str(caught.value)
    assert "\n" not in message
    assert message == (
        "unknown fault target 'cash_dispenser'; valid targets: "
        "card_reader, card_reader.link, receipt_printer, receipt_printer.link"
    )
    assert isinstance(caught.value, FaultError)
    assert isinstance(caught.value, LookupError)
    with pytest.raises(UnknownTarget):
        bay.clear("printer")


def test_unknown_fault_names_the_known_ones(bay: DeviceBay) -> None:
    with pytest.raises(
        FaultError, match=r"card_reader: unknown fault 'paper_out'; known: jam, unr"
    ):
        bay.inject("card_reader", "paper_out")
    with pytest.raises(FaultError, match=r"receipt_printer\.link: unknown fault 'jam'"):
        bay.inject("receipt_printer.link", "jam")
    with pytest.raises(FaultError, match="any target: unknown fault 'smoke'"):
        bay.clear(fault="smoke")
    assert [str(f) for f in bay.armed()] == []


def test_bad_modes_are_refused(bay: DeviceBay) -> None:
    with pytest.raises(FaultError, match="fault mode 'sometimes' is not one of"):
        bay.inject("card_reader", "jam", mode="sometimes")
    with pytest.raises(FaultError, match="needs a command number >= 1"):
        bay.inject("card_reader", "jam", mode="on_command")


def test_inject_describes_and_list_shows_every_armed_fault(bay: DeviceBay) -> None:
    assert bay.inject("receipt_printer", "paper_out") == "paper_out (persistent)"
    assert bay.inject("card_reader.link", "delay", mode="once", seconds=0.1) == (
        "delay (once; seconds=0.1)"
    )
    assert bay.inject("card_reader", "jam", mode="on_command", on_command=2) == (
        "jam (on_command on command 2)"
    )
    assert [str(f) for f in bay.armed()] == [
        "card_reader: jam (on_command on command 2)",
        "card_reader.link: delay (once; seconds=0.1)",
        "receipt_printer: paper_out (persistent)",
    ]


def test_clear_one_a_target_a_name_everywhere_or_all(bay: DeviceBay) -> None:
    bay.inject("card_reader", "jam")
    bay.inject("receipt_printer", "jam")
    bay.inject("receipt_printer", "paper_out")
    bay.inject("receipt_printer.link", "drop")
    bay.clear("receipt_printer", "paper_out")
    assert len([str(f) for f in bay.armed()]) == 3
    bay.clear(fault="jam")  # on every target that knows it
    assert [str(f) for f in bay.armed()] == ["receipt_printer.link: drop (persistent)"]
    bay.inject("card_reader", "unresponsive")
    bay.clear("card_reader")
    assert [str(f) for f in bay.armed()] == ["receipt_printer.link: drop (persistent)"]
    bay.clear()
    assert [str(f) for f in bay.armed()] == []


def test_on_command_fires_on_the_nth_command_and_clear_resets_the_device(
    bay: DeviceBay,
) -> None:
    bay.inject("card_reader", "jam", mode="on_command", on_command=2)
    with SerialDriver(bay.url("card_reader")) as driver:
        assert exchange(driver, b"a", 1) == b"a"
        assert exchange(driver, b"b", 1) == b"J"
        assert [str(f) for f in bay.armed()] == []  # used up by firing, but the device stays jammed
        assert exchange(driver, b"c", 1) == b"J"
        bay.clear("card_reader", "jam")  # goes through the device's own clear_fault
        assert exchange(driver, b"d", 1) == b"d"


def test_link_faults_through_the_board_reach_the_link(bay: DeviceBay) -> None:
    with SerialDriver(bay.url("receipt_printer")) as driver:
        bay.inject("receipt_printer.link", "corrupt", mode="once", index=0)
        assert exchange(driver, b"\x00\x01", 2) == b"\xff\x01"
        bay.inject("receipt_printer.link", "disconnect")
        assert exchange(driver, b"x", 1, 0.2) == b""
        bay.clear("receipt_printer.link", "disconnect")
        assert exchange(driver, b"y", 1) == b"y"


def test_a_board_of_plain_fault_sets() -> None:
    board = FaultBoard()
    device = Printer()
    board.add("receipt_printer", device.faults)
    board.inject("receipt_printer", "jam", mode="once")
    assert device.faults.take("jam") is not None
    assert device.faults.take("jam") is None
    assert [str(f) for f in board.armed()] == []


def test_a_misspelt_fault_parameter_is_refused_naming_what_the_fault_accepts() -> None:
    # A jam "after_note" used to be armed anyway and fire after 0 notes, its default.
    with DeviceBay.from_profile(backend="sim") as real:
        with pytest.raises(FaultError) as caught:
            real.inject("cash_dispenser", "jam", mode="once", after_note=1)
        assert str(caught.value) == (
            "cash_dispenser: jam has no parameter 'after_note'; it accepts: after_notes"
        )
        with pytest.raises(
            FaultError, match="double_pick has no parameter 'cassete'; it accepts: cassette, count"
        ):
            real.inject("cash_dispenser", "double_pick", cassete=2)
        with pytest.raises(FaultError, match="shutter_jam takes no parameters, not 'seconds'"):
            real.inject("cash_dispenser", "shutter_jam", seconds=1)
        with pytest.raises(FaultError, match=r"pin_pad\.link: delay has no parameter 'second'"):
            real.inject("pin_pad.link", "delay", second=0.5)
        assert [str(f) for f in real.armed()] == []  # nothing was armed
        assert real.inject("cash_dispenser", "jam", mode="once", after_notes=1) == (
            "jam (once; after_notes=1)"
        )


@pytest.mark.parametrize(
    ("target", "fault", "params", "reason"),
    [
        ("cash_dispenser", "jam", {"after_notes": -1}, "after_notes expects a whole number >= 0"),
        ("cash_dispenser", "jam", {"after_notes": "1"}, "not '1'"),
        ("cash_dispenser", "cassette_empty", {"cassette": 5}, "a whole number from 1 to 4"),
        ("card_reader", "unreadable_track", {"damage": "scratched"}, "one of no_start_sentinel"),
        ("card_reader", "unreadable_track", {"track": True}, "not True"),
        ("pin_pad", "key_stuck", {}, "key_stuck needs key (one of 0, 1,"),
        ("pin_pad", "key_stuck", {"key": "F9"}, "not 'F9'"),
        ("receipt_printer.link", "split", {"gap": -0.1}, "gap expects a number >= 0"),
    ],
)
def test_a_fault_parameter_of_the_wrong_kind_is_refused(
    target: str, fault: str, params: dict[str, object], reason: str
) -> None:
    with DeviceBay.from_profile(backend="sim") as real:
        with pytest.raises(FaultError) as caught:
            real.inject(target, fault, **params)
        message = str(caught.value)
        assert reason in message and "\n" not in message
        assert message.startswith(f"{target}: {fault}")
        assert [str(f) for f in real.armed()] == []


def test_a_link_fault_on_command_fires_on_the_nth_chunk_over_a_pty() -> None:
    # The link never counted commands, so an on_command link fault stayed armed for ever.
    with DeviceBay({"receipt_printer": Printer()}, backend="pty") as bay:
        assert bay.url("receipt_printer").startswith("/dev/")
        bay.inject("receipt_printer.link", "drop", mode="on_command", on_command=2)
        with SerialDriver(bay.url("receipt_printer")) as driver:
            assert exchange(driver, b"a", 1) == b"a"
            assert exchange(driver, b"b", 1, 0.3) == b""  # the 2nd chunk from the driver: lost
            assert [str(f) for f in bay.armed()] == []  # used up by firing
            assert exchange(driver, b"c", 1) == b"c"
            bay.inject("receipt_printer.link", "corrupt", mode="on_command", on_command=1, index=0)
            assert exchange(driver, b"\x00", 1) == b"\xff"
