"""A full, failing or read-only disk under the journal, the advice queue and the devices' state
files: the write raises, nothing more is accepted, and a reopen finds exactly the whole lines.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from device.advice_queue import Advice, AdviceQueue
from device.controller.ports import DeviceTimeout
from device.disk_faults import FAULT_KINDS, DiskFaults
from device.drivers.cash_dispenser import CashDispenserDriver
from device.durable_log import DurableWriteError, scan_file
from device.journal import Journal, JournalWriteError
from peripherals.card_reader import CardReaderEmulator
from peripherals.cash_dispenser import CashDispenserEmulator
from peripherals.cassettes import STATE_FILE_NAME, NoteLedger, parse_cassette_load
from peripherals.links.endpoint import PtyEndpoint
from peripherals.links.runner import LinkRunner
from peripherals.state_file import StateWriteError, write_state

ROOT = Path(__file__).parents[2]
WALLET = ROOT / "config" / "wallet.yaml"
EXPECTED_ERRNO = {
    "short_write": errno.EIO,
    "enospc": errno.ENOSPC,
    "eio_write": errno.EIO,
    "eio_fsync": errno.EIO,
    "read_only": errno.EROFS,
}
EXPECTED_CAUSE = {
    "short_write": "short write: 20 of",
    "enospc": "write failed: No space left on device (ENOSPC)",
    "eio_write": "write failed: Input/output error (EIO)",
    "eio_fsync": "fsync failed: Input/output error (EIO)",
    "read_only": "write failed: Read-only file system (EROFS)",
}
SMALL_LOAD = {
    "currency": "978",
    "cassettes": [
        {"number": 1, "denomination": 2000, "count": 20, "capacity": 100},
        {"number": 2, "denomination": 5000, "count": 20, "capacity": 100},
    ],
}


def whole_lines(path: Path) -> list[dict[str, Any]]:
    """Every line of the file, each checked: no torn tail, no merged line."""
    scan = scan_file(path)
    assert scan.torn is None, scan.torn
    assert scan.end == path.stat().st_size
    return scan.records


def advice(stan: str) -> Advice:
    return Advice("reversal", stan, "2026-11-28T12:00:00+00:00", 8000, 0, "disk test")


# ----- injected faults: every kind, every durable file ---------------------------------------


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_journal_write_fault_stops_the_journal_and_leaves_only_whole_lines(
    kind: str, tmp_path: Path
) -> None:
    path = tmp_path / "journal.jsonl"
    faults = DiskFaults()
    journal = Journal(path, disk=faults)
    journal.record("authorised", stan="000001", amount=8000)
    before = path.read_bytes()
    faults.arm(kind, after_bytes=20)  # strikes 20 bytes into the next line
    with pytest.raises(JournalWriteError) as caught:
        journal.record("dispense_started", stan="000001", amount=8000)
    message = str(caught.value)
    assert message.startswith(f"cannot write {path}: ") and "\n" not in message
    assert EXPECTED_CAUSE[kind] in message
    assert caught.value.errno == EXPECTED_ERRNO[kind]
    assert faults.struck and faults.struck[0].startswith(kind)
    assert path.read_bytes() == before  # the partial line is cut away
    faults.disarm()
    with pytest.raises(JournalWriteError, match="an earlier write failed"):
        journal.record("notes_counted", stan="000001", amount=8000)  # the disk is fine again
    assert journal.write_error is caught.value
    assert path.read_bytes() == before
    journal.close()

    reopened = Journal(path)
    assert [e.event for e in reopened.entries()] == ["authorised"]
    assert reopened.record("reversal_queued", stan="000001").seq == 2
    reopened.close()
    assert [r["event"] for r in whole_lines(path)] == ["authorised", "reversal_queued"]


def test_journal_reopen_in_place_takes_entries_again(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    faults = DiskFaults()
    journal = Journal(path, disk=faults)
    journal.record("in_service")
    faults.arm("enospc")
    with pytest.raises(JournalWriteError):
        journal.record("authorised", amount=8000)
    faults.disarm()
    journal.reopen()
    assert journal.write_error is None
    assert journal.record("authorised", amount=8000).seq == 2
    journal.close()
    assert [r["seq"] for r in whole_lines(path)] == [1, 2]


class TruncateFails(DiskFaults):
    """A disk that fails the write and then the truncation meant to clean it up."""

    def ftruncate(self, fd: int, length: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))


def test_a_cut_line_that_cannot_be_truncated_is_cut_at_the_next_open(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    faults = TruncateFails()
    journal = Journal(path, disk=faults)
    journal.record("authorised", stan="000001", amount=8000)
    faults.arm("short_write", after_bytes=30)
    with pytest.raises(JournalWriteError, match="the cut record stays until the next open"):
        journal.record("dispense_started", stan="000001")
    journal.close()
    reopened = Journal(path)
    assert reopened.torn_tail is not None and reopened.torn_tail.size == 30
    assert [e.event for e in reopened.entries()] == ["authorised"]
    reopened.record("reversal_queued", stan="000001")
    reopened.close()
    assert [r["event"] for r in whole_lines(path)] == ["authorised", "reversal_queued"]


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_advice_queue_write_fault_loses_nothing_and_accepts_nothing_more(
    kind: str, tmp_path: Path
) -> None:
    path = tmp_path / "advices.jsonl"
    faults = DiskFaults()
    queue = AdviceQueue(path, disk=faults)
    queue.add(advice("000001"))
    before = path.read_bytes()
    faults.arm(kind, after_bytes=20)
    with pytest.raises(DurableWriteError) as caught:
        queue.add(advice("000002"))
    assert caught.value.errno == EXPECTED_ERRNO[kind] and EXPECTED_CAUSE[kind] in str(caught.value)
    assert [a.original_stan for a in queue.pending()] == ["000001"]
    assert path.read_bytes() == before
    faults.disarm()
    with pytest.raises(JournalWriteError, match="an earlier write failed"):
        queue.acknowledge("reversal:000001")  # the controller catches one class for both files
    assert [a.original_stan for a in queue.pending()] == ["000001"]
    again = AdviceQueue(path)
    assert [a.original_stan for a in again.pending()] == ["000001"]
    again.add(advice("000003"))
    assert [r["op"] for r in whole_lines(path)] == ["add", "add"]


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_dispenser_state_write_fault_keeps_the_previous_state_file(
    kind: str, tmp_path: Path
) -> None:
    faults = DiskFaults()
    ledger = NoteLedger.open(parse_cassette_load(SMALL_LOAD), tmp_path, disk=faults)
    ledger.pick(1)
    ledger.stack(1)
    path = tmp_path / STATE_FILE_NAME
    before = path.read_bytes()
    faults.arm(kind, after_bytes=20)
    with pytest.raises(StateWriteError) as caught:
        ledger.pick(2)
    assert str(caught.value).startswith(f"cannot write {path}: ") and "\n" not in str(caught.value)
    assert caught.value.errno == EXPECTED_ERRNO[kind]
    assert path.read_bytes() == before
    assert not list(tmp_path.glob("*.tmp"))
    restored = NoteLedger.restore(path)
    assert [c.count for c in restored.cassettes.values()] == [19, 20]
    assert restored.places["stacker"] == {1: 1} and restored.total() == 40
    # the ledger went back to what the file holds: the unsaved pick is not in its memory either
    assert [c.count for c in ledger.cassettes.values()] == [19, 20]
    assert ledger.places["transport"] == {} and ledger.counters["picked"] == 1
    faults.disarm()
    ledger.pick(2)  # a later save writes the whole ledger again
    assert [c.count for c in NoteLedger.restore(path).cassettes.values()] == [19, 19]


def test_card_reader_retain_bin_write_fault_keeps_the_previous_file(tmp_path: Path) -> None:
    path = tmp_path / "retain_bin.json"
    write_state(path, {"retained": ["476173******0010"]})
    reader = CardReaderEmulator.from_config({"wallet": str(WALLET)}, state_dir=tmp_path)
    faults = DiskFaults()
    reader.state_disk = faults
    faults.arm("enospc")
    with pytest.raises(StateWriteError, match="ENOSPC"):
        reader.empty_retain_bin()
    again = CardReaderEmulator.from_config({"wallet": str(WALLET)}, state_dir=tmp_path)
    assert again.retained_cards == ["476173******0010"]


def test_a_dispenser_that_cannot_save_its_notes_dispenses_nothing(tmp_path: Path) -> None:
    """Over a real pty: the device stays silent rather than report notes its file does not hold;
    its memory and its state file still hold every note in the cassettes."""
    emulator = CashDispenserEmulator.from_config({"cassettes": SMALL_LOAD}, state_dir=tmp_path)
    faults = DiskFaults()
    emulator.ledger.disk = faults
    before = (tmp_path / STATE_FILE_NAME).read_bytes()
    runner = LinkRunner(emulator, PtyEndpoint()).start()
    driver = CashDispenserDriver(runner.url, timeout=0.3)
    try:
        faults.arm("eio_fsync")
        with pytest.raises(DeviceTimeout):  # every send failed its save and got no reply
            driver.dispense({1: 2}, transaction=7)
        assert driver.stats.sends > 1
        assert [c.count for c in emulator.cassettes] == [20, 20]
        assert emulator.ledger.notes("transport") == emulator.ledger.notes("stacker") == 0
        faults.disarm()
        result = driver.dispense({1: 2}, transaction=7)  # not taken for a repeat: a new dispense
        assert result.ok and not result.repeated and result.dispensed == {1: 2}
    finally:
        driver.close()
        runner.stop()
    restarted = CashDispenserEmulator.from_config({"cassettes": SMALL_LOAD}, state_dir=tmp_path)
    assert [c.count for c in restarted.cassettes] == [18, 20] and restarted.total_notes() == 40
    assert (tmp_path / STATE_FILE_NAME).read_bytes() != before


def test_a_dispense_is_written_once_whatever_its_notes(tmp_path: Path) -> None:
    """Over a real pty: five notes moved by one command, one state write; a status, none."""
    emulator = CashDispenserEmulator.from_config({"cassettes": SMALL_LOAD}, state_dir=tmp_path)
    writes: list[str] = []

    class CountedDisk(DiskFaults):
        def replace(self, source: str, target: str) -> None:
            writes.append(target)
            super().replace(source, target)

    emulator.ledger.disk = CountedDisk()
    runner = LinkRunner(emulator, PtyEndpoint()).start()
    driver = CashDispenserDriver(runner.url, timeout=1.0)
    try:
        driver.status()
        assert writes == []
        result = driver.dispense({1: 3, 2: 2}, transaction=8)
        assert result.ok and emulator.ledger.notes("stacker") == 5
        assert len(writes) == 1
    finally:
        driver.close()
        runner.stop()
    saved = NoteLedger.restore(tmp_path / STATE_FILE_NAME)
    assert saved.places["stacker"] == {1: 3, 2: 2} and saved.counters["picked"] == 5


def test_disk_faults_refuse_an_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown disk fault 'full'; known: short_write"):
        DiskFaults().arm("full")


# ----- real faults: a real short write, a real read-only file and folder ---------------------

SHORT_WRITE_CHILD = textwrap.dedent(
    """
    import json, resource, signal, sys
    from pathlib import Path
    from device.journal import Journal, JournalWriteError

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit: a short write, then EFBIG
    journal = Journal(Path(sys.argv[1]))
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), resource.RLIM_INFINITY))
    written = 0
    try:
        while True:
            journal.record("authorised", stan=f"{written + 1:06d}", amount=8000)
            written += 1
    except JournalWriteError as err:
        first = str(err)
    try:
        journal.record("in_service")
        second = "accepted"
    except JournalWriteError as err:
        second = str(err)
    print(json.dumps({"written": written, "first": first, "second": second}))
    """
)


def test_a_real_short_write_at_the_file_size_limit(tmp_path: Path) -> None:
    """RLIMIT_FSIZE makes the kernel itself cut a write short, as a full disk does."""
    path = tmp_path / "journal.jsonl"
    limit = 1000
    result = subprocess.run(
        [sys.executable, "-c", SHORT_WRITE_CHILD, str(path), str(limit)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=True,
    )
    report = json.loads(result.stdout)
    assert report["written"] >= 1
    assert "short write" in report["first"] and str(path) in report["first"]
    assert "an earlier write failed" in report["second"]
    records = whole_lines(path)
    assert len(records) == report["written"]
    assert [r["seq"] for r in records] == list(range(1, report["written"] + 1))
    assert path.stat().st_size < limit


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """Make `path` really unwritable: chmod for a user; root ignores modes, so the immutable
    attribute (chattr +i), which stops root too."""
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0o500 if path.is_dir() else 0o400)
        try:
            yield
        finally:
            path.chmod(mode)
        return
    made = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"root cannot make {path} read-only here; the injected EROFS covers it")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_a_journal_in_a_real_read_only_folder_refuses_to_start(tmp_path: Path) -> None:
    folder = tmp_path / "atm"
    folder.mkdir()
    with read_only(folder), pytest.raises(JournalWriteError) as caught:
        Journal(folder / "journal.jsonl")
    assert caught.value.errno in (errno.EACCES, errno.EPERM, errno.EROFS)
    assert f"cannot write {folder / 'journal.jsonl'}: create failed: " in str(caught.value)


def test_a_journal_file_made_read_only_under_a_running_atm(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("an open descriptor ignores a later chmod; only chattr +i (root) stops it")
    path = tmp_path / "journal.jsonl"
    journal = Journal(path)
    journal.record("authorised", stan="000001", amount=8000)
    with read_only(path):
        with pytest.raises(JournalWriteError, match="write failed") as caught:
            journal.record("dispense_started", stan="000001")
        assert caught.value.errno == errno.EPERM
    with pytest.raises(JournalWriteError, match="an earlier write failed"):
        journal.record("dispense_started", stan="000001")
    journal.close()
    assert [r["event"] for r in whole_lines(path)] == ["authorised"]


def test_dispenser_state_in_a_real_read_only_folder_keeps_the_previous_file(
    tmp_path: Path,
) -> None:
    ledger = NoteLedger.open(parse_cassette_load(SMALL_LOAD), tmp_path / "dispenser")
    path = tmp_path / "dispenser" / STATE_FILE_NAME
    before = path.read_bytes()
    with read_only(path.parent), pytest.raises(StateWriteError, match="open failed") as caught:
        ledger.pick(1)
    assert caught.value.errno in (errno.EACCES, errno.EPERM, errno.EROFS)
    assert path.read_bytes() == before
    assert [c.count for c in NoteLedger.restore(path).cassettes.values()] == [20, 20]
