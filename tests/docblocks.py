"""Fenced code blocks of the documentation, and running them (tests of docs/ and tutorials).

A block runs when its fence starts a line (blocks indented inside list items do not run):
``python`` blocks share one namespace per page (as in a notebook); ``bash`` blocks run line by
line as commands whose ``PATH`` starts with this interpreter's scripts (``flexdownscale``,
``python``); a block with a title (```` ```toml title="run.toml" ````) is written to that file.
A block whose fence follows the line ``<!-- not run: REASON -->`` (a signature, input only the
reader has) and blocks in other languages (``text``: commands for a GPU machine, ...) do not run.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

FENCE = re.compile(
    r"^```(?P<lang>[\w-]*)(?P<info>[^\n]*)\n(?P<code>.*?)^```\s*$", re.MULTILINE | re.DOTALL
)
NOT_RUN = re.compile(r"<!-- not run: [^>]+-->\s*$")


def code_blocks(page: Path) -> list[tuple[str, int, str]]:
    """(language, ``file:NAME`` or ``not-run``; first line number; code) of ``page``'s blocks."""
    text = page.read_text()
    blocks = []
    for m in FENCE.finditer(text):
        title = re.search(r'title="([^"]+)"', m["info"])
        before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        if NOT_RUN.search(before):
            lang = "not-run"
        elif title:
            lang = f"file:{title.group(1)}"
        else:
            lang = m["lang"]
        blocks.append((lang, text.count("\n", 0, m.start()) + 2, m["code"]))
    return blocks


def run_blocks(page: Path, cwd: Path, *, commands: bool = True) -> int:
    """Run ``page``'s blocks in order in ``cwd`` (``commands=False``: python blocks only).

    Returns the number of blocks run; a failing block raises with its page and line.
    """
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["MPLBACKEND"] = "Agg"
    namespace: dict[str, object] = {"__name__": f"docs_{page.stem}"}
    ran = 0
    for lang, line, code in code_blocks(page):
        if lang.startswith("file:") and commands:
            (cwd / lang[len("file:") :]).write_text(code)
        elif lang == "python":
            exec(compile("\n" * (line - 1) + code, str(page), "exec"), namespace)
        elif lang in ("bash", "sh", "shell") and commands:
            for command in (c for c in code.splitlines() if c.strip() and not c.startswith("#")):
                result = subprocess.run(
                    shlex.split(command),
                    cwd=cwd,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=600,
                )
                assert result.returncode == 0, (
                    f"{page.name}:{line}: `{command}` exited {result.returncode}\n"
                    f"{result.stderr[-3000:]}"
                )
        else:
            continue
        ran += 1
    return ran
