"""YAML loading that remembers where each value was written, so errors name file:line and key."""

from __future__ import annotations

from typing import Any

import yaml

from ..errors import InputError


class Node:
    """A YAML value with its position: `.value` is a plain Python value for scalars, a
    dict[str, Node] for mappings and a list[Node] for sequences."""

    __slots__ = ("value", "file", "line", "path")

    def __init__(self, value: Any, file: str, line: int, path: str):
        self.value = value
        self.file = file
        self.line = line
        self.path = path

    def error(self, message: str) -> InputError:
        key = f"{self.path}: " if self.path else ""
        return InputError(f"{key}{message}", self.file, self.line)

    # -- typed accessors -------------------------------------------------------------------
    def is_map(self) -> bool:
        return isinstance(self.value, dict)

    def is_seq(self) -> bool:
        return isinstance(self.value, list)

    def as_map(self) -> dict[str, "Node"]:
        if not isinstance(self.value, dict):
            raise self.error(f"expected a mapping, got {_kind(self.value)}")
        return self.value

    def as_seq(self) -> list["Node"]:
        if not isinstance(self.value, list):
            raise self.error(f"expected a list, got {_kind(self.value)}")
        return self.value

    def as_str(self) -> str:
        if isinstance(self.value, (dict, list)) or self.value is None:
            raise self.error(f"expected a string, got {_kind(self.value)}")
        return str(self.value)

    def as_int(self, lo: int | None = None, hi: int | None = None) -> int:
        v = self.value
        if isinstance(v, bool) or not isinstance(v, (int, str)):
            raise self.error(f"expected an integer, got {_kind(v)}")
        try:
            n = int(v, 0) if isinstance(v, str) else v
        except ValueError:
            raise self.error(f"expected an integer, got {v!r}") from None
        if (lo is not None and n < lo) or (hi is not None and n > hi):
            raise self.error(f"expected an integer in {lo}..{hi}, got {n}")
        return n

    def as_float(self, lo: float | None = 0.0) -> float:
        v = self.value
        if isinstance(v, bool) or not isinstance(v, (int, float, str)):
            raise self.error(f"expected a number, got {_kind(v)}")
        try:
            f = float(v)
        except ValueError:
            raise self.error(f"expected a number, got {v!r}") from None
        if lo is not None and f < lo:
            raise self.error(f"expected a number >= {lo}, got {f}")
        return f

    def as_bool(self) -> bool:
        if not isinstance(self.value, bool):
            raise self.error(f"expected true or false, got {self.value!r}")
        return self.value

    def get(self, key: str) -> "Node | None":
        return self.as_map().get(key)

    def plain(self) -> Any:
        """The value without positions (for free-form parts like sysctl maps)."""
        if isinstance(self.value, dict):
            return {k: v.plain() for k, v in self.value.items()}
        if isinstance(self.value, list):
            return [v.plain() for v in self.value]
        return self.value

    def check_keys(self, allowed: set[str] | frozenset[str], required: tuple[str, ...] = ()) -> None:
        m = self.as_map()
        for k, v in m.items():
            if k not in allowed:
                raise v.error(f"unknown key '{k}' (expected one of: {', '.join(sorted(allowed))})")
        for k in required:
            if k not in m:
                raise self.error(f"missing required key '{k}'")


def _kind(v: Any) -> str:
    if v is None:
        return "nothing"
    if isinstance(v, dict):
        return "a mapping"
    if isinstance(v, list):
        return "a list"
    return f"{type(v).__name__} {v!r}"


class _Loader(yaml.SafeLoader):
    pass


def load_yaml(text: str, file: str) -> Node:
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(e, "problem", None) or str(e)
        raise InputError(f"invalid YAML: {problem}", file, line) from None
    if root is None:
        raise InputError("the file is empty (expected a YAML mapping)", file, 1)
    return _convert(root, file, "")


def _convert(node: yaml.Node, file: str, path: str) -> Node:
    line = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Node] = {}
        for k, v in node.value:
            key_node = _convert(k, file, path)
            if isinstance(key_node.value, (dict, list)):
                raise key_node.error("a mapping key must be a scalar")
            key = str(key_node.value)
            if key in out:
                raise InputError(f"{path + '.' if path else ''}{key}: key given twice", file,
                                 k.start_mark.line + 1)
            out[key] = _convert(v, file, f"{path}.{key}" if path else key)
        return Node(out, file, line, path)
    if isinstance(node, yaml.SequenceNode):
        return Node([_convert(v, file, f"{path}[{i}]") for i, v in enumerate(node.value)],
                    file, line, path)
    # scalar: let the safe constructor type it (int, float, bool, null, str)
    value = (yaml.constructor.SafeConstructor().construct_object(node)
             if node.tag != "tag:yaml.org,2002:str" else node.value)
    return Node(value, file, line, path)
