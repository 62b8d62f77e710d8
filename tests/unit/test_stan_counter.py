"""The STAN file: one append and one fsync a number, a torn last line skipped, the older format
read and replaced, compaction, and a failed write that uses no STAN. Real files in tmp_path."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from device import stan_counter
from device.disk_faults import DiskFaults
from device.durable_log import DurableWriteError, encode_record, scan_file
from device.stan_counter import StanCounter, StanStoreError


class CountingDisk(DiskFaults):
    """The real os calls, counted by name."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def open(self, path: str, flags: int, mode: int = 0o777) -> int:
        self.calls.append("open")
        return super().open(path, flags, mode)

    def fsync(self, fd: int) -> None:
        self.calls.append("fsync")
        super().fsync(fd)

    def replace(self, source: str, target: str) -> None:
        self.calls.append("replace")
        super().replace(source, target)


def test_each_stan_after_the_first_is_one_append_and_one_fsync(tmp_path: Path) -> None:
    disk = CountingDisk()
    counter = StanCounter(tmp_path / "stan", disk=disk)
    assert counter.next() == "000001"
    # the first replaces the file whole and syncs its folder, so the name itself is durable
    assert disk.calls == ["open", "fsync", "replace", "open", "fsync"]
    disk.calls.clear()
    assert [counter.next() for _ in range(3)] == ["000002", "000003", "000004"]
    assert disk.calls == ["open", "fsync", "fsync", "fsync"]  # the file stays open
    lines = scan_file(tmp_path / "stan").records
    assert lines == [{"stan": 1}, {"stan": 2}, {"stan": 3}, {"stan": 4}]
    assert StanCounter(tmp_path / "stan").next() == "000005"


def test_a_torn_last_line_is_skipped_and_cut_by_the_next_stan(tmp_path: Path) -> None:
    path = tmp_path / "stan"
    counter = StanCounter(path)
    counter.next()
    counter.next()
    counter.close()
    with path.open("ab") as file:
        file.write(b'{"crc": "0000')  # a power cut in the middle of the third
    again = StanCounter(path)
    assert again.last == "000002"
    assert again.next() == "000003"
    assert scan_file(path).records == [{"stan": 1}, {"stan": 2}, {"stan": 3}]
    assert scan_file(path).torn is None


def test_the_older_format_is_continued_and_replaced(tmp_path: Path) -> None:
    path = tmp_path / "stan"
    path.write_text("000041\n")
    counter = StanCounter(path)
    assert counter.last == "000041"
    assert counter.next() == "000042"
    assert scan_file(path).records == [{"stan": 42}]


@pytest.mark.parametrize(
    "content",
    [b"12ab\n", b"", b'{"crc": "00000000", "stan": 5}\n', b"1234567\n"],
    ids=["garbage", "empty", "bad-crc", "seven-digits"],
)
def test_a_file_without_a_whole_stan_is_refused_naming_it(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "stan"
    path.write_bytes(content)
    with pytest.raises(StanStoreError, match=f"{path}: holds no whole STAN"):
        StanCounter(path)


def test_a_record_that_is_not_a_stan_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "stan"
    StanCounter(path).next()
    with path.open("ab") as file:
        file.write(encode_record({"stan": 1_000_000}))
    with pytest.raises(StanStoreError, match="is not a STAN"):
        StanCounter(path)


def test_the_file_is_replaced_by_its_last_stan_every_so_often(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stan_counter, "COMPACT_AFTER", 5)
    path = tmp_path / "stan"
    counter = StanCounter(path)
    numbers = [counter.next() for _ in range(12)]
    assert numbers[-1] == "000012"
    records = scan_file(path).records
    assert 1 <= len(records) <= 5 and records[-1] == {"stan": 12}
    assert not list(tmp_path.glob("*.tmp"))
    assert StanCounter(path).next() == "000013"


@pytest.mark.parametrize("kind", ["enospc", "eio_fsync", "short_write"])
def test_a_failed_write_uses_no_stan_and_the_next_try_writes_again(
    tmp_path: Path, kind: str
) -> None:
    path = tmp_path / "stan"
    disk = DiskFaults()
    counter = StanCounter(path, disk=disk)
    counter.next()
    counter.next()
    disk.arm(kind, after_bytes=5)
    with pytest.raises(DurableWriteError, match=f"cannot write {path}: "):
        counter.next()
    assert counter.last == "000002"
    disk.disarm()
    assert counter.next() == "000003"
    assert scan_file(path).records[-1] == {"stan": 3}
    assert StanCounter(path).last == "000003"


def test_a_failed_replacement_leaves_the_previous_file(tmp_path: Path) -> None:
    path = tmp_path / "stan"
    path.write_text("000007\n")
    disk = DiskFaults()
    disk.arm("eio_fsync")
    counter = StanCounter(path, disk=disk)
    with pytest.raises(DurableWriteError) as caught:
        counter.next()
    assert caught.value.errno == errno.EIO and "fsync failed" in str(caught.value)
    assert path.read_text() == "000007\n" and counter.last == "000007"
    assert not list(tmp_path.glob("*.tmp"))
    assert StanCounter(path).last == "000007"
