"""The background writer: one thread, one bounded queue, all MLflow I/O.

Hooks run on the workflow's thread and only call :meth:`Writer.submit`
(a lock, an append, a notify). The writer thread turns each queued record
into a few backend calls (:class:`Backend.plan`) and runs them in order.

When the backend is down the writer keeps the record it is working on and
retries with backoff for as long as the process lives; records that arrive
meanwhile wait in the queue (and are dropped, counted, once it is full). A
call the backend refuses for good (a bad value) is skipped and counted.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any, Callable, Optional, Protocol, Sequence

__all__ = ["Writer", "Backend", "Step"]

log = logging.getLogger("tiertrace.mlflow")

Step = Callable[[], None]

#: The item ``close()`` queues last; not a record.
CLOSING = "shutdown"


class Backend(Protocol):
    """What the writer needs from the thing that talks to MLflow."""

    def connect(self) -> None:
        """Open the store (import mlflow, find or create the experiment). May raise."""

    def plan(self, kind: str, record: Any) -> Sequence[Step]:
        """The backend calls for one record, in order. Runs on the writer thread."""

    def reachable(self) -> bool:
        """False when the backend cannot be reached at all (a server that is down)."""

    def permanent(self, exc: BaseException) -> bool:
        """True when retrying ``exc`` cannot help (the backend refused the value)."""


class Writer:
    """A daemon thread draining a bounded queue of ``(kind, record)`` into a :class:`Backend`."""

    #: Retries of a call that fails while the backend is reachable (a lock, a hiccup).
    MAX_ATTEMPTS_WHILE_UP = 4
    BACKOFF_START_S = 0.2
    BACKOFF_MAX_S = 2.0  # a /health probe every 2 s at most while the backend is down

    def __init__(
        self,
        backend: Backend,
        queue_size: int,
        on_drop: Callable[[int, str], None],
        name: str = "tiertrace-mlflow-writer",
    ):
        self._backend = backend
        self._queue_size = queue_size
        self._on_drop = on_drop
        self._queue: collections.deque[tuple[str, Any]] = collections.deque()
        self._cond = threading.Condition(threading.Lock())  # a plain lock: cheaper than the default RLock
        # Items queued and items done (written, skipped or discarded) since the start:
        # a flush waits for what was queued before it, not for records that keep coming.
        self._queued = 0
        self._done = 0
        self._current: Optional[str] = None  # kind of the item being written
        self._closing = False  # no new records accepted
        self._abandon = threading.Event()  # stop retrying, exit
        self._connected = False
        self.outage_started: Optional[float] = None
        """Monotonic time the backend became unreachable (None while it is up)."""
        self.written = 0
        self.last_error: Optional[str] = None
        self._warned: set[str] = set()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # -- the workflow's side ------------------------------------------------------

    def submit(self, kind: str, record: Any, *, always: bool = False) -> bool:
        """Queue one record; drop it (counted) when the queue is full. Never blocks.

        ``always`` queues past the bound: for the end of a run whose start was
        queued, so that no run is left open. There is at most one such item per
        open run, so the queue stays bounded. Returns whether it was queued.
        """
        with self._cond:
            if self._closing:
                dropped, reason = True, "after_shutdown"
            elif len(self._queue) >= self._queue_size and not always:
                dropped, reason = True, "queue_full"
            else:
                dropped, reason = False, ""
                self._queue.append((kind, record))
                self._queued += 1
                if len(self._queue) == 1:  # the writer may be waiting; otherwise it is busy
                    self._cond.notify_all()
        if dropped:
            self._on_drop(1, reason)
        return not dropped

    @property
    def closed(self) -> bool:
        return self._closing

    @property
    def pending(self) -> int:
        with self._cond:
            return self._queued - self._done

    def flush(self, timeout: float) -> bool:
        """Wait until everything queued so far is written. False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            target = self._queued
            while self._done < target:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self, timeout: float) -> bool:
        """Flush within ``timeout``, then stop; what is still unwritten is counted as dropped.

        The last item is ``("shutdown", None)``: the backend's chance to close
        what is still open (it is not a record and never counted)."""
        with self._cond:
            self._closing = True
            self._queue.append((CLOSING, None))
            self._queued += 1
            self._cond.notify_all()
        done = self.flush(timeout)
        self._abandon.set()
        with self._cond:
            left = sum(1 for kind, _ in self._queue if kind != CLOSING)
            if self._current not in (None, CLOSING):
                left += 1
            self._queue.clear()
            self._done = self._queued
            self._cond.notify_all()
        if left:
            self._on_drop(left, "shutdown")
        return done

    # -- the writer thread ---------------------------------------------------------

    def _run(self) -> None:
        # Open the store right away: importing mlflow and creating a new SQLite
        # schema take seconds, better spent while the workflow runs.
        self._connect()
        while not self._abandon.is_set():
            with self._cond:
                while not self._queue and not self._abandon.is_set():
                    self._cond.wait(0.5)
                if self._abandon.is_set():
                    return
                kind, record = self._queue.popleft()
                self._current = kind
            try:
                written = self._write(kind, record)
            except Exception as exc:  # a bug in planning must not kill the writer
                self.last_error = f"{type(exc).__name__}: {exc}"
                self._warn_once("plan", f"could not translate a {kind} record: {self.last_error}")
                written = False
            with self._cond:
                if self._abandon.is_set():
                    return  # close() already counted this record
                self._current = None
                self._done += 1
                self._cond.notify_all()
            if kind == CLOSING:
                continue
            if written:
                self.written += 1
            else:
                self._on_drop(1, "rejected")

    def _write(self, kind: str, record: Any) -> bool:
        """Connect if needed, plan, and run each call with retries. False if any call was skipped."""
        if not self._connect():
            return False
        steps = self._backend.plan(kind, record)
        ok = True
        for index, step in enumerate(steps):
            # Probe before the first call of a record: a call to a server that is
            # down sits in MLflow's own HTTP retries for minutes before it fails.
            ok = self._retry(step, probe=index == 0) and ok
        return ok

    def _connect(self) -> bool:
        if not self._connected:
            self._connected = self._retry(self._backend.connect, probe=True)
        return self._connected

    def _retry(self, step: Step, probe: bool) -> bool:
        backoff = self.BACKOFF_START_S
        failures_while_up = 0
        check = probe or self.outage_started is not None
        while not self._abandon.is_set():
            if check and not self._backend.reachable():
                self._down()
                self._abandon.wait(backoff)
                backoff = min(backoff * 2, self.BACKOFF_MAX_S)
                continue
            try:
                step()
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                if self._backend.permanent(exc):
                    self._warn_once("refused", f"MLflow refused a write, skipped: {self.last_error}")
                    return False
                check = True
                if self._backend.reachable():
                    failures_while_up += 1
                    if failures_while_up >= self.MAX_ATTEMPTS_WHILE_UP:
                        self._warn_once("failed", f"a write failed {failures_while_up} times, "
                                                  f"skipped: {self.last_error}")
                        return False
                self._abandon.wait(backoff)
                backoff = min(backoff * 2, self.BACKOFF_MAX_S)
                continue
            if self.outage_started is not None:
                log.warning("tiertrace mlflow: backend reachable again after %.1f s; writing "
                            "the queued records", time.monotonic() - self.outage_started)
                self.outage_started = None
            return True
        return False

    def _down(self) -> None:
        self.last_error = "backend unreachable"
        if self.outage_started is None:
            self.outage_started = time.monotonic()
            log.warning("tiertrace mlflow: backend unreachable; retrying in the background, "
                        "records wait in the queue (%d queued)", self.pending)

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning("tiertrace mlflow: %s (further such errors are only counted)", message)
