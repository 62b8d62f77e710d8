"""The benchmarks' CPU of other processes: a child's CPU is measured, and the host benchmark's
ceiling is what the cores leave once the host's own share is taken away."""

from __future__ import annotations

import os
import subprocess
import sys

from scripts.bench.host_bench import CpuSplit, cpu_report
from scripts.bench.process_cpu import CpuMeter, cpu_seconds, process_tree

# Spins until it has used 0.3 s of CPU, says so, then waits to be killed.
SPINNER = """
import sys, time
while time.process_time() < 0.3:
    pass
print("spun", flush=True)
time.sleep(60)
"""


def test_a_child_is_in_the_tree_and_its_cpu_is_counted() -> None:
    child = subprocess.Popen([sys.executable, "-c", SPINNER], stdout=subprocess.PIPE, text=True)
    try:
        meter = CpuMeter(lambda: process_tree(os.getpid()))
        meter.start()
        assert child.pid in process_tree(os.getpid())
        assert child.stdout is not None
        assert child.stdout.readline() == "spun\n"
        assert 0.25 <= meter.spent() < 5.0
    finally:
        child.kill()
        child.wait(10)
    assert cpu_seconds(child.pid) is None  # gone: nothing to read


def test_the_ceiling_is_what_the_cores_leave_without_the_host() -> None:
    cores = len(os.sched_getaffinity(0))
    # 1,000 authorisations: host 1.0 ms each, terminals 0.25, PostgreSQL 0.75.
    load = CpuSplit(this_process=0.25, host=1.0, database=0.75)
    updates = CpuSplit(this_process=0.2, host=0.0, database=0.2)
    lines = cpu_report(load, 1000, updates, 2000, update_rate=4000.0)
    assert lines[0].endswith(
        f"host 1.00, terminals (this process) 0.25, PostgreSQL 0.75: "
        f"2.00 ms in all, on {cores} cores"
    )
    assert "client (this process) 0.10, PostgreSQL 0.10 ms" in lines[1]
    ceiling = cores / 0.001
    assert f"at most {ceiling:.0f} authorisations/s (ratio {ceiling / 4000:.2f})" in lines[2]
    assert f"ratio 0.5 needs {cores / 2000 * 1000:.2f} ms" in lines[2]


def test_a_host_in_this_process_has_no_ceiling_of_its_own() -> None:
    load = CpuSplit(this_process=1.5, host=0.0, database=0.75)
    lines = cpu_report(load, 1000, CpuSplit(0.2, 0.0, 0.2), 2000, update_rate=4000.0)
    assert "host and terminals (this process) 1.50" in lines[0]
    assert len(lines) == 2
