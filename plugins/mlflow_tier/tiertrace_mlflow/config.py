"""The ``observability.mlflow`` section, and where the data goes.

Importing this module does not import mlflow: the core reads ``config_class``
while it lists plugins.
"""

from __future__ import annotations

import os
import warnings
from typing import Any, Optional
from urllib.parse import urlparse

import attrs

# InvalidValue is what the core turns into 'key.path: value problem' lines.
from tiertrace.config import InvalidValue, env_str, in_range, positive

__all__ = ["MlflowConfig", "Destination", "resolve_destination", "RESERVED_TAG_PREFIXES"]

#: Tag namespaces the tier writes itself; ``run_tags`` may not use them.
RESERVED_TAG_PREFIXES = ("tiertrace.", "mlflow.")

#: The embedded default: a SQLite store under ./mlruns, no server, no setting.
DEFAULT_FOLDER = "mlruns"


def _not_empty(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and not value.strip():
        raise InvalidValue(attribute.name, value, "must not be empty")


def _run_tags(_inst: Any, attribute: attrs.Attribute, value: dict[str, str]) -> None:
    for key in value:
        if not key.strip():
            raise InvalidValue(attribute.name, value, "has an empty tag name")
        if key.startswith(RESERVED_TAG_PREFIXES):
            raise InvalidValue(
                attribute.name, value,
                f"uses the reserved tag {key!r} (names starting with "
                f"{' or '.join(RESERVED_TAG_PREFIXES)} are written by tiertrace and MLflow)",
            )


@attrs.define(frozen=True)
class MlflowConfig:
    """Settings of the MLflow tier (``observability.mlflow``)."""

    tracking_uri: Optional[str] = attrs.field(
        factory=env_str("MLFLOW_TRACKING_URI"), validator=_not_empty
    )
    """Where runs go: ``http(s)://`` for a tracking server, ``sqlite:///path.db``,
    a database URI, or a folder. Default: ``MLFLOW_TRACKING_URI``, else a SQLite
    store at ``./mlruns/mlflow.db`` (artifacts in ``./mlruns/artifacts``). A
    folder (``./mlruns``, or the seed's ``file://./mlruns``) becomes a SQLite
    store inside that folder unless ``MLFLOW_ALLOW_FILE_STORE=true`` asks for
    MLflow's legacy file store there."""
    experiment_name: str = attrs.field(
        factory=env_str("MLFLOW_EXPERIMENT_NAME", default="tiertrace"), validator=_not_empty
    )
    """The experiment that holds the runs (created if missing). Default:
    ``MLFLOW_EXPERIMENT_NAME``, else ``tiertrace``."""
    artifact_location: Optional[str] = attrs.field(default=None, validator=_not_empty)
    """Artifact root for the experiment when tiertrace creates it (ignored for
    an existing experiment). Default: the store's own default; for the embedded
    default ``./mlruns/artifacts``."""
    capture_content: bool = True
    """Log prompts, responses, tool arguments and results, workflow inputs and
    optimized programs (already redacted by the core). False keeps only names,
    tokens, costs, timings and status."""
    run_tags: dict[str, str] = attrs.field(factory=dict, validator=_run_tags)
    """Tags added to every run this tier creates (``{env: prod}``)."""
    queue_size: int = attrs.field(default=10_000, validator=in_range(1, 100_000))
    """Records held for the background writer; when full, new records are dropped and counted."""
    flush_timeout: float = attrs.field(default=5.0, validator=positive)
    """Longest time (seconds) shutdown waits for queued records to be written
    (never longer than the core's ``shutdown_timeout``); what is left is counted
    as dropped. ``tracer.flush(timeout)`` waits as long as it is asked to."""
    traces: bool = False
    """Also log each workflow as an MLflow trace (spans for nodes, LLM and tool
    calls), linked to the workflow's run and with the same trace id."""


@attrs.define(frozen=True)
class Destination:
    """A resolved place to write: the MLflow tracking URI and the artifact root to use."""

    tracking_uri: str
    artifact_location: Optional[str]
    folder: Optional[str] = None
    """Local folder to create before the store opens (None for remote stores)."""
    note: Optional[str] = None
    """Why the configured URI was read differently (warned once)."""

    @property
    def is_http(self) -> bool:
        return self.tracking_uri.startswith(("http://", "https://"))

    @property
    def sqlite_path(self) -> Optional[str]:
        """The database file of a ``sqlite:///`` URI (None for other stores)."""
        if not self.tracking_uri.startswith("sqlite:///"):
            return None
        return os.path.abspath(self.tracking_uri[len("sqlite:///"):].split("?", 1)[0])

    @property
    def ui_hint(self) -> str:
        if self.is_http:
            return self.tracking_uri
        return f"mlflow ui --backend-store-uri {self.tracking_uri}"


def _sqlite_in(folder: str) -> str:
    return "sqlite:///" + os.path.join(folder, "mlflow.db")


def _allow_file_store() -> bool:
    return os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").strip().lower() in ("1", "true", "yes")


def _local_folder(uri: str) -> Optional[str]:
    """The folder a ``file:`` URI or a plain path names, or None for other URIs."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        if parsed.netloc and parsed.netloc not in ("localhost",):
            # file://./mlruns parses as host "." and path "/mlruns": the author
            # meant the relative folder ./mlruns.
            return os.path.abspath(parsed.netloc + parsed.path)
        return os.path.abspath(parsed.path)
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and os.name == "nt"):
        return os.path.abspath(uri)
    return None


def resolve_destination(config: MlflowConfig) -> Destination:
    """Turn the configured URI into the one MLflow is given. Does no I/O."""
    uri = config.tracking_uri
    if uri is None:
        folder = os.path.abspath(DEFAULT_FOLDER)
        return Destination(
            _sqlite_in(folder),
            config.artifact_location or os.path.join(folder, "artifacts"),
            folder,
        )
    folder = _local_folder(uri)
    if folder is None:
        if uri.startswith("sqlite:///"):
            db_path = uri[len("sqlite:///"):]
            return Destination(uri, config.artifact_location, os.path.dirname(os.path.abspath(db_path)) or None)
        return Destination(uri, config.artifact_location)
    odd_file_uri = uri.startswith("file:") and not uri.startswith(("file:///", "file://localhost/"))
    if _allow_file_store():
        note = (f"tracking_uri {uri!r} read as the folder {folder!r} (MLflow file store)"
                if odd_file_uri else None)
        return Destination("file://" + folder, config.artifact_location, folder, note)
    note = (
        f"tracking_uri {uri!r} names the folder {folder!r}; MLflow's file store is "
        f"deprecated, so tiertrace writes a SQLite store there ({_sqlite_in(folder)}). "
        "Set MLFLOW_ALLOW_FILE_STORE=true to use the file store instead."
    )
    return Destination(_sqlite_in(folder), config.artifact_location or os.path.join(folder, "artifacts"),
                       folder, note)


_warned: set[str] = set()


def warn_once(message: str) -> None:
    if message in _warned:
        return
    _warned.add(message)
    warnings.warn(f"tiertrace mlflow: {message}", UserWarning, stacklevel=3)
