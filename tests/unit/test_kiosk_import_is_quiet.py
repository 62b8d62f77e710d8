"""Starting the kiosk prints nothing of pygame's own: its output is the simulator's."""

from __future__ import annotations

import os
import subprocess
import sys


def test_importing_the_kiosk_prints_no_pygame_greeting() -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYGAME_HIDE_SUPPORT_PROMPT"}
    done = subprocess.run(
        [sys.executable, "-c", "import device.sim.kiosk.kiosk_app"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    assert "pygame" not in done.stdout.lower()
    assert done.stderr == ""
