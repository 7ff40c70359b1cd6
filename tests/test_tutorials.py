"""Every tutorial runs as written: its code blocks, in order, in a fresh folder (``docblocks``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from docblocks import code_blocks, run_blocks

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = sorted((ROOT / "docs" / "tutorials").glob("*.md"))


def test_tutorials_exist_and_are_in_the_navigation():
    nav = (ROOT / "mkdocs.yml").read_text()
    assert TUTORIALS
    for page in TUTORIALS:
        assert f"tutorials/{page.name}" in nav
        langs = {lang for lang, _, _ in code_blocks(page)}
        assert "python" in langs, f"{page.name} has no python block to run"
        assert "not-run" not in langs, f"{page.name}: every tutorial block must run"


@pytest.mark.slow
@pytest.mark.parametrize("page", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_runs(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run_blocks(page, tmp_path) >= 2
