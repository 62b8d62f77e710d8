"""The ISO 8583 field table (data in config/iso8583_fields.yaml) and the message it describes:
which fields each message type carries, and in which format."""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import iso8583
import iso8583.specs
import yaml

from config.card_numbers import mask_pan
from host.iso8583.errors import MessageFormatError

FIELD_TABLE_PATH = Path(__file__).parents[2] / "config" / "iso8583_fields.yaml"
LENGTH_PREFIX = 2

FIELD_CONTENT = {
    "n": re.compile(r"[0-9]*"),
    "an": re.compile(r"[0-9A-Za-z]*"),
    "ans": re.compile(r"[\x20-\x7e]*"),
    "z": re.compile(r"[0-9=]*"),
}


@dataclass(frozen=True)
class MessageRule:
    mti: str
    name: str
    required: frozenset[str]
    optional: frozenset[str]
    one_of: tuple[frozenset[str], ...]
    response: str | None

    @property
    def allowed(self) -> frozenset[str]:
        groups: frozenset[str] = frozenset().union(*self.one_of)
        return self.required | self.optional | groups


@dataclass(frozen=True)
class ProcessingCode:
    code: str
    kind: str
    message: str


@dataclass(frozen=True)
class FieldTable:
    """The loaded field table: a pyiso8583 spec plus the rules of each message type."""

    spec: Mapping[str, Mapping[str, Any]]
    content: Mapping[str, str]
    messages: Mapping[str, MessageRule]
    processing_codes: Mapping[str, ProcessingCode]
    account_types: Mapping[str, str]
    network_codes: Mapping[str, str]
    max_message_bytes: int

    def processing_code_for(self, kind: str) -> str:
        for code in self.processing_codes.values():
            if code.kind == kind:
                return code.code
        raise MessageFormatError(f"no processing code for {kind!r} in the field table")

    def account_type_code(self, account_type: str) -> str:
        for code, name in self.account_types.items():
            if name == account_type:
                return code
        raise MessageFormatError(f"unknown account type {account_type!r}")

    def network_code_for(self, kind: str) -> str:
        for code, name in self.network_codes.items():
            if name == kind:
                return code
        raise MessageFormatError(f"no network management code for {kind!r}")


@dataclass(frozen=True)
class Message:
    """One ISO 8583 message: text fields as str, binary fields (content b) as bytes."""

    mti: str
    fields: Mapping[str, str | bytes] = field(default_factory=dict)

    def text(self, number: str) -> str | None:
        value = self.fields.get(number)
        if value is None:
            return None
        if not isinstance(value, str):
            raise MessageFormatError(f"field {number} is binary, not text")
        return value

    def binary(self, number: str) -> bytes | None:
        value = self.fields.get(number)
        if value is None:
            return None
        if not isinstance(value, bytes):
            raise MessageFormatError(f"field {number} is text, not binary")
        return value

    def __contains__(self, number: object) -> bool:
        return number in self.fields

    def __repr__(self) -> str:
        # A message reaches a log or a test report through repr: card numbers are masked there
        # and PIN blocks never shown.
        shown = {number: _safe_field(number, value) for number, value in self.fields.items()}
        return f"Message({self.mti!r}, {shown!r})"


SECRET_FIELDS = frozenset({"52", "110", "111"})  # PIN blocks


def _safe_field(number: str, value: str | bytes) -> str | bytes:
    if number in SECRET_FIELDS:
        return "<PIN block>"
    if number == "2" and isinstance(value, str):
        return mask_pan(value)
    if number == "35" and isinstance(value, str):
        return mask_pan(value.split("=", 1)[0]) + "=<track data>"
    return value


def _strings(where: str, value: object) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise MessageFormatError(f"{where}: expected a list of quoted field numbers")
    return list(value)


def _build_table(data: object, source: Path) -> FieldTable:
    if not isinstance(data, dict):
        raise MessageFormatError(f"{source}: expected a mapping")
    base = getattr(iso8583.specs, str(data.get("base", "")), None)
    if not isinstance(base, dict):
        raise MessageFormatError(f"{source}: base must name a pyiso8583 spec")
    spec: dict[str, dict[str, Any]] = {
        k: dict(v) for k, v in copy.deepcopy(base).items() if k in ("h", "t", "p", "1")
    }
    content: dict[str, str] = {}
    for number, definition in dict(data.get("fields") or {}).items():
        if not isinstance(number, str) or not isinstance(definition, dict):
            raise MessageFormatError(f"{source}: field {number!r}: quote the number, give a map")
        kind = definition.get("content")
        if kind not in (*FIELD_CONTENT, "b"):
            raise MessageFormatError(f"{source}: field {number}: unknown content {kind!r}")
        entry = dict(base[number])
        entry.update({k: v for k, v in definition.items() if k != "content"})
        spec[number] = entry
        content[number] = kind
    messages: dict[str, MessageRule] = {}
    for mti, rule in dict(data.get("messages") or {}).items():
        where = f"{source}: message {mti}"
        if not isinstance(mti, str) or not isinstance(rule, dict):
            raise MessageFormatError(f"{where}: quote the type, give a map")
        groups = tuple(frozenset(_strings(where, g)) for g in rule.get("one_of", []))
        messages[mti] = MessageRule(
            mti=mti,
            name=str(rule.get("name", mti)),
            required=frozenset(_strings(where, rule.get("required", []))),
            optional=frozenset(_strings(where, rule.get("optional", []))),
            one_of=groups,
            response=rule.get("response"),
        )
        unknown = messages[mti].allowed - set(content)
        if unknown:
            raise MessageFormatError(f"{where}: field {min(unknown)} is not in the field table")
    codes = {
        str(code): ProcessingCode(str(code), str(v["kind"]), str(v["message"]))
        for code, v in dict(data.get("processing_codes") or {}).items()
    }
    frame = dict(data.get("frame") or {})
    if frame.get("length_prefix_bytes") != LENGTH_PREFIX:
        raise MessageFormatError(f"{source}: only a {LENGTH_PREFIX}-byte length prefix is built")
    return FieldTable(
        spec=spec,
        content=content,
        messages=messages,
        processing_codes=codes,
        account_types={str(k): str(v) for k, v in dict(data.get("account_types") or {}).items()},
        network_codes={str(k): str(v) for k, v in dict(data.get("network_codes") or {}).items()},
        max_message_bytes=int(frame.get("max_message_bytes", 2048)),
    )


def load_field_table(path: Path = FIELD_TABLE_PATH) -> FieldTable:
    """Read and check a field table YAML file."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise MessageFormatError(f"{path}: cannot read the field table ({err})") from err
    return _build_table(data, path)


@functools.cache
def field_table() -> FieldTable:
    """The product's field table, read once on first use."""
    return load_field_table()
