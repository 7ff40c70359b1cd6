"""``python -m flexdownscale``: the ``flexdownscale`` command
(:func:`flexdownscale.cli.console_main`)."""

import sys

from .cli import console_main

sys.exit(console_main())
