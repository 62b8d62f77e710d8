"""The PIN pad driver against the emulator over a real pseudo-terminal: keys, PIN blocks, faults."""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device.controller.ports import DeviceTimeout
from device.drivers.pin_pad import KeyEvent, PinPadDriver, PinPadError, TamperedError
from peripherals.links.endpoint import PtyEndpoint
from peripherals.links.runner import LinkRunner
from peripherals.pin_crypto import dukpt_aes, dukpt_tdes, pin_block, tr31
from peripherals.pin_crypto.key_check_value import key_check_value
from peripherals.pin_pad import PinPadEmulator
from peripherals.wire import pin_pad as wire

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import psec

H = bytes.fromhex
TMK = "0123456789ABCDEFFEDCBA9876543210"
PIN_KEY_TDES = "89ABCDEF0123456776543210FEDCBA98"
PIN_KEY_AES = "00112233445566778899AABBCCDDEEFF"
PAN = "4012345678909"
BASE: dict[str, Any] = {
    "tmk": TMK,
    "pin_key_tdes": PIN_KEY_TDES,
    "pin_key_aes": PIN_KEY_AES,
    "pin_block_format": 0,
    "dukpt": None,
}
TDES_DUKPT = {
    "scheme": "tdes",
    "bdk": "0123456789ABCDEFFEDCBA9876543210",
    "ksn": "FFFF9876543210E00000",
}
AES_DUKPT = {"scheme": "aes", "bdk": "FEDCBA9876543210F1F1F1F1F1F1F1F1", "ksn": "1234567890123456"}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Pad:
    """An emulator on a pty, its driver, the fake clock, and every byte the emulator sent."""

    def __init__(self, section: Mapping[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
        self.clock = FakeClock()
        self.emulator = PinPadEmulator.from_config(section, clock=self.clock)
        self.sent = bytearray()
        send = self.emulator.send

        def recording_send(data: bytes) -> None:
            self.sent += data
            send(data)

        monkeypatch.setattr(self.emulator, "send", recording_send)
        self.runner = LinkRunner(self.emulator, PtyEndpoint()).start()
        self.driver = PinPadDriver(self.runner.url, timeout=1.0)

    def close(self) -> None:
        self.driver.close()
        self.runner.stop()

    def type(self, keys: str | list[str]) -> None:
        for key in keys:
            self.emulator.press(key)

    def events(self, count: int, timeout: float = 2.0) -> list[KeyEvent]:
        """Exactly `count` events (fails if fewer come within `timeout`)."""
        got: list[KeyEvent] = []
        deadline = time.monotonic() + timeout
        while len(got) < count and time.monotonic() < deadline:
            got += self.driver.poll_events(0.05)
        assert len(got) >= count, f"only {got}"
        return got

    def enter_pin(self, pin: str) -> list[KeyEvent]:
        self.type(pin)
        self.emulator.press("enter")
        return self.events(len(pin) + 1)


MakePad = Callable[..., Pad]


@pytest.fixture
def make_pad(monkeypatch: pytest.MonkeyPatch) -> Iterator[MakePad]:
    pads: list[Pad] = []

    def make(**overrides: Any) -> Pad:
        pad = Pad({**BASE, **overrides}, monkeypatch)
        pads.append(pad)
        return pad

    yield make
    for pad in pads:
        pad.close()


@pytest.fixture(autouse=True)
def _quiet_psec() -> None:
    warnings.filterwarnings("ignore", module="psec")
    warnings.filterwarnings("ignore", message=".*TripleDES.*")


# ----- keys ----------------------------------------------------------------------------------


def test_status_of_a_fresh_pad(make_pad: MakePad) -> None:
    status = make_pad().driver.status()
    assert (status.mode, status.keys_loaded, status.tampered) == ("idle", True, False)
    assert status.key_source == "fixed" and not status.pin_ready


def test_load_a_tr31_key_wrapped_by_psec_and_check_its_kcv(make_pad: MakePad) -> None:
    pad = make_pad(pin_key_tdes=None, pin_key_aes=None)
    assert not pad.driver.status().keys_loaded
    new_key = H("0123456789ABCDEF0123456789ABCDEF")[::-1]
    block = psec.tr31.wrap(H(TMK), "B0000P0TE00N0000", new_key)
    kcv = pad.driver.load_key("PT", block)
    assert kcv == key_check_value(new_key, "tdes")
    assert pad.driver.key_check_value("pin_tdes") == kcv
    assert pad.driver.key_check_value("tmk") == "08D7B4"
    assert pad.driver.status().keys_loaded
    aes_block = tr31.wrap(H(TMK), tr31.Tr31Header("B", "P0", "A", "E"), H(PIN_KEY_AES))
    assert pad.driver.load_key("pin_aes", aes_block) == key_check_value(H(PIN_KEY_AES), "aes")


def test_key_blocks_that_must_be_refused(make_pad: MakePad) -> None:
    pad = make_pad()
    wrong_kbpk = tr31.wrap(H(PIN_KEY_TDES), tr31.Tr31Header("B", "P0", "T", "E"), H(TMK))
    with pytest.raises(PinPadError) as caught:
        pad.driver.load_key("PT", wrong_kbpk)
    assert caught.value.code == "E4"
    data_key = tr31.wrap(H(TMK), tr31.Tr31Header("B", "D0", "T", "E"), H(PIN_KEY_TDES))
    with pytest.raises(PinPadError) as caught:
        pad.driver.load_key("PT", data_key)
    assert caught.value.code == "E5"
    with pytest.raises(PinPadError) as caught:
        pad.driver.load_key("XX", data_key)
    assert caught.value.code == "ED"
    # the refused blocks changed nothing
    assert pad.driver.key_check_value("PT") == key_check_value(H(PIN_KEY_TDES), "tdes")


# ----- plain entry ---------------------------------------------------------------------------


def test_plain_entry_reports_digits_in_clear(make_pad: MakePad) -> None:
    pad = make_pad()
    pad.driver.start_plain_entry()
    assert pad.emulator.mode == "plain"
    pad.type(["1", "2", "backspace", "clear", "F3", "enter", "cancel"])
    assert pad.events(7) == [
        KeyEvent("digit", "1"),
        KeyEvent("digit", "2"),
        KeyEvent("backspace"),
        KeyEvent("clear"),
        KeyEvent("function", "F3"),
        KeyEvent("enter"),
        KeyEvent("cancel"),
    ]
    pad.driver.stop_entry()
    assert pad.driver.status().mode == "idle"
    pad.type("5")
    assert pad.driver.poll_events(0.1) == []


# ----- PIN entry -----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", [0, 1, 3, 4])
def test_pin_entry_masks_digits_and_returns_a_block_that_deciphers(
    make_pad: MakePad, fmt: int
) -> None:
    pad = make_pad(pin_block_format=fmt)
    pad.driver.start_pin_entry(PAN, pin_block_format=fmt)
    assert pad.driver.status().mode == "pin_entry"
    events = pad.enter_pin("0852")
    assert events == [KeyEvent("digit", "*")] * 4 + [KeyEvent("enter")]
    block = pad.driver.get_pin_block()
    assert block.format == fmt and block.ksn is None
    key = H(PIN_KEY_AES if fmt == 4 else PIN_KEY_TDES)
    assert pin_block.decrypt_pin_block(fmt, key, block.block, PAN) == "0852"
    if fmt == 3:
        clear = pin_block.ciphers.tdes_ecb_decrypt(key, block.block)
        assert psec.pinblock.decode_pinblock_iso_3(clear, PAN) == "0852"
    if fmt == 4:
        assert psec.pinblock.decipher_pinblock_iso_4(key, block.block, PAN) == "0852"
    with pytest.raises(PinPadError) as caught:
        pad.driver.get_pin_block()  # a block is handed out once
    assert caught.value.code == "E8"


@pytest.mark.parametrize(
    "dukpt",
    [
        TDES_DUKPT,  # the pad derives its initial key from the BDK
        {  # the published initial key, injected as such: the pad never sees the BDK
            "scheme": "tdes",
            "initial_key": "6AC292FAA1315B4D858AB3A3D7D5933A",
            "ksn": "FFFF9876543210E00000",
        },
    ],
)
def test_tdes_dukpt_blocks_match_the_published_vectors_and_the_ksn_advances(
    make_pad: MakePad, dukpt: dict[str, str]
) -> None:
    pad = make_pad(dukpt=dukpt)
    assert pad.driver.status().key_source == "dukpt_tdes"
    expected = [
        ("FFFF9876543210E00001", "1B9C1845EB993A7A"),
        ("FFFF9876543210E00002", "10A01C8D02C69107"),
    ]
    for ksn, block_hex in expected:
        pad.driver.start_pin_entry(PAN)
        pad.enter_pin("1234")
        block = pad.driver.get_pin_block()
        assert block.ksn == ksn
        assert block.block == H(block_hex)
        key = dukpt_tdes.derive_pin_key(H(TDES_DUKPT["bdk"]), H(ksn))
        assert pin_block.decrypt_pin_block(0, key, block.block, PAN) == "1234"


def test_aes_dukpt_format4_blocks_decipher_with_the_derived_key(make_pad: MakePad) -> None:
    pad = make_pad(dukpt=AES_DUKPT, pin_block_format=4)
    for count in (1, 2):
        pad.driver.start_pin_entry(PAN, pin_block_format=4)
        pad.enter_pin("4321")
        block = pad.driver.get_pin_block()
        assert block.ksn == f"1234567890123456{count:08X}"
        key = dukpt_aes.derive_pin_key(H(AES_DUKPT["bdk"]), H(block.ksn))
        assert pin_block.decrypt_pin_block(4, key, block.block, PAN) == "4321"
    with pytest.raises(PinPadError) as caught:
        pad.driver.start_pin_entry(PAN, pin_block_format=0)  # AES DUKPT takes format 4 only
    assert caught.value.code == "E6"


def test_dukpt_counter_is_kept_across_a_restart(tmp_path: Path) -> None:
    section = {**BASE, "dukpt": TDES_DUKPT}
    first = PinPadEmulator.from_config(section, state_dir=tmp_path)
    sent = bytearray()
    first.attach(sent.extend)
    first.receive(wire.encode_frame(wire.encode_command(wire.StartPinEntry(PAN))))
    pad_type(first, "1234")
    first.press("enter")
    assert (tmp_path / "dukpt_ksn").read_text() == "FFFF9876543210E00001"
    second = PinPadEmulator.from_config(section, state_dir=tmp_path)
    assert second.ksn == "FFFF9876543210E00001"  # the next block uses counter 2, never 1 again
    other_device = PinPadEmulator.from_config(
        {**section, "dukpt": {**TDES_DUKPT, "ksn": "FFFF1111111111E00000"}}, state_dir=tmp_path
    )
    assert other_device.ksn == "FFFF1111111111E00000"


def pad_type(emulator: PinPadEmulator, keys: str) -> None:
    for key in keys:
        emulator.press(key)


def test_backspace_clear_and_maximum_length(make_pad: MakePad) -> None:
    pad = make_pad()
    pad.driver.start_pin_entry(PAN, min_length=4, max_length=6)
    pad.type(["1", "2", "3", "backspace", "4", "clear", "9", "8", "7", "6", "5", "4", "3"])
    pad.emulator.press("enter")
    events = pad.events(13)  # the seventh digit is over the maximum: not taken, not reported
    assert events.count(KeyEvent("digit", "*")) == 10
    assert events[-1] == KeyEvent("enter")
    block = pad.driver.get_pin_block()
    assert pin_block.decrypt_pin_block(0, H(PIN_KEY_TDES), block.block, PAN) == "987654"


def test_pin_too_short_is_refused_on_enter(make_pad: MakePad) -> None:
    pad = make_pad()
    pad.driver.start_pin_entry(PAN, min_length=4)
    pad.type("123")
    pad.emulator.press("enter")
    assert pad.events(3) == [KeyEvent("digit", "*")] * 3
    assert pad.driver.poll_events(0.1) == []  # no enter event
    assert pad.driver.status().mode == "pin_entry"
    with pytest.raises(PinPadError) as caught:
        pad.driver.get_pin_block()
    assert caught.value.code == "E8"
    pad.type("4")
    pad.emulator.press("enter")
    assert pad.events(2) == [KeyEvent("digit", "*"), KeyEvent("enter")]
    block = pad.driver.get_pin_block()
    assert pin_block.decrypt_pin_block(0, H(PIN_KEY_TDES), block.block, PAN) == "1234"


def test_cancel_key_and_cancel_command(make_pad: MakePad) -> None:
    pad = make_pad()
    pad.driver.start_pin_entry(PAN)
    pad.type(["1", "2", "cancel"])
    assert pad.events(3)[-1] == KeyEvent("cancel")
    assert pad.driver.status().mode == "idle"
    pad.driver.start_pin_entry(PAN)
    pad.type("1234")
    pad.events(4)
    pad.driver.cancel()
    assert pad.emulator.mode == "idle"
    pad.emulator.press("enter")
    assert pad.driver.poll_events(0.1) == []
    with pytest.raises(PinPadError):
        pad.driver.get_pin_block()


def test_entry_timeout_runs_on_the_injected_clock(make_pad: MakePad) -> None:
    pad = make_pad()
    assert not pad.emulator.timer_running()
    pad.driver.start_pin_entry(PAN, timeout_seconds=30)
    assert pad.emulator.timer_running()  # its link keeps ticking it although the line is quiet
    pad.type("12")
    pad.events(2)
    pad.clock.now += 29.0  # a key resets the timer; 29 s after it nothing happens
    assert pad.driver.poll_events(0.1) == []
    pad.clock.now += 1.0
    assert pad.events(1) == [KeyEvent("timeout")]
    assert pad.driver.status().mode == "idle"
    assert not pad.emulator.timer_running()
    with pytest.raises(PinPadError):
        pad.driver.get_pin_block()


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"min_length": 3}, "E9"),
        ({"max_length": 13}, "E9"),
        ({"min_length": 8, "max_length": 6}, "E9"),
        ({"pin_block_format": 2}, "E1"),
        ({"timeout_seconds": 0}, "E1"),
    ],
)
def test_bad_pin_entry_parameters(make_pad: MakePad, kwargs: dict[str, int], code: str) -> None:
    pad = make_pad()
    with pytest.raises(PinPadError) as caught:
        pad.driver.start_pin_entry(PAN, **kwargs)
    assert caught.value.code == code
    assert pad.emulator.mode == "idle"


def test_short_pan_refused(make_pad: MakePad) -> None:
    with pytest.raises(PinPadError) as caught:
        make_pad().driver.start_pin_entry("12345")
    assert caught.value.code == "E7"


# ----- tamper and faults ---------------------------------------------------------------------


def test_tamper_erases_keys_and_refuses_pin_entry_until_reinstalled(make_pad: MakePad) -> None:
    pad = make_pad()
    pad.driver.start_pin_entry(PAN)
    pad.type("12")
    pad.events(2)
    pad.emulator.tamper()
    assert pad.events(1) == [KeyEvent("tamper")]
    status = pad.driver.status()
    assert status.tampered and not status.keys_loaded and status.mode == "idle"
    with pytest.raises(TamperedError) as caught:
        pad.driver.start_pin_entry(PAN)
    assert caught.value.code == "EA"
    with pytest.raises(TamperedError):
        pad.driver.key_check_value("PT")
    pad.emulator.clear_fault("tamper")  # the operator re-installs the pad
    assert pad.driver.status().keys_loaded
    pad.driver.start_pin_entry(PAN)
    pad.enter_pin("1234")
    assert pad.driver.get_pin_block().format == 0


def test_tamper_fault_fires_from_the_fault_set(make_pad: MakePad) -> None:
    pad = make_pad()
    pad.emulator.faults.inject("tamper", mode="once")
    assert pad.events(1) == [KeyEvent("tamper")]
    assert pad.emulator.status()["tampered"] is True
    assert not pad.emulator.keys_loaded


def test_key_stuck_loses_that_key_only(make_pad: MakePad) -> None:
    pad = make_pad()
    pad.emulator.faults.inject("key_stuck", key="5")
    pad.driver.start_plain_entry()
    pad.type("565")
    assert pad.events(1) == [KeyEvent("digit", "6")]
    assert pad.driver.poll_events(0.1) == []


def test_unresponsive_pad_times_out(make_pad: MakePad) -> None:
    pad = make_pad()
    pad.emulator.faults.inject("unresponsive")
    with pytest.raises(DeviceTimeout, match="did not acknowledge ST after 4 tries"):
        pad.driver.status()
    assert (pad.driver.stats.sends, pad.driver.stats.timeouts) == (4, 4)  # 1 + 3 more
    pad.emulator.faults.clear("unresponsive")
    assert pad.driver.status().mode == "idle"


def test_a_corrupted_command_is_naked_and_sent_again(make_pad: MakePad) -> None:
    pad = make_pad()
    pad.runner.faults.inject("corrupt", mode="once", index=4)
    assert pad.driver.key_check_value("MK") == "08D7B4"
    assert bytes([0x15]) in pad.sent  # the pad answered the bad frame with NAK
    assert (pad.driver.stats.naks, pad.driver.stats.retries) == (1, 1)


# ----- the PIN stays inside ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "dukpt"), [(0, None), (1, None), (3, None), (4, None), (0, TDES_DUKPT), (4, AES_DUKPT)]
)
def test_the_clear_pin_never_leaves_the_pad(
    make_pad: MakePad, caplog: pytest.LogCaptureFixture, fmt: int, dukpt: Any
) -> None:
    caplog.set_level(logging.DEBUG)
    pin = "918273645546"
    pad = make_pad(pin_block_format=fmt, dukpt=dukpt)
    pad.driver.start_pin_entry(PAN, pin_block_format=fmt)
    pad.type(pin[:3] + "0")
    pad.emulator.press("backspace")
    pad.type(pin[3:])
    pad.emulator.press("enter")
    events = pad.events(len(pin) + 3)
    assert {event.value for event in events if event.kind == "digit"} == {"*"}
    status = pad.driver.status()
    assert status.pin_ready
    block = pad.driver.get_pin_block()
    wire_bytes = bytes(pad.sent)
    for secret in (pin, pin[:4], pin[-4:]):
        assert secret.encode() not in wire_bytes
    assert pin not in repr(pad.emulator.status()) and pin not in repr(pad.emulator.__dict__)
    assert pin not in caplog.text
    assert block.block.hex().upper() not in caplog.text
    # and the block really holds the PIN that was typed
    if dukpt is None:
        key = H(PIN_KEY_AES if fmt == 4 else PIN_KEY_TDES)
    elif dukpt["scheme"] == "tdes":
        key = dukpt_tdes.derive_pin_key(H(dukpt["bdk"]), H(block.ksn or ""))
    else:
        key = dukpt_aes.derive_pin_key(H(dukpt["bdk"]), H(block.ksn or ""))
    assert pin_block.decrypt_pin_block(fmt, key, block.block, PAN) == pin


def test_select_pin_block_switches_between_fixed_key_and_dukpt(make_pad: MakePad) -> None:
    pad = make_pad(dukpt=TDES_DUKPT)
    pad.driver.select_pin_block(3, dukpt=False)
    status = pad.driver.status()
    assert (status.pin_block_format, status.key_source) == (3, "fixed")
    pad.driver.start_pin_entry(PAN, pin_block_format=3)
    pad.enter_pin("5678")
    block = pad.driver.get_pin_block()
    assert block.ksn is None
    assert pin_block.decrypt_pin_block(3, H(PIN_KEY_TDES), block.block, PAN) == "5678"
    pad.driver.select_pin_block(0, dukpt=True)
    assert pad.driver.status().key_source == "dukpt_tdes"
    with pytest.raises(PinPadError) as caught:
        pad.driver.select_pin_block(4, dukpt=True)  # TDES DUKPT cannot make format 4
    assert caught.value.code == "E6"
    pad.driver.start_pin_entry(PAN)
    with pytest.raises(PinPadError) as caught:
        pad.driver.select_pin_block(0, dukpt=False)
    assert caught.value.code == "E2"


def test_dukpt_refused_where_not_configured(make_pad: MakePad) -> None:
    with pytest.raises(PinPadError) as caught:
        make_pad().driver.select_pin_block(0, dukpt=True)
    assert caught.value.code == "EE"


def test_aes_master_key_takes_version_d_key_blocks(make_pad: MakePad) -> None:
    aes_tmk = "2B7E151628AED2A6ABF7158809CF4F3C"
    pad = make_pad(tmk=aes_tmk, tmk_algorithm="aes", pin_key_tdes=None, pin_key_aes=None)
    block = psec.tr31.wrap(H(aes_tmk), "D0000P0AE00N0000", H(PIN_KEY_AES))
    assert pad.driver.load_key("PA", block) == key_check_value(H(PIN_KEY_AES), "aes")
    pad.driver.start_pin_entry(PAN, pin_block_format=4)
    pad.enter_pin("2468")
    block_out = pad.driver.get_pin_block()
    assert pin_block.decrypt_pin_block(4, H(PIN_KEY_AES), block_out.block, PAN) == "2468"
    version_b = tr31.wrap(H(TMK), tr31.Tr31Header("B", "P0", "T", "E"), H(PIN_KEY_TDES))
    with pytest.raises(PinPadError):
        pad.driver.load_key("PT", version_b)


def test_bad_config_sections_are_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="tmk"):
        PinPadEmulator.from_config({"pin_block_format": 0})
    with pytest.raises(ValueError, match="unknown keys colour"):
        PinPadEmulator.from_config({**BASE, "colour": "red"})
    with pytest.raises(ValueError, match="pin_block_format"):
        PinPadEmulator.from_config({**BASE, "pin_block_format": 2})
    with pytest.raises(ValueError, match="format 4 cannot be used with tdes"):
        PinPadEmulator.from_config({**BASE, "pin_block_format": 4, "dukpt": TDES_DUKPT})
    with pytest.raises(ValueError, match="quoted hex"):
        PinPadEmulator.from_config({**BASE, "tmk": 123})
    both_keys = {**TDES_DUKPT, "initial_key": "6AC292FAA1315B4D858AB3A3D7D5933A"}
    with pytest.raises(ValueError, match="one of initial_key or bdk"):
        PinPadEmulator.from_config({**BASE, "dukpt": both_keys})


@settings(max_examples=150, deadline=None)
@given(chunks=st.lists(st.binary(max_size=80), max_size=6))
def test_random_bytes_only_ever_get_ack_nak_or_frames_back(chunks: list[bytes]) -> None:
    emulator = PinPadEmulator.from_config(BASE)
    out = bytearray()
    emulator.attach(out.extend)
    for chunk in chunks:
        emulator.receive(chunk)
    emulator.tick(emulator.clock() + 1.0)
    events = wire.FrameDecoder().feed(bytes(out), 0.0)
    assert not [event for event in events if event.error is not None]
    for event in events:
        if event.frame is not None:
            wire.decode_reply(event.frame)  # every frame the pad sends is a valid reply
