"""`atm-sim devices serve`: emulated devices on ptys in their own process."""

from pathlib import Path


def serve_devices(config: Path) -> int:
    raise NotImplementedError("devices serve is not built yet")
