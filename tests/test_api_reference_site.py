"""The built API reference: every public name of a rendered module has its entry on the page.

``tests/test_docs.py`` checks the pages' ``:::`` directives against ``__all__``; this builds the
site (as ``.ci/test`` does) and looks at what came out, because a directive is not a rendered
entry: griffe gives a submodule precedence over a function of the same name imported into the
package (``flexdownscale.data.regrid`` was the module, so the function had no entry), and
mkdocstrings leaves out a constant without a docstring griffe reads (a Sphinx ``#:`` comment is
not one).
"""

from __future__ import annotations

import html
import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from api_pages import API_PAGES, api_directives

ROOT = Path(__file__).resolve().parents[1]

# one worker builds the site once for the tests that read it
pytestmark = pytest.mark.xdist_group("api_reference_site")


def module_directives() -> dict[str, list[str] | None]:
    """``::: module`` directives of the API pages -> their ``members:`` list (None: all);
    directives of single objects (``::: flexdownscale.data.regrid.regrid``) left out."""
    found = {}
    for target, members in api_directives().items():
        try:
            importlib.import_module(target)
        except ImportError:
            continue  # an object, not a module
        found[target] = members
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


@pytest.mark.slow
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


@pytest.mark.slow
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


def _entries(text: str, title: str) -> list[tuple[str, str, str]]:
    """(name, type, description) of the rendered entries of every ``title`` section of ``text``
    (an entry without a name, as Returns often are, has ``""``)."""
    out = []
    for section in re.finditer(rf'doc-section-title">{title}:</span></p>(.*?)</ul>', text, re.S):
        for item in re.finditer(
            r'<li class="doc-section-item field-body">(.*?)</li>', section[1], re.S
        ):
            body = item[1]
            name = re.search(r"<b><code>(.*?)</code></b>", body)
            if name:
                kind = re.search(r"\(\s*<code>(.*?)</code>\s*\)", body, re.S)
            else:
                kind = re.search(r"<code>(.*?)</code>", body, re.S)
            desc = re.search(r'<div class="doc-md-description">(.*?)</div>', body, re.S)
            name_text, kind_text = (
                html.unescape(re.sub(r"<[^>]+>", "", m[1])).strip() if m else ""
                for m in (name, kind)
            )
            out.append((name_text, " ".join(kind_text.split()), (desc[1] if desc else "").strip()))
    return out


def _object(text: str, path: str) -> str:
    """The HTML of the entry of ``path`` (up to the next entry of its level)."""
    start = re.search(rf'<h(\d) id="{re.escape(path)}"', text)
    assert start, path
    end = re.search(rf'<h{start[1]} id="', text[start.end() :])
    return text[start.start() : start.end() + end.start()] if end else text[start.start() :]


@pytest.mark.slow
def test_forecast_dataset_shows_each_shared_parameter_with_its_type(pages):
    """``ForecastDataset``'s entry naming the parameters shared with ``SuperResolutionDataset``
    wrapped onto a second line: the first line's names showed the first one's type (``Any``)
    and no description."""
    text = pages["data"]
    forecast = {
        n: (k, d)
        for n, k, d in _entries(_object(text, "flexdownscale.data.ForecastDataset"), "Parameters")
    }
    superres = {
        n: k
        for n, k, _ in _entries(
            _object(text, "flexdownscale.data.SuperResolutionDataset"), "Parameters"
        )
    }
    shared = "data variables split split_dim splits normalizer transforms condition condition_scale"
    for name in (*shared.split(), "seed", "format", "dims", "crop", "crops_per_field"):
        kind, desc = forecast[name]
        assert kind == superres[name], (name, kind, superres[name])
        assert "SuperResolutionDataset" in desc, name


@pytest.mark.slow
def test_no_markup_is_printed_escaped(pages):
    """A role on a line griffe prints as code (a Returns sentence read as the type) came out as
    escaped HTML (``&lt;autoref identifier=...``) on the page."""
    escaped = {
        name: re.findall(r"&lt;(?:autoref|code)\b.{0,80}", text) for name, text in pages.items()
    }
    assert not {k: v for k, v in escaped.items() if v}, escaped


@pytest.mark.slow
def test_returns_entries_show_a_type_and_a_description(pages):
    """numpydoc Returns: a type line, then the description indented under it. A sentence written
    as the first line is read as the type: printed as code, with an empty description."""
    prose = set()
    for text in pages.values():
        heads = list(re.finditer(r'<h\d id="(flexdownscale[\w.]*)" class="doc doc-heading"', text))
        for k, head in enumerate(heads):
            end = heads[k + 1].start() if k + 1 < len(heads) else len(text)
            for title in ("Returns", "Yields"):
                for _, kind, desc in _entries(text[head.start() : end], title):
                    if not desc and (kind.endswith(".") or "``" in kind or len(kind) > 60):
                        prose.add(head[1])
    assert not prose, sorted(prose)


def _slug(title: str) -> str:
    """The anchor Python-Markdown's ``toc`` gives a heading."""
    return re.sub(r"[-\s]+", "-", re.sub(r"[^\w\s-]", "", title).strip().lower())


def test_guide_links_name_the_page_or_section_they_open():
    """``Guide: [Plots](../metrics.md)`` named a section the link did not open (the page is
    Metrics; its Plots section is ``#plots``)."""
    nav = re.findall(r"^\s*- ([^:\n]+): ([\w/.-]+\.md)$", (ROOT / "mkdocs.yml").read_text(), re.M)
    titles = {page: title for title, page in nav}
    wrong = []
    for page in API_PAGES:
        for text, target, anchor in re.findall(
            r"Guide: \[([^]]+)\]\(\.\./([\w-]+\.md)(?:#([\w-]+))?\)", page.read_text()
        ):
            if anchor:
                headings = re.findall(r"^#+ (.+)$", (ROOT / "docs" / target).read_text(), re.M)
                named = {_slug(h): h for h in headings}.get(anchor)
            else:
                named = titles.get(target)
            if named != text:
                wrong.append(f"{page.name}: [{text}]({target}{'#' + anchor if anchor else ''})")
    assert not wrong, wrong
