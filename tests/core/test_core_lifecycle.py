"""Flush at interpreter exit and on SIGTERM, bounded by shutdown_timeout."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

SCRIPT = textwrap.dedent('''
    import sys, time, tiertrace

    class SlowWriter:
        """Writes what it saw only at shutdown, like a tier with a queue."""
        def __init__(self):
            self.seen = []
        @tiertrace.hookimpl
        def on_workflow_end(self, workflow):
            self.seen.append(workflow.name)
        @tiertrace.hookimpl
        def on_shutdown(self, timeout):
            time.sleep(float(sys.argv[3]))
            with open(sys.argv[1], "w") as f:
                f.write(",".join(self.seen))

    tracer = tiertrace.configure({"observability": {"shutdown_timeout": 1.0}})
    tracer.register(SlowWriter(), name="slow")
    with tracer.workflow("queued"):
        pass
    if sys.argv[2] == "wait":
        print("ready", flush=True)
        time.sleep(60)
''')


def _start(tmp_path, mode: str, delay: float) -> tuple[subprocess.Popen, str]:
    out = tmp_path / "flushed.txt"
    script = tmp_path / "app.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "TIERTRACE_LOAD_PLUGINS": ""}
    proc = subprocess.Popen([sys.executable, str(script), str(out), mode, str(delay)], env=env,
                            stdout=subprocess.PIPE, text=True)
    return proc, str(out)


def test_records_are_flushed_at_exit(tmp_path):
    proc, out = _start(tmp_path, "exit", 0.1)
    assert proc.wait(timeout=30) == 0
    assert open(out).read() == "queued"


def test_sigterm_flushes_then_terminates(tmp_path):
    proc, out = _start(tmp_path, "wait", 0.1)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == -signal.SIGTERM  # still dies of SIGTERM, as before
    assert open(out).read() == "queued"


def test_exit_is_bounded_when_a_tier_overruns(tmp_path):
    proc, out = _start(tmp_path, "exit", 30)
    started = time.monotonic()
    proc.wait(timeout=30)
    assert time.monotonic() - started < 10  # shutdown_timeout is 1 s; the slow tier is abandoned
    assert not os.path.exists(out)
