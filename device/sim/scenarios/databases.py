"""Bank databases for scenarios: a small pool of fresh copies of the seeded template, made in a
background thread while scenarios run, so a scenario's bank set-up is a hand-over, not a copy.

Each scenario still gets a database no one has used (a whole `CREATE DATABASE ... TEMPLATE`
copy), and a used one is dropped `WITH (FORCE)`, never reset and handed out again: a host or
fault-proxy thread of the previous scenario that is still finishing a reply can then only write
into a database that is being dropped, never into the next scenario's bank. Resetting one
database in place (TRUNCATE + re-insert) would be quicker still, but would have to prove that no
connection of the last host outlives it, and that sequences, locks and every table the host
writes are restored exactly.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable

import sqlalchemy as sa

from host.database import create_database, drop_database

log = logging.getLogger(__name__)

DEFAULT_POOL_SIZE = 2


class DatabasePool:
    """Keeps up to `size` copies of `template` ready; `take` hands one over, `release` drops it.

    One background thread does every CREATE and DROP, one at a time, so the pool never puts
    more than one copy's work on the server at once. `take` makes the copy itself when none is
    ready (the first scenario, or scenarios shorter than a copy). With `size` 0 there is no
    thread: `take` copies and `release` drops in the caller, as the runner always did.
    """

    def __init__(self, admin: sa.Engine, template: str, size: int = DEFAULT_POOL_SIZE) -> None:
        if size < 0:
            raise ValueError("the pool size must be 0 or more")
        self._admin = admin
        self.template = template
        self.size = size
        self._ready: deque[str] = deque()
        self._to_drop: deque[str] = deque()
        self._making = 0  # copies being made by the thread
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self.taken_ready = 0  # hand-overs of a database made ahead (for the benchmark)
        self.taken_made = 0  # hand-overs that had to copy first
        if size:
            self._thread = threading.Thread(
                target=self._work, name=f"scenario-db-pool-{template}", daemon=True
            )
            self._thread.start()

    # ----- the caller's side --------------------------------------------------------------------

    def take(self) -> str:
        """A fresh copy of the template, for one scenario only."""
        with self._cond:
            if self._closed:
                raise RuntimeError("the database pool is closed")
            if self._ready:
                self.taken_ready += 1
                name = self._ready.popleft()
                self._cond.notify_all()  # room for one more
                return name
            self.taken_made += 1
        name = _new_name()
        self._create(name)
        with self._cond:
            self._cond.notify_all()
        return name

    def release(self, name: str) -> None:
        """The scenario is over: drop its database (in the background when there is a thread)."""
        if self._thread is None:
            self._drop(name)
            return
        with self._cond:
            self._to_drop.append(name)
            self._cond.notify_all()

    def close(self) -> None:
        """Stop the thread, then drop every database this pool made and still holds."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
        with self._cond:
            left = list(self._to_drop) + list(self._ready)
            self._to_drop.clear()
            self._ready.clear()
        for name in left:
            self._drop(name)

    def ready(self) -> int:
        with self._cond:
            return len(self._ready)

    def wait_ready(self, count: int, timeout: float = 30.0) -> bool:
        """Wait until `count` copies are ready (at most the pool size); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._ready) < min(count, self.size):
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    return False
                self._cond.wait(left)
            return True

    # ----- the background thread ----------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._closed and not self._to_drop and len(self._ready) >= self.size:
                    self._cond.wait()
                if self._closed:
                    return
                # Dropping first frees the server's files and connections before the next copy.
                drop = self._to_drop.popleft() if self._to_drop else None
                if drop is None:
                    self._making += 1
            if drop is not None:
                self._guard(self._drop, drop)
                continue
            name = _new_name()
            made = self._guard(self._create, name)
            with self._cond:
                self._making -= 1
                if made and not self._closed:
                    self._ready.append(name)
                elif made:
                    self._to_drop.append(name)
                self._cond.notify_all()
            if not made:
                time.sleep(0.5)  # the server refuses: `take` copies itself and reports why

    def _guard(self, action: Callable[[str], None], name: str) -> bool:
        try:
            action(name)
        except Exception:
            log.warning(
                "scenario database pool: %s %s failed", action.__name__, name, exc_info=True
            )
            return False
        return True

    # ----- SQL ----------------------------------------------------------------------------------

    def _create(self, name: str) -> None:
        with self._admin.connect() as conn:
            create_database(conn, name, self.template)

    def _drop(self, name: str) -> None:
        with self._admin.connect() as conn:
            drop_database(conn, name)


def _new_name() -> str:
    return f"atm_scenario_{uuid.uuid4().hex[:12]}"
