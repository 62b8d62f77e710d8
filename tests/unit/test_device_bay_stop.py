"""Stopping a bay tells every link thread to end before waiting for any of them, so the links
end within one poll period together rather than one after another."""

from __future__ import annotations

from pathlib import Path

from pytest_mock import MockerFixture

from peripherals.harness.bay import DeviceBay
from peripherals.links.runner import LinkRunner


def test_every_link_is_told_to_stop_before_the_bay_waits_for_one(
    mocker: MockerFixture, tmp_path: Path
) -> None:
    calls: list[str] = []
    request_stop = LinkRunner.request_stop
    stop = LinkRunner.stop

    def told(runner: LinkRunner) -> None:
        calls.append(f"told {runner.emulator.NAME}")
        request_stop(runner)

    def waited(runner: LinkRunner) -> None:
        calls.append(f"waited {runner.emulator.NAME}")
        stop(runner)

    mocker.patch.object(LinkRunner, "request_stop", told)
    mocker.patch.object(LinkRunner, "stop", waited)
    bay = DeviceBay.from_profile(backend="sim", state_dir=tmp_path).start()
    names = len(bay.names)
    bay.stop()
    assert names == 4
    assert [c.split()[0] for c in calls[:names]] == ["told"] * names
    assert calls[names].startswith("waited")
