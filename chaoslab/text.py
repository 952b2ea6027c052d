"""Values as words for people (a report's table cell, a console line): never a Python repr.
Low in the import graph: the vocabulary's presentation hooks and the report both use it."""

from __future__ import annotations

import re

_CLASS_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+(\.[A-Z][A-Za-z0-9_$]*)+$")   # a Java class: its last name


def words(value, limit: int = 220) -> str:
    """A value as words for a table cell: k=v pairs, lists joined; never a Python repr."""
    def w(v):
        if v is None:
            return ""
        if isinstance(v, dict):
            return ", ".join(f"{k}={w(x)}" for k, x in v.items() if x not in (None, "", [], {}))
        if isinstance(v, (list, tuple)):
            return "; ".join(w(x) for x in v)
        if isinstance(v, float):
            return f"{v:.1f}" if abs(v) < 1e6 else f"{v:.3g}"
        if isinstance(v, bool):
            return "yes" if v else "no"
        return str(v).rsplit(".", 1)[-1] if isinstance(v, str) and _CLASS_NAME.match(v) else str(v)
    text = w(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def fmt(v, digits=1) -> str:
    """A number for a table cell: floats to `digits` places, None as "-"."""
    if v is None:
        return "-"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)
