"""Addresses that messages and written reports give for documents of the source repository.

An installed package holds no ``docs/`` or ``benchmarks/`` folder, so a message that names one
by its repository path sends a user of the wheel to a file they do not have: messages give
these addresses instead.
"""

from __future__ import annotations

#: The source repository's files on its main branch (append a repository path).
REPOSITORY = "https://github.com/flexdownscale/flexdownscale/blob/main/"

#: The inference guide (docs/inference.md of the source repository).
DOCS_INFERENCE = REPOSITORY + "docs/inference.md"
