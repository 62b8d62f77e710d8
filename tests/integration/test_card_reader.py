"""The card reader emulator driven by CardReaderDriver over a real pseudo-terminal."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from device.controller.ports import DeviceTimeout
from device.drivers.base import SerialDriver
from device.drivers.card_reader import CardReaderDriver, CardReaderError, CardReadError
from peripherals.card_reader import CardHandlingError, CardReaderEmulator, MediaState
from peripherals.cards import load_wallet
from peripherals.links.endpoint import PtyEndpoint
from peripherals.links.runner import LinkRunner
from peripherals.wire import card_reader as wire

WALLET = Path(__file__).parents[2] / "config" / "wallet.yaml"
ALICE_PAN = "4761739001010010"


@dataclass
class Rig:
    reader: CardReaderEmulator
    link: LinkRunner
    driver: CardReaderDriver


@pytest.fixture
def make_rig() -> Iterator[Callable[..., Rig]]:
    rigs: list[Rig] = []

    def make(*, retain_capacity: int = 20, state_dir: Path | None = None) -> Rig:
        reader = CardReaderEmulator.from_config(
            {"wallet": str(WALLET), "retain_capacity": retain_capacity}, state_dir=state_dir
        )
        link = LinkRunner(reader, PtyEndpoint()).start()
        rig = Rig(reader, link, CardReaderDriver(link.url, timeout=1.0))
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        rig.driver.close()
        rig.link.stop()


@pytest.fixture
def rig(make_rig: Callable[..., Rig]) -> Rig:
    rig = make_rig()
    rig.driver.initialise()
    return rig


def card_inside(rig: Rig, card_id: str = "alice") -> None:
    rig.driver.enable_entry()
    assert rig.reader.insert_card(card_id) is MediaState.INSIDE


def quiet(rig: Rig) -> None:
    """Wait until the reader has the driver's ACK of its last reply, so a link fault injected
    next hits the next command and not that ACK."""
    deadline = time.monotonic() + 1.0
    while rig.reader.awaiting_ack and time.monotonic() < deadline:
        time.sleep(0.002)
    assert not rig.reader.awaiting_ack


def wrap_send(rig: Rig, action: Callable[[bytes], None]) -> list[bytes]:
    """Call `action` with each chunk the reader sends, before it goes on the link."""
    sent: list[bytes] = []
    original = rig.reader.send

    def send(data: bytes) -> None:
        sent.append(data)
        action(data)
        original(data)

    rig.reader.send = send  # type: ignore[method-assign]
    return sent


# ----- normal use -----------------------------------------------------------------------------


def test_insert_read_eject_take(rig: Rig) -> None:
    driver, reader = rig.driver, rig.reader
    assert driver.status().media == "none"
    card_inside(rig)
    status = driver.status()
    assert (status.media, status.retain_bin_full, status.initialised) == ("inside", False, True)
    assert not reader.entry_enabled  # the shutter closed behind the card
    tracks = driver.read_tracks()
    assert (tracks.pan, tracks.expiry, tracks.service_code) == (ALICE_PAN, "3012", "201")
    assert tracks.track2 == "4761739001010010=30122010000000000"
    assert tracks.track1 == "B4761739001010010^MARTIN/ALICE^30122010000000000"
    assert ALICE_PAN not in repr(tracks)
    driver.eject()
    assert driver.status().media == "gate"
    assert reader.take_card().card_id == "alice"
    assert driver.status().media == "none"
    assert driver.stats.retries == 0


def test_a_card_inserted_with_entry_disabled_waits_at_the_gate(rig: Rig) -> None:
    rig.driver.disable_entry()
    assert rig.reader.insert_card("bob") is MediaState.GATE
    assert rig.driver.status().media == "gate"
    rig.driver.accept_entry()
    assert rig.driver.status().media == "inside"
    assert rig.driver.read_tracks().pan == "4111111111111111"


def test_customer_actions_that_cannot_happen_are_refused(rig: Rig) -> None:
    with pytest.raises(CardHandlingError, match="no card at the gate"):
        rig.reader.take_card()
    card_inside(rig)
    with pytest.raises(CardHandlingError, match="already in the reader"):
        rig.reader.insert_card("bob")
    with pytest.raises(CardHandlingError, match="no card 'zed' in the wallet"):
        rig.reader.insert_card("zed")


def test_capture_counts_and_survives_a_restart(
    make_rig: Callable[..., Rig], tmp_path: Path
) -> None:
    rig = make_rig(state_dir=tmp_path)
    rig.driver.initialise()
    card_inside(rig)
    rig.driver.capture()
    assert rig.driver.status().media == "none"
    assert rig.reader.retained_count == 1
    assert rig.reader.retained_cards == ["476173******0010"]
    again = CardReaderEmulator.from_config({"wallet": str(WALLET)}, state_dir=tmp_path)
    assert again.retained_count == 1
    assert ALICE_PAN not in (tmp_path / "retain_bin.json").read_text()


def test_capture_of_a_card_left_at_the_gate(rig: Rig) -> None:
    card_inside(rig)
    rig.driver.eject()
    rig.driver.capture()
    assert rig.reader.state is MediaState.NONE
    assert rig.reader.retained_count == 1


def test_initialise_captures_a_card_left_inside(rig: Rig) -> None:
    card_inside(rig)
    rig.driver.initialise()
    assert rig.reader.retained_count == 1
    card_inside(rig, "charlie")
    rig.driver.initialise(card="eject")
    assert rig.driver.status().media == "gate"


def test_commands_without_a_card_are_refused(rig: Rig) -> None:
    for call in (rig.driver.read_tracks, rig.driver.eject, rig.driver.capture):
        with pytest.raises(CardReaderError) as caught:
            call()
        assert caught.value.code == "02"
        assert not isinstance(caught.value, CardReadError)


def test_a_fresh_reader_must_be_initialised(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    assert rig.driver.status().initialised is False
    with pytest.raises(CardReaderError, match=r"not initialised \(B0\)"):
        rig.driver.enable_entry()
    rig.driver.initialise()
    assert rig.driver.status().initialised is True


def test_a_card_number_failing_luhn_is_a_read_error(rig: Rig) -> None:
    alice = load_wallet(WALLET)["alice"]
    rig.driver.enable_entry()
    rig.reader.insert_card(replace(alice, pan="4761739001010011"))
    with pytest.raises(CardReadError, match=r"476173\*\*\*\*\*\*0011 fails the Luhn check"):
        rig.driver.read_tracks()


def test_no_full_card_number_is_logged(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    card_inside(rig)
    rig.driver.read_tracks()
    rig.reader.faults.inject("unreadable_track", mode="once", track=1)
    rig.driver.read_tracks()
    rig.driver.eject()
    rig.reader.take_card()
    assert "476173******0010" in caplog.text
    assert ALICE_PAN not in caplog.text


# ----- device faults ----------------------------------------------------------------------------


def test_unreadable_track_2_is_a_read_error(rig: Rig) -> None:
    card_inside(rig)
    rig.reader.faults.inject("unreadable_track", mode="once", track=2, damage="lrc")
    with pytest.raises(CardReadError) as caught:
        rig.driver.read_tracks()
    assert (caught.value.code, caught.value.reason) == ("24", "read error: LRC")
    assert rig.driver.read_tracks().pan == ALICE_PAN  # the fault was once


def test_unreadable_track_1_leaves_track_2(rig: Rig) -> None:
    card_inside(rig)
    rig.reader.faults.inject("unreadable_track", track=1)
    tracks = rig.driver.read_tracks()
    assert tracks.track1 is None
    assert tracks.pan == ALICE_PAN


def test_the_damaged_card_does_not_read(rig: Rig) -> None:
    card_inside(rig, "damaged")
    with pytest.raises(CardReadError) as caught:
        rig.driver.read_tracks()
    assert caught.value.code == "23"


def test_jam_on_eject_holds_until_cleared(rig: Rig) -> None:
    card_inside(rig)
    rig.reader.faults.inject("jam", mode="once")
    with pytest.raises(CardReaderError) as caught:
        rig.driver.eject()
    assert (caught.value.code, caught.value.reason) == ("10", "card jammed")
    assert rig.driver.status().media == "jammed"
    with pytest.raises(CardReaderError, match="card jammed"):
        rig.driver.read_tracks()
    rig.reader.clear_fault("jam")
    assert rig.driver.status().media == "none"


def test_jam_on_entry(rig: Rig) -> None:
    rig.reader.faults.inject("jam")
    rig.driver.enable_entry()
    assert rig.reader.insert_card("alice") is MediaState.JAMMED
    assert rig.driver.status().media == "jammed"


def test_card_too_short_stays_at_the_gate(rig: Rig) -> None:
    rig.reader.faults.inject("card_too_short", mode="once")
    rig.driver.enable_entry()
    assert rig.reader.insert_card("alice") is MediaState.GATE
    status = rig.driver.status()
    assert (status.media, status.last_error) == ("gate", "14")
    assert rig.driver.status().last_error == ""  # reported once
    rig.reader.faults.inject("card_too_short", mode="once")
    with pytest.raises(CardReaderError) as caught:
        rig.driver.accept_entry()
    assert (caught.value.code, caught.value.reason) == ("14", "card too short")
    rig.reader.take_card()


def test_retain_bin_full_by_fault(rig: Rig) -> None:
    card_inside(rig)
    rig.reader.faults.inject("retain_bin_full")
    assert rig.driver.status().retain_bin_full is True
    with pytest.raises(CardReaderError) as caught:
        rig.driver.capture()
    assert (caught.value.code, caught.value.reason) == ("E1", "retain bin full")
    assert rig.driver.status().media == "inside"


def test_retain_bin_full_by_capacity(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(retain_capacity=1)
    rig.driver.initialise()
    card_inside(rig)
    rig.driver.capture()
    assert rig.driver.status().retain_bin_full is True
    card_inside(rig, "bob")
    with pytest.raises(CardReaderError, match=r"retain bin full \(E1\)"):
        rig.driver.capture()
    assert rig.reader.empty_retain_bin() == 1
    rig.driver.capture()
    assert rig.reader.retained_count == 1


def test_card_pulled_out_during_eject(rig: Rig) -> None:
    card_inside(rig)
    rig.reader.faults.inject("card_pulled_out", mode="once")
    with pytest.raises(CardReaderError) as caught:
        rig.driver.eject()
    assert caught.value.code == "40"
    assert rig.driver.status().media == "none"


def test_power_down_during_a_command(rig: Rig) -> None:
    card_inside(rig)
    rig.reader.faults.inject("power_down", mode="once")
    with pytest.raises(CardReaderError) as caught:
        rig.driver.read_tracks()
    assert caught.value.code == "30"
    status = rig.driver.status()
    assert (status.media, status.initialised) == ("inside", False)
    with pytest.raises(CardReaderError, match="B0"):
        rig.driver.eject()
    rig.driver.initialise(card="keep")
    assert rig.driver.read_tracks().pan == ALICE_PAN


def test_power_off_is_silence_then_a_reader_to_initialise(rig: Rig) -> None:
    rig.reader.faults.inject("power_down")
    started = time.monotonic()
    with pytest.raises(DeviceTimeout, match="did not acknowledge C10 after 3 tries"):
        rig.driver.status()
    assert 0.85 < time.monotonic() - started < 2.0
    stats = rig.driver.stats
    assert (stats.retries, stats.timeouts, stats.naks) == (2, 3, 0)
    rig.reader.clear_fault("power_down")
    assert rig.driver.status().initialised is False


def test_power_off_while_idle_also_needs_initialise(rig: Rig) -> None:
    rig.reader.faults.inject("power_down")
    deadline = time.monotonic() + 1.0
    while rig.reader.initialised and time.monotonic() < deadline:
        time.sleep(0.005)
    assert rig.reader.insert_card("alice") is MediaState.GATE  # no power: the card stays out
    rig.reader.faults.clear("power_down")
    with pytest.raises(CardReaderError, match="B0"):
        rig.driver.enable_entry()


# ----- link faults ------------------------------------------------------------------------------


def test_a_corrupted_command_is_refused_and_sent_again(rig: Rig) -> None:
    card_inside(rig)
    quiet(rig)
    rig.link.faults.inject("corrupt", mode="once")
    assert rig.driver.read_tracks().pan == ALICE_PAN
    assert rig.driver.stats.retries == 1
    assert rig.reader.refused_frames == 1


def test_a_corrupted_reply_is_refused_and_sent_again(rig: Rig) -> None:
    corrupted: list[bool] = []

    def corrupt_first_reply(data: bytes) -> None:
        if data[0] == wire.STX and not corrupted:
            corrupted.append(True)
            rig.link.faults.inject("corrupt", mode="once")

    wrap_send(rig, corrupt_first_reply)
    assert rig.driver.status().media == "none"
    assert rig.reader.resent_replies == 1
    assert rig.driver.stats.retries == 0 and rig.driver.stats.refused == 1


def test_a_dropped_reply_is_sent_again_after_silence(rig: Rig) -> None:
    dropped: list[bool] = []

    def drop_first_reply(data: bytes) -> None:
        if data[0] == wire.STX and not dropped:
            dropped.append(True)
            rig.link.faults.inject("drop", mode="once")

    wrap_send(rig, drop_first_reply)
    started = time.monotonic()
    assert rig.driver.status().media == "none"
    assert time.monotonic() - started >= wire.ACK_TIMEOUT
    assert rig.reader.resent_replies == 1


def test_dle_eot_stops_the_reader_resending(rig: Rig) -> None:
    original = rig.reader.send
    armed = threading.Event()

    def send_then_lose_the_hosts_ack(data: bytes) -> None:
        original(data)
        if data[0] == wire.STX and not armed.is_set():
            rig.link.faults.inject("drop", mode="once")  # the driver's ACK of this reply
            armed.set()

    rig.reader.send = send_then_lose_the_hosts_ack  # type: ignore[method-assign]
    quiet(rig)
    assert rig.driver.status().media == "none"
    assert armed.wait(1.0)
    deadline = time.monotonic() + 1.0
    while rig.link.faults.active() and time.monotonic() < deadline:
        time.sleep(0.002)  # until the link has lost the ACK
    assert rig.link.faults.active() == []
    rig.driver.cancel()
    time.sleep(wire.ACK_TIMEOUT + 0.1)
    assert rig.reader.resent_replies == 0


def test_a_dropped_ack_lets_the_reply_count(rig: Rig) -> None:
    def drop_acks(data: bytes) -> None:
        if data == bytes((wire.ACK,)):
            rig.link.faults.inject("drop", mode="once")

    wrap_send(rig, drop_acks)
    card_inside(rig)
    assert rig.driver.read_tracks().pan == ALICE_PAN
    assert rig.driver.stats.retries == 0


def test_a_dropped_command_is_sent_again(rig: Rig) -> None:
    quiet(rig)
    rig.link.faults.inject("drop", mode="once")
    assert rig.driver.status().media == "none"
    assert rig.driver.stats.retries == 1


def test_a_link_that_damages_every_command_gives_up_after_three_tries(rig: Rig) -> None:
    original = rig.reader.send

    naks: list[bytes] = []

    def send_then_spoil_the_next_command(data: bytes) -> None:
        original(data)
        if data == bytes((wire.NAK,)):
            naks.append(data)
            if len(naks) < 3:
                rig.link.faults.inject("corrupt", mode="once")  # the command sent again

    rig.reader.send = send_then_spoil_the_next_command  # type: ignore[method-assign]
    quiet(rig)
    rig.link.faults.inject("corrupt", mode="once")
    with pytest.raises(CardReaderError) as caught:
        rig.driver.status()
    assert (caught.value.code, caught.value.reason) == ("NAK", "frame damaged on the link")
    assert rig.reader.refused_frames == 3 and rig.driver.stats.naks == 3
    rig.link.faults.clear()
    assert rig.driver.status().media == "none"


def test_a_link_that_damages_everything_is_a_timeout(rig: Rig) -> None:
    quiet(rig)
    rig.link.faults.inject("corrupt", index=0)  # every STX, ACK and NAK, both ways
    with pytest.raises(DeviceTimeout):
        rig.driver.status()
    rig.link.faults.clear()
    assert rig.driver.status().media == "none"


def test_garbage_and_bad_frames_do_not_upset_the_reader(rig: Rig) -> None:
    raw = SerialDriver(rig.link.url)
    try:
        raw.write(b"\x00\xffjunk" + bytes.fromhex("F2 FF FF") + wire.build_frame(b"C90"))
        deadline = time.monotonic() + 1.0
        answer = b""
        while wire.build_frame(b"N9000") not in answer and time.monotonic() < deadline:
            answer += raw.read_some(deadline)
        assert answer.startswith(bytes((wire.NAK, wire.ACK)))  # the bad length, then C90
        assert wire.build_frame(b"N9000") in answer
        raw.write(bytes((wire.ACK,)))
    finally:
        raw.close()
    assert rig.driver.status().media == "none"
