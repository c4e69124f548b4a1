"""Live progress of a run: finished jobs and the epochs trained so far, whichever executor runs them."""

from __future__ import annotations

import datetime

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from .. import escape


class _TimeLeftColumn(ProgressColumn):
    """The estimated time left, on the jobs bar only. It comes from the epochs bar, which moves
    often and evenly, while finished jobs arrive in bursts of as many as run side by side."""

    def __init__(self, display: JobProgress):
        super().__init__()
        self.display = display

    def render(self, task) -> Text:
        if task.id != self.display.jobs_task:
            return Text("")
        if task.finished:
            return Text("done", style="progress.remaining")
        epochs = next((t for t in self.display.progress.tasks if t.id == self.display.epoch_task), None)
        left = epochs.time_remaining if epochs is not None else None
        if left is None:
            left = task.time_remaining
        shown = "-:--:--" if left is None else str(datetime.timedelta(seconds=max(0, round(left))))
        return Text(f"ETA {shown}", style="progress.remaining")


class JobProgress:
    """A rich display with one bar for jobs and one for the epochs of the jobs still to train.

    The bars keep their labels ("jobs", "epochs"); the jobs now training are listed after the epochs
    bar, and the jobs bar shows the estimated time left.

    Renders nothing when the console is not a terminal, so piped output stays clean."""

    def __init__(self, console: Console | None = None, *, epochs: int = 0):
        self.console = console or Console(stderr=True, emoji=False)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            _TimeLeftColumn(self),
            TextColumn("{task.fields[running]}"),
            console=self.console,
            transient=True,
            # Epochs of a large model can take minutes: estimate the speed over the last ten.
            speed_estimate_period=600,
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
        for task in (self.jobs_task, self.epoch_task):
            if task != TaskID(-1):  # started again (a sequential run's next stage): one set of bars
                self.progress.remove_task(task)
        self.jobs_task = self.progress.add_task("jobs", total=total, completed=done, running="")
        self.epoch_task = self.progress.add_task(
            "epochs", total=(total - done) * self.epochs or None, running=""
        )

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
        self.progress.update(self.epoch_task, running=text)
