"""An installed package holds no ``docs/`` or ``benchmarks/`` folder (reviewer-95, from the
wheel): messages and written reports that named ``docs/inference.md`` or
``benchmarks/results/skill.md`` by their repository paths sent users to files they do not have.
They give the repository's address (``flexdownscale._links``) instead."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import flexdownscale
from flexdownscale._links import DOCS_INFERENCE, REPOSITORY

PACKAGE = Path(flexdownscale.__file__).parent
#: a repository path of a document: docs/... or benchmarks/..., not inside an address
REPOSITORY_PATH = re.compile(r"(?<![/\w])(?:docs|benchmarks)/[\w./-]+")


def _strings_users_read(tree: ast.Module) -> list[ast.Constant]:
    """The string constants of a module that are no docstring and do not follow a formatted
    value in an f-string (``f"{REPOSITORY}docs/..."`` is an address)."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            skip.add(id(body[0].value))  # a docstring (or a bare string statement)
        if isinstance(node, ast.JoinedStr):
            for before, part in zip(node.values, node.values[1:], strict=False):
                if isinstance(before, ast.FormattedValue):
                    skip.add(id(part))
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip
    ]


def test_no_message_names_a_repository_path():
    found = [
        f"{path.relative_to(PACKAGE)}:{node.lineno}: {match.group(0)}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "_links.py"
        for node in _strings_users_read(ast.parse(path.read_text(encoding="utf-8")))
        for match in REPOSITORY_PATH.finditer(node.value)
    ]
    assert found == []


def test_the_scan_sees_a_repository_path():
    tree = ast.parse('x = "see docs/inference.md"\ny = f"{REPOSITORY}docs/inference.md"\n')
    seen = [n.value for n in _strings_users_read(tree)]
    assert seen == ["see docs/inference.md"]


@pytest.mark.parametrize("address", [REPOSITORY, DOCS_INFERENCE])
def test_addresses_are_the_projects(address):
    assert address.startswith("https://github.com/flexdownscale/flexdownscale/blob/main/")
