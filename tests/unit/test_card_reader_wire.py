"""Card reader wire format: exact frames, the framer's hunting and limits, the codec, the doc."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peripherals.wire import card_reader as wire
from peripherals.wire.card_reader import (
    CardCommand,
    CardPosition,
    Command,
    Control,
    EntryMode,
    FrameReader,
    InitialiseMode,
    MoveTo,
    NegativeReply,
    PositiveReply,
    StatusData,
)
from peripherals.wire.framing import FrameEvent

DOC = Path(__file__).parents[2] / "docs" / "protocols" / "card_reader.md"
FUZZ = settings(max_examples=200, deadline=None)


def bitwise_crc(data: bytes) -> int:
    """CRC-16, polynomial x^16+x^12+x^5+1, initial 0, MSB first: written out bit by bit."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def good(text: bytes) -> FrameEvent[bytes]:
    return FrameEvent(frame=text)


def refused(event: FrameEvent[bytes], reason: str) -> bool:
    """A framing error to answer with NAK, whose reason says `reason`."""
    return event.nak and reason in (event.error or "")


# ----- exact bytes -----------------------------------------------------------------------------


def test_crc_of_the_manuals_vector_is_face() -> None:
    body = h("F2 00 08 43 30 30 33 32 34 30 30")
    assert wire.crc16(body) == 0xFACE
    assert bitwise_crc(body) == 0xFACE
    assert wire.build_frame(b"C0032400") == body + h("FA CE")


def test_status_command_frame() -> None:
    frame = wire.status_request().frame()
    assert frame == h("F2 00 03 43 31 30 C5 2A")
    assert bitwise_crc(frame[:-2]) == 0xC52A


def test_status_reply_frame_card_inside_bin_not_full() -> None:
    reply = PositiveReply(Command.STATUS, "0", CardPosition.INSIDE, StatusData(False).encode())
    frame = reply.frame()
    assert frame == h("F2 00 08 50 31 30 30 32 30 30 30 85 7C")
    assert bitwise_crc(frame[:-2]) == 0x857C
    assert wire.decode_reply(frame[3:-2]) == reply


def test_negative_reply_frame() -> None:
    frame = NegativeReply(Command.READ_TRACK, "2", "23").frame()
    assert frame == h("F2 00 05 4E 36 32 32 33 9A 98")
    decoded = wire.decode_reply(frame[3:-2])
    assert isinstance(decoded, NegativeReply)
    assert decoded.error == "23" and decoded.reason == "read error: parity"


@pytest.mark.parametrize(
    ("command", "text"),
    [
        (wire.initialise(InitialiseMode.CAPTURE), b"C01"),
        (wire.status_request(), b"C10"),
        (wire.accept_entry(), b"C20"),
        (wire.move_card(MoveTo.GATE), b"C30"),
        (wire.move_card(MoveTo.RETAIN_BIN), b"C31"),
        (wire.read_track(3), b"C63"),
        (wire.entry_gate(EntryMode.ENABLE), b"C:0"),
        (wire.entry_gate(EntryMode.DISABLE), b"C:1"),
    ],
)
def test_command_texts(command: CardCommand, text: bytes) -> None:
    assert command.text() == text
    assert wire.decode_command(text) == command


def test_refusals_echo_cm_and_pm() -> None:
    assert wire.refusal(b"C90") == wire.build_frame(b"N9000")
    assert wire.refusal(b"C19") == wire.build_frame(b"N1901")
    assert wire.refusal(b"P10") is None
    assert wire.refusal(b"C") is None


@pytest.mark.parametrize(
    "text", [b"", b"C", b"C1", b"X10", b"C9" + b"0", b"C19", b"C6\x00", b"C\xff0"]
)
def test_bad_command_texts(text: bytes) -> None:
    with pytest.raises(wire.CardReaderCodecError):
        wire.decode_command(text)


@pytest.mark.parametrize("text", [b"P10", b"P1099", b"N1000x", b"Q1000", b"P9000", b"P10\x0100"])
def test_bad_reply_texts(text: bytes) -> None:
    with pytest.raises(wire.CardReaderCodecError):
        wire.decode_reply(text)


def test_status_data() -> None:
    assert StatusData(True, "14").encode() == b"114"
    assert StatusData.decode(b"0B0") == StatusData(False, "B0")
    for bad in (b"", b"2", b"000x", b"x00"):
        with pytest.raises(wire.CardReaderCodecError):
            StatusData.decode(bad)


def test_every_error_code_has_a_reason() -> None:
    for code in wire.ErrorCode:
        assert wire.reason(code) != f"unknown error code {code.value!r}"
    assert wire.reason("77") == "unknown error code '77'"


# ----- the framer ------------------------------------------------------------------------------


def test_framer_hunts_past_garbage_and_joins_pieces() -> None:
    frame = wire.status_request().frame()
    reader = FrameReader()
    assert reader.feed(b"\x00\x41\xff" + frame[:4], 0.0) == []
    assert reader.discarded == 3
    assert reader.feed(frame[4:], 0.0) == [good(b"C10")]
    assert reader.buffered == 0


def test_framer_control_bytes_between_frames() -> None:
    frame = wire.status_request().frame()
    events = FrameReader().feed(b"\x06" + frame + b"\x15\x10\x04", 0.0)
    assert events == [
        FrameEvent(control=Control.ACK),
        good(b"C10"),
        FrameEvent(control=Control.NAK),
        FrameEvent(control=Control.CANCEL),
    ]


def test_framer_waits_for_the_byte_after_dle() -> None:
    reader = FrameReader()
    assert reader.feed(b"\x10", 0.0) == []
    assert reader.feed(b"\x04", 0.0) == [FrameEvent(control=Control.CANCEL)]


def test_bad_crc_is_refused_and_the_next_frame_read() -> None:
    frame = bytearray(wire.status_request().frame())
    frame[-1] ^= 0x01
    events = FrameReader().feed(bytes(frame) + wire.accept_entry().frame(), 0.0)
    assert refused(events[0], "CRC")
    assert events[1:] == [good(b"C20")]


def test_oversized_length_is_refused_and_hunting_goes_on() -> None:
    reader = FrameReader()
    events = reader.feed(h("F2 04 00") + wire.status_request().frame(), 0.0)
    assert refused(events[0], "length 1024")
    assert events[-1] == good(b"C10")
    assert reader.buffered == 0


def test_a_cut_off_frame_expires_after_the_inter_byte_timeout() -> None:
    frame = wire.status_request().frame()
    reader = FrameReader()
    assert reader.feed(frame[:5], now=10.0) == []
    assert reader.expire(10.2) == []
    events = reader.feed(frame, now=10.3)
    assert refused(events[0], "cut off after 5 bytes")
    assert events[1:] == [good(b"C10")]


def test_build_frame_limits() -> None:
    assert len(wire.build_frame(b"x" * wire.MAX_TEXT)) == wire.MAX_FRAME
    with pytest.raises(wire.CardReaderCodecError):
        wire.build_frame(b"x" * (wire.MAX_TEXT + 1))
    with pytest.raises(wire.CardReaderCodecError):
        wire.build_frame(b"")


# ----- fuzzing ---------------------------------------------------------------------------------

chunks = st.lists(st.binary(max_size=300), max_size=20)


@FUZZ
@given(chunks)
def test_random_bytes_never_raise_and_the_buffer_stays_bounded(pieces: list[bytes]) -> None:
    reader = FrameReader()
    for piece in pieces:
        for event in reader.feed(piece, 0.0):
            if event.frame is not None:
                assert 1 <= len(event.frame) <= wire.MAX_TEXT
        assert reader.buffered <= wire.MAX_FRAME


texts = st.binary(min_size=1, max_size=60)
garbage = st.binary(max_size=40).map(lambda b: bytes(x for x in b if x not in (0xF2, 0x10)))


@FUZZ
@given(st.lists(st.tuples(garbage, texts), min_size=1, max_size=5), st.integers(1, 17))
def test_frames_among_garbage_come_out_whole(parts: list[tuple[bytes, bytes]], step: int) -> None:
    stream = b"".join(junk + wire.build_frame(text) for junk, text in parts)
    reader = FrameReader()
    frames = []
    for i in range(0, len(stream), step):
        frames += [e.frame for e in reader.feed(stream[i : i + step], 0.0) if e.frame is not None]
    assert frames == [text for _, text in parts]


@FUZZ
@given(texts, st.data())
def test_a_flipped_bit_is_never_acted_on(text: bytes, data: st.DataObject) -> None:
    frame = bytearray(wire.build_frame(text))
    bit = data.draw(st.integers(0, len(frame) * 8 - 1))
    frame[bit // 8] ^= 1 << (bit % 8)
    reader = FrameReader()
    events = reader.feed(bytes(frame), now=0.0) + reader.expire(1.0)
    assert not any(e.frame is not None for e in events)


@FUZZ
@given(texts, st.data())
def test_a_truncated_frame_is_never_acted_on(text: bytes, data: st.DataObject) -> None:
    frame = wire.build_frame(text)
    cut = data.draw(st.integers(1, len(frame) - 1))
    reader = FrameReader()
    assert not any(e.frame is not None for e in reader.feed(frame[:cut], now=0.0))
    later = reader.feed(wire.status_request().frame(), now=1.0)
    assert later[-1] == good(b"C10")


@FUZZ
@given(st.integers(wire.MAX_TEXT + 1, 0xFFFF), st.binary(max_size=64))
def test_oversized_frames_are_refused(length: int, tail: bytes) -> None:
    reader = FrameReader()
    events = reader.feed(bytes((wire.STX,)) + length.to_bytes(2, "big") + tail, 0.0)
    assert refused(events[0], "not in 1..")
    assert reader.buffered <= wire.MAX_FRAME


@FUZZ
@given(st.binary(max_size=40))
def test_codec_takes_any_text(text: bytes) -> None:
    for decode in (wire.decode_command, wire.decode_reply):
        with contextlib.suppress(wire.CardReaderCodecError):
            decode(text)
    refusal = wire.refusal(text)
    if refusal is not None:
        (event,) = FrameReader().feed(refusal, 0.0)
        assert event.frame is not None
        assert event.frame[:3] == b"N" + text[1:3] and event.frame[3:] in (b"00", b"01")


commands = st.builds(
    lambda cm, pick, data: CardCommand(
        cm, sorted(wire._PARAMETERS[cm])[pick % len(wire._PARAMETERS[cm])], data
    ),
    st.sampled_from(list(Command)),
    st.integers(0, 10),
    st.binary(max_size=20),
)


@FUZZ
@given(commands)
def test_commands_round_trip(command: CardCommand) -> None:
    (event,) = FrameReader().feed(command.frame(), 0.0)
    assert event.frame is not None
    assert wire.decode_command(event.frame) == command


replies = st.one_of(
    st.builds(
        PositiveReply,
        st.sampled_from(list(Command)),
        st.sampled_from("0123"),
        st.sampled_from(list(CardPosition)),
        st.binary(max_size=40),
    ),
    st.builds(
        NegativeReply,
        st.sampled_from(list(Command)),
        st.sampled_from("0123"),
        st.sampled_from([c.value for c in wire.ErrorCode]),
    ),
)


@FUZZ
@given(replies)
def test_replies_round_trip(reply: PositiveReply | NegativeReply) -> None:
    assert wire.decode_reply(reply.frame()[3:-2]) == reply


# ----- the protocol document cannot drift -----------------------------------------------------

DOC_EXAMPLES: list[tuple[str, bytes]] = [
    ("initialise, capture a card left inside", wire.initialise(InitialiseMode.CAPTURE).frame()),
    ("status", wire.status_request().frame()),
    ("enable entry", wire.entry_gate(EntryMode.ENABLE).frame()),
    ("disable entry", wire.entry_gate(EntryMode.DISABLE).frame()),
    ("accept entry", wire.accept_entry().frame()),
    ("eject", wire.move_card(MoveTo.GATE).frame()),
    ("capture", wire.move_card(MoveTo.RETAIN_BIN).frame()),
    ("read track 2", wire.read_track(2).frame()),
    (
        "initialised",
        PositiveReply(Command.INITIALISE, "1", CardPosition.NONE, wire.FIRMWARE_ID).frame(),
    ),
    (
        "status: card inside",
        PositiveReply(Command.STATUS, "0", CardPosition.INSIDE, StatusData(False).encode()).frame(),
    ),
    (
        "status: not initialised",
        PositiveReply(
            Command.STATUS, "0", CardPosition.NONE, StatusData(False, "B0").encode()
        ).frame(),
    ),
    (
        "track 2 read",
        PositiveReply(
            Command.READ_TRACK, "2", CardPosition.INSIDE, b"4012345678909=28062010000000000"
        ).frame(),
    ),
    ("track 2 parity error", NegativeReply(Command.READ_TRACK, "2", "23").frame()),
    ("retain bin full", NegativeReply(Command.MOVE_CARD, "1", "E1").frame()),
    ("CRC vector", wire.build_frame(b"C0032400")),
]


def spaced(frame: bytes) -> str:
    return frame.hex(" ").upper()


def doc_text() -> str:
    """The document with line breaks inside hex blocks joined."""
    return re.sub(r"\s*\n\s*", " ", DOC.read_text(encoding="utf-8"))


def doc_frames() -> list[bytes]:
    text = doc_text()
    return [h(m) for m in re.findall(r"F2(?: [0-9A-F]{2}){4,}", text)]


def test_every_example_frame_is_in_the_doc() -> None:
    text = doc_text()
    missing = [name for name, frame in DOC_EXAMPLES if spaced(frame) not in text]
    assert missing == []


def test_every_hex_frame_in_the_doc_decodes() -> None:
    frames = doc_frames()
    assert len(frames) >= len(DOC_EXAMPLES)
    for frame in frames:
        (event,) = FrameReader().feed(frame, 0.0)
        assert event.frame is not None, spaced(frame)
        if event.frame[:1] == b"C":
            wire.decode_command(event.frame)
        else:
            wire.decode_reply(event.frame)


if __name__ == "__main__":  # print the examples for the protocol document
    for name, frame in DOC_EXAMPLES:
        print(f"{name}: {frame[3:-2]!r}\n    {spaced(frame)}")


# ----- the emulator never acts on a damaged frame ----------------------------------------------


@FUZZ
@given(st.lists(st.binary(max_size=64), max_size=8), st.data())
def test_the_reader_never_acts_on_damaged_frames(pieces: list[bytes], data: st.DataObject) -> None:
    from peripherals.card_reader import CardReaderEmulator, MediaState

    reader = CardReaderEmulator()
    sent: list[bytes] = []
    reader.attach(sent.append)
    eject = bytearray(wire.move_card(MoveTo.GATE).frame())
    bit = data.draw(st.integers(0, len(eject) * 8 - 1))
    eject[bit // 8] ^= 1 << (bit % 8)
    for piece in pieces:
        reader.receive(piece.replace(b"\xf2", b"\xf3"))  # no STX in the noise: no real frame
    reader.receive(bytes(eject))
    assert reader.state is MediaState.NONE and not reader.initialised
    assert set(b"".join(sent)) <= {wire.NAK}
    assert reader.commands == 0
