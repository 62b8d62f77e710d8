"""The line framing of durable files: whole lines read back, a torn tail is skipped and cut,
damage before whole lines is an error naming FILE:LINE, and lines from before checksums still read.
"""

from __future__ import annotations

import json
import pickle
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from device.durable_log import (
    DurableLog,
    DurableLogCorrupt,
    DurableWriteError,
    encode_record,
    scan_file,
)


def legacy_entry(record: dict[str, Any]) -> bool:
    return "seq" in record


def write_records(path: Path, records: list[dict[str, Any]]) -> bytes:
    data = b"".join(encode_record(r) for r in records)
    path.write_bytes(data)
    return data


def records(count: int) -> list[dict[str, Any]]:
    return [
        {"seq": n, "event": "step", "amount": 100 * n, "note": "é"} for n in range(1, count + 1)
    ]


def test_a_line_is_plain_json_with_its_crc_first() -> None:
    line = encode_record({"seq": 1, "event": "authorised", "amount": 8000})
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert line.startswith(b'{"crc": "')
    parsed = json.loads(line)
    body = json.dumps({"amount": 8000, "event": "authorised", "seq": 1}, sort_keys=True)
    assert parsed["crc"] == f"{zlib.crc32(body.encode()):08x}"
    assert encode_record({}) == b'{"crc": "%08x"}\n' % zlib.crc32(b"{}")


def test_the_crc_key_is_reserved() -> None:
    with pytest.raises(ValueError, match="reserved"):
        encode_record({"crc": "00000000"})


def test_whole_lines_read_back_in_order(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    write_records(path, [*records(3), {}])
    scan = scan_file(path)
    assert scan.records == [*records(3), {}]
    assert scan.torn is None and scan.end == path.stat().st_size


def test_a_missing_file_is_empty(tmp_path: Path) -> None:
    scan = scan_file(tmp_path / "none.jsonl")
    assert (scan.records, scan.end, scan.torn) == ([], 0, None)


def test_a_cut_last_line_is_a_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    data = write_records(path, records(3))
    path.write_bytes(data[:-7])
    scan = scan_file(path)
    assert scan.records == records(2)
    assert scan.torn is not None and scan.torn.line == 3 and scan.torn.reason == "no newline"
    assert "log.jsonl:3: torn last record skipped" in scan.torn.describe(path)


def test_a_whole_record_without_its_newline_is_still_torn(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    data = write_records(path, records(2))
    path.write_bytes(data[:-1])
    assert scan_file(path).records == records(1)


def test_a_last_line_failing_its_checksum_is_a_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    data = bytearray(write_records(path, records(3)))
    data[-5] ^= 0x01
    path.write_bytes(bytes(data))
    scan = scan_file(path)
    assert scan.records == records(2)
    assert scan.torn is not None and scan.torn.reason == "checksum does not match"


def test_a_damaged_line_before_whole_lines_is_corruption_naming_file_and_line(
    tmp_path: Path,
) -> None:
    path = tmp_path / "log.jsonl"
    lines = write_records(path, records(4)).split(b"\n")
    lines[1] = lines[1].replace(b'"amount": 200', b'"amount": 900')
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(DurableLogCorrupt, match=r"log\.jsonl:2: damaged record") as caught:
        scan_file(path)
    assert caught.value.line == 2 and "\n" not in str(caught.value)


def test_a_merged_line_is_corruption_not_a_skipped_line(tmp_path: Path) -> None:
    """The old defect: a cut line, then the next line appended onto its end."""
    path = tmp_path / "log.jsonl"
    first, second, third = (encode_record(r) for r in records(3))
    path.write_bytes(first + second[:30] + third + encode_record({"seq": 4}))
    with pytest.raises(DurableLogCorrupt, match=":2:"):
        scan_file(path)


def test_two_bad_lines_at_the_end_are_corruption(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    data = write_records(path, records(2))
    path.write_bytes(data + b"garbage\n" + b"more")
    with pytest.raises(DurableLogCorrupt, match=":3:"):
        scan_file(path)


def test_lines_from_before_checksums_read_as_whole(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    old = [json.dumps(r, sort_keys=True).encode() + b"\n" for r in records(2)]
    path.write_bytes(b"".join(old) + encode_record({"seq": 3}))
    assert scan_file(path, legacy_entry).records == [*records(2), {"seq": 3}]
    # without the file's idea of an old record, a plain line is not whole
    with pytest.raises(DurableLogCorrupt, match=":1:"):
        scan_file(path)


def test_a_plain_line_after_checksummed_lines_is_not_whole(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    plain = json.dumps({"seq": 2}).encode() + b"\n"
    path.write_bytes(encode_record({"seq": 1}) + plain + encode_record({"seq": 3}))
    with pytest.raises(DurableLogCorrupt, match="no checksum after checksummed lines"):
        scan_file(path, legacy_entry)


def test_an_old_torn_tail_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_bytes(b'{"seq": 1}\n{"seq": 2, "ev')
    scan = scan_file(path, legacy_entry)
    assert scan.records == [{"seq": 1}] and scan.torn is not None


def test_the_next_append_truncates_a_torn_tail_so_nothing_merges(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    data = write_records(path, records(2))
    path.write_bytes(data + encode_record({"seq": 3})[:25])
    log = DurableLog(path)
    log.append([{"seq": 4}])
    log.close()
    assert path.read_bytes() == data + encode_record({"seq": 4})


def test_append_many_is_one_write(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    log = DurableLog(path, keep_open=False)
    log.append(records(3))
    assert scan_file(path).records == records(3)


def test_the_write_error_is_one_line_and_survives_pickling(tmp_path: Path) -> None:
    error = DurableWriteError(tmp_path / "j.jsonl", "write failed: No space left (ENOSPC)", 28)
    assert (
        str(error) == f"cannot write {tmp_path / 'j.jsonl'}: write failed: No space left (ENOSPC)"
    )
    assert isinstance(error, OSError) and error.errno == 28
    again = pickle.loads(pickle.dumps(error))
    assert str(again) == str(error) and again.errno == 28


# ----- any cut of a valid file is a torn tail, never corruption --------------------------------

FIXTURE_OK = [HealthCheck.function_scoped_fixture]  # tmp_path is only a folder, rewritten each time
RECORD = st.dictionaries(
    st.text(st.characters(codec="utf-8"), max_size=6).filter(lambda k: k != "crc"),
    st.one_of(st.integers(), st.text(max_size=12), st.booleans(), st.none()),
    max_size=4,
)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(RECORD, min_size=1, max_size=8), st.data())
def test_any_cut_of_a_valid_file_keeps_every_whole_line_before_it(
    tmp_path: Path, items: list[dict[str, Any]], data: st.DataObject
) -> None:
    path = tmp_path / "cut.jsonl"
    lines = [encode_record(r) for r in items]
    whole = b"".join(lines)
    cut = data.draw(st.integers(0, len(whole)), label="cut")
    path.write_bytes(whole[:cut])
    scan = scan_file(path)  # never DurableLogCorrupt for a pure tail cut
    ends = [sum(len(line) for line in lines[: n + 1]) for n in range(len(lines))]
    kept = sum(1 for end in ends if end <= cut)
    assert scan.records == items[:kept]
    assert scan.end == (ends[kept - 1] if kept else 0)
    assert (scan.torn is None) == (cut == scan.end)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(RECORD, min_size=2, max_size=8), st.data())
def test_any_changed_byte_before_the_last_line_is_reported_at_its_line(
    tmp_path: Path, items: list[dict[str, Any]], data: st.DataObject
) -> None:
    path = tmp_path / "flip.jsonl"
    lines = [encode_record(r) for r in items]
    head = b"".join(lines[:-1])
    at = data.draw(st.integers(0, len(head) - 2), label="at")  # not a line's own newline
    value = data.draw(st.integers(0, 255).filter(lambda b: b != head[at]), label="value")
    if head[at] == ord("\n"):
        return  # a newline replaced merges two lines: covered by the merged-line test
    damaged = bytearray(head + lines[-1])
    damaged[at] = value
    path.write_bytes(bytes(damaged))
    line_number = head[:at].count(b"\n") + 1
    with pytest.raises(DurableLogCorrupt) as caught:
        scan_file(path)
    assert caught.value.line == line_number
