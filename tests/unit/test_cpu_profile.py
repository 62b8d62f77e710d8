"""The benchmarks' --profile: CPU summed by file over every thread, places named for people."""

from __future__ import annotations

import json
import re
import sysconfig
import threading
from pathlib import Path

import pytest
import sqlalchemy

from scripts.bench.cpu_profile import ROOT, CpuProfile, _place, cpu_profile


def _burn(rounds: int) -> int:
    total = 0
    for n in range(rounds):
        total += n * n % 7
    return total


def test_places_are_this_repository_s_paths_library_packages_and_stdlib_modules() -> None:
    assert _place(__file__) == "tests/unit/test_cpu_profile.py"
    assert _place(sqlalchemy.__file__ or "") == "sqlalchemy"
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    assert _place(str(stdlib / "json" / "encoder.py")) == "stdlib json/encoder"
    assert _place("<string>") == "<string>"
    assert Path(__file__).resolve().parents[2] == ROOT


def test_the_cpu_of_every_thread_is_counted_by_file(capsys: pytest.CaptureFixture[str]) -> None:
    with cpu_profile(4, "unit"):
        worker = threading.Thread(target=_burn, args=(300_000,))
        worker.start()
        _burn(100_000)
        json.dumps({"a": [1, 2, 3]}, indent=1)
        worker.join()
    printed = capsys.readouterr().out.splitlines()
    assert re.fullmatch(
        r"profile \(yappi, CPU clock, all threads\): \d+\.\d ms per unit", printed[0]
    )
    first_place = printed[1].split("%", 1)[1].strip()
    assert first_place == "tests/unit/test_cpu_profile.py"  # the thread's work counted too
    share = float(printed[1].split("%")[0])
    assert share > 50
    functions = printed[printed.index("  functions:") + 1 :]
    # two calls in four units: the one in the other thread is counted
    assert functions[0].split("%", 1)[1].split() == [
        "0.5",
        "calls/unit",
        "tests/unit/test_cpu_profile.py:_burn",
    ]


def test_a_report_can_keep_to_the_threads_of_one_name(capsys: pytest.CaptureFixture[str]) -> None:
    profile = CpuProfile()
    profile.start()
    worker = threading.Thread(target=_burn, args=(200_000,), name="picked-0")
    worker.start()
    _burn(100_000)
    worker.join()
    profile.report(4, "unit", threads="picked-")
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("profile (yappi, CPU clock, threads picked-*): ")
    functions = printed[printed.index("  functions:") + 1 :]
    # one call of four units: the main thread's call is left out
    assert functions[0].split("%", 1)[1].split() == [
        "0.2",
        "calls/unit",
        "tests/unit/test_cpu_profile.py:_burn",
    ]


def test_session_bench_sums_each_thread_s_cpu_under_its_part_of_the_simulator() -> None:
    from scripts.bench.session_bench import thread_cpu

    before = thread_cpu()
    burnt, release = threading.Event(), threading.Event()

    def link() -> None:
        _burn(400_000)
        burnt.set()
        release.wait(10)  # alive until measured: an ended thread is no longer counted

    worker = threading.Thread(target=link, name="atm-sim-link-test")
    worker.start()
    try:
        assert burnt.wait(10)
        after = thread_cpu()
    finally:
        release.set()
        worker.join(10)
    links = after["device links and emulators"] - before.get("device links and emulators", 0.0)
    assert links > 0.005  # the spinning thread, named as a link thread is
    assert after["ATM (controller, drivers, journal, host client)"] > 0  # the main thread


def _left_out(rounds: int) -> int:
    return _burn(rounds)


def test_a_paused_block_is_left_out_and_the_rest_kept(capsys: pytest.CaptureFixture[str]) -> None:
    profile = CpuProfile()
    profile.start()
    _burn(50_000)
    with profile.paused():
        _left_out(50_000)
    _burn(50_000)
    profile.report(1, "unit", top=40)
    functions = capsys.readouterr().out.split("  functions:")[1]
    assert "_left_out" not in functions
    assert "2.0 calls/unit  tests/unit/test_cpu_profile.py:_burn" in functions
