"""Named exceptions. A ``CvkitError`` is a user mistake: the CLI prints its message on one line
and exits with status 2. Messages say what was received, where, and how to fix it."""


class CvkitError(Exception):
    """Base class for every error caused by input, configuration or a plugin."""


class DataError(CvkitError):
    """A data set, manifest or image cannot be used."""


class SplitError(CvkitError):
    """The requested cross-validation design is impossible on this data."""


class PluginError(CvkitError):
    """A plugin file is broken or its trainer misbehaved."""


class StoreError(CvkitError):
    """A run store cannot be read or written."""


class ConfigError(CvkitError):
    """Contradictory or invalid options."""
