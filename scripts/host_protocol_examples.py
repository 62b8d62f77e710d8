"""The hex examples of docs/host-protocol.md, taken from a real exchange with a real host:
`python -m scripts.host_protocol_examples` prints them as the page shows them.

It seeds a new database on the bank's PostgreSQL server (the embedded one, or DATABASE_URL's),
starts the ISO 8583 host on it, and sends what ATM00001 sends at 28 November 12:00:00 UTC:
a sign-on, Alice's withdrawal of 50.00 with her PIN block under the seed's test PIN key, a
partial reversal of it, and a sign-on from a terminal the bank does not know. The database
is dropped at the end.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import socket
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from config.settings import Settings, SettingsError, load_settings
from device.sim.bank_stack import BankStack
from host import iso8583 as iso
from host.bank_admin import BankSeed, load_seed
from host.database import DatabaseError, database_url, scratch_database
from peripherals.cards import load_wallet
from peripherals.harness.profile import PROJECT_ROOT
from peripherals.pin_crypto.pin_block import encrypt_pin_block

TERMINAL = "ATM00001"
UNKNOWN_TERMINAL = "ATM00099"
AT = dt.datetime(2026, 11, 28, 12, 0, 0, tzinfo=dt.UTC)
REVERSAL_AT = AT + dt.timedelta(seconds=90)
WITHDRAWAL_CENTS = 5000
DISPENSED_CENTS = 2000
ANSWER_SECONDS = 10.0
HEX_BYTES_PER_LINE = 32


@dataclass(frozen=True)
class Example:
    """One request as sent (length prefix included) and the host's answer to it."""

    title: str
    request: bytes
    answer: bytes


def _message(
    mti: str, at: dt.datetime, stan: str, terminal: str, fields: Mapping[str, str | bytes]
) -> iso.Message:
    """The fields the ATM adds to every request (device/host_client.py does the same)."""
    local = {} if mti == "0800" else iso.local_time_fields(at)
    return iso.Message(
        mti,
        {**fields, "7": iso.transmission_time(at), "11": stan, "41": terminal, **local},
    )


def _requests(seed: BankSeed) -> list[tuple[str, bytes]]:
    keys = next(t.keys for t in seed.terminals if t.terminal_id == TERMINAL)
    card = load_wallet(PROJECT_ROOT / "config" / "wallet.yaml")["alice"]
    pin = next(c.pin for customer in seed.customers for c in customer.cards if c.pan == card.pan)
    track2 = iso.track2(card.pan, card.expiry, card.service_code)
    table = iso.field_table()
    sign_on = {"70": table.network_code_for("sign_on")}
    withdrawal_code = table.processing_code_for("withdrawal")
    checking = table.account_type_code("checking")
    pin_block = encrypt_pin_block(0, keys.pin_key_tdes, pin, card.pan)
    withdrawal: dict[str, str | bytes] = {
        "3": withdrawal_code + checking + "00",
        "4": iso.amount_field(WITHDRAWAL_CENTS),
        "35": track2,
        "49": seed.currency,
        "52": pin_block,
        "53": iso.security_control(0, iso.KeyManagement.FIXED_KEY),
    }
    reversal = {
        "3": withdrawal_code + "0000",
        "4": iso.amount_field(WITHDRAWAL_CENTS),
        "49": seed.currency,
        "90": iso.original_data_elements("0200", "000002", iso.transmission_time(AT)),
        "95": iso.replacement_amounts(DISPENSED_CENTS),
    }
    mac = keys.mac_key
    return [
        (
            "0800 sign-on",
            iso.encode_message(_message("0800", AT, "000001", TERMINAL, sign_on), mac),
        ),
        (
            f"0200 withdrawal of 50.00 from checking, track 2 `{track2}`, Alice's PIN in a "
            f"format 0 PIN block under the test PIN key: `{pin_block.hex().upper()}`",
            iso.encode_message(_message("0200", AT, "000002", TERMINAL, withdrawal), mac),
        ),
        (
            "0420 partial reversal of STAN 000002: 50.00 authorised, 20.00 dispensed",
            iso.encode_message(_message("0420", REVERSAL_AT, "000003", TERMINAL, reversal), mac),
        ),
        (
            f"0800 from the unknown terminal `{UNKNOWN_TERMINAL}` (MACed with the test key)",
            iso.encode_message(_message("0800", AT, "000001", UNKNOWN_TERMINAL, sign_on), mac),
        ),
    ]


def send(port: int, framed: bytes) -> bytes:
    """One framed request to the host on localhost; the framed answer."""
    decoder = iso.FrameDecoder()
    with socket.create_connection(("127.0.0.1", port), timeout=ANSWER_SECONDS) as sock:
        sock.sendall(framed)
        while True:
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("the host closed the connection without an answer")
            bodies = decoder.feed(data)
            if bodies:
                return iso.frame(bodies[0])


@contextlib.contextmanager
def fresh_bank(settings: Settings) -> Iterator[BankStack]:
    """A seeded bank and its host on a new database of the bank's server, dropped after."""
    with (
        scratch_database(database_url(settings), "atm_examples") as url,
        BankStack(dataclasses.replace(settings, database_url=url)) as stack,
    ):
        yield stack


def exchange_examples(settings: Settings) -> list[Example]:
    """Send the example requests, in order, to a new seeded bank's host."""
    seed = load_seed()
    with fresh_bank(settings) as bank:
        return [
            Example(title, iso.frame(body), send(bank.server.port, iso.frame(body)))
            for title, body in _requests(seed)
        ]


def hex_block(data: bytes) -> str:
    text = data.hex().upper()
    width = 2 * HEX_BYTES_PER_LINE
    return "\n".join(text[i : i + width] for i in range(0, len(text), width))


def _described(framed: bytes) -> str:
    message = iso.decode_message(framed[2:], check=False)
    fields = " ".join(sorted(message.fields, key=int))
    code = message.text("39")
    answer = f", response code {code}" if code else ""
    return f"{message.mti}, {len(framed)} bytes, fields {fields}{answer}"


def markdown(examples: list[Example]) -> str:
    parts = []
    for example in examples:
        parts.append(f"{example.title}: {_described(example.request)}\n")
        parts.append(f"```\n{hex_block(example.request)}\n```\n")
        parts.append(f"Answer: {_described(example.answer)}\n")
        parts.append(f"```\n{hex_block(example.answer)}\n```\n")
    return "\n".join(parts)


def main() -> int:
    try:
        examples = exchange_examples(load_settings())
    except (SettingsError, DatabaseError, OSError) as err:
        print(f"host_protocol_examples: {err}", file=sys.stderr)
        return 1
    print(markdown(examples), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
