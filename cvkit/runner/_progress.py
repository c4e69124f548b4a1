"""Live progress of a run: finished jobs and the epochs trained so far, whichever executor runs them."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from .. import escape


class JobProgress:
    """A rich display with one bar for jobs and one for the epochs of the jobs still to train.

    Renders nothing when the console is not a terminal, so piped output stays clean."""

    def __init__(self, console: Console | None = None, *, epochs: int = 0):
        self.console = console or Console(stderr=True, emoji=False)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
            disable=not self.console.is_terminal,
        )
        self.epochs = epochs
        self.jobs_task = self.epoch_task = TaskID(-1)  # added by start()
        self.running: dict[str, str] = {}

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        self.progress.__exit__(*exc)

    def start(self, total: int, done: int) -> None:
        self.jobs_task = self.progress.add_task("jobs", total=total, completed=done)
        self.epoch_task = self.progress.add_task("epochs", total=(total - done) * self.epochs or None)

    def job_started(self, job) -> None:
        self.running[job.key] = f"{escape.rich(job.model)} r{job.repeat} f{job.fold}" + (
            f" s{job.seed_index}" if job.seed_index else ""
        )
        self._describe()

    def epoch_done(self, job, record: dict) -> None:
        self.progress.advance(self.epoch_task)

    def job_done(self, job) -> None:
        self.running.pop(job.key, None)
        self.progress.advance(self.jobs_task)
        self._describe()

    def _describe(self) -> None:
        labels = list(self.running.values())
        text = ", ".join(labels[:2]) + (f" +{len(labels) - 2}" if len(labels) > 2 else "")
        self.progress.update(self.epoch_task, description=text or "epochs")
