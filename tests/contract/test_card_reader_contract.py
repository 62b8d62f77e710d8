"""Card reader contract: CardReaderDriver against the emulator on every link backend.

Normal use, device faults and link faults; each test runs once on pty, socket, sim and inline.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from device.controller.device_status import CardMedia, CardReaderStatus
from device.controller.ports import DeviceTimeout
from device.drivers.card_reader import CardReaderDriver, CardReaderError, CardReadError
from peripherals.card_reader import CardHandlingError, CardReaderEmulator, MediaState
from peripherals.cards import load_wallet
from peripherals.harness.bay import DeviceBay
from peripherals.harness.profile import DEFAULT_PROFILE, load_profile
from peripherals.harness.pytest_plugin import MakeBay
from peripherals.wire import card_reader as wire

READER = "card_reader"
LINK = "card_reader.link"
# The reader of the default ATM profile; tests change a key or give it a state_dir.
PROFILE_SECTION: dict[str, Any] = dict(load_profile(DEFAULT_PROFILE).devices[READER].settings)
WALLET = Path(PROFILE_SECTION["wallet"])
ALICE_PAN = "4761739001010010"
# An ACK timeout short enough that tests of a silent reader cost little wall time; the
# protocol's own value is checked once, in test_power_off_is_silence_then_a_reader_to_initialise.
SHORT_ACK_TIMEOUT = 0.1


@dataclass
class Reader:
    bay: DeviceBay
    emulator: CardReaderEmulator
    driver: CardReaderDriver


MakeReader = Callable[..., Reader]


def quiet(reader: Reader) -> None:
    """Wait until the reader has the driver's ACK of its last reply, so a link fault armed next
    meets the next command and not that ACK."""
    deadline = time.monotonic() + 1.0
    while reader.emulator.awaiting_ack and time.monotonic() < deadline:
        time.sleep(0.002)
    assert not reader.emulator.awaiting_ack


@pytest.fixture
def make_reader(make_device_bay: MakeBay, link_backend: str) -> Iterator[MakeReader]:
    """make_reader(state_dir=None, initialise=True, **section): an initialised reader of
    PROFILE_SECTION updated by `section`, in a bay on `link_backend`, and its driver."""
    drivers: list[CardReaderDriver] = []

    def make(*, state_dir: Path | None = None, initialise: bool = True, **section: Any) -> Reader:
        emulator = CardReaderEmulator.from_config(
            {**PROFILE_SECTION, **section}, state_dir=state_dir
        )
        bay = make_device_bay(emulators={READER: emulator}, backend=link_backend)
        driver = CardReaderDriver(bay.url(READER), timeout=1.0)
        drivers.append(driver)
        reader = Reader(bay, emulator, driver)
        if initialise:
            driver.initialise()
            quiet(reader)
        return reader

    yield make
    for driver in drivers:
        driver.close()


@pytest.fixture
def reader(make_reader: MakeReader) -> Reader:
    return make_reader()


def card_inside(reader: Reader, card_id: str = "alice") -> None:
    reader.driver.enable_entry()
    assert reader.emulator.insert_card(card_id) is MediaState.INSIDE


def wrap_send(reader: Reader, action: Callable[[bytes], None]) -> None:
    """Call `action` with each chunk the reader sends, before it goes on the link."""
    original = reader.emulator.send

    def send(data: bytes) -> None:
        action(data)
        original(data)

    reader.emulator.send = send  # type: ignore[method-assign]


def set_ack_timeout(driver: CardReaderDriver, seconds: float) -> None:
    """Give this driver another ACK timeout (`del driver.RULES` brings the protocol's back)."""
    driver.RULES = replace(CardReaderDriver.RULES, ack_timeout=seconds)


# ----- normal use -----------------------------------------------------------------------------


def test_status_of_an_empty_initialised_reader(reader: Reader) -> None:
    assert reader.driver.status() == CardReaderStatus(media=CardMedia.NONE, retain_bin_full=False)


def test_insert_read_eject_take(reader: Reader) -> None:
    emulator, driver = reader.emulator, reader.driver
    assert driver.status().media == "none"
    card_inside(reader)
    status = driver.status()
    assert (status.media, status.retain_bin_full, status.initialised) == ("inside", False, True)
    assert not emulator.entry_enabled  # the shutter closed behind the card
    tracks = driver.read_tracks()
    assert (tracks.pan, tracks.expiry, tracks.service_code) == (ALICE_PAN, "3012", "201")
    assert tracks.track2 == "4761739001010010=30122010000000000"
    assert tracks.track1 == "B4761739001010010^MARTIN/ALICE^30122010000000000"
    assert tracks.masked_pan == "476173******0010"
    assert ALICE_PAN not in repr(tracks)
    driver.eject()
    assert driver.status().media == "gate"
    taken = emulator.take_card()
    assert (taken.card_id, taken.pan) == ("alice", ALICE_PAN)
    assert driver.status().media == "none"
    assert driver.stats.retries == 0


def test_a_card_inserted_with_entry_disabled_waits_at_the_gate(reader: Reader) -> None:
    reader.driver.disable_entry()
    assert reader.emulator.insert_card("bob") is MediaState.GATE
    assert reader.driver.status().media == "gate"
    reader.driver.accept_entry()
    assert reader.driver.status().media == "inside"
    assert reader.driver.read_tracks().pan == "4111111111111111"


def test_customer_actions_that_cannot_happen_are_refused(reader: Reader) -> None:
    with pytest.raises(CardHandlingError, match="no card at the gate"):
        reader.emulator.take_card()
    card_inside(reader)
    with pytest.raises(CardHandlingError, match="already in the reader"):
        reader.emulator.insert_card("bob")
    with pytest.raises(CardHandlingError, match="no card 'zed' in the wallet"):
        reader.emulator.insert_card("zed")


def test_capture_puts_the_card_in_the_retain_bin_which_survives_a_restart(
    make_reader: MakeReader, tmp_path: Path
) -> None:
    reader = make_reader(state_dir=tmp_path)
    card_inside(reader)
    reader.driver.capture()
    assert reader.driver.status().media == "none"
    assert reader.emulator.retained_count == 1
    assert reader.emulator.retained_cards == ["476173******0010"]
    again = CardReaderEmulator.from_config({"wallet": str(WALLET)}, state_dir=tmp_path)
    assert again.retained_count == 1
    assert ALICE_PAN not in (tmp_path / "retain_bin.json").read_text()


def test_capture_of_a_card_left_at_the_gate(reader: Reader) -> None:
    card_inside(reader)
    reader.driver.eject()
    reader.driver.capture()
    assert reader.emulator.state is MediaState.NONE
    assert reader.emulator.retained_count == 1


def test_initialise_captures_a_card_left_inside(reader: Reader) -> None:
    card_inside(reader)
    reader.driver.initialise()
    assert reader.emulator.retained_count == 1
    card_inside(reader, "charlie")
    reader.driver.initialise(card="eject")
    assert reader.driver.status().media == "gate"


def test_commands_without_a_card_are_refused(reader: Reader) -> None:
    for call in (reader.driver.read_tracks, reader.driver.eject, reader.driver.capture):
        with pytest.raises(CardReaderError) as caught:
            call()
        assert caught.value.code == "02"
        assert not isinstance(caught.value, CardReadError)


def test_a_fresh_reader_must_be_initialised(make_reader: MakeReader) -> None:
    reader = make_reader(initialise=False)
    assert reader.driver.status().initialised is False
    with pytest.raises(CardReaderError, match=r"not initialised \(B0\)"):
        reader.driver.enable_entry()
    reader.driver.initialise()
    assert reader.driver.status().initialised is True


def test_a_card_number_failing_luhn_is_a_read_error(reader: Reader) -> None:
    alice = load_wallet(WALLET)["alice"]
    reader.driver.enable_entry()
    reader.emulator.insert_card(replace(alice, pan="4761739001010011"))
    with pytest.raises(CardReadError, match=r"476173\*\*\*\*\*\*0011 fails the Luhn check"):
        reader.driver.read_tracks()


def test_no_full_card_number_is_logged(reader: Reader, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    card_inside(reader)
    reader.driver.read_tracks()
    reader.bay.inject(READER, "unreadable_track", mode="once", track=1)
    reader.driver.read_tracks()
    reader.driver.eject()
    reader.emulator.take_card()
    assert "476173******0010" in caplog.text
    assert ALICE_PAN not in caplog.text


# ----- device faults ----------------------------------------------------------------------------


def test_unreadable_track_2_is_a_read_error(reader: Reader) -> None:
    card_inside(reader)
    reader.bay.inject(READER, "unreadable_track", mode="once", track=2, damage="lrc")
    with pytest.raises(CardReadError) as caught:
        reader.driver.read_tracks()
    assert (caught.value.code, caught.value.reason) == ("24", "read error: LRC")
    assert reader.driver.read_tracks().pan == ALICE_PAN  # the fault was once


def test_unreadable_track_1_leaves_track_2(reader: Reader) -> None:
    card_inside(reader)
    reader.bay.inject(READER, "unreadable_track", track=1)
    tracks = reader.driver.read_tracks()
    assert tracks.track1 is None
    assert tracks.pan == ALICE_PAN


def test_the_damaged_card_does_not_read(reader: Reader) -> None:
    card_inside(reader, "damaged")
    with pytest.raises(CardReadError) as caught:
        reader.driver.read_tracks()
    assert caught.value.code == "23"


def test_a_jam_on_eject_is_a_device_fault_until_cleared(reader: Reader) -> None:
    card_inside(reader)
    reader.bay.inject(READER, "jam", mode="once")
    with pytest.raises(CardReaderError) as caught:
        reader.driver.eject()
    assert (caught.value.code, caught.value.reason) == ("10", "card jammed")
    assert reader.driver.status().media == "jammed"
    with pytest.raises(CardReaderError, match="card jammed"):
        reader.driver.read_tracks()  # the jam outlives its once-only fault
    reader.bay.clear(READER, "jam")
    assert reader.driver.status().media == "none"


def test_jam_on_entry(reader: Reader) -> None:
    reader.bay.inject(READER, "jam")
    reader.driver.enable_entry()
    assert reader.emulator.insert_card("alice") is MediaState.JAMMED
    assert reader.driver.status().media == "jammed"


def test_card_too_short_stays_at_the_gate(reader: Reader) -> None:
    reader.bay.inject(READER, "card_too_short", mode="once")
    reader.driver.enable_entry()
    assert reader.emulator.insert_card("alice") is MediaState.GATE
    status = reader.driver.status()
    assert (status.media, status.last_error) == ("gate", "14")
    assert reader.driver.status().last_error == ""  # reported once
    reader.bay.inject(READER, "card_too_short", mode="once")
    with pytest.raises(CardReaderError) as caught:
        reader.driver.accept_entry()
    assert (caught.value.code, caught.value.reason) == ("14", "card too short")
    reader.emulator.take_card()


def test_retain_bin_full_by_fault(reader: Reader) -> None:
    card_inside(reader)
    reader.bay.inject(READER, "retain_bin_full")
    assert reader.driver.status().retain_bin_full is True
    with pytest.raises(CardReaderError) as caught:
        reader.driver.capture()
    assert (caught.value.code, caught.value.reason) == ("E1", "retain bin full")
    assert reader.driver.status().media == "inside"


def test_retain_bin_full_by_capacity(make_reader: MakeReader) -> None:
    reader = make_reader(retain_capacity=1)
    card_inside(reader)
    reader.driver.capture()
    assert reader.driver.status().retain_bin_full is True
    card_inside(reader, "bob")
    with pytest.raises(CardReaderError, match=r"retain bin full \(E1\)"):
        reader.driver.capture()
    assert reader.emulator.empty_retain_bin() == 1
    reader.driver.capture()
    assert reader.emulator.retained_count == 1


def test_card_pulled_out_during_eject(reader: Reader) -> None:
    card_inside(reader)
    reader.bay.inject(READER, "card_pulled_out", mode="once")
    with pytest.raises(CardReaderError) as caught:
        reader.driver.eject()
    assert caught.value.code == "40"
    assert reader.driver.status().media == "none"


def test_power_down_during_a_command(reader: Reader) -> None:
    card_inside(reader)
    reader.bay.inject(READER, "power_down", mode="once")
    with pytest.raises(CardReaderError) as caught:
        reader.driver.read_tracks()
    assert caught.value.code == "30"
    status = reader.driver.status()
    assert (status.media, status.initialised) == ("inside", False)
    with pytest.raises(CardReaderError, match="B0"):
        reader.driver.eject()
    reader.driver.initialise(card="keep")
    assert reader.driver.read_tracks().pan == ALICE_PAN


def test_power_off_is_silence_then_a_reader_to_initialise(reader: Reader) -> None:
    # The protocol's numbers (docs/protocols): three sends, 0.3 s each for the ACK. The silence
    # itself is timed with a shorter ACK timeout: the same code path, a third of the wall time.
    assert (CardReaderDriver.RULES.sends, CardReaderDriver.RULES.ack_timeout) == (3, 0.3)
    set_ack_timeout(reader.driver, SHORT_ACK_TIMEOUT)
    reader.bay.inject(READER, "power_down")
    started = time.monotonic()
    with pytest.raises(DeviceTimeout, match="did not acknowledge C10 after 3 tries"):
        reader.driver.status()
    elapsed = time.monotonic() - started
    assert 3 * SHORT_ACK_TIMEOUT * 0.95 < elapsed < 3 * SHORT_ACK_TIMEOUT + 1.0
    stats = reader.driver.stats
    assert (stats.retries, stats.timeouts, stats.naks) == (2, 3, 0)
    del reader.driver.RULES  # the protocol's timeout again, for a reply on a loaded machine
    reader.bay.clear(READER, "power_down")
    assert reader.driver.status().initialised is False


def test_power_off_while_idle_also_needs_initialise(reader: Reader) -> None:
    reader.bay.inject(READER, "power_down")
    deadline = time.monotonic() + 1.0
    while reader.emulator.initialised and time.monotonic() < deadline:
        time.sleep(0.005)
    assert reader.emulator.insert_card("alice") is MediaState.GATE  # no power: the card stays out
    reader.bay.clear(READER, "power_down")
    with pytest.raises(CardReaderError, match="B0"):
        reader.driver.enable_entry()


# ----- link faults ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "damage",
    [
        {},  # a byte of the text: the CRC fails and the reader refuses the frame at once
        {"index": 2},  # the length: the reader waits for more until its inter-byte timeout
    ],
    ids=["text", "length"],
)
def test_a_corrupted_command_is_refused_and_sent_again(
    reader: Reader, damage: dict[str, int]
) -> None:
    # The reader's NAK of a cut-off frame (0.25 s) must come before the driver sends again on
    # its own (0.3 s): 50 ms that a busy machine or a socket link's latency can eat.
    set_ack_timeout(reader.driver, 1.0)
    card_inside(reader)
    quiet(reader)
    reader.bay.inject(LINK, "corrupt", mode="once", **damage)
    assert reader.driver.read_tracks().pan == ALICE_PAN
    assert reader.driver.stats.retries == 1
    assert reader.emulator.refused_frames == 1
    assert reader.emulator.status()["refused_frames"] == 1


def test_a_corrupted_reply_is_refused_and_sent_again(reader: Reader) -> None:
    corrupted: list[bool] = []

    def corrupt_first_reply(data: bytes) -> None:
        if data[0] == wire.STX and not corrupted:
            corrupted.append(True)
            reader.bay.inject(LINK, "corrupt", mode="once")

    wrap_send(reader, corrupt_first_reply)
    assert reader.driver.status().media == "none"
    assert reader.emulator.resent_replies == 1
    assert reader.driver.stats.retries == 0 and reader.driver.stats.refused == 1


def stall_first_reply(reader: Reader) -> list[bytes]:
    """The reader's first reply sent in two parts with a pause beyond the inter-byte timeout
    between them, the pause in the reader's own code (as a slow device would)."""
    original = reader.emulator.send
    stalled: list[bytes] = []

    def send(data: bytes) -> None:
        if data[0] == wire.STX and not stalled:  # its tail comes after the 250 ms rule allows
            stalled.append(data)
            original(data[:3])
            time.sleep(wire.INTER_BYTE_TIMEOUT + 0.15)
            original(data[3:])
            return
        original(data)

    reader.emulator.send = send  # type: ignore[method-assign]
    return stalled


# On an inline link the device's own code runs inside the driver's write (the next test).
@pytest.mark.parametrize("link_backend", ["pty", "socket", "sim"])
def test_a_reply_stalled_mid_frame_is_refused_and_sent_again(reader: Reader) -> None:
    stalled = stall_first_reply(reader)
    assert reader.driver.status().media == "none"
    # Sent again on the NAK, and maybe on the reader's own ACK timeout too, which the stall
    # (in the reader's send) may outlast: either way the driver refused the stalled frame once.
    assert stalled and reader.emulator.resent_replies >= 1
    assert reader.driver.stats.refused == 1 and reader.driver.stats.retries == 0


@pytest.mark.parametrize("link_backend", ["inline"])
def test_on_an_inline_link_a_pause_in_the_device_is_inside_the_drivers_write(
    reader: Reader,
) -> None:
    stalled = stall_first_reply(reader)
    assert reader.driver.status().media == "none"
    # The reply was whole when the driver first read it: nothing refused.
    assert stalled and reader.driver.stats.refused == 0


def test_a_dropped_reply_is_sent_again_after_silence(reader: Reader) -> None:
    dropped: list[bool] = []

    def drop_first_reply(data: bytes) -> None:
        if data[0] == wire.STX and not dropped:
            dropped.append(True)
            reader.bay.inject(LINK, "drop", mode="once")

    wrap_send(reader, drop_first_reply)
    started = time.monotonic()
    assert reader.driver.status().media == "none"
    assert time.monotonic() - started >= wire.ACK_TIMEOUT
    assert reader.emulator.resent_replies == 1


def test_dle_eot_stops_the_reader_resending(reader: Reader) -> None:
    original = reader.emulator.send
    armed = threading.Event()

    def send_then_lose_the_hosts_ack(data: bytes) -> None:
        original(data)
        if data[0] == wire.STX and not armed.is_set():
            reader.bay.inject(LINK, "drop", mode="once")  # the driver's ACK of this reply
            armed.set()

    reader.emulator.send = send_then_lose_the_hosts_ack  # type: ignore[method-assign]
    assert reader.driver.status().media == "none"
    assert armed.wait(1.0)
    deadline = time.monotonic() + 1.0
    while reader.bay.armed() and time.monotonic() < deadline:
        time.sleep(0.002)  # until the link has lost the ACK
    assert reader.bay.armed() == []
    reader.driver.cancel()
    time.sleep(wire.ACK_TIMEOUT + 0.1)
    assert reader.emulator.resent_replies == 0


def test_a_dropped_ack_lets_the_reply_count(reader: Reader) -> None:
    def drop_acks(data: bytes) -> None:
        if data == bytes((wire.ACK,)):
            reader.bay.inject(LINK, "drop", mode="once")

    wrap_send(reader, drop_acks)
    card_inside(reader)
    assert reader.driver.read_tracks().pan == ALICE_PAN
    assert reader.driver.stats.retries == 0


def test_a_dropped_command_is_sent_again(reader: Reader) -> None:
    reader.bay.inject(LINK, "drop", mode="once")
    assert reader.driver.status().media == "none"
    assert reader.driver.stats.retries == 1


def test_a_link_that_damages_every_command_gives_up_after_three_tries(reader: Reader) -> None:
    original = reader.emulator.send
    naks: list[bytes] = []

    def send_then_spoil_the_next_command(data: bytes) -> None:
        original(data)
        if data == bytes((wire.NAK,)):
            naks.append(data)
            if len(naks) < 3:
                reader.bay.inject(LINK, "corrupt", mode="once")  # the command sent again

    reader.emulator.send = send_then_spoil_the_next_command  # type: ignore[method-assign]
    reader.bay.inject(LINK, "corrupt", mode="once")
    with pytest.raises(CardReaderError) as caught:
        reader.driver.status()
    assert (caught.value.code, caught.value.reason) == ("NAK", "frame damaged on the link")
    assert reader.emulator.refused_frames == 3 and reader.driver.stats.naks == 3
    reader.bay.clear(LINK)
    assert reader.driver.status().media == "none"


def test_a_link_that_damages_everything_is_a_timeout(reader: Reader) -> None:
    set_ack_timeout(reader.driver, SHORT_ACK_TIMEOUT)
    reader.bay.inject(LINK, "corrupt", index=0)  # every STX, ACK and NAK, both ways
    with pytest.raises(DeviceTimeout):
        reader.driver.status()
    del reader.driver.RULES
    reader.bay.clear(LINK)
    assert reader.driver.status().media == "none"


def test_garbage_and_bad_frames_do_not_upset_the_reader(reader: Reader) -> None:
    # The driver's port used raw: a second port on the link would take a socket link over and
    # is refused on a sim link.
    driver = reader.driver
    driver.write(b"\x00\xffjunk" + bytes.fromhex("F2 FF FF") + wire.build_frame(b"C90"))
    deadline = time.monotonic() + 1.0
    answer = b""
    while wire.build_frame(b"N9000") not in answer and time.monotonic() < deadline:
        answer += driver.read_some(deadline)
    assert answer.startswith(bytes((wire.NAK, wire.ACK)))  # the bad length, then C90
    assert wire.build_frame(b"N9000") in answer
    driver.write(bytes((wire.ACK,)))
    assert driver.status().media == "none"
