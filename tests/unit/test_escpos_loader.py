"""python-escpos imported through the per-user cache: nothing left in the temporary folder, the
same printer database as its JSON file, one pickle shared by processes started together."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, sys
from importlib import resources
from device.drivers.escpos_loader import escpos_class
escpos_class()
import escpos.capabilities as capabilities
source = json.loads((resources.files("escpos") / "capabilities.json").read_text("utf-8"))
print(json.dumps({"same": capabilities.CAPABILITIES == source,
                  "pickle_dir": capabilities.pickle_dir}))
"""


def _environment(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "ESCPOS_CAPABILITIES_PICKLE_DIR"}
    (tmp_path / "tmp").mkdir(exist_ok=True)
    env.update(XDG_CACHE_HOME=str(tmp_path / "cache"), TMPDIR=str(tmp_path / "tmp"))
    env["PYTHONPATH"] = str(ROOT)
    return env


def _start(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", PROBE], env=env, stdout=subprocess.PIPE, text=True, cwd=ROOT
    )


def _finish(process: subprocess.Popen[str]) -> dict[str, object]:
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 0
    result: dict[str, object] = json.loads(out)
    return result


def test_import_leaves_no_temporary_folder_and_reuses_one_pickle(tmp_path: Path) -> None:
    env = _environment(tmp_path)
    first = _finish(_start(env))
    cache = tmp_path / "cache" / "atm-sim" / "escpos"
    assert first == {"same": True, "pickle_dir": str(cache)}
    assert list((tmp_path / "tmp").iterdir()) == []
    (pickle,) = cache.glob("*.capabilities.pickle")
    written = pickle.stat().st_mtime_ns
    assert oct(cache.stat().st_mode & 0o777) == oct(0o700)

    assert _finish(_start(env)) == first
    assert pickle.stat().st_mtime_ns == written  # read, not written again
    assert list((tmp_path / "tmp").iterdir()) == []
    assert list((cache / "scratch").iterdir()) == []


def test_processes_starting_together_all_read_a_whole_pickle(tmp_path: Path) -> None:
    env = _environment(tmp_path)
    processes = [_start(env) for _ in range(6)]
    assert all(_finish(p)["same"] for p in processes)
    cache = tmp_path / "cache" / "atm-sim" / "escpos"
    assert [p.name for p in cache.iterdir() if p.name.endswith(".part")] == []


def test_a_pickle_folder_the_user_chose_is_kept(tmp_path: Path) -> None:
    env = _environment(tmp_path)
    chosen = tmp_path / "chosen"
    chosen.mkdir()
    env["ESCPOS_CAPABILITIES_PICKLE_DIR"] = str(chosen)
    assert _finish(_start(env))["pickle_dir"] == str(chosen)
    assert not (tmp_path / "cache").exists()


def test_no_cache_folder_still_imports(tmp_path: Path) -> None:
    env = _environment(tmp_path)
    not_a_folder = tmp_path / "a-file"
    not_a_folder.write_text("")
    env["XDG_CACHE_HOME"] = str(not_a_folder)  # a folder cannot be made under it, even as root
    result = _finish(_start(env))
    assert result["same"] is True
    assert str(result["pickle_dir"]).startswith(str(tmp_path / "tmp"))  # its own, as before
