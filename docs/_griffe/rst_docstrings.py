"""Griffe extension of the docs build: numpydoc docstrings written for ``help()`` to Markdown.

The package's docstrings follow numpydoc with a few reStructuredText constructs, which read
well in ``help()`` and in an editor. The API reference (mkdocstrings, Markdown) would print
them literally, so before rendering this extension rewrites, in every docstring:

- Sphinx roles (``:func:`name```, ``:class:`~pkg.mod.Name```, ``:meth:``, ``:attr:``, ``:data:``,
  ``:mod:``, ``:obj:``) into cross-references: the name is resolved in the docstring's scope as
  Python would (members, imports, parents); package objects become autorefs links (optional,
  so a private helper is shown as code), outside objects plain code. A name that resolves
  nowhere is a warning, so ``mkdocs build --strict`` fails on a reference to something that
  was renamed or removed.
- ``.. math::`` directives into display math (``$$ ... $$``, arithmatex).
- numpydoc entries naming several parameters (``a, b : type``) into one entry per name.
- the types of Parameters and Attributes entries into forms griffe prints as written. griffe
  reads a type as a Python expression where it can, and a top-level comma makes it a tuple,
  which the page printed in a second pair of parentheses (``((Generator, int or None))``). So
  numpydoc's alternatives ``A, B or None`` become ``A or B or None``, and an attribute's
  ``type, default <value>`` or ``type, optional`` (griffe strips ``, optional`` and reads
  defaults from parameters only; ``int, optional`` and ``float, default -20.0`` were tuples)
  becomes ``type, default: <value>``, as parameters are shown (for ``optional`` the class
  attribute's default; just ``type`` when it has none); choices ``{"a", "b"}`` become
  ``one of {"a", "b"}`` and a bare tuple ``(float, float)`` ``tuple of (float, float)``
  (griffe printed them as ``('a', 'b')`` and ``((float, float))``).
- ``::`` ending a paragraph into ``:`` (the indented block after it is already a Markdown code
  block).
- a role on an entry's own line (``name : type`` of Parameters, or the type line of Returns)
  into its plain text: griffe prints that line as code, where a link's HTML came out escaped
  (``&lt;autoref ...``); griffe links the names of a type itself.

Registered in ``mkdocs.yml`` (``plugins: mkdocstrings: handlers: python: options:
extensions``). Not part of the package.
"""

from __future__ import annotations

import builtins
import html
import re
from collections.abc import Iterator
from typing import Any

import griffe

LOGGER = griffe.get_logger("flexdownscale.docs.rst_docstrings")

ROLE = re.compile(r":(?P<role>func|meth|class|mod|attr|data|obj|exc):`(?P<body>[^`]+)`")
MATH = re.compile(r"^(?P<indent>[ \t]*)\.\. math::[ \t]*(?P<inline>.*)$")
#: Modules whose objects are referenced but documented elsewhere (shown as code, not linked).
EXTERNAL_ROOTS = ("xarray", "numpy", "torch", "matplotlib", "scipy", "dask", "accelerate")
PACKAGE = "flexdownscale"
#: numpydoc sections whose entries are ``name : type`` lines, and such an entry with several names.
ITEM_SECTIONS = ("Parameters", "Other Parameters", "Attributes")
#: Sections whose entries start with a line griffe prints as code (a name and type, or a type).
ENTRY_SECTIONS = (*ITEM_SECTIONS, "Returns", "Yields", "Receives", "Raises", "Warns")
ITEM = re.compile(
    r"(?P<indent>[ \t]*)(?P<names>[A-Za-z_*][\w*]*(?:,\s*[A-Za-z_*][\w*]*)+)\s*(?::\s*(?P<kind>.*))?"
)

#: An entry ``name : type`` of one name (after ``_expand_combined_items``), and the
#: ``, optional`` or ``, default <value>`` ending of its type.
TYPED_ITEM = re.compile(r"(?P<head>[ \t]*\*{0,2}(?P<name>[A-Za-z_]\w*)\s*:\s*)(?P<kind>\S.*?)\s*")
DEFAULT_TAIL = re.compile(
    r",\s*(?:(?P<optional>optional)|default(?: |: |=)\s*(?P<default>.+?))\s*$"
)


def _is_private(path: str) -> bool:
    return any(p.startswith("_") and not p.endswith("__") for p in path.split("."))


def _resolve(obj: griffe.Object, target: str) -> str | None:
    """Full path of ``target`` seen from ``obj``'s scope, or None when nothing defines it."""
    if target.split(".")[0] in (PACKAGE, *EXTERNAL_ROOTS):
        return target
    head, _, rest = target.partition(".")
    scope: griffe.Object | None = obj
    while scope is not None:
        if scope.is_class and head in scope.inherited_members:  # rendered on the class itself
            return f"{scope.path}.{target}"
        try:
            path = scope.resolve(head)
        except (griffe.NameResolutionError, griffe.AliasResolutionError, KeyError):
            scope = scope.parent
            continue
        return f"{path}.{rest}" if rest else path
    if hasattr(builtins, head):
        return f"builtins.{target}"
    return None


def _role_to_markdown(obj: griffe.Object, match: re.Match[str]) -> str:
    role, body = match["role"], match["body"].strip()
    title_target = re.fullmatch(r"(?P<title>.+?)\s*<(?P<target>[^>]+)>", body)
    if title_target:
        display, target = title_target["title"], title_target["target"]
    elif body.startswith("~"):
        target = body[1:]
        display = target.rsplit(".", 1)[-1]
    else:
        target = display = body
    if role in ("func", "meth"):
        display += "()"
    path = _resolve(obj, target)
    if path is None:
        LOGGER.warning(
            f"{obj.relative_filepath}: {match.group(0)} in the docstring of {obj.path} does not "
            "resolve to anything in its scope (renamed or removed?)"
        )
        return f"`{display}`"
    if not path.startswith(PACKAGE + ".") and path != PACKAGE:
        return f"`{display}`"
    code = f"<code>{html.escape(display)}</code>"
    if _is_private(path):
        return code
    return f'<autoref identifier="{html.escape(path)}" optional>{code}</autoref>'


def _math_blocks(text: str) -> str:
    """``.. math::`` directives (inline or indented body) as ``$$`` display blocks."""
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        m = MATH.match(lines[i])
        if not m:
            out.append(lines[i])
            i += 1
            continue
        indent = len(m["indent"].expandtabs())
        body = [m["inline"]] if m["inline"].strip() else []
        i += 1
        while i < len(lines):
            line = lines[i]
            stripped = line.strip()
            if stripped and len(line) - len(line.lstrip()) <= indent:
                break
            body.append(stripped)
            i += 1
        while body and not body[-1]:
            body.pop()
        while body and not body[0]:
            body.pop(0)
        pad = " " * indent
        out += [f"{pad}$$", *(f"{pad}{b}" for b in body), f"{pad}$$", ""]
    return "\n".join(out)


def _literal_markers(text: str) -> str:
    """RST ``text::`` -> ``text:``; a line that is only ``::`` disappears."""
    lines = []
    for line in text.splitlines():
        if line.strip() == "::":
            continue
        if line.rstrip().endswith("::") and not line.rstrip().endswith(":::"):
            line = line.rstrip()[:-1]
        lines.append(line)
    return "\n".join(lines)


def _expand_combined_items(text: str) -> str:
    """numpydoc's ``a, b : type`` entries as one entry per name (same description).

    Griffe would give every name of such an entry the first name's annotation.
    """
    lines = text.splitlines()
    out: list[str] = []
    section: str | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        if i + 1 < len(lines) and re.fullmatch(r"\s*-{3,}\s*", lines[i + 1]) and line.strip():
            section = line.strip()
            out += [line, lines[i + 1]]
            i += 2
            continue
        item = ITEM.fullmatch(line) if section in ITEM_SECTIONS else None
        if item is None or "," not in item["names"]:
            out.append(line)
            i += 1
            continue
        indent = len(line) - len(line.lstrip())
        body = []
        i += 1
        while i < len(lines) and (
            not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent
        ):
            body.append(lines[i])
            i += 1
        while body and not body[-1].strip():
            body.pop()
        kind = f" : {item['kind']}" if item["kind"] else ""
        for name in (n.strip() for n in item["names"].split(",")):
            out += [f"{' ' * indent}{name}{kind}", *body]
        if i < len(lines):
            out.append("")
    return "\n".join(out)


def _attribute_default(obj: griffe.Object, name: str) -> str | None:
    """The default of the class attribute ``name`` of ``obj`` as source text, or None."""
    member = obj.members.get(name) if obj.is_class else None
    if member is None or member.is_alias or getattr(member, "value", None) is None:
        return None
    value = member.value
    if isinstance(value, griffe.ExprCall) and str(value.function) in ("field", "dataclasses.field"):
        for argument in value.arguments:  # field(default=...) / field(default_factory=...)
            if isinstance(argument, griffe.ExprKeyword) and argument.name == "default":
                return str(argument.value)
            if isinstance(argument, griffe.ExprKeyword) and argument.name == "default_factory":
                return f"{argument.value}()"
        return None
    return str(value)


def _alternatives(kind: str) -> str:
    """``A, B or None`` (numpydoc: one of these) as ``A or B or None``; commas inside brackets
    (``tuple of (int, int)``, ``{"a", "b"}``) stay; ``A, B, or None`` is ``A or B or None``."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(kind):
        depth += (char in "([{") - (char in ")]}")
        if char == "," and depth == 0:
            parts.append(kind[start:i].strip())
            start = i + 1
    parts.append(kind[start:].strip())
    parts = [p.removeprefix("or ").strip() for p in parts]  # "A, B, or None"
    return " or ".join(p for p in parts if p)


def _as_written(kind: str) -> str:
    """numpydoc's choices ``{"a", "b"}`` (``or None``) as ``one of {"a", "b"}`` and a tuple type
    ``(float, float)`` as ``tuple of (float, float)``: griffe would read either as a Python
    tuple and print ``('a', 'b')`` or ``((float, float))``; the words keep them as written."""
    if kind.startswith("{"):  # also ``{"a", "b"} or None``
        return f"one of {kind}"
    if kind.startswith("("):
        return f"tuple of {kind}"
    return kind


def _sectioned(lines: list[str]) -> Iterator[tuple[int, str, str | None, int]]:
    """``(index, line, section, indent)`` of every line of a numpydoc text but the section
    titles: the section it lies in (``None`` before the first) and that title's indent."""
    section: str | None = None
    indent = 0
    for i, line in enumerate(lines):
        if i + 1 < len(lines) and re.fullmatch(r"\s*-{3,}\s*", lines[i + 1]) and line.strip():
            section, indent = line.strip(), len(line) - len(line.lstrip())
            continue
        yield i, line, section, indent


def _entry_types(obj: griffe.Object, text: str) -> str:
    """The types of Parameters and Attributes entries in the forms griffe prints as written
    (see the module docstring): alternatives joined by ``or``; for attributes
    ``type, default: <value>``."""
    lines = text.splitlines()
    for i, line, section, indent in _sectioned(lines):
        entry = TYPED_ITEM.fullmatch(line) if section in ITEM_SECTIONS else None
        if entry is None or len(line) - len(line.lstrip()) != indent:  # not a description line
            continue
        kind, tail = entry["kind"], ""
        found = DEFAULT_TAIL.search(kind)
        if found:
            kind, tail = kind[: found.start()], kind[found.start() :]
            if section == "Attributes":
                default = (
                    _attribute_default(obj, entry["name"])
                    if found["optional"]
                    else found["default"]
                )
                tail = f", default: {default}" if default is not None else ""
        lines[i] = f"{entry['head']}{_as_written(_alternatives(kind))}{tail}"
    return "\n".join(lines)


def _plain_roles_in_entry_lines(text: str) -> str:
    """Roles on the entry lines of the sections griffe reads as ``name : type`` (or ``type``)
    as their text: the line is printed as code, so a link there would be escaped HTML."""
    lines = text.splitlines()
    for i, line, section, indent in _sectioned(lines):
        if section not in ENTRY_SECTIONS or not line.strip():
            continue
        if len(line) - len(line.lstrip()) == indent and not re.fullmatch(r"\s*-{3,}\s*", line):
            lines[i] = ROLE.sub(_role_text, line)
    return "\n".join(lines)


def _role_text(match: re.Match[str]) -> str:
    body = match["body"].strip()
    title_target = re.fullmatch(r"(?P<title>.+?)\s*<(?P<target>[^>]+)>", body)
    if title_target:
        return title_target["title"]
    return body[1:].rsplit(".", 1)[-1] if body.startswith("~") else body


def rst_to_markdown(obj: griffe.Object, text: str) -> str:
    """The docstring ``text`` of ``obj`` with the constructs above in Markdown."""
    text = _expand_combined_items(text)
    text = _entry_types(obj, text)
    text = _plain_roles_in_entry_lines(text)
    text = _math_blocks(text)
    text = _literal_markers(text)
    return ROLE.sub(lambda m: _role_to_markdown(obj, m), text)


class RstDocstrings(griffe.Extension):
    """Rewrite every loaded docstring once the object tree is complete."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.is_alias or obj.docstring is None:
            return
        obj.docstring.value = rst_to_markdown(obj, obj.docstring.value)
