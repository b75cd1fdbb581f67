"""A worker process for test_multiprocess.py: runs workflows with the tier in multiprocess mode.

argv: name runs port (port 0: no standalone server). Prints "ready <pid>" once its runs are
done and one workflow is left open, then waits for a line on stdin: "clean" ends the open
workflow and shuts the tracer down; "die" exits at once, as a killed worker would.
"""

from __future__ import annotations

import os
import sys
import warnings

import tiertrace

from prom_helpers import run_article_writer


class Broken:
    @tiertrace.hookimpl
    def on_node_end(self, node):
        raise ValueError("boom")


def main() -> None:
    name, runs, port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    settings = {"start_server": port > 0, "port": port}
    tracer = tiertrace.configure({"observability": {"prometheus": settings}}, set_default=False)
    if name == "b":
        tracer.register(Broken(), name="broken")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(runs):
            run_article_writer(tracer, fail=(name == "b" and i == 0))
    open_run = tracer.workflow("long_running")
    open_run.__enter__()
    print(f"ready {os.getpid()}", flush=True)
    command = sys.stdin.readline().strip()
    if command == "clean":
        open_run.__exit__(None, None, None)
        tracer.shutdown(timeout=5)
        print("done", flush=True)
    else:
        os._exit(0)


if __name__ == "__main__":
    main()
