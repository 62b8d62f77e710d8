"""The ESC/POS parser on exact bytes, any split and fuzzed input; status bytes; the paper roll."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peripherals.receipt_printer import ReceiptPrinterConfigError, ReceiptPrinterEmulator
from peripherals.receipt_render import PrintedLine
from peripherals.wire import escpos
from peripherals.wire.escpos import (
    Align,
    Barcode,
    ColumnImage,
    Cut,
    EscPosParser,
    Event,
    Feed,
    GraphicsPrint,
    GraphicsStore,
    Initialise,
    LineFeed,
    PaperLevel,
    PrinterCondition,
    RasterImage,
    RealTimeStatus,
    SetAlign,
    SetBold,
    SetCodePage,
    SetPrintMode,
    SetSize,
    SymbolPrint,
    SymbolSetting,
    SymbolStore,
    Text,
    TransmitStatus,
    Unknown,
)

DOC = Path(__file__).parents[2] / "docs" / "protocols" / "receipt_printer.md"


def feed(parser: EscPosParser, data: bytes) -> list[Event]:
    """The commands `data` completes: ESC/POS has no framing errors, unknown is a command."""
    events = parser.feed(data, 0.0)
    assert all(e.frame is not None and e.error is None for e in events)
    return [e.frame for e in events if e.frame is not None]


def parse(data: bytes) -> list[Event]:
    return merge_text(feed(EscPosParser(), data))


def merge_text(events: list[Event]) -> list[Event]:
    """Text may arrive in pieces, depending on the split; join neighbours for comparison."""
    out: list[Event] = []
    for event in events:
        if isinstance(event, Text) and out and isinstance(out[-1], Text):
            out[-1] = Text(out[-1].text + event.text)
        else:
            out.append(event)
    return out


@pytest.mark.parametrize(
    ("data", "events"),
    [
        (b"AB\n", [Text("AB"), LineFeed()]),
        (b"\x1b@", [Initialise()]),
        (b"\x1bE\x01\x1bE\x00", [SetBold(True), SetBold(False)]),
        (b"\x1d!\x11", [SetSize(2, 2)]),
        (b"\x1d!\x70", [SetSize(8, 1)]),
        (b"\x1b!\x38", [SetPrintMode(True, True, True, False)]),
        (b"\x1ba\x01\x1ba2", [SetAlign(Align.CENTER), SetAlign(Align.RIGHT)]),
        (b"\x1bt\x10\x80", [SetCodePage(16), Text("\u20ac")]),  # WPC1252 0x80 is the euro
        (b"\x1bt\x00\x82", [SetCodePage(0), Text("\u00e9")]),  # PC437 0x82 is e acute
        (b"\x1bd\x03", [Feed(3)]),
        (b"\x1dV\x00", [Cut(partial=False)]),
        (b"\x1dV1", [Cut(partial=True)]),
        (b"\x1dVB\x00", [Cut(partial=True)]),
        (b"\x1dVA\x3c", [Cut(partial=False, feed_lines=2)]),
        (b"\x1dk\x0412345\x00", [Barcode(4, b"12345")]),
        (b"\x1dkI\x04{B12", [Barcode(73, b"{B12")]),
        (b"\x1d(k\x03\x001C\x04", [SymbolSetting(49, 67, b"\x04")]),
        (b"\x1d(k\x06\x001P0abc", [SymbolStore(49, b"abc")]),
        (b"\x1d(k\x03\x001Q0", [SymbolPrint(49)]),
        (b"\x1dv0\x00\x01\x00\x02\x00\xf0\x0f", [RasterImage(1, 2, b"\xf0\x0f")]),
        (b"\x1dv0\x03\x01\x00\x01\x00\xff", [RasterImage(1, 1, b"\xff", 2, 2)]),
        (
            b"\x1d(L\x0b\x000p0\x01\x011\x08\x00\x01\x00\xaa\x1d(L\x02\x0002",
            [GraphicsStore(RasterImage(1, 1, b"\xaa")), GraphicsPrint()],
        ),
        (b"\x1b*\x00\x02\x00\x81\x42", [ColumnImage(2, 8, b"\x81\x42")]),
        (b"\x1dr\x01", [TransmitStatus(1)]),
        (b"\x10\x04\x04", [RealTimeStatus(4)]),
        (b"\x1bM\x01\x1b3\x10\x1bD\x08\x10\x00x", [Text("x")]),  # accepted, no effect
        (b"\x1b\x01x", [Unknown(b"\x1b\x01"), Text("x")]),
        (b"\x1d\xffy", [Unknown(b"\x1d\xff"), Text("y")]),
    ],
)
def test_each_command_from_exact_bytes(data: bytes, events: list[Event]) -> None:
    assert parse(data) == events


def test_initialise_resets_the_code_page() -> None:
    parser = EscPosParser()
    feed(parser, b"\x1bt\x11")
    assert parser.code_page == 17
    assert feed(parser, b"\x1b@\x82") == [Initialise(), Text("\u00e9")]


STREAM = (
    b"\x1b@\x1ba\x01\x1bE\x01\x1d!\x11TITLE\n\x1d!\x00\x1bE\x00\x1ba\x00"
    b"line one\tx\n\x1bt\x10caf\xe9\n"
    b"\x1dh\x40\x1dH\x02\x1dk\x04ABC\x00"
    b"\x1d(k\x04\x001A2\x00\x1d(k\x0c\x001P0https://x\x1d(k\x03\x001Q0"
    b"\x1dv0\x00\x02\x00\x03\x00\x10\x04\x01\xff\x00\xff"
    b"\x10\x04\x04\x1b\x07junk\n\x1bd\x02\x1dV\x00"
)


def test_a_stream_split_at_every_position_gives_the_same_events() -> None:
    whole = parse(STREAM)
    assert RealTimeStatus(4) in whole
    for cut in range(1, len(STREAM)):
        parser = EscPosParser()
        events = feed(parser, STREAM[:cut]) + feed(parser, STREAM[cut:])
        assert merge_text(events) == whole, cut
    parser = EscPosParser()
    one_by_one = [event for byte in STREAM for event in feed(parser, bytes([byte]))]
    assert merge_text(one_by_one) == whole


def test_a_stream_split_at_every_position_prints_the_same_receipt() -> None:
    def printed(pieces: list[bytes]) -> str:
        printer = ReceiptPrinterEmulator()
        for piece in pieces:
            printer.receive(piece)
        (receipt,) = printer.receipts
        return receipt.text

    whole = printed([STREAM])
    assert "TITLE" in whole and "[QR https://x]" in whole and "[barcode CODE39 ABC]" in whole
    for cut in range(1, len(STREAM), 7):
        assert printed([STREAM[:cut], STREAM[cut:]]) == whole


def test_status_query_inside_image_data_is_answered_and_kept_as_data() -> None:
    # Six bytes of raster data; three of them happen to be DLE EOT 1.
    data = b"\x1dv0\x00\x02\x00\x03\x00" + b"\x10\x04\x01\xff\x00\xff" + b"A"
    events = parse(data)
    assert events == [
        RealTimeStatus(1),
        RasterImage(2, 3, b"\x10\x04\x01\xff\x00\xff"),
        Text("A"),
    ]


def test_status_query_inside_a_2d_code_header_and_across_splits() -> None:
    # pL = 0x10, pH = 0x04 and cn = 0x04 read as DLE EOT 4; the command then wants 1039 more bytes.
    data = b"\x1d(k\x10\x04\x04"
    parser = EscPosParser()
    assert feed(parser, data[:2]) == []
    assert feed(parser, data[2:5]) == []
    assert feed(parser, data[5:]) == [RealTimeStatus(4)]
    assert not parser.idle  # the command still waits for its 1040 bytes
    assert feed(parser, b"P0" + bytes(1037)) == [SymbolStore(4, bytes(1037))]
    assert parser.idle


def test_status_query_inside_a_barcode_is_answered() -> None:
    assert parse(b"\x1dk\x04AB\x10\x04\x02CD\x00") == [
        RealTimeStatus(2),
        Barcode(4, b"AB\x10\x04\x02CD"),
    ]


def test_truncated_command_waits_and_holds_little() -> None:
    parser = EscPosParser()
    assert feed(parser, b"\x1dv0\x00\xff\xff\xff\xff") == []  # announces 4 GB of raster data
    assert not parser.idle
    assert feed(parser, bytes(100_000)) == []
    assert parser.buffered <= 16  # too big to keep: skipped by its length, not stored


def test_barcode_without_terminator_ends_after_255_bytes() -> None:
    events = parse(b"\x1dk\x04" + b"A" * 300)
    assert events[0] == Barcode(4, b"A" * 255)
    assert events[1] == Text("A" * 45)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_random_bytes_never_raise_and_stay_bounded(data: bytes) -> None:
    parser = EscPosParser()
    events = feed(parser, data)
    assert parser.buffered <= escpos.MAX_KEPT_DATA + 16
    assert all(not isinstance(e, Unknown) or len(e.command) <= 3 for e in events)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=600), st.integers(min_value=0, max_value=600))
def test_random_bytes_split_anywhere_give_the_same_events(data: bytes, at: int) -> None:
    at = min(at, len(data))
    parser = EscPosParser()
    split = feed(parser, data[:at]) + feed(parser, data[at:])
    assert merge_text(split) == parse(data)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=1500))
def test_the_printer_survives_random_bytes(data: bytes) -> None:
    printer = ReceiptPrinterEmulator(paper_length_lines=50, near_end_lines=5)
    sent: list[bytes] = []
    printer.attach(sent.append)
    printer.receive(data + b"\x1dV\x00" + b"\x10\x04\x01")
    assert sent and escpos.is_status_byte(sent[-1][0])
    assert len(printer.receipts) <= printer.MAX_RECEIPTS


# ----- status bytes -------------------------------------------------------------------------


def _doc_examples() -> list[tuple[str, bytes, str]]:
    text = DOC.read_text(encoding="utf-8")
    block = re.search(r"```escpos-status\n(.*?)```", text, re.S)
    assert block is not None
    rows = []
    for line in block.group(1).splitlines():
        state, *hexes, answer = line.split()
        rows.append((state, bytes.fromhex("".join(hexes)), answer))
    return rows


@pytest.mark.parametrize(("state", "query", "answer"), _doc_examples())
def test_documented_status_answers(state: str, query: bytes, answer: str) -> None:
    printer = ReceiptPrinterEmulator()
    sent: list[bytes] = []
    printer.attach(sent.append)
    if state != "normal":
        printer.faults.inject(state)
    printer.receive(query)
    assert b"".join(sent) == (b"" if answer == "--" else bytes.fromhex(answer))


def test_status_bytes_from_conditions() -> None:
    out = PrinterCondition(paper=PaperLevel.OUT)
    assert escpos.status_byte(1, PrinterCondition()) == 0x12
    assert escpos.status_byte(1, out) == 0x1A
    assert escpos.status_byte(4, out) == 0x72
    assert escpos.status_byte(4, PrinterCondition(paper=PaperLevel.NEAR_END)) == 0x1E
    assert escpos.status_byte(9, out) is None
    assert escpos.decode_paper(0x72) is PaperLevel.OUT
    assert escpos.decode_paper(0x7E) is PaperLevel.OUT
    assert escpos.decode_paper(0x1E) is PaperLevel.NEAR_END
    assert escpos.decode_paper(0x12) is PaperLevel.ADEQUATE
    assert escpos.is_status_byte(0x12) and not escpos.is_status_byte(0x10)
    assert escpos.real_time_query(escpos.StatusKind.PAPER) == b"\x10\x04\x04"


def test_status_is_answered_in_the_middle_of_a_print_job_while_paper_is_out() -> None:
    printer = ReceiptPrinterEmulator()
    sent: list[bytes] = []
    printer.attach(sent.append)
    printer.faults.inject("paper_out")
    printer.receive(b"hello\x10\x04\x04world\n\x1dV\x00")
    assert sent == [b"\x72"]
    assert printer.receipts == []


# ----- the emulator's paper roll ------------------------------------------------------------


def test_paper_runs_near_end_then_out_and_the_receipt_stops_uncut() -> None:
    printer = ReceiptPrinterEmulator(paper_length_lines=10, near_end_lines=3)
    printer.receive(b"1\n2\n3\n4\n5\n6\n")
    assert printer.condition().paper is PaperLevel.ADEQUATE
    printer.receive(b"7\n")
    assert printer.condition().paper is PaperLevel.NEAR_END
    printer.receive(b"8\n9\n10\n11\n12\n\x1dV\x00")
    assert printer.condition().paper is PaperLevel.OUT
    (receipt,) = printer.receipts
    assert receipt.cut is False
    assert receipt.text.split() == [str(n) for n in range(1, 11)]
    printer.load_paper()
    printer.receive(b"again\n\x1dV\x00")
    assert printer.receipts[-1].text == "again\n" and printer.receipts[-1].cut


def test_style_and_alignment_reach_the_printed_lines() -> None:
    printer = ReceiptPrinterEmulator()
    printer.receive(b"\x1ba\x01\x1bE\x01\x1d!\x11BIG\n\x1d!\x00\x1bE\x00\x1ba\x02R\n\x1dV\x00")
    (receipt,) = printer.receipts
    big, right = receipt.elements
    assert big == PrintedLine("BIG", Align.CENTER, bold=True, width=2, height=2)
    assert right == PrintedLine("R", Align.RIGHT)
    assert receipt.text == " " * 18 + "BIG\n" + " " * 41 + "R\n"


def test_long_lines_wrap_at_the_columns() -> None:
    printer = ReceiptPrinterEmulator(columns=20)
    printer.receive(b"x" * 45 + b"\n\x1dV\x00")
    assert printer.receipts[0].text == "x" * 20 + "\n" + "x" * 20 + "\n" + "x" * 5 + "\n"


def test_once_fault_latches_until_cleared() -> None:
    printer = ReceiptPrinterEmulator()
    printer.faults.inject("jam", mode="on_command", on_command=2)
    printer.receive(b"\x1b@")
    assert printer.condition().cutter_error is False
    printer.receive(b"a\n")
    assert printer.condition().cutter_error is True
    printer.receive(b"\x1b@")
    assert printer.condition().cutter_error is True
    printer.clear_fault("jam")
    assert printer.condition().cutter_error is False


def test_a_fault_armed_in_the_middle_of_a_stream_stops_the_rest() -> None:
    printer = ReceiptPrinterEmulator()
    printer.receive(b"printed\n")
    printer.faults.inject("jam")
    printer.receive(b"not printed\n\x1dV\x00")
    (receipt,) = printer.receipts
    assert (receipt.text, receipt.cut) == ("printed\n", False)


def test_from_config_checks_its_section(tmp_path: Path) -> None:
    printer = ReceiptPrinterEmulator.from_config(
        {"paper_length_lines": 300, "near_end_lines": 30}, state_dir=tmp_path
    )
    assert (printer.paper_length_lines, printer.near_end_lines) == (300, 30)
    with pytest.raises(ReceiptPrinterConfigError, match="unknown keys paper"):
        ReceiptPrinterEmulator.from_config({"paper": 1})
    with pytest.raises(ReceiptPrinterConfigError, match="must be an integer"):
        ReceiptPrinterEmulator.from_config({"paper_length_lines": "2000"})
    with pytest.raises(ReceiptPrinterConfigError, match="near_end_lines"):
        ReceiptPrinterEmulator.from_config({"paper_length_lines": 10, "near_end_lines": 10})


def test_png_of_a_very_long_receipt_is_capped_and_text_is_whole() -> None:
    import io

    import pygame

    from peripherals.receipt_render import MAX_PNG_HEIGHT

    printer = ReceiptPrinterEmulator(paper_length_lines=5000, near_end_lines=10)
    printer.receive(b"row\n" * 1000 + b"\x1dV\x00")
    (receipt,) = printer.receipts
    assert receipt.text.count("row") == 1000
    assert isinstance(receipt.png, bytes)
    width, height = pygame.image.load(io.BytesIO(receipt.png), "r.png").get_size()
    assert width == 42 * 12 + 16 and height <= MAX_PNG_HEIGHT + 32
