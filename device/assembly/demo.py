"""`atm-sim demo`."""

from config.settings import Settings


def run_demo(settings: Settings) -> int:
    raise NotImplementedError("the demo is not built yet")
