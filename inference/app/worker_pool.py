"""Worker processes for batch runs: one per device entry, each loading the artifact once.

Workers take files from one shared queue until it is empty, so a faster device simply takes more files. Processes
are spawned, never forked: a forked child would inherit the parent's CUDA state, which CUDA does not support. The
parent reads results, prints a line per file (through ``report``), and notices a worker that dies (a crash in a
decoder, the out-of-memory killer): the file it held fails, the others go on. Ctrl-C or SIGTERM in the parent
sends SIGTERM to every worker, which removes its temporary output and exits.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from inference.app.argtypes import flag
from inference.app.jobs import Job, Outcome, load_stylizer, run_job
from inference.core.devices import bind_worker, host_thread_budgets
from inference.core.errors import UserError, terminate_on_sigterm

if TYPE_CHECKING:
    from inference.app.file_options import FileOptions
    from inference.engine.options import RuntimeOptions

_POLL_S = 0.5  # How often the parent checks that its workers are alive while no result arrives.
_STOP_S = 30.0  # How long stopped workers get to remove their temporary outputs before they are killed.


@dataclass(frozen=True)
class PoolSpec:
    """What every worker of a pool loads and how it stylizes each file (sent to each spawned process).

    Attributes:
        model: The ``.safetensors`` artifact, loaded once per worker.
        runtime_options: The workers' :class:`~inference.engine.options.RuntimeOptions` (each sets its ``device``).
        file_options: How each file is converted.
        quiet: Workers log errors only.
    """

    model: str
    runtime_options: RuntimeOptions
    file_options: FileOptions
    quiet: bool = False


@dataclass(frozen=True)
class Seat:
    """One worker's place: its id (in messages), its device and its share of the host threads (``None``: all)."""

    wid: int
    device: str
    threads: int | None


def run_pool(
    tasks: list[tuple[int, Job]], spec: PoolSpec, devices: list[str], report: Callable[[int, Outcome], None]
) -> None:
    """Run ``tasks`` on one spawned worker per entry of ``devices``, calling ``report(index, outcome)`` for each.

    Raises:
        UserError: A worker could not load the model (every worker loads the same one, so the run stops).
    """
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    task_q, result_q = ctx.Queue(), ctx.Queue()
    # Each worker writes the index it takes here, in shared memory, before it starts: a queued "start" message goes
    # out through a feeder thread and is lost when the worker is killed at once (SIGKILL, the OOM killer).
    claims = ctx.Array("q", [-1] * len(devices), lock=False)
    for index, job in tasks:
        task_q.put((index, job))  # a Job pickles (a split video's segments carry their Segment)
    for _ in devices:
        task_q.put(None)
    procs = []
    # Workers share the host cores instead of each starting one thread per core: CPU workers for the network, GPU
    # workers for x264 and the decoder (inference.core.devices).
    budgets = host_thread_budgets(devices)
    for wid, (device, threads) in enumerate(zip(devices, budgets, strict=True)):
        args = (Seat(wid, device, threads), spec, task_q, result_q, claims)
        procs.append(ctx.Process(target=_worker, args=args, name=f"stylize-video {device}", daemon=True))
    for proc in procs:
        proc.start()
    finished = False
    try:
        Collector(dict(tasks), procs, devices, report, claims).run(result_q)
        finished = True
    finally:
        task_q.cancel_join_thread()  # Tasks nobody will read must not block this process's exit.
        _stop(procs, gently=finished)


class Collector:
    """Read worker messages until every task has an outcome; notice workers that die.

    Args:
        jobs: The tasks by index.
        procs: One per worker id: anything with ``is_alive()`` and ``exitcode`` (the spawned processes).
        devices: Each worker's device, named in the line about a worker that died.
        report: Called as ``report(index, outcome)`` once per task.
        claims: Per worker id, the index of the task it took last (-1: none), written by the worker before it starts:
            a worker killed before its "start" message left still has its task named.
    """

    def __init__(
        self,
        jobs: dict[int, Job],
        procs: list[Any],
        devices: list[str],
        report: Callable[[int, Outcome], None],
        claims: Any = None,
    ) -> None:
        self.jobs, self.procs, self.devices, self.report = jobs, procs, devices, report
        self.claims = claims
        self.pending = set(jobs)
        self.running: dict[int, int] = {}  # worker id -> task index
        self.alive = set(range(len(procs)))

    def run(self, result_q: Any) -> None:
        while self.pending:
            try:
                self.handle(result_q.get(timeout=_POLL_S))
            except queue.Empty:
                self.check_workers(result_q)

    def handle(self, message: tuple) -> None:
        kind, wid, *rest = message
        if kind == "init_failed":
            raise UserError(rest[0])
        if kind == "start":
            self.running[wid] = rest[0]
        elif kind == "done":
            index, outcome = rest
            self.running.pop(wid, None)
            self.pending.discard(index)
            self.report(index, outcome)

    def check_workers(self, result_q: Any) -> None:
        dead = [wid for wid in self.alive if not self.procs[wid].is_alive()]
        if not dead:
            return
        # A worker flushes its messages before it exits: read them before deciding what it left unfinished.
        while True:
            try:
                self.handle(result_q.get_nowait())
            except queue.Empty:
                break
        for wid in dead:
            self.alive.discard(wid)
            claimed = self.claims[wid] if self.claims is not None else -1
            if wid not in self.running and claimed in self.pending:
                self.running[wid] = claimed  # its "start" message died with it
            if wid in self.running:
                index, device, code = self.running.pop(wid), self.devices[wid], self.procs[wid].exitcode
                self.pending.discard(index)
                message = f"{self.jobs[index].src}: the worker on {device} died (exit code {code}) while stylizing it"
                self.report(index, Outcome("failed", message, device=device))
        if not self.alive:
            for index in sorted(self.pending):
                self.report(index, Outcome("failed", f"{self.jobs[index].src}: not stylized: every worker exited"))
            self.pending.clear()


def _stop(procs: list[Any], *, gently: bool) -> None:
    """Wait for workers that are finishing; SIGTERM the rest (they clean up), and kill any that hang."""
    deadline = time.monotonic() + (_STOP_S if gently else 0.0)
    for proc in procs:
        proc.join(timeout=max(0.0, deadline - time.monotonic()))
        if proc.is_alive():
            proc.terminate()
    deadline = time.monotonic() + _STOP_S
    for proc in procs:
        proc.join(timeout=max(0.0, deadline - time.monotonic()))
        if proc.is_alive():
            proc.kill()
            proc.join()


def _worker(*args: Any) -> None:
    """A worker process: :func:`serve` (same arguments) with SIGTERM and Ctrl-C turned into a clean exit."""
    try:
        with terminate_on_sigterm():
            serve(*args)
    except KeyboardInterrupt as exc:  # Ctrl-C reaches every process of the terminal; SIGTERM comes from the parent.
        raise SystemExit(getattr(exc, "exit_code", 130)) from None


def serve(seat: Seat, spec: PoolSpec, tasks: Any, results: Any, claims: Any = None) -> None:
    """One worker: load the model, then stylize tasks and send ``("start" | "done" | "init_failed", worker id, ...)``.

    Args:
        seat: The worker's id, device and host threads (bound here, see :func:`~inference.core.devices.bind_worker`).
        spec: What to load and how to stylize each file.
        tasks: Queue of ``(index, job)`` pairs; ``None`` ends the worker. Tasks are left there for the other
            workers when this one retires after a sticky CUDA error.
        results: Queue the messages go to (read by :class:`Collector`); any queue with ``get``/``put`` works.
        claims: Shared per-worker slots (:class:`Collector`'s ``claims``), or ``None``.
    """

    from inference.app.console import setup_logging

    wid, device, model = seat.wid, seat.device, spec.model
    setup_logging(spec.quiet)
    bind_worker(device, seat.threads)  # its GPU for torch, NVDEC and NVENC; its share of the host threads
    try:
        stylizer = load_stylizer(model, spec.runtime_options, device=device)
    except UserError as exc:
        results.put(("init_failed", wid, exc.with_flags(flag)))  # the parent prints it: flags, not fields
        return
    except Exception as exc:  # noqa: BLE001 - reported by the parent as one line instead of a worker traceback.
        results.put(("init_failed", wid, f"{device}: cannot load {model} ({type(exc).__name__}: {exc})"))
        return
    while (task := tasks.get()) is not None:
        index, job = task
        if claims is not None:
            claims[wid] = index
        results.put(("start", wid, index))
        results.put(("done", wid, index, outcome := run_job(stylizer, job, spec.file_options)))
        if outcome.retire:
            return  # a sticky CUDA error: the other workers take the remaining files
