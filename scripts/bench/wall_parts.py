"""Where a benchmark's wall time goes, by part: the time spent inside chosen methods, each call
timed where it is made; a call inside another timed one counts for the outer one only.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

# (class, method name, part): the method's calls count for the part.
Timed = tuple[type, str, str]


class WallParts:
    """Time the calls of `timed` methods, by part, while the block runs. The methods are
    patched on their classes, so every instance counts; nothing else may patch them meanwhile.
    """

    def __init__(self, timed: Sequence[Timed]) -> None:
        self.seconds: dict[str, float] = {part: 0.0 for _, _, part in timed}
        self.calls: dict[str, int] = dict.fromkeys(self.seconds, 0)
        self._timed = list(timed)
        self._originals: list[tuple[type, str, Any]] = []
        self._depth = threading.local()

    def _wrap(self, method: Callable[..., Any], part: str) -> Callable[..., Any]:
        @functools.wraps(method)
        def timed(*args: Any, **kwargs: Any) -> Any:
            depth = getattr(self._depth, "value", 0)
            self._depth.value = depth + 1
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self._depth.value = depth
                if not depth:  # the outermost timed call of its thread
                    self.seconds[part] += time.perf_counter() - started
                    self.calls[part] += 1

        return timed

    def __enter__(self) -> WallParts:
        for cls, name, part in self._timed:
            method = cls.__dict__[name]
            self._originals.append((cls, name, method))
            setattr(cls, name, self._wrap(method, part))
        return self

    def __exit__(self, *exc: object) -> None:
        for cls, name, method in reversed(self._originals):
            setattr(cls, name, method)
        self._originals.clear()
