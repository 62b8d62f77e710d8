"""Every event the electronic journal may hold. Writing any other name is an error, and scenario
expectations and power cuts are checked against this list when their file is loaded."""

from __future__ import annotations

from enum import StrEnum


class JournalEvent(StrEnum):
    """A journal line's `event`; its value is the text written to the file."""

    AUTHORISATION = "authorisation"
    AUTHORISED = "authorised"
    CAPTURE_FAILED = "capture_failed"
    CARD_CAPTURED = "card_captured"
    CARD_EJECTED = "card_ejected"
    CARD_FOUND_AT_START = "card_found_at_start"
    CARD_GONE = "card_gone"
    CARD_NOT_TAKEN = "card_not_taken"
    CARD_READ = "card_read"
    CARD_READER_INITIALISED = "card_reader_initialised"
    CARD_REMOVED_BY_OPERATOR = "card_removed_by_operator"
    CARD_STUCK = "card_stuck"
    CARD_TAKEN = "card_taken"
    CARD_UNREADABLE = "card_unreadable"
    COMPLETION_ACKNOWLEDGED = "completion_acknowledged"
    COMPLETION_QUEUED = "completion_queued"
    DEVICE_FAILURE = "device_failure"
    DISPENSE_STARTED = "dispense_started"
    EJECT_FAILED = "eject_failed"
    HOST_UNAVAILABLE = "host_unavailable"
    IN_SERVICE = "in_service"
    INACTIVITY = "inactivity"
    NOTES_COUNTED = "notes_counted"
    OPERATOR_SERVICE = "operator_service"
    OUT_OF_SERVICE = "out_of_service"
    PIN_PAD_TAMPER = "pin_pad_tamper"
    PIN_PAD_TIMEOUT = "pin_pad_timeout"
    PIN_VERIFIED = "pin_verified"
    PRESENT_STARTED = "present_started"
    PRESENTED = "presented"
    PURGE_FAILED = "purge_failed"
    PURGED = "purged"
    RECEIPT_FAILED = "receipt_failed"
    RECEIPT_PRINTED = "receipt_printed"
    REPLENISHED = "replenished"
    RETRACT_STARTED = "retract_started"
    RETRACTED = "retracted"
    REVERSAL_ACKNOWLEDGED = "reversal_acknowledged"
    REVERSAL_QUEUED = "reversal_queued"
    SESSION_CLOSED = "session_closed"
    SESSION_TIMEOUT = "session_timeout"
    SETTLEMENT_DEFERRED = "settlement_deferred"
    SUPERVISOR_ENTERED = "supervisor_entered"
    SUPERVISOR_LEFT = "supervisor_left"
    SUSPECT = "suspect"
    TAKEN = "taken"
    WITHDRAWAL_REQUESTED = "withdrawal_requested"


def unknown_event_message(name: str) -> str:
    """One line naming the unknown event and the known ones."""
    return f"unknown journal event {name!r}; known: {', '.join(sorted(JournalEvent))}"
