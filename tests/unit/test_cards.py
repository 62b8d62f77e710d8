"""The card wallet: YAML loading with clear refusals, ISO 7813 stripes with parity and LRC."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pytest_mock import MockerFixture

from config.data_files import DataFileError
from peripherals import cards
from peripherals.cards import (
    TrackDamage,
    TrackReadError,
    WalletCard,
    damage_stripe,
    encode_stripe,
    load_wallet,
    parse_wallet,
    read_stripe,
)
from peripherals.wire.card_reader import ErrorCode

WALLET = Path(__file__).parents[2] / "config" / "wallet.yaml"
FUZZ = settings(max_examples=200, deadline=None)


# ----- stripes, checked by hand ---------------------------------------------------------------


def test_track2_short_example_by_hand() -> None:
    # ; 1 2 = 3 4 ? -> data 0B 01 02 0D 03 04 0F; odd parity adds 0x10 to 03 and 0F;
    # LRC = 0B^01^02^0D^03^04^0F = 0D (three ones: parity bit 0).
    assert encode_stripe("12=34", 2) == bytes.fromhex("0B 01 02 0D 13 04 1F 0D")


def test_track1_short_example_by_hand() -> None:
    # % B 1 ^ A ^ ? -> data 05 22 11 3E 21 3E 1F; parity bit 0x40 where the ones are even;
    # LRC = 05^22^11^3E^21^3E^1F = 08 (one 1: parity bit 0).
    assert encode_stripe("B1^A^", 1) == bytes.fromhex("45 62 51 3E 61 3E 1F 08")


def test_track2_of_the_charlie_card() -> None:
    # LRC worked by hand: the XOR of ; 4012345678909 = 2806201 ? is 0A, parity makes it 1A.
    stripe = encode_stripe("4012345678909=2806201", 2)
    assert stripe == bytes.fromhex(
        "0B 04 10 01 02 13 04 15 16 07 08 19 10 19 0D 02 08 10 16 02 10 01 1F 1A"
    )
    assert read_stripe(stripe, 2) == "4012345678909=2806201"


def test_leading_clocking_zeros_are_skipped() -> None:
    stripe = b"\x00" * 10 + encode_stripe("12=34", 2)
    assert read_stripe(stripe, 2) == "12=34"


@pytest.mark.parametrize(
    ("damage", "code"),
    [
        (TrackDamage.PARITY, ErrorCode.PARITY),
        (TrackDamage.LRC, ErrorCode.LRC),
        (TrackDamage.NO_START_SENTINEL, ErrorCode.NO_START_SENTINEL),
        (TrackDamage.NO_END_SENTINEL, ErrorCode.NO_END_SENTINEL),
        (TrackDamage.BLANK, ErrorCode.NO_DATA),
    ],
)
@pytest.mark.parametrize("track", [1, 2])
def test_each_damage_gives_its_read_error(damage: TrackDamage, code: ErrorCode, track: int) -> None:
    text = "B4761739001010010^MARTIN/ALICE^3012201" if track == 1 else "4761739001010010=3012201"
    with pytest.raises(TrackReadError) as caught:
        read_stripe(damage_stripe(encode_stripe(text, track), damage, track), track)
    assert caught.value.code is code


def test_characters_outside_the_track_set_are_refused() -> None:
    with pytest.raises(ValueError, match="cannot be encoded"):
        encode_stripe("12A", 2)
    with pytest.raises(ValueError, match="at most 40"):
        encode_stripe("1" * 38, 2)


@FUZZ
@given(st.text(alphabet="0123456789=", max_size=37))
def test_track2_round_trip(text: str) -> None:
    assert read_stripe(encode_stripe(text, 2), 2) == text


@FUZZ
@given(st.text(alphabet=[chr(c) for c in range(0x20, 0x60) if chr(c) not in "%?"], max_size=76))
def test_track1_round_trip(text: str) -> None:
    assert read_stripe(encode_stripe(text, 1), 1) == text


@FUZZ
@given(st.binary(max_size=80), st.sampled_from([1, 2]))
def test_any_stripe_reads_or_fails_with_a_read_code(stripe: bytes, track: int) -> None:
    try:
        read_stripe(stripe, track)
    except TrackReadError as err:
        assert err.code.value.startswith("2")


@FUZZ
@given(st.text(alphabet="0123456789=", min_size=1, max_size=37), st.data())
def test_a_single_flipped_bit_never_reads(text: str, data: st.DataObject) -> None:
    stripe = bytearray(encode_stripe(text, 2))
    bit = data.draw(st.integers(0, len(stripe) * 5 - 1))
    stripe[bit // 5] ^= 1 << (bit % 5)
    with pytest.raises(TrackReadError):
        read_stripe(bytes(stripe), 2)  # odd parity catches every single flipped bit


# ----- the wallet -----------------------------------------------------------------------------


def test_the_wallet_holds_the_shared_cards() -> None:
    wallet = load_wallet(WALLET)
    assert sorted(wallet) == ["alice", "bob", "charlie", "damaged", "expired", "unknown"]
    alice = wallet["alice"]
    assert (alice.pan, alice.expiry, alice.service_code) == ("4761739001010010", "3012", "201")
    assert (wallet["bob"].pan, wallet["bob"].expiry) == ("4111111111111111", "2912")
    assert (wallet["charlie"].pan, wallet["charlie"].expiry) == ("4012345678909", "2806")
    assert wallet["unknown"].pan == "4000000000000002"
    assert wallet["expired"].expiry < "2601"
    assert all(card.service_code == "201" for card in wallet.values())


def test_wallet_tracks_read_back() -> None:
    wallet = load_wallet(WALLET)
    alice = wallet["alice"]
    assert read_stripe(alice.stripe(2), 2) == "4761739001010010=30122010000000000"
    assert read_stripe(alice.stripe(1), 1) == "B4761739001010010^MARTIN/ALICE^30122010000000000"
    assert alice.stripe(3) == b""
    with pytest.raises(TrackReadError) as caught:
        read_stripe(wallet["damaged"].stripe(2), 2)
    assert caught.value.code is ErrorCode.PARITY
    assert read_stripe(wallet["damaged"].stripe(1), 1).startswith("B4761739001010010^")


def test_a_card_never_shows_its_full_number() -> None:
    alice = load_wallet(WALLET)["alice"]
    assert "4761739001010010" not in repr(alice)
    assert "4761739001010010" not in str(alice)
    assert "476173******0010" in str(alice)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "wallet.yaml"
    path.write_text(text, encoding="utf-8")
    return path


GOOD = {"pan": "4012345678909", "name": "OKAFOR/CHARLIE", "expiry": "2806", "service_code": "201"}


@pytest.mark.parametrize(
    ("card", "message"),
    [
        ({**GOOD, "pan": 4012345678909}, "cards.c.pan: must be a quoted string, got int"),
        ({**GOOD, "pan": "4012345678908"}, "cards.c.pan: 401234***8908 fails the Luhn check"),
        ({**GOOD, "pan": "40123"}, "cards.c.pan: expected 12 to 19 digits"),
        ({**GOOD, "expiry": 2806}, "cards.c.expiry: must be a quoted string"),
        ({**GOOD, "expiry": "2813"}, "cards.c.expiry: month 13 not in 01..12"),
        ({**GOOD, "service_code": "21"}, "cards.c.service_code: expected 3 digits"),
        ({**GOOD, "name": "X"}, "cards.c.name: expected 2 to 26"),
        ({**GOOD, "colour": "blue"}, "cards.c.colour: unknown key"),
        ({k: v for k, v in GOOD.items() if k != "expiry"}, "cards.c.expiry: missing"),
        ({**GOOD, "damaged_track": 3}, "cards.c.damaged_track: expected 1 or 2"),
        ({**GOOD, "damaged_track": 2, "damage": "fire"}, "cards.c.damage: 'fire' is not one of"),
        ({**GOOD, "discretionary": "1" * 30}, "cards.c: track 2:"),
    ],
)
def test_a_bad_card_is_refused_with_file_key_and_reason(
    tmp_path: Path, card: dict[str, object], message: str
) -> None:
    path = write(tmp_path, yaml.safe_dump({"version": 1, "cards": {"c": card}}, sort_keys=False))
    with pytest.raises(DataFileError) as caught:
        load_wallet(path)
    assert caught.value.line is not None and caught.value.line >= 3
    assert str(caught.value).startswith(f"{path}:{caught.value.line}: ")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("version: 1\ncards: [1, 2]\n", "wallet.yaml:2: cards: expected a mapping"),
        ("version: 1\nwallet: {}\n", "wallet.yaml:1: cards: the file must hold one mapping"),
        ("version: 1\ncards: {Alice: {}}\n", "wallet.yaml:2: cards.Alice: card ids are"),
        ("version: 1\ncards: {a: [}\n", "wallet.yaml:2: not valid YAML"),
        ("cards: {}\n", "wallet.yaml:1: version: missing"),
    ],
)
def test_a_bad_file_is_refused(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(DataFileError) as caught:
        load_wallet(write(tmp_path, text))
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match=r"none\.yaml: cannot read the file"):
        load_wallet(tmp_path / "none.yaml")


def test_lower_case_names_are_embossed_in_capitals() -> None:
    wallet = parse_wallet({"cards": {"c": {**GOOD, "name": "Okafor/Charlie"}}})
    card: WalletCard = wallet["c"]
    assert card.name == "OKAFOR/CHARLIE"


def test_a_wallet_read_again_is_not_parsed_again_until_its_text_changes(
    tmp_path: Path, mocker: MockerFixture
) -> None:
    parse = mocker.spy(cards, "parse_data_file")
    first = {"version": 1, "cards": {"c": GOOD}}
    path = write(tmp_path, yaml.safe_dump(first, sort_keys=False))
    wallet = load_wallet(path)
    wallet.pop("c")  # a caller's copy: the next reader still gets every card
    assert list(load_wallet(path)) == ["c"]
    assert parse.call_count == 1
    # Rewritten at once, same size and maybe the same timestamp: the new text is read.
    path.write_text(yaml.safe_dump({"version": 1, "cards": {"d": GOOD}}, sort_keys=False))
    assert list(load_wallet(path)) == ["d"]
    assert parse.call_count == 2
