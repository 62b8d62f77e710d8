"""The one fault interface of a lab ATM: its devices ("cash_dispenser"), their links
("pin_pad.link") and its host ("host", played by a proxy in front of the bank), with one
catalogue, one inject, one clear and one list.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from device.sim.scenarios.host_faults import MODES, HostBehaviour, HostFaultProxy
from peripherals.fault_catalogue import catalogue_kind, fault_params, missing_params, param_problem
from peripherals.faults import FaultError, FaultMode
from peripherals.harness.bay import DeviceBay
from peripherals.harness.fault_board import ArmedFault

HOST = "host"
HOST_FAULTS = tuple(mode for mode in MODES if mode != "up")
# What each host fault takes: (type, default, meaning).
HOST_PARAMS: Mapping[str, tuple[type, object, str]] = {
    "seconds": (float, 0.0, "slow: how long the host takes to answer"),
    "code": (str, "05", "declining: the response code given"),
    "how": (str, "refuse", "down: refuse (no listener) or close (accept, then close)"),
    "mtis": (list, [], "only requests of these message types (empty: all)"),
}
HOST_PARAMS_OF = {
    "down": ("how", "mtis"),
    "slow": ("seconds", "mtis"),
    "declining": ("code", "mtis"),
    "reply_lost": ("mtis",),
    "connection_dropped": ("mtis",),
}


class FaultInputError(ValueError):
    """A fault request that cannot be carried out; `field` names the part that is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def catalogue(bay: DeviceBay) -> list[dict[str, Any]]:
    """Every target with the faults it knows and each fault's parameters."""
    targets: list[dict[str, Any]] = []
    for target in bay.faults.targets():
        accepted = fault_params(catalogue_kind(target)) or {}
        faults = []
        for name in bay.faults.known(target):
            params = accepted.get(name, {})
            faults.append(
                {
                    "name": name,
                    "params": [
                        {
                            "name": param,
                            "takes": spec.shape(),
                            "default": spec.default,
                            "required": spec.required,
                            "meaning": spec.meaning,
                        }
                        for param, spec in sorted(params.items())
                    ],
                }
            )
        targets.append({"target": target, "faults": faults})
    host_faults = []
    for name in HOST_FAULTS:
        host_faults.append(
            {
                "name": name,
                "params": [
                    {
                        "name": param,
                        "takes": HOST_PARAMS[param][0].__name__,
                        "default": HOST_PARAMS[param][1],
                        "required": False,
                        "meaning": HOST_PARAMS[param][2],
                    }
                    for param in HOST_PARAMS_OF[name]
                ],
            }
        )
    targets.append({"target": HOST, "faults": host_faults})
    return targets


def inject(
    bay: DeviceBay,
    proxy: HostFaultProxy,
    target: str,
    fault: str,
    *,
    mode: str,
    on_command: int,
    params: Mapping[str, Any],
) -> str:
    """Arm a fault; returns its description. FaultInputError names what is wrong."""
    if target == HOST:
        return _inject_host(proxy, fault, mode, on_command, params)
    if target not in bay.faults.targets():
        raise FaultInputError(
            "target",
            f"unknown fault target {target!r}; targets: "
            + ", ".join([*bay.faults.targets(), HOST]),
        )
    known = bay.faults.known(target)
    if fault not in known:
        raise FaultInputError(
            "fault", f"{target}: unknown fault {fault!r}; known: {', '.join(known)}"
        )
    accepted = (fault_params(catalogue_kind(target)) or {}).get(fault, {})
    # Checked here, before the call: a parameter named like an argument ("mode") must be
    # refused as input, not collide with the call's own keywords.
    for name, value in params.items():
        problem = param_problem(accepted, fault, name, value)
        if problem is not None:
            raise FaultInputError("params", f"{target}: {problem}")
    missing = missing_params(accepted, fault, params)
    if missing is not None:
        raise FaultInputError("params", f"{target}: {missing}")
    extra: dict[str, Any] = {"on_command": on_command} if mode == FaultMode.ON_COMMAND else {}
    if mode == FaultMode.ON_COMMAND and on_command < 1:
        raise FaultInputError("on_command", "mode on_command needs on_command: a number >= 1")
    try:
        return bay.inject(target, fault, mode=mode, **extra, **params)
    except FaultError as err:
        raise FaultInputError("fault", str(err)) from err


def _inject_host(
    proxy: HostFaultProxy, fault: str, mode: str, on_command: int, params: Mapping[str, Any]
) -> str:
    if fault not in HOST_FAULTS:
        raise FaultInputError(
            "fault", f"host: unknown fault {fault!r}; known: {', '.join(HOST_FAULTS)}"
        )
    if mode == FaultMode.ON_COMMAND:
        raise FaultInputError(
            "mode", "host faults run once (the next request) or persistent, not on_command"
        )
    accepted = HOST_PARAMS_OF[fault]
    values: dict[str, Any] = {}
    for name, value in params.items():
        if name not in accepted:
            raise FaultInputError(
                "params",
                f"host: {fault} has no parameter {name!r}; it accepts: " + ", ".join(accepted),
            )
        values[name] = _host_param(fault, name, value)
    how = values.get("how", "refuse")
    if how not in ("refuse", "close"):
        raise FaultInputError(
            "params", f"host: down parameter how expects refuse or close, not {how!r}"
        )
    behaviour = HostBehaviour(
        mode=fault,
        seconds=float(values.get("seconds", 0.0)),
        code=str(values.get("code", "05")),
        count=1 if mode == FaultMode.ONCE else 0,
        how=how,
        mtis=tuple(values.get("mtis", ())),
    )
    proxy.set(behaviour)
    return describe_host(proxy.behaviour)


def _host_param(fault: str, name: str, value: Any) -> Any:
    ok = True
    if name == "seconds":
        ok = isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 600
        expected = "a number of seconds from 0 to 600"
    elif name == "code":
        ok = isinstance(value, str) and len(value) == 2 and value.isascii() and value.isalnum()
        expected = "a two-character response code such as 05"
    elif name == "how":
        ok = isinstance(value, str)
        expected = "refuse or close"
    else:
        ok = isinstance(value, list) and all(
            isinstance(m, str) and len(m) == 4 and m.isdigit() for m in value
        )
        expected = "a list of four-digit message types such as 0200"
    if not ok:
        raise FaultInputError("params", f"host: {fault} parameter {name} expects {expected}")
    return value


def describe_host(behaviour: HostBehaviour) -> str:
    extra = []
    if behaviour.mode == "slow":
        extra.append(f"seconds={behaviour.seconds:g}")
    if behaviour.mode == "declining":
        extra.append(f"code={behaviour.code}")
    if behaviour.mode == "down":
        extra.append(f"how={behaviour.how}")
    if behaviour.mtis:
        extra.append("mtis=" + ",".join(behaviour.mtis))
    when = (
        "once"
        if behaviour.count == 1
        else f"next {behaviour.count}"
        if behaviour.count
        else "persistent"
    )
    return f"{behaviour.mode} ({when}{'; ' + ', '.join(extra) if extra else ''})"


def clear(bay: DeviceBay, proxy: HostFaultProxy, target: str | None, fault: str | None) -> None:
    """Clear one fault, a target's faults, one fault everywhere, or everything."""
    if target == HOST:
        if fault is not None and fault not in HOST_FAULTS:
            raise FaultInputError(
                "fault", f"host: unknown fault {fault!r}; known: {', '.join(HOST_FAULTS)}"
            )
        if fault is None or proxy.behaviour.mode == fault:
            proxy.set(HostBehaviour())
        return
    if target is not None and target not in bay.faults.targets():
        raise FaultInputError(
            "target",
            f"unknown fault target {target!r}; targets: "
            + ", ".join([*bay.faults.targets(), HOST]),
        )
    if target is None and fault in HOST_FAULTS:
        if proxy.behaviour.mode == fault:
            proxy.set(HostBehaviour())
        if not any(fault in bay.faults.known(t) for t in bay.faults.targets()):
            return
    try:
        bay.clear(target, fault)
    except FaultError as err:
        raise FaultInputError("fault", str(err)) from err
    if target is None and fault is None:
        proxy.set(HostBehaviour())


def armed(bay: DeviceBay, proxy: HostFaultProxy) -> list[ArmedFault]:
    """Every armed fault, devices and links by target, then the host's."""
    found = bay.armed()
    behaviour = proxy.behaviour
    if behaviour.mode != "up":
        found.append(ArmedFault(HOST, behaviour.mode, describe_host(behaviour)))
    return found
