"""python-escpos, imported without its import-time costs: a parse of its printer database on
every import, and a new temporary directory, holding a copy of that database, left behind each time.

python-escpos caches the database as a pickle in ESCPOS_CAPABILITIES_PICKLE_DIR, or else in a
new temporary directory per process (never removed; 128 KB each). Here that directory is one
per user (`$XDG_CACHE_HOME/atm-sim/escpos`, private to the user), and the pickle is written from
the JSON file (parsed as JSON: milliseconds, where python-escpos's YAML parse takes a quarter of a
second or more) into a file of its own, then renamed, so a process starting beside another never
reads half a pickle. The empty temporary directory python-escpos still makes at import is made
inside that cache and removed at once. A user who set the variable keeps their own choice.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import pickle
import platform
import sys
import tempfile
import threading
from importlib import resources
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PICKLE_DIR_VARIABLE = "ESCPOS_CAPABILITIES_PICKLE_DIR"
_LOCK = threading.Lock()


def escpos_class() -> Any:
    """python-escpos's `Escpos` base class (the module imported once, as described above)."""
    with _LOCK:
        if "escpos.escpos" not in sys.modules and PICKLE_DIR_VARIABLE not in os.environ:
            _import_through_cache()
        return importlib.import_module("escpos.escpos").Escpos


def cache_dir() -> Path | None:
    """Where the pickle is kept, made if need be; None when no such folder can be made."""
    try:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        folder = base / "atm-sim" / "escpos"
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except (OSError, RuntimeError) as err:  # RuntimeError: no home directory known
        log.debug("no cache folder for python-escpos (%s): it makes its own", err)
        return None
    return folder


def _import_through_cache() -> None:
    folder = cache_dir()
    if folder is None:
        return
    try:
        _write_pickle(folder)
    except OSError as err:
        log.debug("python-escpos's pickle not written to %s (%s): it makes its own", folder, err)
        return
    os.environ[PICKLE_DIR_VARIABLE] = str(folder)
    scratch = folder / "scratch"
    scratch.mkdir(exist_ok=True)
    before = set(os.listdir(scratch))
    saved, tempfile.tempdir = tempfile.tempdir, str(scratch)
    try:
        importlib.import_module("escpos.capabilities")
    finally:
        tempfile.tempdir = saved
        for name in set(os.listdir(scratch)) - before:
            with contextlib.suppress(OSError):  # only an empty directory goes
                os.rmdir(scratch / name)


def _write_pickle(folder: Path) -> None:
    """The capabilities pickle python-escpos looks for, unless one newer than its JSON is there."""
    with resources.as_file(resources.files("escpos") / "capabilities.json") as source:
        target = folder / f"{platform.python_version()}.capabilities.pickle"
        with contextlib.suppress(FileNotFoundError):
            if target.stat().st_mtime >= source.stat().st_mtime:
                return
        capabilities = json.loads(source.read_text(encoding="utf-8"))
    handle, partial = tempfile.mkstemp(dir=folder, suffix=".part")
    try:
        with os.fdopen(handle, "wb") as out:
            pickle.dump(capabilities, out, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(partial, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise
