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


class PluginChanged(PluginError):
    """A plugin file changed while a run was using it: its remaining jobs cannot train the
    version the run started with."""


class StoreError(CvkitError):
    """A run store cannot be read or written."""


class ConfigError(CvkitError):
    """Contradictory or invalid options."""


class JobsFailed(PluginError):
    """Some jobs of a run failed; every other job finished and is saved."""

    def __init__(self, failures, total: int):
        self.failures = failures  # [(job, exception)]
        changed = [error for _, error in failures if isinstance(error, PluginChanged)]
        if changed:  # "rerun the same command" would be refused: the plugin is part of the run's identity
            super().__init__(f"{len(failures)} of {total} jobs failed, the others are saved: {changed[0]}")
            return
        job, error = failures[0]
        first = (
            str(error)
            if isinstance(error, CvkitError)
            else (
                f"{job.model} failed on repeat {job.repeat}, fold {job.fold}: {type(error).__name__}: {error}"
            )
        )
        others = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        super().__init__(
            f"{len(failures)} of {total} jobs failed, the others are saved: {first}{others}; "
            "fix the cause and rerun the same command: only the failed jobs are trained again"
        )


class OptionError(ConfigError):
    """One option has a value it cannot take. The message names the option as Python code spells
    it (``batch_size must be at least 2, got 1``); the command line names its flag instead
    (``--batch-size must be at least 2, got 1``) through ``naming``."""

    def __init__(self, option: str, problem: str):
        self.option, self.problem = option, problem
        super().__init__(f"{option} {problem}")

    def naming(self, name: str) -> str:
        """The same message with the option called ``name``."""
        return f"{name} {self.problem}"
