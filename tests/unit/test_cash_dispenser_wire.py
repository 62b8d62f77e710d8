"""The cash dispenser's framer and codec: LCDM-2000 bytes, extensions, hunting, fuzzing."""

from __future__ import annotations

import functools
import operator
import re
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peripherals.cash_dispenser import CashDispenserEmulator
from peripherals.cassettes import CassetteLoad, parse_cassette_load
from peripherals.wire import cash_dispenser as wire
from peripherals.wire.cash_dispenser import Cmd, ErrorCode
from peripherals.wire.framing import FrameEvent

ROOT = Path(__file__).parents[2]
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

LOAD: CassetteLoad = parse_cassette_load(
    {
        "currency": "978",
        "cassettes": [
            {"number": 1, "denomination": 2000, "count": 300, "capacity": 500},
            {"number": 2, "denomination": 5000, "count": 300, "capacity": 500},
            {"number": 3, "denomination": 1000, "count": 300, "capacity": 500},
            {"number": 4, "denomination": 10000, "count": 300, "capacity": 500},
        ],
    }
)


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def frames(events: list[FrameEvent[wire.Frame]]) -> list[wire.Frame]:
    return [e.frame for e in events if e.frame is not None]


def kind(event: FrameEvent[wire.Frame]) -> str:
    if event.frame is not None:
        return "frame"
    return "control" if event.control is not None else "error"


# ----- exact bytes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (wire.StatusCommand(), "04 50 02 46 03 13"),  # the LCDM-2000 specification's examples
        (wire.UpperDispense(10), "04 50 02 45 31 30 03 11"),
        (wire.PurgeCommand(), "04 50 02 44 03 11"),
        (wire.RomVersionCommand(), "04 50 02 47 03 12"),
        (wire.LowerDispense(5), "04 50 02 55 30 35 03 05"),
        (wire.BothDispense(3, 4), "04 50 02 56 30 33 30 34 03 04"),
        (wire.DispenseMix(7, (1, 2, 0, 1)), "04 50 02 4D 30 37 30 31 30 32 30 30 30 31 03 1D"),
        (wire.PresentCommand(), "04 50 02 4F 03 1A"),
        (wire.TakenCommand(), "04 50 02 54 03 01"),
        (wire.RetractCommand(), "04 50 02 52 03 07"),
        (wire.ExtStatusCommand(), "04 50 02 53 03 06"),
        (wire.CountersCommand(), "04 50 02 43 03 16"),
        (
            wire.Exchange(True, (500, None, None, 200)),
            "04 50 02 58 31 30 35 30 30 2D 2D 2D 2D 2D 2D 2D 2D 30 32 30 30 03 3B",
        ),
    ],
)
def test_commands_encode_byte_exact_and_decode_back(command: wire.Command, expected: str) -> None:
    raw = h(expected)
    assert command.encode() == raw
    assert functools.reduce(operator.xor, raw[:-1]) == raw[-1]  # BCC = XOR of EOT..ETX
    (frame,) = frames(wire.FrameReader.for_device().feed(raw, 0.0))
    assert wire.decode_command(frame) == command


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (wire.PurgeReply(), "01 50 02 44 30 03 24"),
        (wire.StatusReply(ErrorCode.GOOD, 0, 0), "01 50 02 46 30 30 00 00 03 16"),
        (
            wire.SingleDispenseReply(ErrorCode.GOOD, Cmd.UPPER_DISPENSE, 10, 10, 0x30, 0),
            "01 50 02 45 31 30 31 30 30 30 30 30 03 15",
        ),
        (
            wire.BothDispenseReply(ErrorCode.GOOD, 3, 3, 4, 4, 0x30, 0x30, 0, 0),
            "01 50 02 56 30 33 30 33 30 34 30 34 30 30 30 30 30 30 30 03 36",
        ),
        (
            wire.RomVersionReply(ErrorCode.GOOD, "ATMCDM01"),
            "01 50 02 47 41 54 4D 43 44 4D 30 31 03 04",
        ),
        (
            wire.PresentReply(ErrorCode.GOOD, 4, 22000, "open"),
            "01 50 02 4F 30 30 30 34 30 30 30 32 32 30 30 30 4F 03 54",
        ),
        (wire.TakenReply(ErrorCode.GOOD, "taken", 0), "01 50 02 54 30 54 30 30 30 03 50"),
        (wire.ExchangeReply(), "01 50 02 58 30 03 38"),
        (wire.UndefinedReply(ErrorCode.UNDEFINED_COMMAND, 0x5A), "01 50 02 5A 37 03 3D"),
    ],
)
def test_replies_encode_byte_exact_and_decode_back(reply: wire.Reply, expected: str) -> None:
    raw = h(expected)
    assert reply.encode() == raw
    (frame,) = frames(wire.FrameReader.for_host().feed(raw, 0.0))
    assert wire.decode_reply(frame) == reply


def test_lcdm_status_reply_with_sensor_bytes_equal_to_etx_is_read_by_length() -> None:
    reply = wire.StatusReply(ErrorCode.JAM_AT_CHK_SENSORS, wire.S0_CHK1 | wire.S0_CHK2, 0x03)
    raw = reply.encode()
    assert raw[6:8] == b"\x03\x03"
    (frame,) = frames(wire.FrameReader.for_host().feed(raw, 0.0))
    assert wire.decode_reply(frame) == reply


def test_jam_reply_says_where_each_note_is() -> None:
    jam = wire.DispenseMixReply(
        ErrorCode.JAM_AT_CHK_SENSORS,
        8,
        False,
        6000,
        (wire.MixCount(2, 2, 0, 0), wire.MixCount(), wire.MixCount(3, 1, 0, 1), wire.MixCount()),
    )
    data = jam.data()
    assert data[:4] == b"0803"  # sequence 08, not repeated, error 0x33
    assert data[4:12] == b"00006000"  # cents in the stacker
    assert data[12 + 24 : 12 + 36] == b"003001000001"  # cassette 3: picked 3, 1 stacked, 1 stuck
    (frame,) = frames(wire.FrameReader.for_host().feed(jam.encode(), 0.0))
    assert wire.decode_reply(frame) == jam


def test_extended_status_round_trips_with_every_cassette() -> None:
    reply = wire.ExtStatusReply(
        ErrorCode.GOOD,
        False,
        "jammed",
        "retracted",
        3,
        6000,
        1,
        0,
        0,
        12,
        24000,
        4,
        22000,
        tuple(
            wire.CassetteInfo(n, state, "978", 1000 * n, 10 * n, 2500, 50)
            for n, state in zip((1, 2, 3, 4), ("ok", "low", "empty", "missing"), strict=True)
        ),
    )
    (frame,) = frames(wire.FrameReader.for_host().feed(reply.encode(), 0.0))
    assert wire.decode_reply(frame) == reply


@pytest.mark.parametrize(
    "data",
    [b"0A", b"99"[:1] + b"x"],
)
def test_bad_count_digits_are_a_codec_error(data: bytes) -> None:
    with pytest.raises(wire.DispenserCodecError, match="ASCII digits"):
        wire.decode_command(wire.Frame(wire.EOT, Cmd.UPPER_DISPENSE, data))


def test_unknown_command_is_a_codec_error() -> None:
    with pytest.raises(wire.DispenserCodecError, match="undefined command 0x5A"):
        wire.decode_command(wire.Frame(wire.EOT, 0x5A, b""))


def test_encoding_refuses_values_that_do_not_fit() -> None:
    with pytest.raises(wire.DispenserCodecError):
        wire.UpperDispense(100).encode()
    with pytest.raises(wire.DispenserCodecError):
        wire.DispenseMix(7, (1, 2, 3)).encode()


# ----- framer -------------------------------------------------------------------------------


def test_framer_hunts_past_garbage_and_reports_ack_nak() -> None:
    reader = wire.FrameReader.for_device()
    events = reader.feed(h("FF 00 04 04 50 02 46 03 13 41 42 06 15 04 50 02 45 31 30 03 11"), 0.0)
    assert [kind(e) for e in events] == ["error", "frame", "control", "control", "frame"]
    assert [f.cmd for f in frames(events)] == [Cmd.STATUS, Cmd.UPPER_DISPENSE]
    assert reader.garbage == 4


def test_framer_naks_a_bad_bcc_and_delivers_no_frame() -> None:
    events = wire.FrameReader.for_device().feed(h("04 50 02 45 31 30 03 12"), 0.0)
    assert events == [FrameEvent(error="bad BCC", nak=True)]


def test_framer_finds_a_good_frame_behind_a_torn_one() -> None:
    events = wire.FrameReader.for_device().feed(h("04 50 02 46 04 50 02 46 03 13"), 0.0)
    assert frames(events) == [wire.Frame(wire.EOT, Cmd.STATUS, b"")]
    assert events[0].error is not None and events[0].nak


def test_framer_joins_a_frame_split_in_pieces_and_drops_one_that_stalls() -> None:
    reader = wire.FrameReader.for_device()
    raw = wire.UpperDispense(10).encode()
    assert reader.feed(raw[:3], now=1.0) == []
    assert frames(reader.feed(raw[3:], now=1.1)) == [
        wire.Frame(wire.EOT, Cmd.UPPER_DISPENSE, b"10")
    ]
    assert reader.feed(raw[:5], now=2.0) == []
    events = reader.feed(raw, now=2.5)  # more than 200 ms later: the torn frame is dropped
    assert events[0] == FrameEvent(error="frame timed out")  # not refused: nothing to NAK
    assert len(frames(events)) == 1


def test_framer_caps_an_endless_frame() -> None:
    reader = wire.FrameReader.for_device()
    events = reader.feed(h("04 50 02 5A") + b"A" * 1000, 0.0)
    assert FrameEvent(error="frame too long", nak=True) in events
    assert reader.pending <= wire.MAX_DATA + 6


# ----- fuzzing ------------------------------------------------------------------------------

COMMANDS = st.one_of(
    st.just(wire.StatusCommand()),
    st.just(wire.PurgeCommand()),
    st.just(wire.ExtStatusCommand()),
    st.builds(wire.UpperDispense, st.integers(0, 99)),
    st.builds(wire.BothDispense, st.integers(0, 99), st.integers(0, 99)),
    st.builds(
        wire.DispenseMix, st.integers(0, 99), st.tuples(*[st.integers(0, 99)] * wire.CASSETTE_SLOTS)
    ),
    st.builds(
        wire.Exchange,
        st.booleans(),
        st.tuples(*[st.none() | st.integers(0, 9999)] * wire.CASSETTE_SLOTS),
    ),
)


@FUZZ
@given(st.binary(max_size=600), st.sampled_from(["device", "host"]))
def test_random_bytes_never_raise_and_the_buffer_stays_bounded(data: bytes, side: str) -> None:
    reader = wire.FrameReader.for_device() if side == "device" else wire.FrameReader.for_host()
    for i in range(0, len(data), 37):
        for event in reader.feed(data[i : i + 37], 0.0):
            if event.frame is not None:
                try:
                    if side == "device":
                        wire.decode_command(event.frame)
                    else:
                        wire.decode_reply(event.frame)
                except wire.DispenserCodecError:
                    pass
        assert reader.pending <= wire.MAX_DATA + 6


def _any_frame(start: int, cmd: int, data: bytes) -> bytes:
    body = bytes([start, wire.DEVICE_ID, wire.STX, cmd]) + data + bytes([wire.ETX])
    return body + bytes([wire.bcc(body)])


STREAM_PARTS = st.one_of(
    COMMANDS.map(lambda command: command.encode()),
    st.builds(
        _any_frame,
        st.sampled_from([wire.EOT, wire.SOH]),
        st.sampled_from([*wire.COMMAND_DATA_LENGTH, *wire.REPLY_DATA_LENGTH, 0x41, 0x60]),
        # printable runs around MAX_DATA, with the odd control byte or ETX inside
        st.binary(max_size=wire.MAX_DATA + 20).map(lambda b: bytes(c % 0x60 + 0x20 for c in b))
        | st.binary(max_size=30),
    ),
    st.binary(max_size=20),
)


class _ByteByByte(wire.FrameReader):
    """The reader with every byte through its state machine: the reference for runs."""

    def _take_data(self, pending: bytes, at: int) -> int:
        return 0


@FUZZ
@given(st.lists(STREAM_PARTS, max_size=6), st.sampled_from(["device", "host"]), st.data())
def test_data_read_in_runs_gives_what_the_byte_by_byte_state_machine_gives(
    parts: list[bytes], side: str, data: st.DataObject
) -> None:
    stream = b"".join(parts)
    step = data.draw(st.integers(1, max(1, len(stream))))

    def read(kind: type[wire.FrameReader]) -> tuple[list[object], int, int]:
        reader = kind.for_device() if side == "device" else kind.for_host()
        events: list[object] = []
        for i in range(0, len(stream), step):
            events += [
                (e.frame, e.control, e.error, e.nak) for e in reader.feed(stream[i : i + step], 0.0)
            ]
        return events, reader.garbage, reader.pending

    assert read(wire.FrameReader) == read(_ByteByByte)


@FUZZ
@given(COMMANDS, st.data())
def test_a_single_bit_flip_never_yields_a_frame(command: wire.Command, data: st.DataObject) -> None:
    raw = bytearray(command.encode())
    bit = data.draw(st.integers(0, len(raw) * 8 - 1))
    raw[bit // 8] ^= 1 << (bit % 8)
    assert frames(wire.FrameReader.for_device().feed(bytes(raw), 0.0)) == []


@FUZZ
@given(COMMANDS, st.data())
def test_a_truncated_frame_is_dropped_and_the_next_one_read(
    command: wire.Command, data: st.DataObject
) -> None:
    raw = command.encode()
    cut = data.draw(st.integers(1, len(raw) - 1))
    reader = wire.FrameReader.for_device()
    assert frames(reader.feed(raw[:cut], now=0.0)) == []
    (frame,) = frames(reader.feed(raw, now=1.0))
    assert wire.decode_command(frame) == command


@FUZZ
@given(COMMANDS, st.binary(max_size=40), st.binary(max_size=40))
def test_frames_survive_surrounding_garbage_without_control_bytes(
    command: wire.Command, before: bytes, after: bytes
) -> None:
    def clean(junk: bytes) -> bytes:
        return bytes(b for b in junk if b not in (wire.EOT, wire.SOH, wire.ACK, wire.NAK))

    stream = clean(before) + command.encode() + clean(after)
    found = frames(wire.FrameReader.for_device().feed(stream, 0.0))
    assert command in [wire.decode_command(f) for f in found]


def exchange(emulator: CashDispenserEmulator, raw: bytes) -> list[FrameEvent[wire.Frame]]:
    sent: list[bytes] = []
    emulator.attach(sent.append)
    emulator.receive(raw)
    emulator.receive(bytes([wire.ACK]))
    emulator.detach()
    return wire.FrameReader.for_host().feed(b"".join(sent), 0.0)


def acked_reply(events: list[FrameEvent[wire.Frame]]) -> wire.Frame:
    """The one frame the device sends after its ACK."""
    (ack, reply) = events
    assert ack == FrameEvent(control=wire.ACK)
    assert reply.frame is not None
    return reply.frame


@FUZZ
@given(COMMANDS, st.data())
def test_the_device_never_acts_on_a_bad_bcc(command: wire.Command, data: st.DataObject) -> None:
    emulator = CashDispenserEmulator(LOAD)
    before = (emulator.counters, [c.count for c in emulator.cassettes])
    raw = bytearray(command.encode())
    raw[-1] ^= data.draw(st.integers(1, 255))
    events = exchange(emulator, bytes(raw))
    assert events == [FrameEvent(control=wire.NAK)]
    assert (emulator.counters, [c.count for c in emulator.cassettes]) == before


@FUZZ
@given(
    st.integers(0, 99),
    st.tuples(*[st.integers(0, 12)] * wire.CASSETTE_SLOTS).filter(any),
    st.integers(2, 4),
)
def test_a_re_sent_dispense_runs_once(sequence: int, counts: tuple[int, ...], sends: int) -> None:
    emulator = CashDispenserEmulator(LOAD)
    raw = wire.DispenseMix(sequence, counts).encode()
    replies = []
    for _ in range(sends):
        frame = acked_reply(exchange(emulator, raw))
        replies.append(wire.decode_reply(frame))
    first = replies[0]
    assert isinstance(first, wire.DispenseMixReply) and first.ok and not first.repeated
    assert all(r == replace(first, repeated=True) for r in replies[1:])
    assert [c.count for c in emulator.cassettes] == [300 - k for k in counts]
    assert emulator.stacker.notes == sum(counts)
    assert emulator.counters["dispenses"] == 1 and emulator.duplicates_answered == sends - 1


def test_the_same_sequence_after_a_present_is_a_new_dispense() -> None:
    emulator = CashDispenserEmulator(LOAD)
    raw = wire.DispenseMix(5, (1, 0, 0, 0)).encode()
    exchange(emulator, raw)
    exchange(emulator, wire.PresentCommand().encode())
    emulator.take_cash()
    frame = acked_reply(exchange(emulator, raw))
    reply = wire.decode_reply(frame)
    assert isinstance(reply, wire.DispenseMixReply) and not reply.repeated
    assert emulator.cassettes[0].count == 298


def test_a_device_unresponsive_once_ignores_one_command_and_answers_the_next() -> None:
    emulator = CashDispenserEmulator(LOAD)
    emulator.faults.inject("unresponsive", mode="once")
    raw = wire.StatusCommand().encode()
    assert exchange(emulator, raw) == []  # no ACK, no reply: the driver's cue to send again
    reply = wire.decode_reply(acked_reply(exchange(emulator, raw)))
    assert isinstance(reply, wire.StatusReply) and reply.ok


def test_lcdm_upper_dispense_delivers_to_the_exit() -> None:
    emulator = CashDispenserEmulator(LOAD)
    frame = acked_reply(exchange(emulator, h("04 50 02 45 31 30 03 11")))
    assert frame.encode() == h("01 50 02 45 31 30 31 30 30 30 30 30 03 15")
    assert emulator.presented.notes == 10 and emulator.presented.amount == 20000


def test_an_undefined_command_is_acked_and_answered_0x37() -> None:
    emulator = CashDispenserEmulator(LOAD)
    frame = acked_reply(exchange(emulator, wire.command_frame(0x5A)))
    assert frame.encode() == h("01 50 02 5A 37 03 3D")


def test_the_device_retransmits_a_reply_the_host_naks_at_most_three_times() -> None:
    emulator = CashDispenserEmulator(LOAD)
    sent: list[bytes] = []
    emulator.attach(sent.append)
    emulator.receive(wire.StatusCommand().encode())
    for _ in range(5):
        emulator.receive(bytes([wire.NAK]))
    replies = [s for s in sent if s[:1] == bytes([wire.SOH])]
    assert len(replies) == 4 and len(set(replies)) == 1


# ----- the protocol document ----------------------------------------------------------------


def test_every_hex_example_in_the_protocol_document_decodes() -> None:
    text = (ROOT / "docs" / "protocols" / "cash_dispenser.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```hex\n(.*?)```", text, flags=re.S)
    examples = [
        bytes.fromhex(line.split("#")[0])
        for block in blocks
        for line in block.splitlines()
        if line.split("#")[0].strip()
    ]
    assert len(examples) >= 20
    for raw in examples:
        if raw[0] == wire.EOT:
            (frame,) = frames(wire.FrameReader.for_device().feed(raw, 0.0))
            assert wire.decode_command(frame).encode() == raw
        else:
            (frame,) = frames(wire.FrameReader.for_host().feed(raw, 0.0))
            assert wire.decode_reply(frame).encode() == raw
    for required in ("04 50 02 46 03 13", "04 50 02 45 31 30 03 11", "04 50 02 44 03 11"):
        assert h(required) in examples
