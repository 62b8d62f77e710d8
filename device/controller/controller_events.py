"""The events that move the ATM controller's state machine: one name each, so a misspelt
trigger is a type error for mypy and not a stray string that the machine ignores."""

from __future__ import annotations

from enum import StrEnum


class ControllerEvent(StrEnum):
    """A trigger of the controller's machine; its value is the transitions trigger name."""

    ANOTHER = "another"
    ASK_AMOUNT = "ask_amount"
    AUTHORISE = "authorise"
    CARD_INSERTED = "card_inserted"
    CARD_READ = "card_read"
    CASH_STAGED = "cash_staged"
    CHOOSE_ACCOUNT = "choose_account"
    CHOOSE_NEW_PIN = "choose_new_pin"
    CLOSE = "close"
    DISPENSE = "dispense"
    DONE = "done"
    END_SESSION = "end_session"
    ENTER_SUPERVISOR = "enter_supervisor"
    FAIL = "fail"
    LEAVE_SUPERVISOR = "leave_supervisor"
    PIN_ENTERED = "pin_entered"
    PIN_OK = "pin_ok"
    PIN_RETRY = "pin_retry"
    PRESENT_CASH = "present_cash"
    PRINT_RECEIPT = "print_receipt"
    READY = "ready"
    RECOVER = "recover"
    RETAIN_CARD = "retain_card"
    SHOW_RESULT = "show_result"
