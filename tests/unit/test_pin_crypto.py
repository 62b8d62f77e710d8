"""PIN pad cryptography against published vectors, and against psec as an independent reference."""

from __future__ import annotations

import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peripherals.pin_crypto import ciphers, dukpt_aes, dukpt_tdes, pin_block, tr31
from peripherals.pin_crypto.key_check_value import key_check_value

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import psec

H = bytes.fromhex
TMK = H("0123456789ABCDEFFEDCBA9876543210")
PIN_KEY_TDES = H("89ABCDEF0123456776543210FEDCBA98")
PIN_KEY_AES = H("00112233445566778899AABBCCDDEEFF")
MAC_KEY = H("2B7E151628AED2A6ABF7158809CF4F3C")

pins = st.text("0123456789", min_size=4, max_size=12)
pans = st.text("0123456789", min_size=13, max_size=19)  # psec takes 13 digits and up


@pytest.fixture(autouse=True)
def _quiet_psec() -> None:
    # psec still reaches TDES through the deprecated path; that is its business, not ours
    warnings.filterwarnings("ignore", module="psec")
    warnings.filterwarnings("ignore", message=".*TripleDES.*")


# ----- ISO 9564 ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pan", "block"),
    [("43219876543210987", "0412AC89ABCDEF67"), ("4012345678909", "041274EDCBA9876F")],
)
def test_format0_clear_block_vectors(pan: str, block: str) -> None:
    assert pin_block.clear_pin_block(0, "1234", pan) == H(block)
    assert pin_block.pin_from_clear_block(0, H(block), pan) == "1234"


def test_format4_published_vector_deciphers_to_1234() -> None:
    block = H("E4BE5B623AF7E006AC319E5B93544564")
    assert pin_block.decipher_format4(PIN_KEY_AES, block, "1234567890123456") == "1234"
    assert pin_block.decrypt_pin_block(4, PIN_KEY_AES, block, "1234567890123456") == "1234"


def test_format4_fields_exact() -> None:
    assert pin_block.format4_pin_field("1234", bytes(range(8))) == H(
        "441234AAAAAAAAAA0001020304050607"
    )
    assert pin_block.format4_pan_field("1234567890123456") == H("41234567890123456000000000000000")
    assert pin_block.format4_pan_field("4012345678909") == H("14012345678909000000000000000000")
    assert pin_block.format4_pan_field("12345") == H("00000000123450000000000000000000")


def test_format1_and_format3_exact_with_fixed_fill() -> None:
    fill = bytes([0x1, 0x2, 0x3, 0x4, 0x5, 0x6, 0x7, 0x8, 0x9, 0xA])
    assert pin_block.clear_pin_block(1, "1234", fill=fill) == H("141234123456789A")
    fill3 = bytes([0xA, 0xB, 0xC, 0xD, 0xE, 0xF, 0xA, 0xB, 0xC, 0xD])
    # PIN field 341234ABCDEFABCD XOR PAN field 0000401234567890
    assert pin_block.clear_pin_block(3, "1234", "4012345678909", fill=fill3) == H(
        "341274B9F9B9D35D"
    )


def test_format0_enciphered_under_the_shared_tdes_pin_key() -> None:
    clear = pin_block.clear_pin_block(0, "1234", "4012345678909")
    expected = ciphers.tdes_ecb_encrypt(PIN_KEY_TDES, clear)
    assert pin_block.encrypt_pin_block(0, PIN_KEY_TDES, "1234", "4012345678909") == expected
    assert clear == psec.pinblock.encode_pinblock_iso_0("1234", "4012345678909")
    assert len(expected) == 8


@settings(max_examples=150, deadline=None)
@given(pin=pins, pan=pans)
def test_format0_matches_psec(pin: str, pan: str) -> None:
    assert pin_block.clear_pin_block(0, pin, pan) == psec.pinblock.encode_pinblock_iso_0(pin, pan)


@settings(max_examples=150, deadline=None)
@given(pin=pins, pan=pans)
def test_format3_decoded_by_psec(pin: str, pan: str) -> None:
    clear = pin_block.clear_pin_block(3, pin, pan)
    assert psec.pinblock.decode_pinblock_iso_3(clear, pan) == pin
    assert pin_block.pin_from_clear_block(3, clear, pan) == pin


@settings(max_examples=150, deadline=None)
@given(pin=pins, pan=pans)
def test_format4_deciphered_by_psec_and_psec_by_us(pin: str, pan: str) -> None:
    ours = pin_block.encrypt_pin_block(4, PIN_KEY_AES, pin, pan)
    assert psec.pinblock.decipher_pinblock_iso_4(PIN_KEY_AES, ours, pan) == pin
    theirs = psec.pinblock.encipher_pinblock_iso_4(PIN_KEY_AES, pin, pan)
    assert pin_block.decrypt_pin_block(4, PIN_KEY_AES, theirs, pan) == pin


@settings(max_examples=100, deadline=None)
@given(pin=pins, pan=pans, fmt=st.sampled_from([0, 1, 3]))
def test_tdes_formats_round_trip(pin: str, pan: str, fmt: int) -> None:
    block = pin_block.encrypt_pin_block(fmt, PIN_KEY_TDES, pin, pan)
    assert pin_block.decrypt_pin_block(fmt, PIN_KEY_TDES, block, pan) == pin


def test_random_fill_differs_between_blocks() -> None:
    blocks = {
        pin_block.encrypt_pin_block(3, PIN_KEY_TDES, "1234", "4012345678909") for _ in range(8)
    }
    assert len(blocks) > 1


@pytest.mark.parametrize("pin", ["123", "1234567890123", "12a4", ""])
def test_bad_pins_refused(pin: str) -> None:
    with pytest.raises(pin_block.PinBlockError):
        pin_block.clear_pin_block(0, pin, "4012345678909")


def test_wrong_key_or_pan_is_detected() -> None:
    block = pin_block.encrypt_pin_block(0, PIN_KEY_TDES, "1234", "4012345678909")
    with pytest.raises(pin_block.PinBlockError):
        pin_block.decrypt_pin_block(0, TMK, block, "4012345678909")
    with pytest.raises(pin_block.PinBlockError):
        pin_block.decrypt_pin_block(
            4, MAC_KEY, H("E4BE5B623AF7E006AC319E5B93544564"), "1234567890123456"
        )
    with pytest.raises(pin_block.PinBlockError):
        pin_block.decrypt_pin_block(2, PIN_KEY_TDES, block, "4012345678909")


# ----- DUKPT -------------------------------------------------------------------------------------

TDES_BDK = H("0123456789ABCDEFFEDCBA9876543210")
TDES_KSN = H("FFFF9876543210E00000")


def test_tdes_dukpt_initial_key_vector() -> None:
    assert dukpt_tdes.initial_key(TDES_BDK, TDES_KSN) == H("6AC292FAA1315B4D858AB3A3D7D5933A")


@pytest.mark.parametrize(
    ("count", "key", "block"),
    [
        (1, "042666B49184CFA368DE9628D0397BC9", "1B9C1845EB993A7A"),
        (2, "C46551CEF9FD24B0AA9AD834130D3BC7", "10A01C8D02C69107"),
        (3, "0DF3D9422ACA56E547676D07AD6BADFA", "18DC07B94797B466"),
    ],
)
def test_tdes_dukpt_transaction_keys_and_pin_blocks(count: int, key: str, block: str) -> None:
    ksn = dukpt_tdes.with_counter(TDES_KSN, count)
    ipek = dukpt_tdes.initial_key(TDES_BDK, TDES_KSN)
    assert dukpt_tdes.transaction_key(ipek, ksn) == H(key)
    pin_key = dukpt_tdes.derive_pin_key(TDES_BDK, ksn)
    assert pin_key == ciphers.xor(H(key), H("00000000000000FF00000000000000FF"))
    assert pin_block.encrypt_pin_block(0, pin_key, "1234", "4012345678909") == H(block)


def test_tdes_dukpt_next_ksn_skips_counters_with_more_than_ten_bits() -> None:
    assert dukpt_tdes.next_ksn(TDES_KSN) == H("FFFF9876543210E00001")
    assert dukpt_tdes.next_ksn(H("FFFF9876543210E00002")) == H("FFFF9876543210E00003")
    # 0x003FF has ten bits set; 0x00400 is next (0x003FF + 1)
    assert dukpt_tdes.next_ksn(H("FFFF9876543210E003FF")) == H("FFFF9876543210E00400")
    # 0x007FE has ten bits; +1 gives 0x7FF with eleven, skipped to 0x800
    assert dukpt_tdes.next_ksn(H("FFFF9876543210E007FE")) == H("FFFF9876543210E00800")
    with pytest.raises(dukpt_tdes.DukptError):
        dukpt_tdes.next_ksn(H("FFFF9876543210FFFC00"))


AES_BDK = H("FEDCBA9876543210F1F1F1F1F1F1F1F1")
AES_ID = H("1234567890123456")


def test_aes_dukpt_initial_key_vector() -> None:
    assert dukpt_aes.initial_key(AES_BDK, AES_ID) == H("1273671EA26AC29AFA4D1084127652A1")


@pytest.mark.parametrize(
    ("count", "key", "cmac"),
    [
        (1, "4F21B565BAD9835E112B6465635EAE44", "A2EB5C1C35809E58404E873C3C411E31"),
        (2, "2F34D68DE10F68D38091A73B9E7C437C", "4D104704C53491A60944193DCAF6B411"),
        (3, "031504E530365CF81264238540518318", "6A18904AA8E966A03505F5EEBDAEBD82"),
    ],
)
def test_aes_dukpt_transaction_keys_and_working_key(count: int, key: str, cmac: str) -> None:
    ksn = dukpt_aes.make_ksn(AES_ID, count)
    initial = dukpt_aes.initial_key(AES_BDK, AES_ID)
    transaction = dukpt_aes.transaction_key(initial, ksn)
    assert transaction == H(key)
    # X9.24-3 sample: CMAC of "4012345678909D987" under the request MAC working key
    mac_key = dukpt_aes.working_key(transaction, ksn, dukpt_aes.KeyUsage.MAC_GENERATION)
    assert ciphers.aes_cmac(mac_key, b"4012345678909D987") == H(cmac)


def test_aes_dukpt_pin_key_enciphers_a_format4_block_the_host_can_read() -> None:
    ksn = dukpt_aes.make_ksn(AES_ID, 1)
    transaction = dukpt_aes.transaction_key(dukpt_aes.initial_key(AES_BDK, AES_ID), ksn)
    key = dukpt_aes.pin_encryption_key(transaction, ksn)
    assert key == dukpt_aes.derive_pin_key(AES_BDK, ksn)
    assert key != transaction
    block = pin_block.encrypt_pin_block(4, key, "1234", "4111111111111111")
    assert psec.pinblock.decipher_pinblock_iso_4(key, block, "4111111111111111") == "1234"


def test_aes_dukpt_next_ksn() -> None:
    assert dukpt_aes.next_ksn(AES_ID + bytes(4)) == AES_ID + H("00000001")
    assert dukpt_aes.next_ksn(AES_ID + H("0000FFFF")) == AES_ID + H("00010000")
    # 0x0001FFFE has sixteen bits set; 0x0001FFFF (seventeen) is skipped
    assert dukpt_aes.next_ksn(AES_ID + H("0001FFFE")) == AES_ID + H("00020000")
    with pytest.raises(dukpt_aes.DukptError):
        dukpt_aes.initial_key(H("00" * 24), AES_ID)


# ----- TR-31 -------------------------------------------------------------------------------------

PSEC_DOC_BLOCK = (  # from psec's tr31 module documentation
    "B0096P0TE00N0000A800A7D1A4C0C1BE762177E1CC59D84844EB67C9F6432B2CA34"
    "187AE2E0385EBEE2231697BC5DAE8"
)


def test_tr31_published_block_unwraps() -> None:
    header, key = tr31.unwrap(b"FFFFFFFFEEEEEEEE", PSEC_DOC_BLOCK)
    assert key == b"CCCCCCCCDDDDDDDD"
    assert (header.version, header.key_usage, header.algorithm, header.mode_of_use) == (
        "B",
        "P0",
        "T",
        "E",
    )


def test_tr31_b_our_wrap_unwrapped_by_psec_and_back() -> None:
    block = tr31.wrap(TMK, tr31.Tr31Header("B", "P0", "T", "E"), PIN_KEY_TDES)
    assert block.startswith("B0080P0TE00N0000") and len(block) == 80
    header, key = psec.tr31.unwrap(TMK, block)
    assert key == PIN_KEY_TDES and header.key_usage == "P0"
    theirs = psec.tr31.wrap(TMK, "B0000P0TE00N0000", PIN_KEY_TDES)
    assert tr31.unwrap(TMK, theirs)[1] == PIN_KEY_TDES


def test_tr31_d_our_wrap_unwrapped_by_psec_and_back() -> None:
    header = tr31.Tr31Header("D", "P0", "A", "E", optional_blocks=(("KS", "00604B120F9292800000"),))
    block = tr31.wrap(PIN_KEY_AES, header, MAC_KEY)
    psec_header, key = psec.tr31.unwrap(PIN_KEY_AES, block)
    assert key == MAC_KEY and psec_header.blocks["KS"] == "00604B120F9292800000"
    theirs = psec.tr31.wrap(PIN_KEY_AES, "D0000P0AE00N0000", PIN_KEY_AES)
    assert tr31.unwrap(PIN_KEY_AES, theirs)[1] == PIN_KEY_AES


def test_tr31_optional_blocks_from_psec() -> None:
    theirs = psec.tr31.wrap(TMK, "B0000P0TE00N0100KS1800604B120F9292800000", PIN_KEY_TDES)
    header, key = tr31.unwrap(TMK, theirs)
    assert key == PIN_KEY_TDES
    assert header.optional_blocks == (("KS", "00604B120F9292800000"),)


def test_tr31_masked_key_length_hides_the_key_size() -> None:
    block = tr31.wrap(TMK, tr31.Tr31Header("B", "P0", "T", "E"), PIN_KEY_TDES, masked_key_length=24)
    assert len(block) == 96
    assert tr31.unwrap(TMK, block)[1] == PIN_KEY_TDES


def test_tr31_tampering_is_detected() -> None:
    block = tr31.wrap(TMK, tr31.Tr31Header("B", "P0", "T", "E"), PIN_KEY_TDES)
    swapped = block[:5] + "D0" + block[7:]  # a different key usage in the clear header
    with pytest.raises(tr31.Tr31Error, match="MAC"):
        tr31.unwrap(TMK, swapped)
    flipped = block[:20] + ("0" if block[20] != "0" else "1") + block[21:]
    with pytest.raises(tr31.Tr31Error):
        tr31.unwrap(TMK, flipped)
    with pytest.raises(tr31.Tr31Error, match="MAC"):
        tr31.unwrap(PIN_KEY_TDES, block)
    with pytest.raises(tr31.Tr31Error, match="length"):
        tr31.unwrap(TMK, block[:-2])
    with pytest.raises(tr31.Tr31Error, match="version"):
        tr31.unwrap(TMK, "A" + block[1:])


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=120))
def test_tr31_unwrap_of_garbage_raises_only_tr31_error(text: str) -> None:
    with pytest.raises(tr31.Tr31Error):
        tr31.unwrap(TMK, text)


# ----- key check values --------------------------------------------------------------------------


def test_key_check_values() -> None:
    assert key_check_value(TMK, "tdes") == "08D7B4"
    assert key_check_value(TMK, "tdes", length=8) == "08D7B4FB629D0885"
    assert key_check_value(PIN_KEY_AES, "aes", method="legacy") == (
        ciphers.aes_ecb_encrypt(PIN_KEY_AES, bytes(16))[:3].hex().upper()
    )
    assert (
        key_check_value(PIN_KEY_AES, "aes")
        == ciphers.aes_cmac(PIN_KEY_AES, bytes(16))[:3].hex().upper()
    )
    with pytest.raises(ValueError, match="2 to 8"):
        key_check_value(TMK, "tdes", length=9)


def test_aes_cmac_rfc4493_vector() -> None:
    # RFC 4493 example 2: one 16-byte block
    assert ciphers.aes_cmac(MAC_KEY, H("6BC1BEE22E409F96E93D7E117393172A")) == H(
        "070A16B46B4D4144F79BDD9DD04A287C"
    )
