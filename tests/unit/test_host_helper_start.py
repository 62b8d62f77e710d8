"""The first host process waits for each helper to listen, and says so when one cannot."""

from __future__ import annotations

import multiprocessing
import os
import time

import pytest

from host import server
from host.server import HostServerError


def test_a_helper_that_ends_while_starting_is_named_with_its_exit_code() -> None:
    spawn = multiprocessing.get_context("spawn")
    listening = spawn.Event()
    process = spawn.Process(target=os._exit, args=(3,), name="iso8583-host-2")
    process.start()
    with pytest.raises(
        HostServerError, match=r"iso8583-host-2 ended while starting \(exit code 3\)"
    ):
        server._await_listening(process, listening)
    process.join(5)


def test_a_helper_that_never_listens_is_given_up_after_the_start_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(server, "HELPER_START_SECONDS", 0.3)
    spawn = multiprocessing.get_context("spawn")
    listening = spawn.Event()
    process = spawn.Process(target=time.sleep, args=(60,), name="iso8583-host-2")
    process.start()
    try:
        with pytest.raises(HostServerError, match=r"did not listen within 0\.3 s"):
            server._await_listening(process, listening)
    finally:
        process.kill()
        process.join(5)


def test_a_helper_that_listens_ends_the_wait() -> None:
    spawn = multiprocessing.get_context("spawn")
    listening = spawn.Event()
    listening.set()
    process = spawn.Process(target=time.sleep, args=(60,), name="iso8583-host-2")
    server._await_listening(process, listening)  # not even started: the event is enough
