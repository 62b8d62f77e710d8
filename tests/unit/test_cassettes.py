"""Cassette loads, the note ledger and its state file, and note conservation under every fault."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from config.data_files import DataFileError
from peripherals.cash_dispenser import CashDispenserEmulator
from peripherals.cassettes import (
    STATE_FILE_NAME,
    Cassette,
    CassetteConfigError,
    CassetteState,
    NoteLedger,
    load_cassette_file,
    parse_cassette_load,
)
from peripherals.state_file import dump_state
from peripherals.wire import cash_dispenser as wire

ROOT = Path(__file__).parents[2]


def small_load(count: int = 20) -> dict[str, Any]:
    return {
        "currency": "978",
        "cassettes": [
            {
                "number": 1,
                "denomination": 2000,
                "count": count,
                "capacity": 100,
                "low_threshold": 5,
            },
            {
                "number": 2,
                "denomination": 5000,
                "count": count,
                "capacity": 100,
                "low_threshold": 5,
            },
            {
                "number": 3,
                "denomination": 1000,
                "count": count,
                "capacity": 100,
                "low_threshold": 5,
            },
        ],
    }


# ----- loading ------------------------------------------------------------------------------


def test_default_load_has_four_euro_cassettes() -> None:
    load = load_cassette_file(ROOT / "config" / "cassettes" / "default.yaml")
    assert [(c.number, c.denomination, c.count) for c in load.cassettes] == [
        (1, 2000, 500),
        (2, 5000, 400),
        (3, 1000, 500),
        (4, 10000, 200),
    ]
    assert {c.currency for c in load.cassettes} == {"978"}
    assert all(c.capacity >= c.count and c.low_threshold > 0 for c in load.cassettes)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"currency": 978}, 'quoted string like "978"'),
        ({"colour": "red"}, "colour: unknown key"),
        ({"cassettes": []}, "list of 1..4 cassettes"),
        (
            {"cassettes": [{"denomination": 2000, "count": 9, "capacity": 5}]},
            "count: 9 is not in 0..5",
        ),
        ({"cassettes": [{"denomination": 20.5, "count": 1, "capacity": 5}]}, "whole number"),
        ({"cassettes": [{"count": 1, "capacity": 5}]}, "denomination: missing"),
        (
            {
                "cassettes": [
                    {"number": 1, "denomination": 2000, "count": 1, "capacity": 5},
                    {"number": 1, "denomination": 5000, "count": 1, "capacity": 5},
                ]
            },
            "repeat",
        ),
        (
            {
                "cassettes": [
                    {"denomination": 2000, "count": 1, "capacity": 5},
                    {"denomination": 5000, "count": 1, "capacity": 5, "currency": "840"},
                ]
            },
            "several currencies",
        ),
    ],
)
def test_bad_loads_say_which_key_and_why(change: dict[str, Any], message: str) -> None:
    with pytest.raises(DataFileError, match=message):
        parse_cassette_load({**small_load(), **change}, "test.yaml")


def test_unquoted_currency_in_a_yaml_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "load.yaml"
    path.write_text(
        "version: 1\ncurrency: 978\ncassettes:\n  - {denomination: 2000, count: 1, capacity: 5}\n"
    )
    with pytest.raises(DataFileError, match=f"{path}:2: currency"):
        load_cassette_file(path)


def test_cassette_states() -> None:
    unit = Cassette(1, 2000, "978", 10, 100, 10)
    assert unit.state() is CassetteState.LOW
    assert unit.state(missing=True) is CassetteState.MISSING
    assert unit.state(empty_sensor=True) is CassetteState.EMPTY
    unit.count = 11
    assert unit.state() is CassetteState.OK
    unit.count = 0
    assert unit.state() is CassetteState.EMPTY


# ----- the ledger and its state file --------------------------------------------------------


def test_every_movement_is_saved_and_restored(tmp_path: Path) -> None:
    ledger = NoteLedger.open(parse_cassette_load(small_load()), tmp_path)
    ledger.pick(1)
    ledger.stack(1)
    ledger.pick(2, 2)
    ledger.reject(2, 2)
    ledger.pick(3)
    restored = NoteLedger.restore(tmp_path / STATE_FILE_NAME)
    assert restored.places == ledger.places
    assert restored.places["transport"] == {3: 1}
    assert restored.counters["picked"] == 4 and restored.counters["rejected"] == 2
    assert [c.count for c in restored.cassettes.values()] == [19, 18, 19]
    assert restored.total() == 60
    assert not list(tmp_path.glob("*.tmp"))


def test_the_state_file_has_a_line_per_key_and_an_indented_one_still_reads(
    tmp_path: Path,
) -> None:
    ledger = NoteLedger.open(parse_cassette_load(small_load()), tmp_path)
    ledger.pick(1)
    path = tmp_path / STATE_FILE_NAME
    lines = path.read_text(encoding="ascii").splitlines()
    state = json.loads(path.read_text(encoding="ascii"))
    assert lines[0] == "{" and lines[-1] == "}" and len(lines) == len(state) + 2
    assert [line.split(":")[0].strip() for line in lines[1:-1]] == [f'"{k}"' for k in sorted(state)]
    # A file written indented (as before) with the same checksum is read as it is.
    path.write_text(json.dumps(state, indent=1, sort_keys=True), encoding="ascii")
    assert NoteLedger.restore(path).places == ledger.places


def test_moves_that_would_invent_notes_are_refused() -> None:
    ledger = NoteLedger(parse_cassette_load(small_load(1)).cassettes)
    with pytest.raises(ValueError, match="cannot pick 2"):
        ledger.pick(1, 2)
    with pytest.raises(ValueError, match="cannot move"):
        ledger.stack(1)
    with pytest.raises(ValueError, match="capacity"):
        ledger.replenish({1: 101})
    assert ledger.total() == 3


def test_a_damaged_state_file_is_a_clear_error_not_a_fresh_start(tmp_path: Path) -> None:
    NoteLedger.open(parse_cassette_load(small_load()), tmp_path)
    path = tmp_path / STATE_FILE_NAME
    state = json.loads(path.read_text())
    state["places"]["stacker"] = {"1": -3}
    path.write_bytes(dump_state(state))  # checksummed, so the content check is what refuses it
    with pytest.raises(CassetteConfigError, match="stacker"):
        NoteLedger.open(parse_cassette_load(small_load()), tmp_path)
    path.write_text("{not json")
    with pytest.raises(CassetteConfigError, match="unreadable dispenser state"):
        NoteLedger.open(parse_cassette_load(small_load()), tmp_path)


def test_a_restarted_emulator_resumes_from_its_state_file(tmp_path: Path) -> None:
    first = CashDispenserEmulator.from_config({"cassettes": small_load()}, state_dir=tmp_path)
    sent: list[bytes] = []
    first.attach(sent.append)
    first.receive(wire.DispenseMix(3, (2, 1, 0, 0)).encode())
    first.receive(wire.PresentCommand().encode())
    assert first.take_cash() == 3
    again = CashDispenserEmulator.from_config({"cassettes": small_load()}, state_dir=tmp_path)
    assert again.counters == first.counters
    assert again.counters["taken"] == 3 and again.counters["dispenses"] == 1
    assert [c.count for c in again.cassettes] == [18, 19, 20]
    assert again.taken_notes.amount == 9000


# ----- conservation -------------------------------------------------------------------------

COUNTS = st.tuples(*[st.integers(0, 6)] * wire.CASSETTE_SLOTS)


class Conservation(RuleBasedStateMachine):
    """Notes are never lost or invented, whatever the commands, faults and restarts."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="dispenser-"))
        self.emulator = self.start()
        self.expected = self.emulator.total_notes()
        self.sequence = 0

    def start(self) -> CashDispenserEmulator:
        emulator = CashDispenserEmulator.from_config(
            {"cassettes": small_load()}, state_dir=self.dir
        )
        emulator.attach(self.check_output)
        return emulator

    def check_output(self, data: bytes) -> None:
        for event in wire.FrameReader.for_host().feed(data, 0.0):
            assert event.error is None
            if event.frame is not None:
                wire.decode_reply(event.frame)

    def send(self, command: wire.Command) -> None:
        self.emulator.receive(command.encode())
        self.emulator.receive(bytes([wire.ACK]))

    @rule(counts=COUNTS, repeat=st.booleans())
    def dispense(self, counts: tuple[int, ...], repeat: bool) -> None:
        if not repeat:
            self.sequence = (self.sequence + 1) % 100
        self.send(wire.DispenseMix(self.sequence, counts))

    @rule(counts=COUNTS, ending=st.sampled_from(["take", "retract", "purge"]))
    def withdrawal(self, counts: tuple[int, ...], ending: str) -> None:
        """A whole customer cycle: stacker, present, then taken, retracted or purged."""
        self.sequence = (self.sequence + 1) % 100
        self.send(wire.DispenseMix(self.sequence, counts))
        self.send(wire.PresentCommand())
        if ending == "take":
            self.emulator.take_cash()
        elif ending == "retract":
            self.send(wire.RetractCommand())
        self.send(wire.PurgeCommand())

    @rule(upper=st.integers(0, 5), lower=st.integers(0, 5))
    def lcdm_dispense(self, upper: int, lower: int) -> None:
        self.send(wire.BothDispense(upper, lower))

    @rule()
    def present(self) -> None:
        self.send(wire.PresentCommand())

    @rule()
    def take(self) -> None:
        self.emulator.take_cash()

    @rule()
    def retract(self) -> None:
        self.send(wire.RetractCommand())

    @rule()
    def purge(self) -> None:
        self.send(wire.PurgeCommand())

    @rule(
        name=st.sampled_from(["jam", "double_pick", "shutter_jam", "notes_not_taken"]),
        after=st.integers(0, 8),
        cassette=st.integers(1, 4),
        mode=st.sampled_from(["once", "persistent"]),
    )
    def inject(self, name: str, after: int, cassette: int, mode: str) -> None:
        params: dict[str, Any] = {}
        if name == "jam":
            params["after_notes"] = after
        elif name == "double_pick":
            params["count"] = 1 + after % 3
            if cassette <= 3:  # else any cassette
                params["cassette"] = cassette
        self.emulator.faults.inject(name, mode=mode, **params)

    @rule(name=st.sampled_from(["cassette_missing", "cassette_empty"]), cassette=st.integers(1, 4))
    def cassette_fault(self, name: str, cassette: int) -> None:
        self.emulator.faults.inject(name, cassette=cassette)

    @rule()
    def clear_faults(self) -> None:
        self.emulator.clear_fault()

    @rule(counts=st.tuples(*[st.none() | st.integers(0, 100)] * 3), empty_bins=st.booleans())
    def replenish(self, counts: tuple[int | None, ...], empty_bins: bool) -> None:
        before = self.emulator.total_notes()
        self.send(wire.Exchange(empty_bins, (*counts, None)))
        # the one way the total may change: the operator's own counts
        self.expected += self.emulator.total_notes() - before
        if self.emulator.total_notes() != before:
            busy = any(
                getattr(self.emulator, p).notes for p in ("stacker", "transport", "presented")
            )
            assert not busy

    @rule()
    def restart(self) -> None:
        self.emulator = self.start()

    @invariant()
    def notes_are_conserved(self) -> None:
        emulator = self.emulator
        assert emulator.total_notes() == self.expected
        places = [emulator.transport, emulator.stacker, emulator.presented, emulator.taken_notes]
        places += [emulator.reject_bin, emulator.retract_bin]
        assert all(k >= 0 for p in places for k in p.by_cassette.values())
        assert all(0 <= c.count <= c.capacity for c in emulator.cassettes)
        counters = emulator.counters
        assert counters["picked"] >= counters["stacked"] + counters["rejected"]
        assert counters["presented"] >= counters["taken"] + counters["retracted"]

    def teardown(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


Conservation.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestConservation = Conservation.TestCase
