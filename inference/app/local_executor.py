"""The default executor: this machine's devices, one worker per entry of ``devices``.

With a single worker the files run in this process (no process to spawn; Ctrl-C and SIGTERM clean up through the
usual exception path); with several, :mod:`inference.app.worker_pool` spawns one process per entry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from inference.app.jobs import Job, Outcome, Report, load_stylizer, run_job

if TYPE_CHECKING:
    from inference.app.file_options import FileOptions
    from inference.engine.options import RuntimeOptions


class LocalExecutor:
    """Runs jobs on this machine (see :class:`inference.app.jobs.Executor`).

    Args:
        model: The artifact, loaded once per worker.
        devices: One entry per worker, e.g. ``["cuda:0", "cuda:1"]`` or ``["cpu", "cpu"]``.
        runtime_options: The workers' :class:`~inference.engine.options.RuntimeOptions` (each sets its ``device``).
        file_options: How each file is converted.
        quiet: Workers print errors only.
    """

    def __init__(
        self,
        model: str,
        devices: list[str],
        runtime_options: RuntimeOptions,
        file_options: FileOptions,
        *,
        quiet: bool = False,
    ) -> None:
        self.model, self.devices = model, devices
        self.runtime_options, self.file_options, self.quiet = runtime_options, file_options, quiet
        self._stylizer = None

    @property
    def workers(self) -> int:
        """How many files run at once."""
        return len(self.devices)

    def start(self) -> None:
        """Load the model here (one worker), or check that it loads (several): a bad artifact fails once."""
        if len(self.devices) == 1:
            self._stylizer = load_stylizer(self.model, self.runtime_options, device=self.devices[0])
        else:
            from inference.model.artifact import load_artifact

            load_artifact(self.model)

    def run(self, tasks: list[tuple[int, Job]], report: Report) -> None:
        """Stylize ``tasks`` (``(index, job)`` pairs), calling ``report(index, outcome)`` as each file finishes."""
        if self._stylizer is not None:
            for n, (index, job) in enumerate(tasks):
                report(index, outcome := run_job(self._stylizer, job, self.file_options))
                if outcome.retire:  # a sticky CUDA error: the rest would fail at once with a less helpful message
                    for later, rest in tasks[n + 1 :]:
                        why = f"{rest.src}: not stylized: {self.devices[0]} failed on an earlier file"
                        report(later, Outcome("failed", why, device=self.devices[0]))
                    return
            return
        from inference.app.worker_pool import PoolSpec, run_pool

        spec = PoolSpec(self.model, self.runtime_options, self.file_options, quiet=self.quiet)
        run_pool(tasks, spec, self.devices, report)

    def close(self) -> None:
        """Drop the in-process model (spawned workers are stopped by :func:`~inference.app.worker_pool.run_pool`)."""
        self._stylizer = None
