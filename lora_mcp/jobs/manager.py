"""The job manager: queues jobs on lanes, launches supervised children, tails their logs, reattaches after a restart.

State lives in SQLite and the job directory, never only in memory: several managers (the MCP server, the CLI) can
share one database. A queued job is claimed with a conditional update, so two managers never start it twice, and
a finished job is finalised the same way.
"""

from __future__ import annotations

import codecs
import json
import logging
import math
import shutil
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from lora_mcp.errors import InvalidInput, NotFound
from lora_mcp.jobs import events, records
from lora_mcp.jobs.executors import Executor, ExecutorUnavailable, executor_name, make_executor
from lora_mcp.jobs.executors.local import STARTUP_GRACE, pid_alive, read_child_pid, read_exit_code
from lora_mcp.jobs.kinds import KindHandler, LaunchRefused, LogParser, Outcome
from lora_mcp.jobs.models import JobError, JobKind, JobState, Phase, Progress
from lora_mcp.jobs.store import JobRecord, JobStore, new_job_id
from lora_mcp.jobs.supervisor import LOG_NAME
from lora_mcp.secrets import Redactor
from lora_mcp.settings import Settings

if TYPE_CHECKING:
    from lora_mcp.jobs.status import StatusParts

log = logging.getLogger(__name__)

READ_CHUNK = 1 << 20
PERSIST_EVERY = 0.5
REATTACH_TAIL_BYTES = 64 * 1024
WAIT_POLL = 0.05  # how often a waiting tool call looks at the in-memory progress
__all__ = ["STARTUP_GRACE", "JobManager", "pid_alive", "read_child_pid", "read_exit_code"]  # pid helpers: old home


@dataclass
class Watch:
    """In-memory tailing state of one running job."""

    parser: LogParser
    offset: int
    decoder: codecs.IncrementalDecoder = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace"))
    persisted_at: float = 0.0
    dirty: bool = False
    killed: bool = False
    announced: tuple[Any, ...] | None = None
    """(phase, step, total) of the last progress event; None before the first."""
    announced_at: float = -1e9
    seen: set[str] | None = None
    """Checkpoint and sample paths already announced (or left by an earlier run); None until first looked at."""


ChangeCallback = Callable[[JobRecord, Progress], Awaitable[None]]
PreLaunchHook = Callable[[JobRecord], list[str]]
"""Runs just before a GPU job's supervisor starts; returns lines saying what it did (they go to the log and status)."""


class JobManager:
    """Owns lanes, the queue and the running jobs of one state directory."""

    def __init__(
        self,
        settings: Settings,
        handlers: list[KindHandler],
        *,
        poll_interval: float = 0.1,
        cancel_grace_seconds: float = 30.0,
        before_gpu_launch: Sequence[PreLaunchHook] = (),
        executor: Executor | None = None,
        status_parts: Sequence[StatusParts] = (),
    ) -> None:
        self.settings = settings
        self.status_parts = list(status_parts)
        """What layers above the jobs layer add to every job status (`lora_mcp.jobs.status.EXTRA_FIELDS`)."""
        self.executor = executor or make_executor(settings.executor, settings)
        """Runs the children of jobs this manager launches (LORA_MCP_EXECUTOR); jobs keep the one that launched them."""
        self._executors: dict[str, Executor] = {self.executor.name: self.executor}
        self._executor_of: dict[str, Executor] = {}  # job id -> its executor, so a tick reads executor.json once
        self.before_gpu_launch = list(before_gpu_launch)
        self.store = JobStore(settings.db_path, settings.jobs_dir)
        self.redact = Redactor.from_environment(settings.secret_values())
        """Applied to every log line or message this manager hands out: the trainer may print a secret."""
        self.handlers = {h.kind: h for h in handlers}
        self.poll_interval = poll_interval
        self.cancel_grace_seconds = cancel_grace_seconds
        self.lanes: dict[str, list[str]] = {
            "gpu": [f"gpu:{g}" for g in settings.gpus],
            "cpu": ["cpu:0", "cpu:1"],
        }
        self._watches: dict[str, Watch] = {}
        self._tick_lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- public API -------------------------------------------------------------------------------------------

    def submit(
        self,
        kind: JobKind,
        params: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        resumed_from: str | None = None,
        prepare: Callable[[Path], None] | None = None,
        lane_kind: str | None = None,
    ) -> JobRecord:
        """Queue a job. `prepare(job_dir)` writes the job's inputs (e.g. a config copy) before it can start."""
        handler = self._handler(kind)
        if idempotency_key is not None and (existing := self.store.by_idempotency_key(idempotency_key)):
            return existing
        job_id = new_job_id(kind)
        job_dir = self.settings.jobs_dir / job_id
        job_dir.mkdir(parents=True)
        try:
            (job_dir / LOG_NAME).touch()
            if prepare is not None:
                prepare(job_dir)
            (job_dir / records.PARAMS_NAME).write_text(json.dumps(params, indent=2))
            # job.json last: a folder with one is a job that a rebuild of jobs.db brings back.
            job_file = records.JobFile(
                id=job_id,
                kind=kind,
                lane_kind=lane_kind or handler.lane_kind,
                params=params,
                idempotency_key=idempotency_key,
                resumed_from=resumed_from,
                created_at=time.time(),
            )
            records.write_job(job_dir, job_file)
            record = self.store.insert(
                id=job_id,
                kind=kind.value,
                lane_kind=job_file.lane_kind,
                job_dir=job_dir,
                params=params,
                idempotency_key=idempotency_key,
                resumed_from=resumed_from,
                created_at=job_file.created_at,
                event=(
                    events.QUEUED,
                    {"kind": kind.value, "lane_kind": job_file.lane_kind, "resumed_from": resumed_from},
                ),
            )
        except BaseException:
            shutil.rmtree(job_dir, ignore_errors=True)  # no orphan folder for a job that was never recorded
            raise
        if record.id != job_id:  # another caller with the same idempotency key got there first
            shutil.rmtree(job_dir, ignore_errors=True)
            return record
        self.dispatch()
        return self.store.get(job_id) or record  # dispatch may have started it already

    def get(self, job_id: str) -> JobRecord:
        job = self.store.get(job_id)
        if job is None:
            raise NotFound(
                f"No job with id {job_id!r}.", hint="Call list_jobs to see the known job ids.", field="job_id"
            )
        return job

    def queue_position(self, job: JobRecord) -> int | None:
        """1-based position among the queued jobs of its lane kind; None unless queued."""
        if job.state != JobState.QUEUED:
            return None
        ids = [j.id for j in self.store.queued(job.lane_kind)]
        return ids.index(job.id) + 1 if job.id in ids else None

    def cancel(self, job_id: str) -> JobRecord:
        """Drop a queued job, or ask a running one to stop (SIGINT, then SIGKILL after the grace period)."""
        job = self.get(job_id)
        if job.state == JobState.QUEUED:
            now = time.time()
            progress = job.progress.model_copy(update={"phase": Phase.DONE, "message": "cancelled"})
            if self.store.update(
                job_id,
                only_if_state=JobState.QUEUED,
                state=JobState.CANCELLED.value,
                cancel_requested_at=now,
                finished_at=now,
                progress=progress,
                event=(events.CANCELLED, {"kind": job.kind.value, "while": "queued"}),
            ):
                result = records.ResultFile(
                    state=JobState.CANCELLED,
                    finished_at=now,
                    exit_code=None,
                    error=None,
                    outputs={},
                    progress=progress,
                    cancel_requested_at=now,
                )
                records.write_result(job.job_dir, result)  # a queued job never reaches _finish
        elif job.state == JobState.RUNNING:
            if job.cancel_requested_at is None:
                now = time.time()
                self.store.update(job_id, cancel_requested_at=now)
                records.write_cancel_request(job.job_dir, now)
            self._signal(job, signal.SIGINT)
        return self.get(job_id)

    def tail(self, job_id: str, lines: int) -> list[str]:
        """The last `lines` lines of a job's log (from the file, so it works for finished jobs too)."""
        job = self.get(job_id)
        path = job.job_dir / LOG_NAME
        if not path.exists():
            return []
        size = path.stat().st_size
        window = min(size, max(64 * 1024, lines * 400))
        with open(path, "rb") as fh:
            fh.seek(size - window)
            text = fh.read().decode("utf-8", "replace")
        # A carriage-return repaint is only its last state to a reader.
        rows = [part.rsplit("\r", 1)[-1] for part in text.replace("\r\n", "\n").split("\n")]
        if window < size:
            rows = rows[1:]
        return self.redact.lines([r for r in rows if r.strip()][-lines:])

    def lineage_log(self, job_id: str) -> str:
        """The logs of a job and of the runs it resumed, oldest first (a resumed run continues their curve)."""
        chain: list[JobRecord] = []
        job: JobRecord | None = self.get(job_id)
        while job is not None and job not in chain and len(chain) < 100:
            chain.append(job)
            job = self.store.get(job.resumed_from) if job.resumed_from else None
        parts = []
        for record in reversed(chain):
            path = record.job_dir / LOG_NAME
            parts.append(path.read_text("utf-8", "replace") if path.exists() else "")
        return "\n".join(parts)

    async def wait(self, job_id: str, timeout: float, on_change: ChangeCallback | None = None) -> JobRecord:
        """Wait until the job is final or `timeout` passes, calling `on_change` whenever its progress moves."""
        deadline = anyio.current_time() + timeout
        last = None
        while True:
            # The store may wait on the tick thread's write; keep that off the event loop.
            job = await anyio.to_thread.run_sync(self.get, job_id)
            progress = self.live_progress(job)
            snapshot = (job.state, progress.phase, progress.step, progress.message)
            if on_change is not None and snapshot != last:
                await on_change(job, progress)
            last = snapshot
            if job.state.final or anyio.current_time() >= deadline:
                return job
            await anyio.sleep(min(WAIT_POLL, max(0.0, deadline - anyio.current_time())))

    def live_progress(self, job: JobRecord) -> Progress:
        """The freshest progress: in memory while this manager tails the job, else the stored one."""
        watch = self._watches.get(job.id)
        return watch.parser.progress if watch else job.progress

    # -- the loop ---------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Reattach to running jobs, then dispatch and tail in a background thread (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self.reattach()
        self._thread = threading.Thread(target=self._loop, name="lora-mcp-jobs", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop watching (jobs keep running under their supervisors) and close the store."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_interval):
            try:
                self.tick()
            except Exception:  # keep watching the other jobs; the next tick retries
                log.exception("job manager tick failed")

    def reattach(self) -> None:
        """Adopt jobs left running by an earlier server: keep tailing the live ones, finish the dead ones."""
        with self._tick_lock:
            for job in self.store.running():
                if job.id not in self._watches:
                    self._watches[job.id] = self._new_watch(job, reattaching=True)
                    log.info("reattached to job %s at log offset %d", job.id, job.log_offset)
        self.tick()

    def tick(self) -> None:
        """One pass: tail every running job, finish the ended ones, escalate cancels, start queued jobs."""
        with self._tick_lock:
            for job in self.store.running():
                watch = self._watches.get(job.id)
                if watch is None:  # launched by another manager, or before this one started
                    watch = self._watches[job.id] = self._new_watch(job, True)
                self._pump(job, watch)
                self._check_end(job, watch)
            self.dispatch()

    def dispatch(self) -> bool:
        """Start the oldest queued job of each free lane. True if anything started."""
        started = False
        with self._tick_lock:
            busy = {j.lane for j in self.store.running()}
            for lane_kind, lanes in self.lanes.items():
                free = [lane for lane in lanes if lane not in busy]
                for job in self.store.queued(lane_kind)[: len(free)]:
                    lane = free.pop(0)
                    if self.store.claim(job.id, lane, event=(events.STARTED, {"kind": job.kind.value})):
                        self._launch(self.get(job.id))
                        started = True
        return started

    # -- internals --------------------------------------------------------------------------------------------

    def _handler(self, kind: JobKind) -> KindHandler:
        try:
            return self.handlers[kind]
        except KeyError:
            raise InvalidInput(f"This server cannot run jobs of kind {kind.value!r}.") from None

    def executor_for(self, job: JobRecord) -> Executor:
        """The executor that launched `job` (recorded in its job dir; none recorded: local)."""
        executor = self._executor_of.get(job.id)
        if executor is None:
            name = executor_name(job.job_dir)
            if name not in self._executors:
                self._executors[name] = make_executor(name, self.settings)
            executor = self._executors[name]
            if (job.job_dir / records.LAUNCH_NAME).exists():  # launched: the choice is final, remember it
                self._executor_of[job.id] = executor
        return executor

    def _new_watch(self, job: JobRecord, reattaching: bool) -> Watch:
        if reattaching:
            self.executor_for(job).reattach(job)
        parser = self._handler(job.kind).make_parser(job)
        if reattaching and job.log_offset:
            # Rebuild the recent tail from just before the saved offset, then carry on from the offset itself.
            start = max(0, job.log_offset - REATTACH_TAIL_BYTES)
            with open(job.job_dir / LOG_NAME, "rb") as fh:
                fh.seek(start)
                parser.feed(fh.read(job.log_offset - start).decode("utf-8", "replace"))
            parser.progress = job.progress.model_copy()
        return Watch(parser=parser, offset=job.log_offset)

    def _launch(self, job: JobRecord) -> None:
        handler = self._handler(job.kind)
        on_gpu = bool(job.lane and job.lane.startswith("gpu:"))
        if on_gpu:
            # The hand-off first: the kind's launch checks (free GPU memory) must see what it freed.
            self._run_pre_launch_hooks(job)
        try:
            spec = handler.launch_spec(job, self.settings)
        except LaunchRefused as exc:
            log.warning("job %s refused at launch: %s", job.id, exc.error.message)
            self._finish(job, Outcome(JobState.FAILED, exc.error), None)
            return
        except Exception as exc:  # a broken launch must fail the job, never the manager loop
            log.exception("could not prepare job %s", job.id)
            self._finish(
                job,
                Outcome(
                    JobState.FAILED,
                    JobError(code="preflight", message=str(exc), hint="Fix the problem and start the job again."),
                ),
                None,
            )
            return
        self._executor_of[job.id] = self.executor
        try:
            launched = self.executor.launch(job, spec)
        except ExecutorUnavailable as exc:
            log.warning("job %s could not be launched: %s", job.id, exc.error.message)
            self._finish(job, Outcome(JobState.FAILED, exc.error), None)
            return
        launch = records.LaunchFile(spec.command, str(spec.cwd), job.lane, job.started_at, launched.supervisor_pid)
        records.write_launch(job.job_dir, launch)  # with job.json, what a rebuild of jobs.db needs to reattach
        progress = Progress(phase=Phase.STARTING, message="starting")
        self.store.update(job.id, supervisor_pid=launched.supervisor_pid, progress=progress)
        self._watches[job.id] = Watch(parser=handler.make_parser(job), offset=0)
        log.info("started job %s on %s: %s", job.id, job.lane, " ".join(spec.command))

    def _run_pre_launch_hooks(self, job: JobRecord) -> None:
        """Run the GPU pre-launch hooks; their lines go to the job's log (prefixed `lora-mcp:`) and launch notes."""
        notes: list[str] = []
        for hook in self.before_gpu_launch:
            try:
                notes.extend(hook(job))
            except Exception as exc:  # a hook is a courtesy to other GPU users: it must never stop the job
                log.exception("pre-launch hook failed for job %s", job.id)
                notes.append(f"pre-launch hook {getattr(hook, '__name__', 'hook')} failed: {exc}")
        if notes:
            with open(job.job_dir / LOG_NAME, "a", encoding="utf-8") as fh:
                fh.writelines(f"lora-mcp: {line}\n" for line in notes)
            records.write_launch_notes(job.job_dir, notes)

    def _pump(self, job: JobRecord, watch: Watch) -> bool:
        """Feed new log bytes to the parser; persist progress now and then. True if anything was read."""
        data = self.executor_for(job).read_log(job, watch.offset, READ_CHUNK)
        if data is None:
            return False
        if data:
            watch.offset += len(data)
            watch.parser.feed(watch.decoder.decode(data))
            watch.dirty = True
        now = time.monotonic()
        self._announce_progress(job, watch, now)
        if watch.dirty and now - watch.persisted_at >= PERSIST_EVERY:
            self._persist(job, watch)
        return bool(data)

    def _persist(self, job: JobRecord, watch: Watch) -> None:
        child_pid = self.executor_for(job).child_pid(job)
        self.store.update(job.id, log_offset=watch.offset, progress=watch.parser.progress, child_pid=child_pid)
        watch.persisted_at = time.monotonic()
        watch.dirty = False
        self._announce_artifacts(job, watch, self._handler(job.kind).outputs(job))

    def _announce_progress(self, job: JobRecord, watch: Watch, now: float) -> None:
        """Record a progress event when the phase changed, or the step moved and PROGRESS_EVERY has passed."""
        progress = watch.parser.progress
        key = (progress.phase, progress.step, progress.total_steps)
        if key == watch.announced:
            return
        same_phase = watch.announced is not None and watch.announced[0] == progress.phase
        if same_phase and now - watch.announced_at < events.PROGRESS_EVERY:
            return  # the next tick records it
        data = {"kind": job.kind.value, **events.progress_data(progress)}
        once = f"{progress.phase.value}:{progress.step}:{progress.total_steps}"  # another manager may tell it too
        self.store.add_event(job.id, events.PROGRESS, events.scrub(data, self.redact), key=once)
        watch.announced, watch.announced_at = key, now

    def _announce_artifacts(self, job: JobRecord, watch: Watch, outputs: dict[str, Any]) -> None:
        """Record an event for each checkpoint or sample in `outputs` not announced yet."""
        mapping = getattr(self._handler(job.kind), "artifact_events", events.ARTIFACT_EVENTS)
        if watch.seen is None:
            announced = self.store.events(job_id=job.id, types=tuple(set(mapping.values())), limit=100_000)
            watch.seen = {events.artifact_path(e.data) for e in announced}
            watch.seen |= events.preexisting(outputs, job.started_at or 0, mapping)
        for kind, found in events.new_artifacts(outputs, watch.seen, mapping):
            data = events.scrub({"kind": job.kind.value, **found}, self.redact)
            self.store.add_event(job.id, kind, data, key=events.artifact_path(data))

    def _check_end(self, job: JobRecord, watch: Watch) -> bool:
        ended = self.executor_for(job).poll(job)
        if ended is None:
            self._escalate(job, watch)
            return False
        # Drain what the child wrote last before judging it.
        while self._pump(job, watch):
            pass
        watch.parser.feed(watch.decoder.decode(b"", final=True))
        watch.parser.close()
        returncode = ended.returncode
        handler = self._handler(job.kind)
        outcome = handler.outcome(job, returncode, watch.parser, job.cancel_requested_at is not None)
        self._announce_progress(job, watch, math.inf)
        self._announce_artifacts(job, watch, outcome.outputs)
        self._finish(job, outcome, returncode, watch)
        return True

    def _escalate(self, job: JobRecord, watch: Watch) -> None:
        if job.cancel_requested_at is None or watch.killed:
            return
        if time.time() - job.cancel_requested_at >= self.cancel_grace_seconds:
            log.warning("job %s ignored SIGINT for %.0fs: killing it", job.id, self.cancel_grace_seconds)
            self._signal(job, signal.SIGKILL)
            watch.killed = True

    def _signal(self, job: JobRecord, signum: int) -> None:
        self.executor_for(job).signal(job, signum)

    def _finish(self, job: JobRecord, outcome: Outcome, returncode: int | None, watch: Watch | None = None) -> None:
        progress = watch.parser.progress if watch else job.progress
        message = {JobState.SUCCEEDED: "finished", JobState.CANCELLED: "cancelled"}.get(
            outcome.state, outcome.error.message if outcome.error else "failed"
        )
        progress = progress.model_copy(update={"phase": Phase.DONE, "message": message, "eta_seconds": None})
        finished_at = time.time()
        if self.store.update(
            job.id,
            only_if_state=JobState.RUNNING,
            state=outcome.state.value,
            finished_at=finished_at,
            exit_code=returncode,
            error=outcome.error,
            outputs=outcome.outputs,
            progress=progress,
            log_offset=watch.offset if watch else job.log_offset,
            event=(events.FINAL[outcome.state], self._final_event_data(job, outcome, returncode)),
        ):
            result = records.ResultFile(
                state=outcome.state,
                finished_at=finished_at,
                exit_code=returncode,
                error=outcome.error,
                outputs=outcome.outputs,
                progress=progress,
                cancel_requested_at=job.cancel_requested_at,
            )
            records.write_result(job.job_dir, result)
        self._watches.pop(job.id, None)
        self.executor_for(job).release(job)
        self._executor_of.pop(job.id, None)
        log.info("job %s ended: %s (rc=%s)", job.id, outcome.state.value, returncode)

    def _final_event_data(self, job: JobRecord, outcome: Outcome, returncode: int | None) -> dict[str, Any]:
        data = {
            "kind": job.kind.value,
            "exit_code": returncode,
            "error": outcome.error.model_dump() if outcome.error else None,
            "outputs": outcome.outputs,
        }
        return events.scrub(data, self.redact)
