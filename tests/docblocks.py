"""Fenced code blocks of the documentation, and running them (tests of docs/ and tutorials).

Blocks run in page order, those indented inside list items too (dedented). ``python`` blocks
share one namespace per page (as in a notebook); a python block with a comment line
``# SomeError: message`` (continued on following ``#`` lines) shows an error, and must raise an
exception of that class whose message contains that text (whitespace aside). ``bash`` blocks
run line by line as commands whose ``PATH`` starts with this interpreter's scripts
(``flexdownscale``, ``python``); a block with a title (```` ```toml title="run.toml" ````) is
written to that file. A block whose fence follows the line ``<!-- not run: REASON -->`` (a
signature, input only the reader has) and blocks in other languages (``text``: commands for a
GPU machine, ...) do not run. ``replace`` substitutes the reader's placeholders (a model path,
a file name) before a block runs.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

FENCE = re.compile(
    r"^(?P<indent>[ ]*)```(?P<lang>[\w-]*)(?P<info>[^\n]*)\n(?P<code>.*?)^(?P=indent)```\s*$",
    re.MULTILINE | re.DOTALL,
)
NOT_RUN = re.compile(r"<!-- not run: [^>]+-->\s*$")
#: ``# ShapeError: text``, continued on ``#`` lines indented past the ``#``
SHOWN_ERROR = re.compile(
    r"^#[ ]*(?P<name>[A-Z]\w*(?:Error|Exception)):[ ]*(?P<text>.*(?:\n#[ ]{2,}.*)*)", re.MULTILINE
)


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
        indent = m["indent"]
        code = "".join(
            line.removeprefix(indent) if line.strip() else "\n"
            for line in m["code"].splitlines(keepends=True)
        )
        blocks.append((lang, text.count("\n", 0, m.start()) + 2, code))
    return blocks


def run_blocks(
    page: Path,
    cwd: Path,
    *,
    commands: bool = True,
    replace: dict[str, str] | None = None,
    namespace: dict[str, object] | None = None,
) -> int:
    """Run ``page``'s blocks in order in ``cwd`` (``commands=False``: python blocks only).

    ``replace`` maps placeholder text to what stands in for it; ``namespace`` holds the names
    the page takes as given (the reader's ``ds``). Returns the number of blocks run; a failing
    block raises with its page and line.
    """
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["MPLBACKEND"] = "Agg"
    namespace = {"__name__": f"docs_{page.stem}", **(namespace or {})}
    ran = 0
    for lang, line, code in code_blocks(page):
        for placeholder, stand_in in (replace or {}).items():
            code = code.replace(placeholder, stand_in)
        if lang.startswith("file:") and commands:
            (cwd / lang[len("file:") :]).write_text(code)
        elif lang == "python":
            _run_python(code, page, line, namespace)
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


def _run_python(code: str, page: Path, line: int, namespace: dict[str, object]) -> None:
    """Execute one python block; a block that shows an error must raise it."""
    compiled = compile("\n" * (line - 1) + code, str(page), "exec")
    shown = SHOWN_ERROR.search(code)
    if shown is None:
        exec(compiled, namespace)
        return
    expected = " ".join(re.sub(r"^#", "", shown["text"], flags=re.MULTILINE).split())
    try:
        exec(compiled, namespace)
    except Exception as error:  # the class is checked by name below
        raised: Exception | None = error
    else:
        raised = None
    where = f"{page.name}:{line}: the block shows {shown['name']}"
    if raised is None:
        raise AssertionError(f"{where}, none raised")
    names = [cls.__name__ for cls in type(raised).__mro__]
    message = " ".join(str(raised).split())
    assert shown["name"] in names, (
        f"{where}: {expected!r}; raised {type(raised).__name__}: {message!r}"
    )
    assert expected in message, f"{where}: {expected!r}; the message is {message!r}"
