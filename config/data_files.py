"""The one reader of the YAML data files: a top-level mapping with a version this build reads,
and every problem reported as `FILE:LINE: message`, the loaders' own schema checks included.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

VERSION = 1  # the version this build writes
READ_VERSIONS: tuple[int, ...] = (VERSION,)

Key = str | int  # a mapping key, or an index into a list

# libyaml's parser when PyYAML was built with it: eight times faster, and a scenario run reads
# the profile, wallet, cassettes and screens again for every ATM it starts.
_FAST_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class DataFileError(ValueError):
    """A data file that cannot be used: `path`, `line` (None where no line can be named: the
    file is unreadable, or the document was built in code) and `message`."""

    def __init__(self, path: str | os.PathLike[str], line: int | None, message: str) -> None:
        self.path = os.fspath(path)
        self.line = line
        self.message = message
        super().__init__(f"{self.path}{'' if line is None else f':{line}'}: {message}")


@dataclass(frozen=True)
class DataFile:
    """A YAML document as plain values, and the nodes that say on which line each is written."""

    path: str
    data: Any
    root: Node | None = None  # None: a document built in code, which has no lines

    def line(self, keys: Sequence[Key] = ()) -> int | None:
        """The line of the entry at `keys`; for one that is missing, of its nearest parent."""
        node = self.root
        if node is None:
            return None
        line = node.start_mark.line + 1
        for key in keys:
            found = _entry(node, key)
            if found is None:
                break
            line = found[0].start_mark.line + 1
            node = found[1]
        return line

    def error(self, keys: Sequence[Key], message: str) -> DataFileError:
        """The error of the entry at `keys`: its line, and its place (`cards.alice.pan`,
        `customers[0].name`) before the message."""
        where = "".join(f"[{key}]" if isinstance(key, int) else f".{key}" for key in keys)
        text = f"{where.lstrip('.')}: {message}" if where else message
        return DataFileError(self.path, self.line(keys), text)


def _entry(node: Node, key: Key) -> tuple[Node, Node] | None:
    """(node giving the line, node of the value) of `key` in a mapping or a list node."""
    if isinstance(node, MappingNode):
        found = None
        for key_node, value_node in node.value:  # the last one wins, as in the loaded data
            if isinstance(key_node, ScalarNode) and key_node.value == str(key):
                found = (key_node, value_node)
        return found
    if isinstance(node, SequenceNode) and isinstance(key, int) and 0 <= key < len(node.value):
        item: Node = node.value[key]
        return item, item
    return None


def _compose(text: str, loader_class: type[yaml.SafeLoader]) -> tuple[Node | None, Any]:
    loader = loader_class(text)
    try:
        root = loader.get_single_node()
        return root, None if root is None else loader.construct_document(root)
    finally:
        loader.dispose()


def read_data_file(path: str | os.PathLike[str]) -> DataFile:
    """Read a data file: DataFileError unless it is YAML holding a mapping whose `version` this
    build reads."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise DataFileError(path, None, f"cannot read the file ({reason})") from err
    return parse_data_file(text, path)


def parse_data_file(text: str, path: str | os.PathLike[str]) -> DataFile:
    """The data file `text` read from `path` (which only names it in errors); as read_data_file."""
    try:
        try:
            root, data = _compose(text, _FAST_LOADER)
        except yaml.YAMLError:
            # libyaml words its errors its own way: the pure-Python parser says what is wrong,
            # at the same line, in the words this reader has always used.
            root, data = _compose(text, yaml.SafeLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = None if mark is None else mark.line + 1
        problem = ", ".join(part for part in (err.context, err.problem) if part)
        raise DataFileError(path, line, f"not valid YAML: {problem}") from err
    except yaml.YAMLError as err:
        raise DataFileError(path, None, f"not valid YAML: {' '.join(str(err).split())}") from err
    reads = f"this build reads version {', '.join(str(v) for v in READ_VERSIONS)}"
    if root is None:
        raise DataFileError(
            path, 1, f"the file is empty; a data file starts with version: {VERSION}"
        )
    if not isinstance(data, dict):
        raise DataFileError(
            path,
            root.start_mark.line + 1,
            f"expected a mapping that starts with version: {VERSION}, found {type(data).__name__}",
        )
    file = DataFile(os.fspath(path), data, root)
    if "version" not in data:
        raise file.error(("version",), f"missing; write version: {VERSION} at the top ({reads})")
    version = data["version"]
    if type(version) is not int or version not in READ_VERSIONS:
        raise file.error(("version",), f"{version!r} is not supported; {reads}")
    return file
