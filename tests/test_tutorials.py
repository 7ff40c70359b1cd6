"""Every tutorial runs as written: its code blocks, in order, in a fresh folder.

``python`` blocks share one namespace (as in a notebook); ``bash`` blocks run line by line as
commands whose ``PATH`` starts with this interpreter's scripts (``flexdownscale``, ``python``); a
block with a title (```` ```toml title="run.toml" ````) is written to that file. Blocks fenced as
anything else (``text``: commands for a GPU machine, ...) are not run.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = sorted((ROOT / "docs" / "tutorials").glob("*.md"))
FENCE = re.compile(
    r"^```(?P<lang>[\w-]*)(?P<info>[^\n]*)\n(?P<code>.*?)^```\s*$", re.MULTILINE | re.DOTALL
)


def code_blocks(page: Path) -> list[tuple[str, int, str]]:
    """(language or ``file:NAME``, first line number, code) of every fenced block of ``page``."""
    text = page.read_text()
    blocks = []
    for m in FENCE.finditer(text):
        title = re.search(r'title="([^"]+)"', m["info"])
        lang = f"file:{title.group(1)}" if title else m["lang"]
        blocks.append((lang, text.count("\n", 0, m.start()) + 2, m["code"]))
    return blocks


def test_tutorials_exist_and_are_in_the_navigation():
    nav = (ROOT / "mkdocs.yml").read_text()
    assert TUTORIALS
    for page in TUTORIALS:
        assert f"tutorials/{page.name}" in nav
        langs = {lang for lang, _, _ in code_blocks(page)}
        assert "python" in langs, f"{page.name} has no python block to run"


@pytest.mark.slow
@pytest.mark.parametrize("page", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_runs(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["MPLBACKEND"] = "Agg"
    namespace: dict[str, object] = {"__name__": f"tutorial_{page.stem}"}
    ran = 0
    for lang, line, code in code_blocks(page):
        where = f"{page.relative_to(ROOT)}:{line}"
        if lang.startswith("file:"):
            (tmp_path / lang[len("file:") :]).write_text(code)
        elif lang == "python":
            exec(compile("\n" * (line - 1) + code, str(page), "exec"), namespace)
        elif lang in ("bash", "sh", "shell"):
            for command in (c for c in code.splitlines() if c.strip() and not c.startswith("#")):
                result = subprocess.run(
                    shlex.split(command),
                    cwd=tmp_path,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=600,
                )
                assert result.returncode == 0, (
                    f"{where}: `{command}` exited {result.returncode}\n{result.stderr[-3000:]}"
                )
        else:
            continue
        ran += 1
    assert ran >= 2
