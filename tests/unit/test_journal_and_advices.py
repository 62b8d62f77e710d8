"""The journal masks card numbers and refuses secrets; advices survive a restart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from device.advice_queue import Advice, AdviceQueue
from device.journal import Journal, JournalError, mask_pan


def test_mask_pan_keeps_first_six_and_last_four() -> None:
    assert mask_pan("4761739001010010") == "476173******0010"
    assert mask_pan("4012345678909") == "401234***8909"


def test_journal_masks_card_numbers_anywhere(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.jsonl")
    journal.record("card_read", pan="4761739001010010", note="card 4111111111111111 seen")
    journal.close()
    text = (tmp_path / "journal.jsonl").read_text()
    assert "4761739001010010" not in text and "4111111111111111" not in text
    assert "476173******0010" in text and "411111******1111" in text


@pytest.mark.parametrize("secret", ["pin", "pin_block", "new_pin_block", "track2"])
def test_journal_refuses_secrets(tmp_path: Path, secret: str) -> None:
    journal = Journal(tmp_path / "journal.jsonl")
    with pytest.raises(JournalError, match=secret):
        journal.record("oops", **{secret: "1234"})
    journal.close()
    assert (tmp_path / "journal.jsonl").read_text() == ""


def test_journal_skips_a_torn_last_line_and_continues_numbering(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    journal = Journal(path)
    journal.record("authorised", stan="000001", amount=5000)
    journal.close()
    with path.open("a") as handle:
        handle.write('{"seq": 2, "event": "dispense_st')
    reopened = Journal(path)
    assert [e.event for e in reopened.entries()] == ["authorised"]
    entry = reopened.record("reversal_queued", stan="000001")
    reopened.close()
    assert entry.seq == 2


def advice(stan: str, kind: str = "reversal") -> Advice:
    return Advice(kind, stan, "2026-11-28T12:00:00+00:00", 5000, 0, "test")


def test_advices_survive_restart_until_acknowledged(tmp_path: Path) -> None:
    path = tmp_path / "advices.jsonl"
    queue = AdviceQueue(path)
    queue.add(advice("000001"))
    queue.add(advice("000002", "completion"))
    queue.add(advice("000001"))  # queued twice: kept once
    assert [a.original_stan for a in AdviceQueue(path).pending()] == ["000001", "000002"]
    queue.acknowledge("reversal:000001")
    assert [a.key for a in AdviceQueue(path).pending()] == ["completion:000002"]
    assert all(json.loads(line) for line in path.read_text().splitlines())


def test_forward_stops_at_first_failure_to_keep_order(tmp_path: Path) -> None:
    queue = AdviceQueue(tmp_path / "advices.jsonl")
    for stan in ("000001", "000002", "000003"):
        queue.add(advice(stan))
    sent: list[str] = []

    def send(item: Advice) -> bool:
        sent.append(item.original_stan)
        return item.original_stan != "000002"

    assert queue.forward(send) == 2
    assert sent == ["000001", "000002"]
    assert [a.original_stan for a in queue.pending()] == ["000002", "000003"]
