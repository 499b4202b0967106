"""The methodology appendix, generated from the metric modules' own docstrings: the text that
states each formula is the text the report prints, so the two cannot drift apart."""

from __future__ import annotations

import inspect
from types import ModuleType


def _first_line_title(doc: str, fallback: str) -> tuple[str, str]:
    """(title, rest): the docstring's first paragraph as the title when it is short (up to 120
    characters, line breaks joined), else its part before the first ':' or '.', else `fallback`
    with the whole docstring as text."""
    doc = doc.strip()
    if not doc:
        return fallback, ""
    first, _, rest = doc.partition("\n\n")
    head = " ".join(line.strip() for line in first.splitlines()).strip()
    if 0 < len(head) <= 120:
        return head.rstrip("."), rest.strip("\n")
    for sep in (": ", ". "):
        part = head.split(sep, 1)[0].strip()
        if 0 < len(part) <= 90 and part != head:
            return part.rstrip("."), doc
    return fallback, doc


def _public_functions(module: ModuleType) -> list:
    """Public functions defined in the module itself (not imported), in source order."""
    funcs = []
    for name, obj in vars(module).items():
        if name.startswith("_") or not inspect.isfunction(obj):
            continue
        if getattr(obj, "__module__", None) != module.__name__:
            continue
        try:
            line = inspect.getsourcelines(obj)[1]
        except (OSError, TypeError):
            line = obj.__code__.co_firstlineno
        funcs.append((line, name, obj))
    return [(name, obj) for _, name, obj in sorted(funcs, key=lambda t: (t[0], t[1]))]


def _signature(name: str, obj) -> str:
    try:
        params = [p for p in inspect.signature(obj).parameters]
    except (TypeError, ValueError):
        params = []
    return f"{name}({', '.join(params)})"


def methodology_sections(modules: list[ModuleType]) -> list[dict]:
    """One section per module (its docstring) followed by one per public function that has a
    docstring, in the order the modules are given and, within a module, in source order.

    Each section is {title, text, level, module, kind}: level 1 for a module, 2 for a function;
    `text` keeps the docstring's line breaks and indentation (dedented with inspect.cleandoc), so
    formulas laid out in monospace stay aligned.
    """
    sections: list[dict] = []
    for module in modules:
        short = module.__name__.rsplit(".", 1)[-1]
        doc = inspect.getdoc(module) or ""
        title, text = _first_line_title(doc, short.replace("_", " ").capitalize())
        sections.append({"title": title, "text": text, "level": 1, "module": module.__name__,
                         "kind": "module"})
        for name, obj in _public_functions(module):
            fdoc = inspect.getdoc(obj)
            if not fdoc:
                continue
            sections.append({"title": f"{short}.{_signature(name, obj)}", "text": fdoc, "level": 2,
                             "module": module.__name__, "kind": "function"})
    return sections
