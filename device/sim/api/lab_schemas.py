"""What the ATM lab's HTTP routes take and give, as pydantic models with examples. Card numbers
appear masked; key presses are never echoed; the PIN pad's digits are the customer's business.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from device.controller.atm_controller import STATES

Key = Literal[
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9",
    "enter", "cancel", "clear", "backspace",
    "F1", "F2", "F3", "F4", "F5", "F6", "F7", "F8",
]  # fmt: skip
State = Literal[
    "starting", "out_of_service", "supervisor", "idle", "reading_card", "pin_entry",
    "verifying_pin", "transaction_menu", "account_selection", "amount_entry", "new_pin_entry",
    "authorising", "showing_result", "dispensing", "ejecting_card", "presenting_cash",
    "printing", "capturing_card", "closing",
]  # fmt: skip
assert set(State.__args__) == set(STATES)  # type: ignore[attr-defined]
Item = Literal["card", "cash", "receipt"]
OperatorAction = Literal[
    "out-of-service",
    "in-service",
    "supervisor",
    "leave-supervisor",
    "purge",
    "remove-card",
    "load-paper",
    "empty-retain-bin",
]
ProfileName = Annotated[
    str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$", examples=["default"], description="ATM profile")
]


# ----- ATMs -----------------------------------------------------------------------------------


class HostIn(BaseModel):
    address: str = Field(pattern=r"^[A-Za-z0-9.:-]{1,253}$", examples=["127.0.0.1"])
    port: int = Field(ge=1, le=65535, examples=[8583])


class LabAtmIn(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"profile": "default", "clock": "system"}]}
    )

    profile: ProfileName = "default"
    host: HostIn | None = Field(
        default=None,
        description="the bank host by address; left out: this service's own host (or, if it "
        "runs none, the profile's)",
    )
    clock: Literal["system", "virtual"] = Field(
        default="system",
        description="virtual: timeouts only run when `advance` moves the clock",
    )
    auto_step: bool = Field(
        default=True,
        description="the ATM runs by itself; false: it moves only on actions and `step`",
    )


class ScreenOut(BaseModel):
    name: str = Field(examples=["transaction_menu"])
    lines: list[str] = Field(examples=[["Choose a transaction"]])
    keys: dict[str, str] = Field(
        description="function key to its label", examples=[{"F1": "Withdraw cash"}]
    )


class LabHostOut(BaseModel):
    address: str = Field(examples=["127.0.0.1"])
    port: int = Field(examples=[8583])
    connected: bool | None
    fault: str | None = Field(description="the host fault armed, if any", examples=[None])


class LabAtmOut(BaseModel):
    terminal_id: str = Field(examples=["ATM00001"])
    profile: str = Field(examples=["default"])
    state: State
    screen: ScreenOut
    out_of_service_reason: str
    cash_available: bool
    receipts_available: bool
    host: LabHostOut
    advices_pending: int
    clock: Literal["system", "virtual"]
    clock_seconds: float | None = Field(description="virtual clock: seconds since start")
    auto_step: bool
    receipts_waiting: int
    recovery_report: list[str]
    created_at: dt.datetime


class ProfilesOut(BaseModel):
    profiles: list[str] = Field(examples=[["default", "dukpt_aes", "dukpt_tdes"]])


class JournalEntryOut(BaseModel):
    seq: int
    at: str
    event: str = Field(examples=["authorised"])
    fields: dict[str, Any] = Field(examples=[{"stan": "000012", "amount": 5000}])


class JournalOut(BaseModel):
    entries: list[JournalEntryOut]


class ReceiptsOut(BaseModel):
    receipts: list[str] = Field(description="printed receipts, card numbers masked")
    taken: int = Field(description="how many the customer has taken")


# ----- faults ---------------------------------------------------------------------------------


class FaultIn(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"target": "cash_dispenser", "fault": "jam", "mode": "once"},
                {"target": "host", "fault": "slow", "params": {"seconds": 2}},
            ]
        }
    )

    target: str = Field(
        pattern=r"^[a-z_]{1,40}(\.link)?$",
        description="a device (cash_dispenser), its link (pin_pad.link) or host",
    )
    fault: str = Field(pattern=r"^[a-z_]{1,40}$", examples=["jam"])
    mode: Literal["once", "persistent", "on_command"] = "persistent"
    on_command: int = Field(
        default=0, ge=0, le=1_000_000, description="mode on_command: fire on the Nth command"
    )
    params: dict[str, Any] = Field(default_factory=dict, examples=[{"after_notes": 1}])


class FaultOut(BaseModel):
    target: str = Field(examples=["cash_dispenser"])
    fault: str = Field(examples=["jam"])
    description: str = Field(examples=["jam (once; after_notes=1)"])


class FaultListOut(BaseModel):
    faults: list[FaultOut]


class FaultParamOut(BaseModel):
    name: str
    takes: str
    default: Any = None
    required: bool
    meaning: str


class FaultKindOut(BaseModel):
    name: str
    params: list[FaultParamOut]


class FaultTargetOut(BaseModel):
    target: str
    faults: list[FaultKindOut]


# ----- actions --------------------------------------------------------------------------------


class InsertCardIn(BaseModel):
    card: str = Field(
        pattern=r"^[A-Za-z0-9_-]{1,40}$",
        description="a card of the wallet by its name (never a card number)",
        examples=["alice"],
    )


class PressIn(BaseModel):
    keys: list[Key] = Field(min_length=1, max_length=64, examples=[["F1"]])


class ItemIn(BaseModel):
    item: Item


class WaitIn(BaseModel):
    state: State
    seconds: float = Field(default=10.0, gt=0, le=30, description="real seconds at most")


class AdvanceIn(BaseModel):
    seconds: float = Field(gt=0, le=86400, examples=[31])


class StepIn(BaseModel):
    count: int = Field(default=1, ge=1, le=1000)


class ReplenishIn(BaseModel):
    cassettes: dict[int, Annotated[int, Field(ge=0, le=100_000)]] = Field(
        default_factory=dict,
        description="cassette number to its new note count; empty: fill every cassette",
        examples=[{"1": 2000, "2": 2000}],
    )


class ActionOut(BaseModel):
    done: str = Field(examples=["pressed F1"])
    atm: LabAtmOut
    receipt: str | None = Field(default=None, description="the receipt taken, if any")


# ----- scenarios ------------------------------------------------------------------------------


class ScenariosOut(BaseModel):
    scenarios: list[str] = Field(examples=[["withdrawal_fast_cash"]])


class ScenarioRunIn(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"names": ["withdrawal_fast_cash"], "seed": 0}]}
    )

    names: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,80}$")]] | None = Field(
        default=None, min_length=1, max_length=100, description="shipped scenarios by name"
    )
    yaml: str | None = Field(
        default=None, min_length=1, max_length=200_000, description="one scenario file's text"
    )
    seed: int = Field(default=0, ge=0, le=2**31 - 1)

    @model_validator(mode="after")
    def _one_source(self) -> ScenarioRunIn:
        if (self.names is None) == (self.yaml is None):
            raise ValueError("give either names (shipped scenarios) or yaml (one scenario)")
        return self
