"""PIN pad contract: PinPadDriver against the emulator on every link backend.

Keys, plain and PIN entry, PIN blocks (fixed keys and DUKPT), tamper and faults; every link backend.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psec
import pytest

from device.controller.device_status import PinPadStatus
from device.controller.ports import DeviceTimeout
from device.drivers.pin_pad import KeyEvent, PinPadDriver, PinPadError, TamperedError
from peripherals.emulator import Clock
from peripherals.harness.bay import DeviceBay
from peripherals.harness.profile import DEFAULT_PROFILE, load_profile
from peripherals.harness.pytest_plugin import MakeBay
from peripherals.pin_crypto import dukpt_aes, dukpt_tdes, pin_block, tr31
from peripherals.pin_crypto.ciphers import tdes_ecb_decrypt, tdes_ecb_encrypt
from peripherals.pin_crypto.key_check_value import key_check_value
from peripherals.pin_pad import PinPadEmulator
from peripherals.wire import pin_pad as wire

# psec enciphers with cryptography's deprecated two-key TDES.
pytestmark = pytest.mark.filterwarnings("ignore:.*TripleDES")

H = bytes.fromhex
TMK = "0123456789ABCDEFFEDCBA9876543210"
PIN_KEY_TDES = "89ABCDEF0123456776543210FEDCBA98"
PIN_KEY_AES = "00112233445566778899AABBCCDDEEFF"
PAN = "4012345678909"
# ISO 9564 format 0 for PIN 0852 and PAN: 040852FFFFFFFFFF XOR 0000401234567890.
FORMAT_0_OF_0852 = H("040812EDCBA9876F")
# The PIN pad of the default ATM profile (its keys are the three above); tests change keys.
BASE: dict[str, Any] = dict(load_profile(DEFAULT_PROFILE).devices["pin_pad"].settings)
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


def record_sends(emulator: PinPadEmulator) -> bytearray:
    """Every byte `emulator` sends from now on, kept as it goes on the link."""
    sent = bytearray()
    send = emulator.send

    def recording_send(data: bytes) -> None:
        sent.extend(data)
        send(data)

    emulator.send = recording_send  # type: ignore[method-assign]
    return sent


@dataclass
class Pad:
    """The emulator in a bay, its driver, and every byte the emulator sent."""

    bay: DeviceBay
    emulator: PinPadEmulator
    driver: PinPadDriver
    sent: bytearray

    def type(self, keys: str | list[str]) -> None:
        for key in keys:
            self.emulator.press(key)

    def events(self, count: int, timeout: float = 2.0) -> list[KeyEvent]:
        """At least `count` events (fails if fewer come within `timeout`)."""
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
def make_pad(make_device_bay: MakeBay, link_backend: str) -> Iterator[MakePad]:
    """make_pad(timeout=1.0, clock=time.monotonic, **section): a pad of BASE updated by section."""
    drivers: list[PinPadDriver] = []

    def make(*, timeout: float = 1.0, clock: Clock = time.monotonic, **section: Any) -> Pad:
        emulator = PinPadEmulator.from_config({**BASE, **section}, clock=clock)
        sent = record_sends(emulator)  # before the link starts: no byte goes unrecorded
        bay = make_device_bay(emulators={"pin_pad": emulator}, backend=link_backend)
        driver = PinPadDriver(bay.url("pin_pad"), timeout=timeout)
        drivers.append(driver)
        return Pad(bay, emulator, driver, sent)

    yield make
    for driver in drivers:
        driver.close()


@pytest.fixture
def pad(make_pad: MakePad) -> Pad:
    return make_pad()


def decipher(fmt: int, key: str, block: bytes) -> str:
    return pin_block.decrypt_pin_block(fmt, H(key), block, PAN)


# ----- keys ----------------------------------------------------------------------------------


def test_status_of_an_installed_pad(pad: Pad) -> None:
    # key_source "fixed", pin_ready False and format 0 are the defaults compared here too
    assert pad.driver.status() == PinPadStatus(mode="idle", keys_loaded=True, tampered=False)


def test_key_check_value_of_the_tdes_pin_key(pad: Pad) -> None:
    expected = tdes_ecb_encrypt(H(PIN_KEY_TDES), bytes(8))[:3].hex().upper()
    assert pad.driver.key_check_value("pin_tdes").upper() == expected


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


def test_key_blocks_that_must_be_refused(pad: Pad) -> None:
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


def test_aes_master_key_takes_version_d_key_blocks(make_pad: MakePad) -> None:
    aes_tmk = "2B7E151628AED2A6ABF7158809CF4F3C"
    pad = make_pad(tmk=aes_tmk, tmk_algorithm="aes", pin_key_tdes=None, pin_key_aes=None)
    block = psec.tr31.wrap(H(aes_tmk), "D0000P0AE00N0000", H(PIN_KEY_AES))
    assert pad.driver.load_key("PA", block) == key_check_value(H(PIN_KEY_AES), "aes")
    pad.driver.start_pin_entry(PAN, pin_block_format=4)
    pad.enter_pin("2468")
    assert decipher(4, PIN_KEY_AES, pad.driver.get_pin_block().block) == "2468"
    version_b = tr31.wrap(H(TMK), tr31.Tr31Header("B", "P0", "T", "E"), H(PIN_KEY_TDES))
    with pytest.raises(PinPadError):
        pad.driver.load_key("PT", version_b)


# ----- plain entry ---------------------------------------------------------------------------


def test_plain_entry_reports_digits_in_clear_until_stopped_or_cancelled(pad: Pad) -> None:
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
    pad.driver.start_plain_entry()
    pad.type(["5", "F2"])
    assert pad.events(2) == [KeyEvent("digit", "5"), KeyEvent("function", "F2")]
    pad.driver.cancel()
    assert pad.driver.status().mode == "idle"


# ----- PIN entry -----------------------------------------------------------------------------


def test_pin_entry_masks_digits_and_returns_a_block_that_deciphers(pad: Pad) -> None:
    for fmt in (0, 1, 3, 4):
        pad.driver.start_pin_entry(PAN, pin_block_format=fmt)
        assert pad.driver.status().mode == "pin_entry"
        events = pad.enter_pin("0852")
        assert events == [KeyEvent("digit", "*")] * 4 + [KeyEvent("enter")]
        block = pad.driver.get_pin_block()
        assert (block.format, block.ksn) == (fmt, None)
        assert pad.driver.status().mode == "idle"
        key = PIN_KEY_AES if fmt == 4 else PIN_KEY_TDES
        assert decipher(fmt, key, block.block) == "0852", f"format {fmt}"
        if fmt == 0:  # worked by hand, not by the code under test
            assert tdes_ecb_decrypt(H(key), block.block) == FORMAT_0_OF_0852
        if fmt == 3:
            clear = tdes_ecb_decrypt(H(key), block.block)
            assert psec.pinblock.decode_pinblock_iso_3(clear, PAN) == "0852"
        if fmt == 4:
            assert psec.pinblock.decipher_pinblock_iso_4(H(key), block.block, PAN) == "0852"
        with pytest.raises(PinPadError) as caught:
            pad.driver.get_pin_block()  # a block is handed out once
        assert caught.value.code == "E8", f"format {fmt}"


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
    ids=["bdk", "initial_key"],
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


def test_select_pin_block_switches_between_fixed_key_and_dukpt(make_pad: MakePad) -> None:
    pad = make_pad(dukpt=TDES_DUKPT)
    pad.driver.select_pin_block(3, dukpt=False)
    status = pad.driver.status()
    assert (status.pin_block_format, status.key_source) == (3, "fixed")
    pad.driver.start_pin_entry(PAN, pin_block_format=3)
    pad.enter_pin("5678")
    block = pad.driver.get_pin_block()
    assert block.ksn is None
    assert decipher(3, PIN_KEY_TDES, block.block) == "5678"
    pad.driver.select_pin_block(0, dukpt=True)
    assert pad.driver.status().key_source == "dukpt_tdes"
    with pytest.raises(PinPadError) as caught:
        pad.driver.select_pin_block(4, dukpt=True)  # TDES DUKPT cannot make format 4
    assert caught.value.code == "E6"
    pad.driver.start_pin_entry(PAN)
    with pytest.raises(PinPadError) as caught:
        pad.driver.select_pin_block(0, dukpt=False)
    assert caught.value.code == "E2"


def test_dukpt_refused_where_not_configured(pad: Pad) -> None:
    with pytest.raises(PinPadError) as caught:
        pad.driver.select_pin_block(0, dukpt=True)
    assert caught.value.code == "EE"


def test_backspace_clear_and_maximum_length(pad: Pad) -> None:
    pad.driver.start_pin_entry(PAN, min_length=4, max_length=6)
    pad.type(["1", "2", "3", "backspace", "4", "clear", "9", "8", "7", "6", "5", "4", "3"])
    pad.emulator.press("enter")
    events = pad.events(13)  # the seventh digit is over the maximum: not taken, not reported
    assert events.count(KeyEvent("digit", "*")) == 10
    assert events[-1] == KeyEvent("enter")
    assert decipher(0, PIN_KEY_TDES, pad.driver.get_pin_block().block) == "987654"


def test_pin_too_short_is_refused_on_enter(pad: Pad) -> None:
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
    assert decipher(0, PIN_KEY_TDES, pad.driver.get_pin_block().block) == "1234"


def test_cancel_key_and_cancel_command(pad: Pad) -> None:
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
    clock = FakeClock()
    pad = make_pad(clock=clock)
    assert not pad.emulator.timer_running()
    pad.driver.start_pin_entry(PAN, timeout_seconds=30)
    assert pad.emulator.timer_running()  # its link keeps ticking it although the line is quiet
    pad.type("12")
    pad.events(2)
    clock.now += 29.0  # a key resets the timer; 29 s after it nothing happens
    assert pad.driver.poll_events(0.1) == []
    clock.now += 1.0
    assert pad.events(1) == [KeyEvent("timeout")]
    assert pad.driver.status().mode == "idle"
    assert not pad.emulator.timer_running()
    with pytest.raises(PinPadError):
        pad.driver.get_pin_block()


def test_bad_pin_entry_parameters(pad: Pad) -> None:
    cases: list[tuple[dict[str, int], str]] = [
        ({"min_length": 3}, "E9"),
        ({"max_length": 13}, "E9"),
        ({"min_length": 8, "max_length": 6}, "E9"),
        ({"pin_block_format": 2}, "E1"),
        ({"timeout_seconds": 0}, "E1"),
    ]
    for kwargs, code in cases:
        with pytest.raises(PinPadError) as caught:
            pad.driver.start_pin_entry(PAN, **kwargs)
        assert caught.value.code == code, kwargs
        assert pad.emulator.mode == "idle", kwargs


def test_short_pan_refused(pad: Pad) -> None:
    with pytest.raises(PinPadError) as caught:
        pad.driver.start_pin_entry("12345")
    assert caught.value.code == "E7"


# ----- tamper and faults ---------------------------------------------------------------------


def test_tamper_erases_keys_and_refuses_pin_entry_until_reinstalled(pad: Pad) -> None:
    pad.driver.start_pin_entry(PAN)
    pad.type("12")
    pad.events(2)
    pad.emulator.tamper()
    assert pad.events(1) == [KeyEvent("tamper")]
    status = pad.driver.status()
    assert (status.tampered, status.keys_loaded, status.mode) == (True, False, "idle")
    with pytest.raises(TamperedError) as caught:
        pad.driver.start_pin_entry(PAN)
    assert caught.value.code == "EA"
    with pytest.raises(TamperedError):
        pad.driver.key_check_value("PT")
    pad.bay.clear("pin_pad", "tamper")  # the operator re-installs the pad
    assert pad.driver.status() == PinPadStatus(mode="idle", keys_loaded=True, tampered=False)
    pad.driver.start_pin_entry(PAN)
    pad.enter_pin("1234")
    assert pad.driver.get_pin_block().format == 0


def test_tamper_fault_fires_from_the_fault_set(pad: Pad) -> None:
    pad.bay.inject("pin_pad", "tamper", mode="once")
    assert pad.events(1) == [KeyEvent("tamper")]
    assert pad.emulator.status()["tampered"] is True
    assert not pad.emulator.keys_loaded


def test_key_stuck_loses_that_key_only(pad: Pad) -> None:
    pad.bay.inject("pin_pad", "key_stuck", key="5")
    pad.driver.start_plain_entry()
    pad.type("565")
    assert pad.events(1) == [KeyEvent("digit", "6")]
    assert pad.driver.poll_events(0.1) == []


def test_an_unresponsive_pad_times_out(make_pad: MakePad) -> None:
    # A driver timeout under the protocol's 0.25 s ACK timeout shortens that too: four silent
    # sends cost 0.4 s, not 1 s.
    pad = make_pad(timeout=0.1)
    pad.bay.inject("pin_pad", "unresponsive")
    with pytest.raises(DeviceTimeout, match="did not acknowledge ST after 4 tries"):
        pad.driver.status()
    assert (pad.driver.stats.sends, pad.driver.stats.timeouts) == (4, 4)  # 1 + 3 more
    pad.bay.clear("pin_pad", "unresponsive")
    pad.driver.timeout = 1.0  # the reply may take its time on a loaded machine
    assert pad.driver.status().mode == "idle"


def test_a_corrupted_command_is_naked_and_sent_again(pad: Pad) -> None:
    pad.bay.inject("pin_pad.link", "corrupt", mode="once", index=4)
    assert pad.driver.key_check_value("MK") == "08D7B4"
    assert bytes([wire.NAK]) in pad.sent  # the pad answered the bad frame with NAK
    assert (pad.driver.stats.naks, pad.driver.stats.retries) == (1, 1)


# ----- the PIN stays inside ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dukpt", "formats"),
    [(None, (0, 1, 3, 4)), (TDES_DUKPT, (0,)), (AES_DUKPT, (4,))],
    ids=["fixed_keys", "dukpt_tdes", "dukpt_aes"],
)
def test_the_clear_pin_never_leaves_the_pad(
    make_pad: MakePad,
    caplog: pytest.LogCaptureFixture,
    dukpt: dict[str, str] | None,
    formats: tuple[int, ...],
) -> None:
    caplog.set_level(logging.DEBUG)
    pin = "918273645546"
    pad = make_pad(pin_block_format=formats[0], dukpt=dukpt)
    for fmt in formats:
        pad.driver.start_pin_entry(PAN, pin_block_format=fmt)
        pad.type(pin[:3] + "0")
        pad.emulator.press("backspace")
        pad.type(pin[3:])
        pad.emulator.press("enter")
        events = pad.events(len(pin) + 3)
        assert {event.value for event in events if event.kind == "digit"} == {"*"}
        assert pad.driver.status().pin_ready
        block = pad.driver.get_pin_block()
        for secret in (pin, pin[:4], pin[-4:]):
            assert secret.encode() not in bytes(pad.sent), f"format {fmt}"
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
        assert pin_block.decrypt_pin_block(fmt, key, block.block, PAN) == pin, f"format {fmt}"
