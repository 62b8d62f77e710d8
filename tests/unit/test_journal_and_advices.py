"""The journal masks card numbers and refuses secrets; advices survive a restart; every line
of both proves it is whole, and lines from before checksums still read."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from device.advice_queue import Advice, AdviceQueue, AdviceQueueCorrupt
from device.advice_queue import DurableWriteError as AdviceWriteError
from device.durable_log import DurableWriteError
from device.journal import (
    RECENT_ENTRIES,
    Journal,
    JournalCorrupt,
    JournalError,
    JournalWriteError,
)


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
        journal.record("card_read", **{secret: "1234"})
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


# ----- every line proves it is whole ---------------------------------------------------------


def test_the_next_record_cuts_a_torn_line_so_nothing_merges(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    journal = Journal(path)
    journal.record("authorised", stan="000001", amount=8000)
    journal.close()
    whole = path.read_bytes()
    with path.open("ab") as handle:
        handle.write(b'{"crc": "0badf00d", "amount": 8000, "event": "dispen')
    reopened = Journal(path)
    assert reopened.torn_tail is not None and reopened.torn_tail.line == 2
    reopened.record("reversal_queued", stan="000001")
    reopened.close()
    assert path.read_bytes().startswith(whole)
    assert [json.loads(line)["event"] for line in path.read_text().splitlines()] == [
        "authorised",
        "reversal_queued",
    ]


def test_a_damaged_line_in_the_middle_is_a_journal_error_naming_file_and_line(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.jsonl"
    journal = Journal(path)
    for stan in ("000001", "000002", "000003"):
        journal.record("authorised", stan=stan, amount=8000)
    journal.close()
    lines = path.read_text().splitlines(keepends=True)
    lines[1] = lines[1].replace('"amount": 8000', '"amount": 80')  # 80.00 instead of 8000
    path.write_text("".join(lines))
    with pytest.raises(JournalCorrupt, match=r"journal\.jsonl:2: damaged record") as caught:
        Journal(path)
    assert isinstance(caught.value, JournalError)


def test_a_journal_written_before_checksums_upgrades_in_place(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    old = [
        {"seq": 1, "at": "2026-11-28T12:00:00+00:00", "event": "authorised", "amount": 8000},
        {"seq": 2, "at": "2026-11-28T12:00:01+00:00", "event": "dispense_started"},
    ]
    path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in old))
    journal = Journal(path)
    entry = journal.record("notes_counted", amount=8000)
    journal.close()
    assert entry.seq == 3
    events = [(e.seq, e.event, e.fields) for e in Journal(path).entries()]
    assert events == [
        (1, "authorised", {"amount": 8000}),
        (2, "dispense_started", {}),
        (3, "notes_counted", {"amount": 8000}),
    ]


def test_the_checksum_key_is_refused_as_a_field(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.jsonl")
    with pytest.raises(JournalError, match="reserved"):
        journal.record("card_read", crc="00000000")
    journal.close()


def test_record_many_is_one_write_with_consecutive_numbers(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.jsonl")
    journal.record("in_service")
    entries = journal.record_many([("authorised", {"amount": 8000}), ("dispense_started", {})])
    journal.close()
    assert [e.seq for e in entries] == [2, 3]
    assert [e.event for e in Journal(tmp_path / "journal.jsonl").entries()] == [
        "in_service",
        "authorised",
        "dispense_started",
    ]


def test_an_unknown_event_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.jsonl")
    with pytest.raises(JournalError, match="unknown journal event 'reversal_queud'"):
        journal.record_many([("in_service", {}), ("reversal_queud", {})])
    journal.close()
    assert (tmp_path / "journal.jsonl").read_text() == ""


def test_listeners_see_each_write_once_it_is_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    journal = Journal(path)
    seen: list[tuple[list[str], int]] = []
    journal.listeners.append(
        lambda entries: seen.append(([e.event for e in entries], len(path.read_bytes())))
    )
    journal.record("in_service")
    journal.record_many([("authorised", {}), ("dispense_started", {})])
    journal.close()
    assert [events for events, _ in seen] == [["in_service"], ["authorised", "dispense_started"]]
    lines = path.read_bytes().splitlines(keepends=True)
    assert [size for _, size in seen] == [len(lines[0]), len(b"".join(lines))]


def test_recent_entries_come_from_memory_and_match_the_file(tmp_path: Path, mocker: Any) -> None:
    path = tmp_path / "journal.jsonl"
    journal = Journal(path)
    journal.record("in_service")
    for n in range(RECENT_ENTRIES + 5):
        journal.record("card_read", pan="4761739001010010", n=n)
    scans = mocker.spy(journal._log, "scan")
    last = journal.last_seq
    assert last == RECENT_ENTRIES + 6
    since = journal.entries_since(last - 3)
    tail = journal.tail(3)
    assert scans.call_count == 0  # neither read the file
    on_disk = list(journal.entries())
    assert since == tail == on_disk[-3:]
    assert since[0].fields == {"pan": "476173******0010", "n": RECENT_ENTRIES + 2}
    assert journal.entries_since(last) == []
    # Older than memory holds, or another object on the same file (a restart): from the file.
    assert journal.entries_since(0) == on_disk
    journal.close()
    again = Journal(path)
    assert again.last_seq == last and again.entries_since(last - 3) == on_disk[-3:]
    assert again.tail(2) == on_disk[-2:]
    again.close()


def test_one_write_error_class_for_journal_and_advices() -> None:
    assert JournalWriteError is DurableWriteError is AdviceWriteError
    assert issubclass(JournalWriteError, OSError)


def test_a_damaged_advice_line_in_the_middle_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "advices.jsonl"
    queue = AdviceQueue(path)
    queue.add(advice("000001"))
    queue.add(advice("000002"))
    path.write_text(path.read_text().replace('"amount": 5000', '"amount": 9000', 1))
    with pytest.raises(AdviceQueueCorrupt, match=r"advices\.jsonl:1:"):
        AdviceQueue(path)


def test_an_advice_queue_written_before_checksums_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "advices.jsonl"
    lines = [
        {"op": "add", "advice": asdict(advice("000001"))},
        {"op": "add", "advice": asdict(advice("000002"))},
        {"op": "ack", "key": "reversal:000001"},
    ]
    path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in lines) + '{"op": "a')
    queue = AdviceQueue(path)
    assert [a.key for a in queue.pending()] == ["reversal:000002"]
    queue.add(advice("000003"))
    assert [a.key for a in AdviceQueue(path).pending()] == ["reversal:000002", "reversal:000003"]
