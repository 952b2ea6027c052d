"""The vocabulary reference (docs/vocabulary.md), generated from the registry and the schema.

Every vocabulary package is imported (so each type registers itself), then every family in
REGISTRY is written out, type by type: the class docstring's first paragraph and a table of its
fields (name, type, default, description) read from its pydantic model's JSON Schema. A family
added to REGISTRY shows up here without an edit. `chaoslab reference > docs/vocabulary.md`
writes it; `chaoslab reference --check` exits 1 when the file is stale (tests/unit/test_reference.py
does the same).
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import sys
from pathlib import Path

from chaoslab.spec.base import REGISTRY, Model, load_package

PACKAGES = ("chaoslab.steps", "chaoslab.probes", "chaoslab.checks", "chaoslab.workload", "chaoslab.monitor",
            "chaoslab.stories")
DOC = Path(__file__).resolve().parents[1] / "docs" / "vocabulary.md"
STALE = "docs/vocabulary.md is stale: run `chaoslab reference > docs/vocabulary.md`"


def load_all() -> None:
    for package in PACKAGES:
        if importlib.util.find_spec(package) is not None:
            load_package(package)


def first_paragraph(cls) -> str:
    doc = cls.__dict__.get("__doc__") or ""
    para = inspect.cleandoc(doc).split("\n\n")[0]
    return " ".join(para.split())


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def type_text(s: dict, names: dict[str, str] | None = None) -> str:
    """A JSON Schema property as a short type: `integer (1..9)`, `"a" \\| "b"`, `list[step]`."""
    names = names or {}
    if "$ref" in s:
        ref = s["$ref"].rsplit("/", 1)[-1]
        return "$param" if ref == "ParamRef" else names.get(ref, ref)
    if "const" in s:
        return json.dumps(s["const"])
    if "enum" in s:
        return " | ".join(json.dumps(e) for e in s["enum"])
    for key in ("anyOf", "oneOf"):
        if key in s:
            parts = list(dict.fromkeys(type_text(x, names) for x in s[key]))
            return " | ".join(parts)
    kind = s.get("type")
    if isinstance(kind, list):
        return " | ".join(kind)
    if kind == "array":
        return f"list[{type_text(s.get('items') or {}, names) or 'any'}]"
    if kind == "object":
        inner = s.get("additionalProperties")
        if not isinstance(inner, dict):
            pattern = s.get("patternProperties") or {}
            inner = next(iter(pattern.values()), None)
        return f"map[str, {type_text(inner, names)}]" if isinstance(inner, dict) else "object"
    if kind in ("integer", "number"):
        lo = s.get("minimum", s.get("exclusiveMinimum"))
        hi = s.get("maximum", s.get("exclusiveMaximum"))
        if lo is not None or hi is not None:
            return f"{kind} ({'' if lo is None else lo}..{'' if hi is None else hi})"
    return kind or ""


def _wrapped(s: dict) -> dict:
    """The default and description of a property the schema wrapped as `anyOf: [it, $param]`."""
    for alt in s.get("anyOf") or []:
        if "$ref" not in alt or not alt["$ref"].endswith("ParamRef"):
            return {k: alt[k] for k in ("default", "description") if k in alt and k not in s}
    return {}


def fields_table(schema: dict, skip: set[str] = frozenset(), names: dict[str, str] | None = None) -> list[str]:
    props = {k: v for k, v in (schema.get("properties") or {}).items() if k not in skip}
    if not props:
        return ["(no fields)"]
    required = set(schema.get("required") or []) | set((schema.get("then") or {}).get("required") or [])
    rows = ["| field | type | default | description |", "|---|---|---|---|"]
    for name, s in props.items():
        s = {**s, **_wrapped(s)}
        default = "required" if name in required or "default" not in s else f"`{json.dumps(s['default'])}`"
        if isinstance(s.get("default"), dict) and s["default"] and "$ref" in json.dumps(s):
            default = "the defaults of its fields"
        if name == "type" and "const" in s:
            default = f"`{json.dumps(s['const'])}`"
        rows.append(f"| `{name}` | {_cell(type_text(s, names))} | {_cell(default)} | "
                    f"{_cell(s.get('description', ''))} |")
    return rows


def _family_base(classes: list[type]):
    """The most derived model class every type of a family shares (its fields are listed once)."""
    common = set(classes[0].__mro__)
    for cls in classes[1:]:
        common &= set(cls.__mro__)
    for base in classes[0].__mro__:
        if base in common and issubclass(base, Model) and base is not Model and base not in classes:
            return base
    return None


def _source(cls) -> str:
    return cls.__module__.replace(".", "/") + ".py"


def render() -> str:
    load_all()
    from chaoslab.spec.experiment import json_schema
    names = {cls.__name__: family for family, types in REGISTRY.items() for cls in types.values()}
    out = ["# Vocabulary reference", "",
           "Generated from the registry and the experiment schema by `chaoslab reference > docs/vocabulary.md`;",
           "do not edit by hand (`tests/unit/test_reference.py` fails when it is stale). How to add a type:",
           "[writing-an-experiment.md](writing-an-experiment.md#adding-a-vocabulary-item).", "",
           "Every field that takes a value also accepts a `$param` reference to a variant's parameter, and",
           "any value may be written `${VAR}` or `${VAR:-default}` (replaced from the environment first).", "",
           "## Contents", ""]
    out += ["- [the experiment file](#the-experiment-file)"]
    out += [f"- [{family}](#{family}): " + ", ".join(f"`{t}`" for t in sorted(types))
            for family, types in REGISTRY.items() if types]
    schema = json_schema(as_written=False)   # the types; interpolation is said once, in the text
    out += ["", "## The experiment file", "",
            "Its top-level fields (`chaoslab schema` prints the whole JSON Schema, for editors). A file that",
            "`extends` another may leave required sections to its base. The models used inside sections follow.", ""]
    out += fields_table(schema, names=names)
    vocab = set(names)
    for name, sub in sorted((schema.get("$defs") or {}).items()):
        if name in vocab or name == "ParamRef" or "properties" not in sub:
            continue
        out += ["", f"### {name}", ""]
        if sub.get("description"):
            out += [_cell(sub["description"].split("\n\n")[0]), ""]
        out += fields_table(sub, names=names)
    for family, types in REGISTRY.items():
        if not types:
            continue
        classes = [types[t] for t in sorted(types)]
        base = _family_base(classes)
        out += ["", f"## {family}", ""]
        inherited: set[str] = set()
        if base is not None:
            if first_paragraph(base):
                out += [first_paragraph(base), ""]
            inherited = set(base.model_fields) - {"type"}
            if inherited:
                out += [f"Fields every {family} has (`{base.__name__}`, `{_source(base)}`):", ""]
                out += fields_table(base.model_json_schema(), skip={"type"}, names=names)
                out += [""]
        for cls in classes:
            name = cls.model_fields["type"].default
            out += [f"### {family}: `{name}`", "", f"`{_source(cls)}` (`{cls.__name__}`)", ""]
            if first_paragraph(cls):
                out += [first_paragraph(cls), ""]
            reads = getattr(cls, "reads", ()) or getattr(cls, "needs_probes", ())
            if reads:
                out += ["Reads the probes: " + ", ".join(f"`{r}`" for r in reads) + ".", ""]
            out += fields_table(cls.model_json_schema(), skip=inherited | {"type"}, names=names)
            out += [""]
    return "\n".join(out).rstrip() + "\n"


def cli(args) -> int:
    text = render()
    if not getattr(args, "check", False):
        sys.stdout.write(text)
        return 0
    if not DOC.exists() or DOC.read_text() != text:
        print(STALE, file=sys.stderr)
        return 1
    return 0
