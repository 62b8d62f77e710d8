"""replace_file: a whole file swapped in; its folder made only when it is missing."""

from __future__ import annotations

from pathlib import Path

import pytest
from pytest_mock import MockerFixture

from config.disk_calls import REAL_DISK, replace_file


class WriteFailed(OSError):
    def __init__(self, path: Path, cause: str, code: int) -> None:
        super().__init__(code, cause)
        self.path = path


def test_a_missing_folder_is_made_and_the_file_written(tmp_path: Path) -> None:
    target = tmp_path / "lost" / "devices" / "state.json"
    replace_file(target, b'{"notes": 3}\n', REAL_DISK, WriteFailed)
    assert target.read_bytes() == b'{"notes": 3}\n'
    assert sorted(p.name for p in target.parent.iterdir()) == ["state.json"]


def test_an_existing_folder_is_not_made_again(tmp_path: Path, mocker: MockerFixture) -> None:
    target = tmp_path / "state.json"
    target.write_bytes(b"old")
    mkdir = mocker.spy(Path, "mkdir")
    replace_file(target, b"new", REAL_DISK, WriteFailed)
    assert target.read_bytes() == b"new"
    assert mkdir.call_count == 0


def test_a_missing_folder_that_cannot_be_made_says_so(tmp_path: Path) -> None:
    # A link to nowhere: opening beneath it finds nothing, and nothing can be made there.
    (tmp_path / "devices").symlink_to(tmp_path / "nowhere" / "devices")
    target = tmp_path / "devices" / "state.json"
    with pytest.raises(WriteFailed, match="create folder failed") as caught:
        replace_file(target, b"x", REAL_DISK, WriteFailed)
    assert caught.value.path == target
