"""cvkit's version: read by pyproject.toml at build time and by the modules that print or record it."""

__version__ = "0.1.0"
