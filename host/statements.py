"""PDF account statements."""

import datetime as dt
from pathlib import Path

from config.settings import Settings


def write_statement(settings: Settings, account: str, start: dt.date, end: dt.date) -> Path:
    raise NotImplementedError("statements are not built yet")
