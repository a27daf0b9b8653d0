"""The Ray executor: the files of a batch on Ray actors across a cluster (``stylize-video ... --cluster ray``).

One actor per GPU, or per ``--cpus-per-worker`` CPUs on nodes without GPUs. The artifact's bytes go into Ray's
object store once (``ray.put``) and every actor loads them from there, so no node needs the artifact on its disk.
Inputs and outputs are paths every node sees (a shared filesystem); each output is written by
:func:`inference.app.convert.stylize_file` through a hidden temporary file renamed into place.

Scheduling is dynamic and longest first: the largest inputs start first and each actor takes the next file when it
finishes one, so a slow file does not hold up a queue behind it. A file whose actor dies (process killed, node
lost) is retried on another actor up to ``retries`` times, after the dead attempt's temporary file is removed; a
replacement actor is started where the cluster has room. A file that fails by itself (a broken video) is not
retried: it would fail again.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inference.app.argtypes import flag
from inference.app.jobs import Job, Outcome, Report, load_stylizer, run_job, stale_temporaries
from inference.app.ray_address import check_reachable, join_failed, ray_messages_hidden
from inference.core.errors import OptionError, Terminated, UserError
from inference.core.memory_file import bytes_as_path

if TYPE_CHECKING:
    from inference.app.file_options import FileOptions
    from inference.engine.options import RuntimeOptions

log = logging.getLogger("inference")

_START_S = 300.0  # How long the run waits for a first (or a replacement) actor before it gives up on the rest.
_KILL_S = 10.0  # How long close() waits for killed actors to be gone before it removes their temporary files.


def require_ray() -> None:
    """Raise the one-line error naming the extra when Ray is not installed."""
    try:
        import ray  # noqa: F401
    except ImportError:
        raise OptionError("cluster", "ray needs Ray: pip install 'styletrain[cluster]'") from None


def actor_device(gpu_ids: list) -> str:
    """The device of an actor that Ray gave ``gpu_ids`` (Ray sets ``CUDA_VISIBLE_DEVICES`` to them, so its GPU is
    the first visible one inside the actor): ``"cuda"``, or ``"cpu"`` without a GPU."""
    return "cuda" if gpu_ids else "cpu"


class _Worker:
    """The actor: loads the artifact once from the object store's bytes, then stylizes one file per call."""

    def __init__(
        self, artifact: bytes, runtime_options: RuntimeOptions, file_options: FileOptions, cpus: int, cwd: str
    ):
        import ray

        from inference.app.console import setup_logging
        from inference.core.devices import bind_worker

        setup_logging(quiet=True)
        self.name, self.error = f"worker@{ray.util.get_node_ip_address()}", ""
        try:
            os.chdir(cwd)  # Relative paths mean what they mean on the driver (the same shared filesystem).
        except OSError:
            self.error = (
                f"{self.name}: the folder {cwd} is missing on this node; inputs and -o must be on a filesystem "
                "every node sees, at the same path"
            )
            return
        gpus = ray.get_runtime_context().get_accelerator_ids().get("GPU", [])
        self.device = actor_device(gpus)
        # As the local pool's workers: its GPU for torch, NVDEC and NVENC, and its CPUs for torch, x264 and the
        # decoder (a GPU actor left at every host core oversubscribes the node once several share it).
        bind_worker(self.device, cpus)
        self.name = f"{self.device}@{ray.util.get_node_ip_address()}"
        self.file_options = file_options
        try:
            with bytes_as_path(artifact, suffix=".safetensors") as path:  # loading wants a path
                self.stylizer = load_stylizer(path, runtime_options, device=self.device)
        except UserError as exc:
            # Returned by ready(): a bad option is the user's, not a crash; stylize-video prints it (flags, not fields).
            self.error = f"{self.name}: {exc.with_flags(flag)}"

    def ready(self) -> tuple[str, str]:
        """``(worker name, error)``; the error is ``""`` when the model loaded."""
        return self.name, self.error

    def run(self, job: Job) -> Outcome:
        return run_job(self.stylizer, job, self.file_options, device=self.name)


class RayExecutor:
    """Runs jobs on Ray actors (see :class:`inference.app.jobs.Executor`).

    Args:
        model: The artifact; read here and shipped through the object store.
        runtime_options: The workers' :class:`~inference.engine.options.RuntimeOptions` (each sets its ``device``).
        file_options: How each file is converted.
        address: ``ray.init`` address (``"auto"``, ``"ray://head:10001"``); ``None``: ``$RAY_ADDRESS``, else a
            local instance. An already initialised Ray (a test, a notebook) is used as it is.
        retries: Times a file is redone when its actor dies.
        cpus_per_worker: CPUs per actor on nodes without GPUs (default 1).
        max_workers: At most this many actors (the number of files).
        quiet: Print errors only.
    """

    def __init__(
        self,
        model: str,
        runtime_options: RuntimeOptions,
        file_options: FileOptions,
        *,
        address: str | None = None,
        retries: int = 2,
        cpus_per_worker: int | None = None,
        max_workers: int | None = None,
        quiet: bool = False,
    ) -> None:
        self.model, self.runtime_options, self.file_options = model, runtime_options, file_options
        self.address, self.retries, self.quiet = address, retries, quiet
        self.cpus = cpus_per_worker or 1
        self.max_workers = max_workers
        self.gpus = False
        self._owns_ray = False
        self._actor_cls: Any = None
        self._artifact: Any = None
        self.pool: _Pool | None = None

    def start(self) -> None:
        """Join or start Ray, put the artifact in the object store, start the actors and wait for a first one."""
        import ray

        if not ray.is_initialized():
            check_reachable(self.address)  # Seconds, not Ray's minutes, when nothing answers there.
            handler = signal.getsignal(signal.SIGTERM)
            try:
                with ray_messages_hidden():
                    ray.init(address=self.address, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
            except ConnectionError as exc:
                raise join_failed(self.address, str(exc)) from None
            except (ValueError, RuntimeError) as exc:
                address = self.address or os.environ.get("RAY_ADDRESS", "")
                raise OptionError("ray_address", f"{address}: {exc}") from None
            finally:
                # ray.init installs its own SIGTERM handler (a bare exit); keep ours, which cleans up like Ctrl-C.
                if handler is not None and threading.current_thread() is threading.main_thread():
                    signal.signal(signal.SIGTERM, handler)
            self._owns_ray = True
        self._artifact = ray.put(Path(self.model).read_bytes())
        slots = self._slots()
        actor_options: dict[str, Any] = {"num_cpus": self.cpus, "max_restarts": 0}
        if self.gpus:
            actor_options["num_gpus"] = 1
        self._actor_cls = ray.remote(_Worker).options(**actor_options)
        self.pool = _Pool(self._new_actor, slots, self.retries)
        self.pool.wait_first()

    def _new_actor(self) -> Any:
        return self._actor_cls.remote(self._artifact, self.runtime_options, self.file_options, self.cpus, os.getcwd())

    def _slots(self) -> int:
        """How many actors the cluster holds: one per GPU, else per ``cpus`` CPUs of each node, at most the files."""
        import ray

        nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
        gpus = sum(int(r.get("GPU", 0)) for r in nodes)
        self.gpus = gpus > 0
        slots = gpus or sum(int(r.get("CPU", 0)) // self.cpus for r in nodes)
        if not slots:
            largest = max((int(r.get("CPU", 0)) for r in nodes), default=0)
            raise OptionError(
                "cpus_per_worker", f"{self.cpus}: no node of the Ray cluster has that many (largest: {largest})"
            )
        return min(slots, self.max_workers or slots)

    def run(self, tasks: list[tuple[int, Job]], report: Report) -> None:
        """Stylize ``tasks`` longest first, calling ``report(index, outcome)`` as each file finishes."""
        assert self.pool is not None, "start() first"
        try:
            _Schedule(self.pool, tasks, report, self.retries).run()
        except KeyboardInterrupt as exc:
            # Ray's blocking calls turn any exception from a signal handler into a plain KeyboardInterrupt; our
            # SIGTERM handler ignores further SIGTERMs once it has fired, which tells the two apart.
            if not isinstance(exc, Terminated) and signal.getsignal(signal.SIGTERM) is signal.SIG_IGN:
                raise Terminated from None
            raise

    def close(self) -> None:
        """Stop the actors; remove what a killed attempt left; shut Ray down if this run started it."""
        import ray

        if self.pool is not None:
            self.pool.kill_all()
            self.pool = None
        if self._owns_ray and ray.is_initialized():
            ray.shutdown()


class _Pool:
    """The actors: starting (model loading), idle, or busy with one file; replacements for those that die."""

    def __init__(self, make: Any, target: int, retries: int) -> None:
        self.make, self.target = make, target
        self.replacements = target * retries  # A node that keeps killing its actors must not spawn them forever.
        self.starting: dict[Any, Any] = {}  # ready() ref -> actor
        self.idle: list[tuple[Any, str]] = []  # (actor, name)
        self.busy: dict[Any, tuple[Any, str, int, Job]] = {}  # run() ref -> (actor, name, task index, job)
        for _ in range(target):
            self._spawn()

    def _spawn(self) -> None:
        actor = self.make()
        self.starting[actor.ready.remote()] = actor

    def started(self, ref: Any) -> None:
        """A ``ready()`` ref finished: the actor joins the idle ones, or the run stops on a load error.

        Raises:
            UserError: The model does not load on that worker (every worker loads the same model and options).
        """
        import ray

        actor = self.starting.pop(ref)
        try:
            name, error = ray.get(ref)
        except ray.exceptions.RayActorError as exc:
            if getattr(exc, "actor_init_failed", False):  # The constructor raised: every actor's would.
                raise UserError(f"a Ray worker could not load the model: {_first_line(exc)}") from None
            self.lost()
            return
        if error:
            raise UserError(error)
        self.idle.append((actor, name))

    def wait_first(self) -> None:
        """Wait until one actor is ready (a bad model or option fails here, before any output folder exists)."""
        import ray

        while not self.idle:
            done, _ = ray.wait(list(self.starting), num_returns=1, timeout=_START_S)
            if not done:
                raise UserError(f"no Ray worker started within {_START_S:.0f}s (cluster: {ray.cluster_resources()})")
            self.started(done[0])

    def lost(self) -> None:
        """An actor died: start a replacement while the budget lasts (it waits for room on the cluster)."""
        if self.replacements > 0:
            self.replacements -= 1
            self._spawn()

    def kill_all(self) -> None:
        """Kill every actor; once the busy ones are gone, remove the temporary files their files had begun."""
        import ray

        for actor in [a for a, *_ in self.busy.values()] + [a for a, _ in self.idle] + list(self.starting.values()):
            ray.kill(actor, no_restart=True)
        if self.busy:
            ray.wait(list(self.busy), num_returns=len(self.busy), timeout=_KILL_S)
        for *_, job in self.busy.values():
            for tmp in stale_temporaries(job.dst):
                tmp.unlink(missing_ok=True)
        self.starting, self.idle, self.busy = {}, [], {}


class _Schedule:
    """Hands files to idle actors, longest first, and redoes those whose actor died."""

    def __init__(self, pool: _Pool, tasks: list[tuple[int, Job]], report: Report, retries: int) -> None:
        self.pool, self.report, self.retries = pool, report, retries
        self.jobs = dict(tasks)
        self.queue = deque(sorted(self.jobs, key=lambda i: -_input_size(self.jobs[i].src)))
        self.attempts = dict.fromkeys(self.jobs, 0)

    def run(self) -> None:
        try:
            self._loop()
        finally:
            self._sweep()

    def _sweep(self) -> None:
        """Remove what attempts on dead actors wrote after their first clean-up.

        A lost node's worker processes outlive the actor's death notice by a moment and may still create their
        temporary output after :meth:`_died` removed it. Once the schedule ends no attempt of this run is writing,
        so every temporary left beside a retried file is such a leftover.
        """
        for index, attempts in self.attempts.items():
            if attempts:
                for tmp in stale_temporaries(self.jobs[index].dst):
                    tmp.unlink(missing_ok=True)

    def _loop(self) -> None:
        import ray

        while self.queue or self.pool.busy:
            while self.queue and self.pool.idle:
                actor, name = self.pool.idle.pop(0)
                index = self.queue.popleft()
                job = self.jobs[index]
                self.pool.busy[actor.run.remote(job)] = (actor, name, index, job)
            if not self.pool.busy and not self.pool.starting:
                return self._give_up("every Ray worker died")
            refs = list(self.pool.busy) + list(self.pool.starting)
            done, _ = ray.wait(refs, num_returns=1, timeout=None if self.pool.busy else _START_S)
            if not done:
                return self._give_up(f"no Ray worker was free within {_START_S:.0f}s")
            if done[0] in self.pool.starting:
                self.pool.started(done[0])
            else:
                self._finish(done[0])
        return None

    def _finish(self, ref: Any) -> None:
        import ray

        actor, name, index, job = self.pool.busy.pop(ref)
        try:
            outcome = ray.get(ref)
        except ray.exceptions.RayActorError as exc:
            ray.kill(actor, no_restart=True)  # An unreachable actor that comes back must not write this file too.
            self._died(index, job, name, exc)
            return
        except ray.exceptions.RayError as exc:  # The call itself failed: report it, keep the actor.
            outcome = Outcome("failed", f"{job.src}: {_first_line(exc)}", device=name)
        if outcome.retire:  # A sticky CUDA error: this actor's context is broken; a fresh one.
            ray.kill(actor, no_restart=True)
            self.pool.lost()
        else:
            self.pool.idle.append((actor, name))
        self.report(index, outcome)

    def _died(self, index: int, job: Job, name: str, exc: Exception) -> None:
        for tmp in stale_temporaries(job.dst):
            tmp.unlink(missing_ok=True)  # What the dead attempt had begun; the retry starts its own.
        self.pool.lost()
        self.attempts[index] += 1
        if self.attempts[index] <= self.retries:
            log.warning(
                "%s: its worker %s died (%s); redoing it elsewhere (retry %d of %d)",
                job.src, name, type(exc).__name__, self.attempts[index], self.retries,
            )  # fmt: skip
            self.queue.appendleft(index)
        else:
            message = (
                f"{job.src}: its worker died {self.attempts[index]} times while stylizing it (--retries {self.retries})"
            )
            self.report(index, Outcome("failed", message, device=name))

    def _give_up(self, why: str) -> None:
        while self.queue:
            index = self.queue.popleft()
            self.report(index, Outcome("failed", f"{self.jobs[index].src}: not stylized: {why}"))


def _input_size(src: Path) -> int:
    """Bytes of an input (a folder of frames: all its files), the measure of "longest" for scheduling."""
    try:
        if src.is_dir():
            return sum(p.stat().st_size for p in src.iterdir() if p.is_file())
        return src.stat().st_size
    except OSError:
        return 0


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return " ".join(lines[-1].split())[:300] if lines else type(exc).__name__
