"""The built API reference: every public name of a rendered module has its entry on the page.

``tests/test_docs.py`` checks the pages' ``:::`` directives against ``__all__``; this builds the
site (as ``.ci/test`` does) and looks at what came out, because a directive is not a rendered
entry: griffe gives a submodule precedence over a function of the same name imported into the
package (``flexdownscale.data.regrid`` was the module, so the function had no entry), and
mkdocstrings leaves out a constant without a docstring griffe reads (a Sphinx ``#:`` comment is
not one).
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
API_PAGES = sorted((ROOT / "docs" / "api").glob("*.md"))

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("api_reference_site")]


def module_directives() -> dict[str, list[str] | None]:
    """``::: module`` directives of the API pages -> their ``members:`` list (None: all)."""
    found: dict[str, list[str] | None] = {}
    for page in API_PAGES:
        lines = page.read_text().splitlines()
        for i, line in enumerate(lines):
            m = re.fullmatch(r"::: ([\w.]+)", line.strip())
            if not m:
                continue
            try:
                importlib.import_module(m.group(1))
            except ImportError:
                continue  # an object, not a module
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


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site built with warnings as errors (the command of ``.ci/test``)."""
    pytest.importorskip("mkdocs", reason="mkdocs (the dev group) builds the API reference")
    pytest.importorskip("mkdocstrings", reason="mkdocstrings (the dev group) renders the API")
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


@pytest.fixture(scope="module")
def pages(site: Path) -> dict[str, str]:
    """HTML of each API page, by the page's name (``data`` for ``api/data/index.html``)."""
    return {p.parent.name: p.read_text() for p in (site / "api").glob("*/index.html")}


def heading_ids(pages: dict[str, str]) -> set[str]:
    """The ids of the rendered object headings (one per documented object)."""
    found: set[str] = set()
    for text in pages.values():
        found |= set(re.findall(r'<h\d id="(flexdownscale[\w.]*)" class="doc doc-heading"', text))
    return found


def test_every_public_name_of_a_rendered_module_has_an_entry(pages):
    anchors = heading_ids(pages)
    directives = module_directives()
    assert {"flexdownscale.data", "flexdownscale.metrics", "flexdownscale.models"} <= set(
        directives
    )
    missing = []
    for modname, members in directives.items():
        module = importlib.import_module(modname)
        for name in members if members is not None else module.__all__:
            obj = getattr(module, name)
            where = {f"{modname}.{name}"}
            # shown under the path that defines it (an explicit ``:::`` entry of the object)
            if hasattr(obj, "__qualname__") and hasattr(obj, "__module__"):
                where.add(f"{obj.__module__}.{obj.__qualname__}")
            if not where & anchors:
                missing.append(f"{modname}.{name}")
    assert not missing, f"public names without an entry in the built API reference: {missing}"


def test_the_functions_named_as_their_submodules_and_the_constants_are_shown(pages):
    anchors = heading_ids(pages)
    for path in (
        "flexdownscale.data.degrade.degrade",
        "flexdownscale.data.regrid.regrid",
        "flexdownscale.data.DEGRADATIONS",
        "flexdownscale.data.UPSAMPLINGS",
        "flexdownscale.models.PRESETS",
        "flexdownscale.units.WATER_DENSITY",
    ):
        assert path in anchors, path
