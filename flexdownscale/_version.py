"""The package version (a leaf module, so every layer can read it)."""

__version__ = "0.1.0.dev0"
