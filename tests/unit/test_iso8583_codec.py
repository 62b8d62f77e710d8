"""The shared ISO 8583 codec: exact bytes, MAC vectors, field rules, and fuzzing of the decoder."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import iso8583
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from host import iso8583 as iso
from host.iso8583 import Message, MessageFormatError

MAC_KEY = bytes.fromhex("2B7E151628AED2A6ABF7158809CF4F3C")
FUZZ = settings(max_examples=200, deadline=None)

SIGN_ON = Message("0800", {"7": "1128120000", "11": "000001", "41": "ATM00001", "70": "001"})
# 2-byte length, "0800", primary bitmap (fields 1, 7, 11, 41) and secondary bitmap (70, 128) as
# ASCII hex, the fields, then the first 8 bytes of AES-CMAC over everything before them.
SIGN_ON_FRAME = (
    "0047"
    + b"0800".hex()
    + b"8220000000800000".hex()
    + b"0400000000000001".hex()
    + b"1128120000".hex()
    + b"000001".hex()
    + b"ATM00001".hex()
    + b"001".hex()
    + "859493f61288c32f"
)


def withdrawal(**overrides: str | bytes) -> Message:
    fields: dict[str, str | bytes] = {
        "3": "012000",
        "4": "000000005000",
        "7": "1128120000",
        "11": "000042",
        "12": "120000",
        "13": "1128",
        "35": "4761739001010010=3012201",
        "41": "ATM00001",
        "49": "978",
        "52": bytes.fromhex("0412AC89ABCDEF67"),
        "53": "0000000000000000",
    }
    fields.update(overrides)
    return Message("0200", fields)


def test_aes_cmac_matches_rfc_4493_vectors() -> None:
    assert iso.compute_mac(MAC_KEY, b"").hex() == "bb1d6929e9593728"
    block = bytes.fromhex("6bc1bee22e409f96e93d7e117393172a")
    assert iso.compute_mac(MAC_KEY, block).hex() == "070a16b46b4d4144"


def test_sign_on_encodes_to_exact_bytes() -> None:
    assert iso.frame(iso.encode_message(SIGN_ON, MAC_KEY)).hex() == SIGN_ON_FRAME


def test_sign_on_decodes_and_its_mac_verifies() -> None:
    body = bytes.fromhex(SIGN_ON_FRAME)[2:]
    message = iso.decode_message(body)
    assert message.mti == "0800"
    assert message.text("70") == "001"
    assert message.binary("128") == bytes.fromhex("859493f61288c32f")
    iso.verify_mac(body, message, MAC_KEY)


def test_a_withdrawal_round_trips_with_binary_pin_block() -> None:
    body = iso.encode_message(withdrawal(), MAC_KEY)
    message = iso.decode_message(body)
    assert message.binary("52") == bytes.fromhex("0412AC89ABCDEF67")
    assert message.text("35") == "4761739001010010=3012201"
    assert bytes.fromhex("0412AC89ABCDEF67") in body  # 8 raw bytes, not hex text
    iso.verify_mac(body, message, MAC_KEY)


def test_a_format_4_pin_block_travels_in_field_110() -> None:
    fields = dict(withdrawal().fields)
    del fields["52"]
    fields["110"] = bytes(range(16))
    fields["53"] = iso.security_control(4)
    message = iso.decode_message(iso.encode_message(Message("0200", fields), MAC_KEY))
    assert message.binary("110") == bytes(range(16))
    assert message.text("53") == "0400000000000000"


def test_wrong_key_is_a_mac_error() -> None:
    body = iso.encode_message(SIGN_ON, MAC_KEY)
    with pytest.raises(iso.MacError):
        iso.verify_mac(body, iso.decode_message(body), bytes(16))


def test_a_changed_byte_is_a_mac_error() -> None:
    body = bytearray(iso.encode_message(SIGN_ON, MAC_KEY))
    body[-12] = ord("9")  # the last digit of field 41 (before 70 and the MAC): still decodes
    message = iso.decode_message(bytes(body))
    assert message.text("41") == "ATM00009"
    with pytest.raises(iso.MacError):
        iso.verify_mac(bytes(body), message, MAC_KEY)


def test_a_message_without_mac_is_a_mac_error() -> None:
    body = iso.encode_message(Message("0810", {**SIGN_ON.fields, "39": "00"}), None)
    with pytest.raises(iso.MacError, match="no MAC"):
        iso.verify_mac(body, iso.decode_message(body), MAC_KEY)


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (Message("0800", {"7": "1128120000", "11": "000001", "41": "ATM00001"}), "70"),
        (Message("0999", {}), "unknown message type"),
        (withdrawal(**{"2": "4761739001010010"}), "exactly one of fields 2 or 35"),
        (withdrawal(**{"4": "00000000500A"}), "field 4"),
        (withdrawal(**{"54": "x"}), "54 is not allowed"),
        (withdrawal(**{"52": "0412AC89ABCDEF67"}), "field 52: expected bytes"),
        (withdrawal(**{"11": "42"}), "11"),
    ],
)
def test_messages_that_break_the_field_table_are_refused(message: Message, reason: str) -> None:
    with pytest.raises(MessageFormatError, match=reason):
        iso.encode_message(message, MAC_KEY)


def test_decode_checks_the_rules_unless_told_not_to() -> None:
    doc = {"t": "0800", "7": "1128120000", "11": "000001", "41": "ATM00001", "70": "001"}
    body = bytes(iso8583.encode(doc, iso.field_table().spec)[0])  # no field 128, which 0800 needs
    with pytest.raises(MessageFormatError, match="128"):
        iso.decode_message(body)
    assert iso.decode_message(body, check=False).text("41") == "ATM00001"


def test_every_request_type_names_a_response_type_of_the_table() -> None:
    table = iso.field_table()
    requests = [m for m in table.messages.values() if m.response]
    assert {m.mti for m in requests} == {"0100", "0200", "0220", "0400", "0420", "0800"}
    for rule in requests:
        assert rule.response in table.messages
        assert "128" in rule.required
    for code in table.processing_codes.values():
        assert code.message in ("0100", "0200")


def test_a_field_table_with_an_unknown_field_stops_loading(tmp_path: Path) -> None:
    text = iso.FIELD_TABLE_PATH.read_text().replace(
        'required: ["7", "11", "41", "70"', 'required: ["7", "11", "41", "71"'
    )
    path = tmp_path / "fields.yaml"
    path.write_text(text)
    with pytest.raises(MessageFormatError, match="field 71 is not in the field table"):
        iso.load_field_table(path)


def test_frame_decoder_reassembles_split_frames_and_refuses_bad_lengths() -> None:
    data = bytes.fromhex(SIGN_ON_FRAME) * 2
    decoder = iso.FrameDecoder()
    assert decoder.feed(data[:1]) == []
    assert decoder.feed(data[1:75]) == [data[2:73]]
    assert decoder.pending == 2
    assert decoder.feed(data[75:]) == [data[2:73]]
    with pytest.raises(MessageFormatError, match="0000"):
        iso.FrameDecoder().feed(b"\x00\x00")
    with pytest.raises(MessageFormatError, match=r"accepted: 1\.\.2048"):
        iso.FrameDecoder().feed(b"\x08\x01" + bytes(10))


def test_balances_and_statement_lines_round_trip() -> None:
    balances = [iso.Balance("20", iso.LEDGER, "978", 250000), iso.Balance("20", "02", "978", -5)]
    text = iso.encode_balances(balances)
    assert text == "2001978C0000002500002002978D000000000005"
    assert iso.decode_balances(text) == balances
    entry = iso.StatementEntry(
        dt.datetime(2026, 11, 28, 9, 5, tzinfo=dt.UTC), "ATM Café", -2000, 248000
    )
    line = iso.encode_statement([entry])
    assert line == "20261128090500D000000002000C000000248000ATM Caf?            "
    assert iso.decode_statement(line)[0].amount == -2000
    assert iso.decode_statement(line)[0].description == "ATM Caf?"


def test_transmission_time_takes_the_year_nearest_now() -> None:
    new_year = dt.datetime(2027, 1, 1, 0, 0, 5, tzinfo=dt.UTC)
    assert iso.parse_transmission_time("1231235959", new_year).year == 2026
    assert iso.parse_transmission_time("0101000001", new_year).year == 2027
    with pytest.raises(MessageFormatError):
        iso.parse_transmission_time("1332000000", new_year)


def test_original_data_and_replacement_amounts_layout() -> None:
    text = iso.original_data_elements("0200", "000042", "1128120000")
    assert text == "0200" + "000042" + "1128120000" + "0" * 22
    assert iso.parse_original_data_elements(text).stan == "000042"
    assert iso.replacement_amounts(2000) == "000000002000" + "0" * 12 + "C00000000C00000000"
    assert iso.parse_replacement_amounts(iso.replacement_amounts(2000)) == 2000


# ----- fuzzing: garbage in, only MessageFormatError or MacError out ------------------------------


def _decode_and_verify(body: bytes) -> None:
    message = iso.decode_message(body)
    iso.verify_mac(body, message, MAC_KEY)


@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes_raise_only_format_errors(data: bytes) -> None:
    try:
        _decode_and_verify(data)
    except (MessageFormatError, iso.MacError):
        return
    pytest.fail("random bytes passed as a MACed message")


@FUZZ
@given(st.data())
def test_bit_flips_never_pass_the_mac(data: st.DataObject) -> None:
    body = bytearray(iso.encode_message(withdrawal(), MAC_KEY))
    bit = data.draw(st.integers(0, len(body) * 8 - 1))
    body[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises((MessageFormatError, iso.MacError)):
        _decode_and_verify(bytes(body))


@FUZZ
@given(st.data())
def test_truncated_messages_are_format_or_mac_errors(data: st.DataObject) -> None:
    body = iso.encode_message(withdrawal(), MAC_KEY)
    cut = data.draw(st.integers(0, len(body) - 1))
    with pytest.raises((MessageFormatError, iso.MacError)):
        _decode_and_verify(body[:cut])


@FUZZ
@given(st.binary(max_size=300), st.lists(st.integers(1, 50), max_size=20))
def test_frame_decoder_never_raises_anything_but_format_errors(
    garbage: bytes, chunks: list[int]
) -> None:
    decoder = iso.FrameDecoder()
    position = 0
    try:
        for size in [*chunks, len(garbage)]:
            for body in decoder.feed(garbage[position : position + size]):
                assert 0 < len(body) <= 2048
            position += size
    except MessageFormatError:
        pass


@FUZZ
@given(st.lists(st.integers(1, 80), min_size=1, max_size=10))
def test_frame_decoder_gives_the_same_frames_however_the_stream_is_cut(sizes: list[int]) -> None:
    stream = iso.frame(iso.encode_message(withdrawal(), MAC_KEY)) * 3
    decoder = iso.FrameDecoder()
    bodies: list[bytes] = []
    position = 0
    while position < len(stream):
        for size in sizes:
            bodies += decoder.feed(stream[position : position + size])
            position += size
    assert bodies == [stream[2 : len(stream) // 3]] * 3
