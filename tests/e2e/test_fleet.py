"""A fleet of three ATMs on ptys against one bank on PostgreSQL: every session has an outcome,
the money invariants hold, and each customer balance is the sum of its ledger lines.
"""

from __future__ import annotations

import os
from pathlib import Path

import sqlalchemy as sa

from device.sim.bank_stack import BankStack
from device.sim.customers import atm_profile, prepare_population, terminal_ids
from device.sim.fleet.in_process import Fleet, FleetConfig
from device.sim.fleet.robot_customer import plan_fleet
from device.sim.fleet.sharded import ATM_NICENESS, run_sharded
from host.models import Account, JournalLine, Terminal
from peripherals.cards import load_wallet


def test_three_atms_serve_every_session_and_the_books_balance(
    bank_stack: BankStack, tmp_path: Path
) -> None:
    lines: list[str] = []
    config = FleetConfig(atms=3, sessions=12, seed=5, customers=6)
    with Fleet(config, bank_stack, tmp_path / "run", out=lines.append) as fleet:
        report = fleet.run()
    outcomes = report.outcomes()
    assert sum(outcomes.values()) == 12
    assert {r.terminal_id for r in report.results} == {"ATM00001", "ATM00002", "ATM00003"}
    assert "stuck" not in outcomes and "ATM error" not in outcomes
    assert outcomes["approved"] >= 6, outcomes
    assert report.ok, report.summary()
    assert [c.name for c in report.checks if not c.ok] == []
    assert any(line.startswith("progress: 12/12") for line in lines)
    summary = "\n".join(report.summary())
    assert "sessions/s" in summary and "p95" in summary and "p99" in summary
    # Each customer account's balance is exactly the sum of its ledger lines.
    with bank_stack.engine.connect() as conn:
        rows = conn.execute(
            sa.select(Account.number, Account.ledger_balance, sa.func.sum(JournalLine.amount))
            .join(JournalLine, JournalLine.account_id == Account.id)
            .group_by(Account.number, Account.ledger_balance)
        ).all()
    assert rows and all(balance == lines_sum for _, balance, lines_sum in rows)


def test_a_fleet_on_inline_links_serves_every_session(
    bank_stack: BankStack, tmp_path: Path
) -> None:
    config = FleetConfig(atms=2, sessions=6, seed=5, customers=4, link_backend="inline")
    with Fleet(config, bank_stack, tmp_path / "run") as fleet:
        bay = fleet.slots[0].atm.bay
        assert {bay.link(name).backend for name in bay.urls()} == {"inline"}
        assert bay.url("cash_dispenser").startswith("sim://")
        # the exact settle, not a quiet spell of FleetConfig.settle_seconds after each step
        assert fleet.slots[0].atm.settle_seconds == 0.0 and config.settle_seconds > 0
        report = fleet.run()
    outcomes = report.outcomes()
    assert sum(outcomes.values()) == 6 and outcomes["approved"] >= 3, outcomes
    assert report.ok, report.summary()


def test_customers_go_on_without_a_receipt_when_the_printer_is_out_of_paper(
    bank_stack: BankStack, tmp_path: Path
) -> None:
    config = FleetConfig(atms=1, sessions=3, seed=5, customers=6)
    with Fleet(config, bank_stack, tmp_path / "run") as fleet:
        fleet.slots[0].atm.bay.inject("receipt_printer", "paper_out")
        report = fleet.run()
        shown = [s.name for s in fleet.slots[0].atm.screens_shown]
    assert "receipt_unavailable" in shown
    outcomes = report.outcomes()
    assert "no transaction" not in outcomes, outcomes
    assert sum(n for o, n in outcomes.items() if o == "approved" or o.startswith("declined")) == 3
    assert report.ok, report.summary()


def test_generated_customers_and_terminals_exist_in_bank_and_wallet(
    bank_stack: BankStack, tmp_path: Path
) -> None:
    population = prepare_population(bank_stack.settings, tmp_path, atms=6, generated=3, seed=9)
    again = prepare_population(bank_stack.settings, tmp_path / "2", atms=6, generated=3, seed=9)
    assert [c.pin for c in population.customers] == [c.pin for c in again.customers]
    wallet = load_wallet(population.wallet_path)
    assert {c.card_id for c in population.customers} <= set(wallet)
    assert len(population.customers) == 6  # alice, bob, charlie and three generated
    with bank_stack.engine.connect() as conn:
        known = set(conn.scalars(sa.select(Terminal.terminal_id)))
        balances = dict(conn.execute(sa.select(Account.number, Account.ledger_balance)).all())
    assert set(terminal_ids(6)) <= known
    for customer in population.customers:
        for _, number in customer.accounts:
            assert number in balances
    assert atm_profile("ATM00006", population.wallet_path).terminal_id == "ATM00006"
    plans = plan_fleet(population.customers, 3, 10, seed=4)
    assert [len(p) for p in plans] == [4, 3, 3]
    assert plans == plan_fleet(population.customers, 3, 10, seed=4)


def test_a_fleet_split_over_processes_is_checked_as_one(
    bank_stack: BankStack, tmp_path: Path
) -> None:
    config = FleetConfig(atms=4, sessions=8, seed=2, customers=4, link_backend="inline")
    run = run_sharded(config, bank_stack, tmp_path / "run", out=lambda _: None, shard_atms=2)
    assert len(run.shards) == 2
    assert [s["link_urls"] for s in run.shards] == [["sim"]] * 2  # the devices on inline links
    # The ATM processes yield the cores to this one, the bank's.
    assert [s["niceness"] for s in run.shards] == [os.nice(0) + ATM_NICENESS] * 2
    # Each on one core of its own, in turn, when there are several.
    cores = sorted(os.sched_getaffinity(0))
    expected = [[cores[n % len(cores)]] for n in range(2)] if len(cores) > 1 else [cores] * 2
    assert [s["cores"] for s in run.shards] == expected
    assert sum(len(s["results"]) for s in run.shards) == 8
    # CPU counts in clock ticks: a short shard may have spent none in the kernel.
    assert all(0 <= s["system_cpu_seconds"] <= s["cpu_seconds"] for s in run.shards)
    assert {r.terminal_id for r in run.report.results} == set(terminal_ids(4))
    assert run.report.ok, run.report.summary()
    money = next(c for c in run.report.checks if c.name == "money conservation")
    assert "loaded 220,000.00" in money.figure  # four ATMs of 55,000.00 each
