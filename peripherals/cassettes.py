"""Cassettes, bins and where every note is: the cash model of the emulated dispenser.

A cassette load comes from YAML; the note ledger keeps counts and counters in the device's own
checksummed state file (peripherals/state_file.py), rewritten atomically after every movement, or
once for all the movements of one device command.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from config.data_files import DataFile, DataFileError, Key, read_data_file
from config.disk_calls import DiskCalls
from peripherals.state_file import (
    StateFileError,
    StateWriteError,
    dump_state,
    read_state,
    write_state,
)
from peripherals.wire.cash_dispenser import CASSETTE_SLOTS, COUNTER_NAMES

STATE_FILE_NAME = "cash_dispenser_state.json"
STATE_VERSION = 1
MAX_CASSETTE_NOTES = 9999  # four digits on the wire
MAX_DENOMINATION = 99_999_999  # eight digits of cents on the wire

#: Where notes can be, apart from the cassettes. "taken" is the customer's hand.
PLACES: tuple[str, ...] = ("transport", "stacker", "presented", "taken", "reject", "retract")

_CURRENCY = re.compile(r"[0-9]{3}")
_CASSETTE_KEYS = frozenset(
    {"number", "denomination", "currency", "count", "capacity", "low_threshold"}
)
_LOAD_KEYS = frozenset({"version", "currency", "cassettes"})


class CassetteConfigError(ValueError):
    """A dispenser state file or device section that cannot be used; the message names the file,
    the key and the reason (a cassette load file raises DataFileError)."""


class CassetteState(StrEnum):
    OK = "ok"
    LOW = "low"
    EMPTY = "empty"
    MISSING = "missing"


@dataclass
class Cassette:
    """One note cassette: `denomination` in cents, `currency` ISO 4217 numeric ("978")."""

    number: int
    denomination: int
    currency: str
    count: int
    capacity: int
    low_threshold: int

    def state(self, *, missing: bool = False, empty_sensor: bool = False) -> CassetteState:
        if missing:
            return CassetteState.MISSING
        if empty_sensor or self.count == 0:
            return CassetteState.EMPTY
        if self.count <= self.low_threshold:
            return CassetteState.LOW
        return CassetteState.OK


@dataclass(frozen=True)
class CassetteLoad:
    """The cassettes as loaded by the operator, before any note moved."""

    cassettes: tuple[Cassette, ...]
    source: str = "<inline>"


class _Checker:
    """Reads a cassette load (or the counts of a state file), raising DataFileError at the
    first problem."""

    def __init__(self, file: DataFile) -> None:
        self.file = file

    def whole(self, value: object, keys: tuple[Key, ...], low: int, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.file.error(keys, f"expected a whole number, got {value!r}")
        if not low <= value <= high:
            raise self.file.error(keys, f"{value} is not in {low}..{high}")
        return value

    def currency(self, value: object, keys: tuple[Key, ...]) -> str:
        if not isinstance(value, str) or not _CURRENCY.fullmatch(value):
            raise self.file.error(
                keys,
                f'expected an ISO 4217 numeric code as a quoted string like "978", got {value!r}',
            )
        return value

    def load(self) -> CassetteLoad:
        document = self.file.data
        if isinstance(document, list):
            document = {"cassettes": document}
        if not isinstance(document, Mapping):
            raise self.file.error((), "expected a mapping with 'cassettes'")
        unknown = sorted(str(k) for k in set(document) - _LOAD_KEYS)
        if unknown:
            raise self.file.error(
                (unknown[0],), f"unknown key; known: {', '.join(sorted(_LOAD_KEYS))}"
            )
        default_currency = None
        if "currency" in document:
            default_currency = self.currency(document["currency"], ("currency",))
        items = document.get("cassettes")
        if not isinstance(items, list) or not 1 <= len(items) <= CASSETTE_SLOTS:
            raise self.file.error(
                ("cassettes",), f"expected a list of 1..{CASSETTE_SLOTS} cassettes"
            )
        cassettes = [
            self.cassette(index, item, default_currency) for index, item in enumerate(items)
        ]
        numbers = [c.number for c in cassettes]
        if len(set(numbers)) != len(numbers):
            raise self.file.error(("cassettes",), f"numbers {numbers} repeat")
        currencies = {c.currency for c in cassettes}
        if len(currencies) != 1:
            # amounts in the stacker are plain cents: one dispenser pays one currency
            raise self.file.error(
                ("cassettes",), f"the cassettes hold several currencies {sorted(currencies)}"
            )
        return CassetteLoad(tuple(sorted(cassettes, key=lambda c: c.number)), self.file.path)

    def cassette(self, index: int, item: object, default_currency: str | None) -> Cassette:
        keys: tuple[Key, ...] = ("cassettes", index)
        if not isinstance(item, Mapping):
            raise self.file.error(keys, "expected a mapping")
        unknown = sorted(str(k) for k in set(item) - _CASSETTE_KEYS)
        if unknown:
            raise self.file.error(
                (*keys, unknown[0]), f"unknown key; known: {', '.join(sorted(_CASSETTE_KEYS))}"
            )
        for required in ("denomination", "count", "capacity"):
            if required not in item:
                raise self.file.error((*keys, required), "missing")
        currency = item.get("currency", default_currency)
        if currency is None:
            raise self.file.error((*keys, "currency"), "missing (give it here or at the top)")
        capacity = self.whole(item["capacity"], (*keys, "capacity"), 1, MAX_CASSETTE_NOTES)
        return Cassette(
            number=self.whole(item.get("number", index + 1), (*keys, "number"), 1, CASSETTE_SLOTS),
            denomination=self.whole(
                item["denomination"], (*keys, "denomination"), 1, MAX_DENOMINATION
            ),
            currency=self.currency(currency, (*keys, "currency")),
            count=self.whole(item["count"], (*keys, "count"), 0, capacity),
            capacity=capacity,
            low_threshold=self.whole(
                item.get("low_threshold", 0), (*keys, "low_threshold"), 0, capacity
            ),
        )


def parse_cassette_load(document: object, source: str = "<inline>") -> CassetteLoad:
    """Check a cassette load built in code: {"currency": "978", "cassettes": [{number,
    denomination, ...}]} (or the list of cassettes alone, each with its own currency)."""
    return _Checker(DataFile(source, document)).load()


def load_cassette_file(path: Path) -> CassetteLoad:
    """Read and check a cassette load file; DataFileError names the file and the line."""
    return _Checker(read_data_file(path)).load()


class NoteLedger:
    """Every note of the dispenser: in a cassette or in one of PLACES, per cassette number.

    The total changes only by replenishment. With a state file, each movement is saved before
    the method returns, together with `device` (the emulator's own persistent fields), or, inside
    `saved_once`, at its end. A save that fails puts the ledger back as it was last saved, so the
    ledger never holds a movement its file does not.
    """

    def __init__(
        self,
        cassettes: tuple[Cassette, ...],
        state_file: Path | None = None,
        *,
        disk: DiskCalls | None = None,
    ) -> None:
        self.disk = disk  # the os calls of `save` (None: the real ones); tests fail them
        self.cassettes: dict[int, Cassette] = {c.number: Cassette(**asdict(c)) for c in cassettes}
        self.places: dict[str, dict[int, int]] = {place: {} for place in PLACES}
        self.counters: dict[str, int] = dict.fromkeys(COUNTER_NAMES, 0)
        self.device: dict[str, Any] = {}
        self.state_file = state_file
        self._saved: bytes | None = None  # the state file last written, to go back to
        self._holding = False  # inside saved_once: saves wait for its end
        self._unsaved = False  # a save asked for while holding

    @classmethod
    def open(
        cls, load: CassetteLoad, state_dir: Path | None, *, disk: DiskCalls | None = None
    ) -> NoteLedger:
        """The ledger of a device: resumed from its state file if there is one, else `load`."""
        if state_dir is None:
            return cls(load.cassettes)
        state_dir.mkdir(parents=True, exist_ok=True)
        path = state_dir / STATE_FILE_NAME
        if path.exists():
            ledger = cls.restore(path)
            ledger.disk = disk
            return ledger
        ledger = cls(load.cassettes, path, disk=disk)
        ledger.save()
        return ledger

    @classmethod
    def restore(cls, path: Path) -> NoteLedger:
        """The ledger saved in `path`; CassetteConfigError if the file is damaged."""
        try:
            state = read_state(path, "dispenser state")
            if state.get("version") != STATE_VERSION:
                raise CassetteConfigError(f"{path}: state version {state.get('version')!r}")
            load = parse_cassette_load({"cassettes": state["cassettes"]}, str(path))
            ledger = cls(load.cassettes, path)
            counts = _Checker(DataFile(str(path), state))
            for place in PLACES:
                ledger.places[place] = {
                    int(k): counts.whole(v, ("places", place, k), 0, 10**9)
                    for k, v in state["places"][place].items()
                    if v
                }
            for name in COUNTER_NAMES:
                ledger.counters[name] = counts.whole(
                    state["counters"][name], ("counters", name), 0, 10**12
                )
            device = state.get("device", {})
            if not isinstance(device, dict):
                raise CassetteConfigError(f"{path}: device: expected a mapping")
            ledger.device = device
            ledger._saved = dump_state(ledger._state())
        except (StateFileError, DataFileError) as err:
            raise CassetteConfigError(str(err)) from err
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            if isinstance(err, CassetteConfigError):
                raise
            raise CassetteConfigError(f"{path}: unreadable dispenser state: {err!r}") from err
        return ledger

    def _state(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            # a cassette's fields are numbers and text: a copy of them is what asdict would
            # give, without its deep copy of each field at every command
            "cassettes": [dict(vars(c)) for c in self.cassettes.values()],
            "places": {
                p: {str(k): v for k, v in notes.items()} for p, notes in self.places.items()
            },
            "counters": self.counters,
            "device": self.device,
        }

    def _go_back(self, saved: Mapping[str, Any]) -> None:
        """Every count as in `saved`, in the same objects (the emulator holds some of them);
        `saved` is a fresh copy, whose device mapping is taken over."""
        numbers = {item["number"] for item in saved["cassettes"]}
        for number in [n for n in self.cassettes if n not in numbers]:
            del self.cassettes[number]
        for item in saved["cassettes"]:
            unit = self.cassettes.setdefault(item["number"], Cassette(**item))
            for name, value in item.items():
                setattr(unit, name, value)
        for place, notes in self.places.items():
            notes.clear()
            notes.update({int(k): v for k, v in saved["places"][place].items()})
        self.counters.clear()
        self.counters.update(saved["counters"])
        self.device.clear()
        self.device.update(saved["device"])

    def save(self) -> None:
        """Write the whole ledger (at the end of `saved_once` when inside it); StateWriteError
        leaves the previous state file in place and the ledger as that file holds it."""
        if self.state_file is None:
            return
        if self._holding:
            self._unsaved = True
            return
        try:
            # the file's bytes are the snapshot, read back only if a later save fails
            self._saved = write_state(self.state_file, self._state(), self.disk)
        except StateWriteError:
            if self._saved is not None:
                self._go_back(json.loads(self._saved))
            raise

    @contextlib.contextmanager
    def saved_once(self) -> Iterator[None]:
        """The movements inside are written in one save as it ends: a device command's notes
        reach the file together, as after the command, or not at all, as before it."""
        if self._holding:
            yield
            return
        self._holding, self._unsaved = True, False
        try:
            yield
        finally:
            self._holding = False
            if self._unsaved:
                self._unsaved = False
                self.save()

    # ----- reading -------------------------------------------------------------------------

    def notes(self, place: str) -> int:
        return sum(self.places[place].values())

    def amount(self, place: str) -> int:
        """Cents in `place`."""
        return sum(self.cassettes[n].denomination * k for n, k in self.places[place].items())

    def total(self) -> int:
        """Every note the device is accountable for, the customer's hand included."""
        return sum(c.count for c in self.cassettes.values()) + sum(
            self.notes(place) for place in PLACES
        )

    # ----- moving notes: each step is saved -------------------------------------------------

    def _move(self, source: str, target: str, cassette: int, notes: int) -> None:
        have = self.places[source].get(cassette, 0)
        if notes < 0 or notes > have:
            raise ValueError(f"cannot move {notes} notes of cassette {cassette} from {source}")
        self.places[source][cassette] = have - notes
        if not self.places[source][cassette]:
            del self.places[source][cassette]
        self.places[target][cassette] = self.places[target].get(cassette, 0) + notes

    def pick(self, cassette: int, notes: int = 1) -> None:
        """`notes` leave the cassette into the transport (2 for a double pick)."""
        unit = self.cassettes[cassette]
        if notes < 1 or notes > unit.count:
            raise ValueError(f"cassette {cassette} holds {unit.count} notes, cannot pick {notes}")
        unit.count -= notes
        self.places["transport"][cassette] = self.places["transport"].get(cassette, 0) + notes
        self.counters["picked"] += notes
        self.save()

    def stack(self, cassette: int) -> None:
        self._move("transport", "stacker", cassette, 1)
        self.counters["stacked"] += 1
        self.save()

    def reject(self, cassette: int, notes: int) -> None:
        """Notes in the transport (double or skewed) divert to the reject bin."""
        self._move("transport", "reject", cassette, notes)
        self.counters["rejected"] += notes
        self.save()

    def _move_all(self, sources: tuple[str, ...], target: str, counter: str) -> dict[int, int]:
        moved: dict[int, int] = {}
        for source in sources:
            for cassette, notes in list(self.places[source].items()):
                self._move(source, target, cassette, notes)
                moved[cassette] = moved.get(cassette, 0) + notes
        self.counters[counter] += sum(moved.values())
        self.save()
        return moved

    def present(self) -> dict[int, int]:
        """The stacker goes out through the shutter."""
        return self._move_all(("stacker",), "presented", "presented")

    def take(self) -> dict[int, int]:
        """The customer takes what is presented."""
        return self._move_all(("presented",), "taken", "taken")

    def retract(self) -> dict[int, int]:
        """What is presented comes back into the retract bin."""
        return self._move_all(("presented",), "retract", "retracted")

    def purge(self) -> dict[int, int]:
        """The stacker and the transport empty into the reject bin."""
        return self._move_all(("transport", "stacker"), "reject", "purged")

    def replenish(self, counts: Mapping[int, int], *, empty_bins: bool = False) -> None:
        """The operator's exchange: new counts for some cassettes, bins optionally emptied."""
        for number, count in counts.items():
            unit = self.cassettes.get(number)
            if unit is None:
                raise ValueError(f"no cassette {number}")
            if not 0 <= count <= unit.capacity:
                raise ValueError(f"cassette {number}: {count} notes, capacity {unit.capacity}")
        for number, count in counts.items():
            self.cassettes[number].count = count
        if empty_bins:
            self.places["reject"].clear()
            self.places["retract"].clear()
        self.counters["replenishments"] += 1
        self.save()
