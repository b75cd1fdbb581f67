"""Batch runs push their metrics to a real Pushgateway at shutdown."""

from __future__ import annotations

import time
import warnings

from prom_helpers import free_port, http_get, run_article_writer, samples, value


def test_shutdown_pushes_every_metric_to_the_pushgateway(make_tracer, pushgateway) -> None:
    tracer = make_tracer(pushgateway_url=pushgateway.url, pushgateway_job="article_batch",
                         grouping_key={"instance": "batch-1"})
    assert "pushed to" in tracer.tier("prometheus").describe()
    for fail in (False, False, True):
        run_article_writer(tracer, fail=fail)
    assert tracer.shutdown(timeout=10) == []
    status, _, body = http_get(pushgateway.url + "/metrics")
    found = samples(body.decode())
    group = {"job": "article_batch", "instance": "batch-1"}
    assert value(found, "workflow_runs_total", workflow="article_writer", status="ok", **group) == 2
    assert value(found, "workflow_runs_total", workflow="article_writer", status="error", **group) == 1
    assert value(found, "llm_tokens_total", model="gemini-1.5-flash", type="output", **group) == 3 * 730
    assert value(found, "workflow_duration_seconds_count", workflow="article_writer", **group) == 3
    # The gateway records when the group was last pushed successfully.
    pushed = value(found, "push_time_seconds", **group)
    assert pushed and abs(pushed - time.time()) < 60


def test_push_replaces_the_group_on_every_push(make_tracer, pushgateway) -> None:
    tracer = make_tracer(pushgateway_url=pushgateway.url, pushgateway_job="replaced", push_on_shutdown=False)
    tier = tracer.tier("prometheus")
    run_article_writer(tracer)
    tier.push()
    run_article_writer(tracer)
    tier.push()
    found = samples(http_get(pushgateway.url + "/metrics")[2].decode())
    assert value(found, "workflow_runs_total", workflow="article_writer", status="ok", job="replaced", instance="") == 2


def test_an_unreachable_pushgateway_cannot_hold_up_shutdown(make_tracer) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    tracer = make_tracer(pushgateway_url=dead, push_timeout=1.0)
    run_article_writer(tracer)
    started = time.monotonic()
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        late = tracer.shutdown(timeout=3)
    assert late == [] and time.monotonic() - started < 3
    assert tracer.health.plugin_errors[("prometheus", "on_shutdown")] == 1  # counted, not silent
