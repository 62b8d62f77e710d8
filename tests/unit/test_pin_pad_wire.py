"""The PIN pad framer and codec: exact bytes, hunting after garbage, and fuzzing."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peripherals.pin_crypto import dukpt_tdes, pin_block, tr31
from peripherals.wire import pin_pad as wire
from peripherals.wire.framing import FrameEvent
from peripherals.wire.pin_pad import (
    ErrorCode,
    FrameDecoder,
    KeyEvent,
    KeySource,
    PinPadCodecError,
    Slot,
)

H = bytes.fromhex
STATUS_FRAME = H("02 30 30 32 53 54 03 33 36")  # STX "002" "ST" ETX "36"
EVENT_FRAME = H("02 30 30 34 45 56 44 2A 03 34 41")  # STX "004" "EVD*" ETX "4A"


def good(text: str) -> FrameEvent[str]:
    return FrameEvent(frame=text)


def bad(reason: str) -> FrameEvent[str]:
    return FrameEvent(error=reason, nak=True)


printable = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60)


# ----- framer: exact bytes -----------------------------------------------------------------------


def test_status_frame_exact_bytes() -> None:
    assert wire.encode_frame("ST") == STATUS_FRAME
    # the checksum is the XOR of "002", "ST" and ETX
    assert wire.checksum(b"002ST\x03") == 0x36


def test_event_and_command_frames_exact_bytes() -> None:
    assert wire.encode_frame("EVD*") == EVENT_FRAME
    assert wire.encode_frame("PE004120304012345678909") == H(
        "02 30 32 33 50 45 30 30 34 31 32 30 33 30 34 30 31 32 33 34 35 36 37 38 39 30 39 03 31 46"
    )


def test_encoder_refuses_unprintable_or_oversized_text() -> None:
    with pytest.raises(ValueError, match="printable"):
        wire.encode_frame("S\x02T")
    with pytest.raises(ValueError, match="over"):
        wire.encode_frame("X" * (wire.MAX_TEXT + 1))
    assert len(wire.encode_frame("X" * wire.MAX_TEXT)) == wire.MAX_TEXT + wire.OVERHEAD


def test_decoder_takes_frames_split_anywhere() -> None:
    stream = STATUS_FRAME + bytes([wire.ACK]) + EVENT_FRAME
    for cut in range(len(stream) + 1):
        decoder = FrameDecoder()
        items = decoder.feed(stream[:cut], 0.0) + decoder.feed(stream[cut:], 0.0)
        assert items == [good("ST"), FrameEvent(control=wire.ACK), good("EVD*")]
        assert not decoder.partial


def test_decoder_hunts_stx_after_garbage() -> None:
    decoder = FrameDecoder()
    items = decoder.feed(b"\xff\x00garbage\x02xyz" + STATUS_FRAME, 0.0)
    assert items == [good("ST")]
    assert decoder.skipped == len(b"\xff\x00garbage\x02xyz")


def test_decoder_reports_bad_checksum_then_reads_the_next_frame() -> None:
    damaged = STATUS_FRAME[:-1] + b"7"
    items = FrameDecoder().feed(damaged + STATUS_FRAME, 0.0)
    assert items == [bad("checksum mismatch"), good("ST")]


def test_decoder_finds_a_frame_hidden_inside_a_false_one() -> None:
    # a false STX claims 9 bytes of text; the real frame starts inside what it claims
    items = FrameDecoder().feed(b"\x02009" + STATUS_FRAME + b"\x00\x00\x00", 0.0)
    assert items == [bad("no ETX where the length says"), good("ST")]


def test_decoder_caps_the_length() -> None:
    decoder = FrameDecoder(max_text=16)
    items = decoder.feed(b"\x02017" + b"A" * 17 + b"\x03" + b"00" + STATUS_FRAME, 0.0)
    assert items[0] == bad("length 17 over 16")
    assert items[-1] == good("ST")
    assert not decoder.partial


def test_truncated_frame_waits_then_expires() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(STATUS_FRAME[:5], 0.0) == []
    assert decoder.partial
    assert decoder.expire(0.2) == []
    assert decoder.expire(0.21) == [bad("frame timed out")]
    assert decoder.feed(STATUS_FRAME, 0.0) == [good("ST")]


def test_unprintable_text_is_a_bad_frame() -> None:
    body = b"002S\x07\x03"
    raw = b"\x02" + body + f"{wire.checksum(body):02X}".encode()
    assert FrameDecoder().feed(raw, 0.0) == [bad("text is not printable ASCII")]


# ----- framer: fuzzing ---------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=400), cuts=st.lists(st.integers(0, 400), max_size=5))
def test_random_bytes_never_crash_and_yield_only_checked_frames(
    data: bytes, cuts: list[int]
) -> None:
    decoder = FrameDecoder()
    items: list[FrameEvent[str]] = []
    start = 0
    for cut in [*sorted(cuts), len(data)]:
        items += decoder.feed(data[start:cut], 0.0)
        start = max(start, cut)
    for item in items:
        if item.frame is not None:
            # a frame only comes out if it re-encodes to bytes that were in the input
            assert wire.encode_frame(item.frame) in data


@settings(max_examples=200, deadline=None)
@given(texts=st.lists(printable, min_size=1, max_size=5), junk=st.binary(max_size=30))
def test_frames_survive_garbage_without_control_bytes(texts: list[str], junk: bytes) -> None:
    junk = bytes(b for b in junk if b not in (wire.STX, wire.ACK, wire.NAK))
    stream = b"".join(junk + wire.encode_frame(text) for text in texts)
    assert FrameDecoder().feed(stream, 0.0) == [good(text) for text in texts]


@settings(max_examples=300, deadline=None)
@given(text=printable, data=st.data())
def test_a_bit_flip_never_yields_a_frame(text: str, data: st.DataObject) -> None:
    frame = bytearray(wire.encode_frame(text))
    index = data.draw(st.integers(0, len(frame) - 1))
    frame[index] ^= 1 << data.draw(st.integers(0, 7))
    decoder = FrameDecoder()
    items = decoder.feed(bytes(frame), 0.0) + decoder.expire(1.0) + decoder.expire(1.0)
    assert not [item for item in items if item.frame is not None]


@settings(max_examples=200, deadline=None)
@given(text=printable, data=st.data())
def test_truncation_never_yields_a_frame(text: str, data: st.DataObject) -> None:
    frame = wire.encode_frame(text)
    cut = data.draw(st.integers(0, len(frame) - 1))
    assert FrameDecoder().feed(frame[:cut], 0.0) == []


@settings(max_examples=100, deadline=None)
@given(length=st.integers(wire.MAX_TEXT + 1, 999))
def test_oversize_claims_are_refused(length: int) -> None:
    raw = b"\x02" + f"{length:03d}".encode() + b"A" * 40
    items = FrameDecoder().feed(raw, 0.0)
    assert items == [bad(f"length {length} over {wire.MAX_TEXT}")]


# ----- codec -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "text"),
    [
        (wire.Status(), "ST"),
        (wire.LoadKey(Slot.PIN_TDES, "B0080P0TE00N0000AB"), "LKPTB0080P0TE00N0000AB"),
        (wire.ReadKeyCheckValue(Slot.MASTER), "KCMK"),
        (wire.SelectPinBlock(4, KeySource.DUKPT), "PF4D"),
        (wire.StartPinEntry("4012345678909", 0, 4, 12, 30), "PE004120304012345678909"),
        (wire.GetPinBlock(), "PB"),
        (wire.Cancel(), "CN"),
        (wire.StartPlainEntry(), "PL"),
        (wire.StopEntry(), "SP"),
    ],
)
def test_commands_exact_text(command: wire.Command, text: str) -> None:
    assert wire.encode_command(command) == text
    assert wire.decode_command(text) == command


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("XX", ErrorCode.UNKNOWN_COMMAND),
        ("", ErrorCode.UNKNOWN_COMMAND),
        ("STX", ErrorCode.BAD_PARAMETER),
        ("KCZZ", ErrorCode.UNKNOWN_SLOT),
        ("LKPT", ErrorCode.BAD_PARAMETER),
        ("PF0Q", ErrorCode.BAD_PARAMETER),
        ("PE0041", ErrorCode.BAD_PARAMETER),
        ("PE0041203040123X", ErrorCode.PAN_INVALID),
        ("PEx04120304012345678909", ErrorCode.BAD_PARAMETER),
    ],
)
def test_bad_commands_carry_the_error_code_to_answer(text: str, code: ErrorCode) -> None:
    with pytest.raises(PinPadCodecError) as caught:
        wire.decode_command(text)
    assert caught.value.code is code


def test_replies_exact_text() -> None:
    assert wire.encode_reply(wire.Reply("KC", "00", "08D7B4")) == "KC0008D7B4"
    assert wire.encode_reply(wire.Reply("PE", "EA")) == "PEEA"
    assert wire.decode_reply("PEEA").error is ErrorCode.TAMPERED
    assert wire.decode_reply("ST00I1000F").data == "I1000F"
    with pytest.raises(PinPadCodecError):
        wire.decode_reply("PEZZ")
    with pytest.raises(PinPadCodecError):
        wire.decode_reply("PEE1data")


def test_status_and_pin_block_data() -> None:
    status = wire.decode_status("N1013A")
    assert status == wire.StatusData(wire.Mode.PIN_ENTRY, True, False, True, 3, "dukpt_aes")
    assert wire.encode_status(status) == "N1013A"
    block = wire.decode_pin_block("01B9C1845EB993A7AFFFF9876543210E00001")
    assert block.block == H("1B9C1845EB993A7A")
    assert block.ksn == "FFFF9876543210E00001"
    assert wire.encode_pin_block(block) == "01B9C1845EB993A7AFFFF9876543210E00001"
    assert "1B9C" not in repr(block)
    aes = wire.decode_pin_block("4" + "AB" * 16)
    assert len(aes.block) == 16 and aes.ksn is None


def test_every_error_code_is_documented() -> None:
    assert [code.value for code in ErrorCode] == [f"E{n:X}" for n in range(16)]
    assert all(code.description for code in ErrorCode)


@pytest.mark.parametrize(
    ("event", "text"),
    [
        (KeyEvent("digit", "7"), "EVD7"),
        (KeyEvent("digit", "*"), "EVD*"),
        (KeyEvent("enter"), "EVN"),
        (KeyEvent("cancel"), "EVC"),
        (KeyEvent("clear"), "EVL"),
        (KeyEvent("backspace"), "EVB"),
        (KeyEvent("function", "F8"), "EVF8"),
        (KeyEvent("timeout"), "EVT"),
        (KeyEvent("tamper"), "EVX"),
    ],
)
def test_events_exact_text(event: KeyEvent, text: str) -> None:
    assert wire.encode_event(event) == text
    assert wire.decode_event(text) == event


@pytest.mark.parametrize("text", ["EV", "EVQ", "EVF9", "EVDx", "EVN1", "ST"])
def test_bad_events_refused(text: str) -> None:
    with pytest.raises(PinPadCodecError):
        wire.decode_event(text)


@settings(max_examples=300, deadline=None)
@given(text=printable)
def test_command_codec_fuzz_round_trips_or_refuses(text: str) -> None:
    try:
        command = wire.decode_command(text)
    except PinPadCodecError as err:
        assert isinstance(err.code, ErrorCode)
        return
    assert wire.encode_command(command) == text


@settings(max_examples=300, deadline=None)
@given(text=printable)
def test_reply_and_event_decoders_refuse_cleanly(text: str) -> None:
    for decode in (
        wire.decode_reply,
        wire.decode_event,
        wire.decode_status,
        wire.decode_pin_block,
        wire.decode_key_check_value,
    ):
        with contextlib.suppress(PinPadCodecError):
            decode(text)


# ----- the protocol document -----------------------------------------------------------------

DOC = Path(__file__).parents[2] / "docs" / "protocols" / "pin_pad.md"


def doc_examples() -> list[tuple[str, str, bytes]]:
    """(direction, text, bytes) of every example in the doc's `frames` blocks."""
    examples: list[tuple[str, str, bytes]] = []
    for block in re.findall(r"```frames\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S):
        for line in block.splitlines():
            if line.startswith(("host>pad ", "pad>host ")):
                direction, text = line.split(" ", 1)
                examples.append((direction, text, b""))
            elif line.strip():
                direction, text, raw = examples[-1]
                examples[-1] = (direction, text, raw + bytes.fromhex(line))
    return examples


def test_the_doc_has_examples_of_every_command_and_event() -> None:
    texts = [text for _, text, _ in doc_examples()]
    assert len(texts) >= 29
    commands = [text[:2] for direction, text, _ in doc_examples() if direction == "host>pad"]
    assert set(wire.COMMAND_CODES) <= set(commands)
    for event in ("EVD*", "EVD7", "EVN", "EVF3", "EVT", "EVX"):
        assert event in texts


@pytest.mark.parametrize(("direction", "text", "raw"), doc_examples())
def test_each_doc_example_decodes_to_what_it_says(direction: str, text: str, raw: bytes) -> None:
    items = FrameDecoder().feed(raw, 0.0)
    if text in ("ACK", "NAK"):
        assert items == [FrameEvent(control=wire.ACK if text == "ACK" else wire.NAK)]
        return
    assert items == [good(text)]
    assert wire.encode_frame(text) == raw
    if direction == "host>pad":
        assert wire.encode_command(wire.decode_command(text)) == text
    elif wire.is_event(text):
        wire.decode_event(text)
    else:
        reply = wire.decode_reply(text)
        if reply.ok and reply.command == "ST":
            wire.decode_status(reply.data)
        elif reply.ok and reply.command in ("LK", "KC"):
            wire.decode_key_check_value(reply.data)
        elif reply.ok and reply.command == "PB":
            block = wire.decode_pin_block(reply.data)
            assert block.ksn is not None
            key = dukpt_tdes.derive_pin_key(H("0123456789ABCDEFFEDCBA9876543210"), H(block.ksn))
            assert pin_block.decrypt_pin_block(0, key, block.block, "4012345678909") == "1234"


def test_the_doc_key_block_loads_the_shared_pin_key() -> None:
    text = next(t for d, t, _ in doc_examples() if t.startswith("LKPT"))
    header, key = tr31.unwrap(H("0123456789ABCDEFFEDCBA9876543210"), text[4:])
    assert key == H("89ABCDEF0123456776543210FEDCBA98")
    assert header.key_usage == "P0"


def test_the_doc_lists_every_error_code_as_the_device_means_it() -> None:
    doc = DOC.read_text(encoding="utf-8")
    for code in ErrorCode:
        assert f"| {code.value} | {code.description} |" in doc
