"""Whole customer sessions: devices on real ptys, a real ISO 8583 host, a real PostgreSQL bank."""

from __future__ import annotations

from device.sim.bank_stack import BankStack
from device.sim.customer_script import parse_script, run_action
from device.sim.simulated_atm import SimulatedAtm
from tests.e2e.conftest import MakeAtm

ALICE_CHECKING = "10000001"
ALICE_SAVINGS = "10000002"


def run(atm: SimulatedAtm, script: str) -> None:
    for action in parse_script(script.splitlines()):
        run_action(atm, action)


LOGIN = """
wait idle
insert alice
wait pin_entry
type 1234
press enter
wait transaction_menu
"""


def cash_at_the_shutter(fast_cash_key: str) -> str:
    """Log in, withdraw a fast-cash amount from checking, take the card: the cash waits."""
    return LOGIN + (
        "press F1\nwait account_selection\npress F1\nwait amount_entry\n"
        f"press {fast_cash_key}\nwait ejecting_card\ntake card\nwait presenting_cash\n"
    )


def cassette_notes(atm: SimulatedAtm) -> int:
    status = atm.bay.cash_dispenser.status()
    return sum(int(c["count"]) for c in status["cassettes"])


def events(atm: SimulatedAtm) -> list[str]:
    return [entry.event for entry in atm.journal.entries()]


def test_withdrawal_moves_money_notes_and_journal_together(
    make_atm: MakeAtm, bank_stack: BankStack
) -> None:
    atm = make_atm()
    before = bank_stack.account_balance(ALICE_CHECKING)
    notes_before = cassette_notes(atm)
    run(
        atm,
        cash_at_the_shutter("F3")
        + """
take cash
wait idle
""",
    )
    assert bank_stack.account_balance(ALICE_CHECKING) == before - 10000
    assert cassette_notes(atm) < notes_before
    money_path = [e for e in events(atm) if e in ("authorised", "presented", "taken")]
    assert money_path == ["authorised", "presented", "taken"]
    assert "completion_acknowledged" in events(atm)
    receipt = atm.receipts()[-1]
    assert "WITHDRAWAL EUR 100.00" in receipt
    assert "476173******0010" in receipt and "4761739001010010" not in receipt
    assert "4761739001010010" not in atm.journal.path.read_text()


def test_balance_inquiry_shows_the_bank_balance(make_atm: MakeAtm, bank_stack: BankStack) -> None:
    atm = make_atm()
    run(atm, LOGIN + "press F2\nwait account_selection\npress F2\nwait showing_result\n")
    balance = bank_stack.account_balance(ALICE_SAVINGS)
    assert f"{balance // 100:,}.{balance % 100:02d}" in atm.controller.screen.text()


def test_transfer_between_own_accounts(make_atm: MakeAtm, bank_stack: BankStack) -> None:
    atm = make_atm()
    checking = bank_stack.account_balance(ALICE_CHECKING)
    savings = bank_stack.account_balance(ALICE_SAVINGS)
    run(
        atm,
        LOGIN
        + """
press F3
wait account_selection
press F2
wait amount_entry
press F5
type 250
press enter
wait showing_result
press F8
wait ejecting_card
take card
wait idle
""",
    )
    assert bank_stack.account_balance(ALICE_SAVINGS) == savings - 25000
    assert bank_stack.account_balance(ALICE_CHECKING) == checking + 25000


def test_pin_change_then_the_new_pin_works(make_atm: MakeAtm) -> None:
    atm = make_atm()
    run(
        atm,
        LOGIN
        + """
press F5
wait new_pin_entry
type 9876
press enter
wait showing_result
press F8
wait ejecting_card
take card
wait idle
insert alice
wait pin_entry
type 9876
press enter
wait transaction_menu
""",
    )
    assert atm.controller.state == "transaction_menu"


def test_three_wrong_pins_lock_and_capture_the_card(make_atm: MakeAtm) -> None:
    atm = make_atm()
    run(atm, "wait idle\ninsert alice\nwait pin_entry\n")
    for _ in range(3):
        run(atm, "type 1111\npress enter\n")
    run(atm, "advance 3\nwait idle\n")
    assert atm.bay.card_reader.retained_count == 1
    assert "card_captured" in events(atm)


def test_cash_not_taken_is_retracted_and_the_account_untouched(
    make_atm: MakeAtm, bank_stack: BankStack
) -> None:
    atm = make_atm()
    before = bank_stack.account_balance(ALICE_CHECKING)
    run(
        atm,
        cash_at_the_shutter("F2")
        + """
leave cash
advance 31
wait idle
""",
    )
    assert bank_stack.account_balance(ALICE_CHECKING) == before
    assert "retracted" in events(atm) and "reversal_acknowledged" in events(atm)
    assert atm.bay.cash_dispenser.status()["retract_bin"] > 0


def test_jam_mid_dispense_is_reversed_in_full(make_atm: MakeAtm, bank_stack: BankStack) -> None:
    atm = make_atm()
    before = bank_stack.account_balance(ALICE_CHECKING)
    atm.bay.inject("cash_dispenser", "jam", mode="once", after_notes=1)
    run(
        atm,
        LOGIN
        + """
press F1
wait account_selection
press F1
wait amount_entry
press F3
wait ejecting_card
take card
wait idle
""",
    )
    assert bank_stack.account_balance(ALICE_CHECKING) == before
    assert "reversal_acknowledged" in events(atm)


def test_no_paper_asks_then_serves_cash_without_a_receipt(
    make_atm: MakeAtm, bank_stack: BankStack
) -> None:
    atm = make_atm()
    atm.bay.inject("receipt_printer", "paper_out")
    before = bank_stack.account_balance(ALICE_CHECKING)
    run(atm, LOGIN + "press F1\n")
    assert atm.controller.screen.name == "receipt_unavailable"
    run(
        atm,
        """
press F4
wait account_selection
press F1
wait amount_entry
press F1
wait ejecting_card
take card
wait presenting_cash
take cash
wait idle
""",
    )
    assert bank_stack.account_balance(ALICE_CHECKING) == before - 2000
    assert atm.receipts() == []


def test_host_down_takes_the_atm_out_of_service_and_back(
    make_atm: MakeAtm, bank_stack: BankStack
) -> None:
    atm = make_atm()
    run(atm, "wait idle\n")
    port = bank_stack.server.port
    bank_stack.server.stop()
    run(atm, "advance 6\nwait out_of_service\n")
    bank_stack.server.port = port
    bank_stack.server.start()
    run(atm, "advance 6\nwait idle\n")
    assert "in_service" in events(atm)


def test_reversal_survives_an_atm_restart(
    make_atm: MakeAtm, bank_stack: BankStack, tmp_path_factory: object
) -> None:
    atm = make_atm()
    before = bank_stack.account_balance(ALICE_CHECKING)
    run(atm, cash_at_the_shutter("F2"))
    port = bank_stack.server.port
    bank_stack.server.stop()  # the host goes away while the cash waits at the shutter
    run(atm, "advance 31\nwait idle 15\n")
    assert [a.kind for a in atm.controller.advices.pending()] == ["reversal"]
    state_dir = atm.state_dir
    atm.stop()
    bank_stack.server.port = port
    bank_stack.server.start()
    restarted = make_atm(state_dir)
    run(restarted, "wait idle\n")
    assert restarted.controller.advices.pending() == []
    assert bank_stack.account_balance(ALICE_CHECKING) == before


def test_mini_statement_lists_the_latest_entries(make_atm: MakeAtm) -> None:
    atm = make_atm()
    run(atm, LOGIN + "press F4\nwait account_selection\npress F1\nwait showing_result\n")
    assert atm.controller.screen.name == "result"
    assert "Mini statement" in atm.controller.screen.text()
    assert "2,500.00" in atm.controller.screen.text()  # the opening balance is the first entry
    run(atm, "press F8\nwait ejecting_card\ntake card\nwait idle\n")
    assert "MINI STATEMENT" in atm.receipts()[-1]


def test_card_not_taken_is_captured_and_the_withdrawal_reversed(
    make_atm: MakeAtm, bank_stack: BankStack
) -> None:
    atm = make_atm()
    before = bank_stack.account_balance(ALICE_CHECKING)
    run(
        atm,
        LOGIN
        + """
press F1
wait account_selection
press F1
wait amount_entry
press F2
wait ejecting_card
leave card
wait idle
""",
    )
    assert atm.bay.card_reader.retained_count == 1
    assert bank_stack.account_balance(ALICE_CHECKING) == before
    assert atm.bay.cash_dispenser.status()["presented"] == 0
    assert "reversal_acknowledged" in events(atm)


def test_unavailable_dispenser_offers_only_non_cash_transactions(make_atm: MakeAtm) -> None:
    atm = make_atm()
    atm.bay.inject("cash_dispenser", "unresponsive")
    run(atm, "advance 6\nwait idle\n")
    assert "Cash is not available" in atm.controller.screen.text()
    run(atm, LOGIN + "press F1\n")
    assert "Cash withdrawals are not available" in atm.controller.screen.text()
    assert atm.controller.state == "transaction_menu"
    run(atm, "press F2\nwait account_selection\npress F1\nwait showing_result\n")
    assert atm.controller.screen.name == "result"


def test_inactivity_asks_for_more_time_then_returns_the_card(make_atm: MakeAtm) -> None:
    atm = make_atm()
    run(atm, LOGIN + "advance 121\n")
    assert atm.controller.screen.name == "more_time"
    run(atm, "advance 31\nwait ejecting_card\n")
    assert "session_timeout" in events(atm)


def test_card_reader_power_loss_is_healed_by_initialising_it_again(make_atm: MakeAtm) -> None:
    atm = make_atm()
    atm.bay.inject("card_reader", "power_down", mode="once")
    run(atm, "advance 6\nwait out_of_service\n")
    atm.bay.clear()
    run(atm, "wait idle 20\n")
    assert "card_reader_initialised" in events(atm)
    run(atm, LOGIN)
    assert atm.controller.state == "transaction_menu"


def test_a_dispenser_silent_after_a_power_cut_is_settled_once_it_answers(
    make_atm: MakeAtm, bank_stack: BankStack
) -> None:
    atm = make_atm()
    before = bank_stack.account_balance(ALICE_CHECKING)
    run(atm, cash_at_the_shutter("F2"))
    state_dir = atm.state_dir
    atm.stop()  # the power goes while the cash waits at the shutter
    restarted = make_atm(state_dir, start=False)
    try:
        restarted.bay.inject("cash_dispenser", "unresponsive")  # and the dispenser comes back mute
        report = restarted.start()
        assert len(report) == 1 and "dispenser not answering" in report[0]
        run(restarted, "wait idle\n")
        assert "settlement_deferred" in events(restarted) and "suspect" not in events(restarted)
        assert (
            not restarted.controller.cash_available and restarted.controller.advices.pending() == []
        )
        restarted.bay.clear("cash_dispenser")
        run(restarted, "advance 6\nwait idle\n")
        assert "reversal_acknowledged" in events(restarted)
        assert bank_stack.account_balance(ALICE_CHECKING) == before
        assert restarted.bay.cash_dispenser.status()["retract_bin"] >= 1
        assert restarted.controller.cash_available
    finally:
        restarted.stop()


def test_settle_returns_only_once_the_atm_has_used_every_key(make_atm: MakeAtm) -> None:
    # No waiting between the actions: each press's settle must see the key handled, however
    # late the pty hands its bytes over (settle waits on byte counts, not on a quiet spell).
    atm = make_atm()
    for _ in range(5):
        run(atm, "wait idle\ninsert alice\nwait pin_entry")
        for digit in "1234":
            atm.press(digit)
        atm.press("enter")
        assert atm.controller.state == "transaction_menu"
        atm.press("F8")  # the menu's exit: the card comes back
        assert atm.controller.state == "ejecting_card"
        run(atm, "take card\nwait idle")
