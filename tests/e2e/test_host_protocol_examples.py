"""The hex examples of docs/host-protocol.md against a real host on PostgreSQL: every request
on the page gets an answer of the layout the page shows, and the page's requests are the ones
the example script sends.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from pathlib import Path

from config.settings import Settings
from device.sim.bank_stack import BankStack
from host import iso8583 as iso
from scripts.host_protocol_examples import exchange_examples, send

DOC = Path(__file__).resolve().parents[2] / "docs" / "host-protocol.md"
MAC_KEY = bytes.fromhex("2B7E151628AED2A6ABF7158809CF4F3C")
# Fields an answer echoes from its request, and its response code: the same in every run.
STABLE_FIELDS = ("3", "4", "7", "11", "39", "41", "49", "70")


def documented_frames() -> list[bytes]:
    """The framed messages of the page's examples section, in order; an annotated block's
    bytes are the first word of each line."""
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("## Examples (hex)") :]
    blocks = re.findall(r"^```\n(.*?)^```", section, re.DOTALL | re.MULTILINE)
    return [
        bytes.fromhex("".join(line.split()[0] for line in block.splitlines() if line.strip()))
        for block in blocks
    ]


def decoded(frame: bytes) -> iso.Message:
    assert int.from_bytes(frame[:2], "big") == len(frame) - 2, "length prefix"
    return iso.decode_message(frame[2:], check=False)


def documented_exchanges() -> list[tuple[bytes, bytes]]:
    """(request, answer) pairs: each request is followed on the page by its answer."""
    frames = documented_frames()
    answer_of = {mti: rule.response for mti, rule in iso.field_table().messages.items()}
    pairs = []
    for request, answer in itertools.pairwise(frames):
        if answer_of.get(decoded(request).mti) == decoded(answer).mti:
            pairs.append((request, answer))
    return pairs


def assert_same_layout(actual: iso.Message, documented: iso.Message) -> None:
    assert actual.mti == documented.mti
    assert sorted(actual.fields, key=int) == sorted(documented.fields, key=int)
    for number in STABLE_FIELDS:
        assert actual.fields.get(number) == documented.fields.get(number), f"field {number}"


def test_the_page_shows_the_four_exchanges() -> None:
    requests = [decoded(request) for request, _ in documented_exchanges()]
    assert [(m.mti, m.text("41")) for m in requests] == [
        ("0800", "ATM00001"),
        ("0200", "ATM00001"),
        ("0420", "ATM00001"),
        ("0800", "ATM00099"),
    ]


def test_documented_requests_get_the_documented_answers(bank_stack: BankStack) -> None:
    exchanges = documented_exchanges()
    assert exchanges
    for request, documented_answer in exchanges:
        answer_frame = send(bank_stack.server.port, request)
        answer = decoded(answer_frame)
        assert_same_layout(answer, decoded(documented_answer))
        if "128" in answer:
            iso.verify_mac(answer_frame[2:], answer, MAC_KEY)
    withdrawal = next(decoded(r) for r, _ in exchanges if decoded(r).mti == "0200")
    assert withdrawal.text("4") == "000000005000"
    answers = {decoded(a).mti: decoded(a) for _, a in exchanges}
    assert answers["0210"].text("39") == "00"  # Alice's real PIN block: approved
    assert answers["0430"].text("39") == "00"


def test_the_example_script_sends_the_requests_of_the_page(
    postgres_url: str, settings_for: Callable[..., Settings]
) -> None:
    examples = exchange_examples(settings_for(DATABASE_URL=postgres_url))
    exchanges = documented_exchanges()
    assert [e.request for e in examples] == [request for request, _ in exchanges]
    for example, (_, documented_answer) in zip(examples, exchanges, strict=True):
        assert_same_layout(decoded(example.answer), decoded(documented_answer))
