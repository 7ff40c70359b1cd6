"""The API reference pages (docs/api/*.md) as the docs tests read them."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
API_PAGES = sorted((ROOT / "docs" / "api").glob("*.md"))


def api_directives() -> dict[str, list[str] | None]:
    """``::: target`` of every API page -> its ``members:`` list (None: all of ``__all__``)."""
    found: dict[str, list[str] | None] = {}
    for page in API_PAGES:
        lines = page.read_text().splitlines()
        for i, line in enumerate(lines):
            m = re.fullmatch(r"::: ([\w.]+)", line.strip())
            if not m:
                continue
            members = None
            j = i + 1
            while j < len(lines) and (lines[j].startswith("    ") or not lines[j].strip()):
                if lines[j].strip() == "members:":
                    members = []
                elif members is not None and lines[j].strip().startswith("- "):
                    members.append(lines[j].strip()[2:])
                j += 1
            found[m.group(1)] = members
    return found


def load_docs_extension() -> ModuleType:
    """The docs' griffe extension (docs/_griffe/rst_docstrings.py), which is no package module."""
    spec = importlib.util.spec_from_file_location(
        "rst_docstrings", ROOT / "docs" / "_griffe" / "rst_docstrings.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
