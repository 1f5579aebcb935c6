"""Errors that reach users as one line naming the file, line and problem."""

from __future__ import annotations


class ConntraceError(Exception):
    """Base class: every error the CLI turns into a one-line message and exit code 2."""


class InputError(ConntraceError):
    """Bad user input (ruleset, host file, scenario, capture): file, line and what was expected."""

    def __init__(self, message: str, file: str | None = None, line: int | None = None):
        self.message = message
        self.file = file
        self.line = line
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = ""
        if self.file is not None:
            where = f"{self.file}:{self.line}: " if self.line is not None else f"{self.file}: "
        return f"{where}{self.message}"


class UnsupportedError(ConntraceError):
    """The input uses something the model does not implement (and the user did not allow it)."""

    def __init__(self, items: list["UnsupportedItem"]):
        self.items = items
        lines = [str(i) for i in items]
        super().__init__(
            f"{len(items)} unsupported construct(s); rerun with --allow-unsupported to proceed "
            "with those rules marked uncertain:\n" + "\n".join("  " + l for l in lines)
        )


class UnsupportedItem:
    """One unsupported match, target or option, with where it was written."""

    __slots__ = ("kind", "name", "file", "line", "detail")

    def __init__(self, kind: str, name: str, file: str | None, line: int | None, detail: str = ""):
        self.kind = kind  # "match", "target", "option", "command"
        self.name = name
        self.file = file
        self.line = line
        self.detail = detail

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.file else "<input>"
        extra = f" ({self.detail})" if self.detail else ""
        return f"unsupported: {self.name} at {where}{extra}"

    def __repr__(self) -> str:
        return f"UnsupportedItem({self})"
