"""Where MLflow records go: the tracking URI, the HTTP client's settings, whether the store takes them, a client."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DEFAULT_EXPERIMENT = "mergan"  # where a run or a sweep goes when neither a flag nor MLFLOW_EXPERIMENT_NAME names one
# MLflow's HTTP client retries for minutes by default (7 retries, backoff factor 2, 120 s timeout).
# A run keeps its records in its folder meanwhile, so a failing server should be noticed in seconds.
HTTP_ENV_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}


def configure_http_client() -> None:
    """Set short MLflow HTTP retries/timeouts (``HTTP_ENV_DEFAULTS``) unless the user set them."""
    for name, value in HTTP_ENV_DEFAULTS.items():
        os.environ.setdefault(name, value)


def resolve_tracking_uri(uri: str | None = None) -> str:
    """``uri``, else ``MLFLOW_TRACKING_URI``, else ``sqlite:///<cwd>/mlflow.db`` (an absolute path,
    so that Ray workers, which change their working folder, write to the same store)."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or ""
    if not uri:
        return f"sqlite:///{Path.cwd().resolve() / 'mlflow.db'}"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////") and ":memory:" not in uri:
        return f"sqlite:///{Path(uri[len('sqlite:///'):]).resolve()}"
    return uri


def default_artifact_location(tracking_uri: str, experiment: str) -> str | None:
    """For an SQLite store: ``<db folder>/mlartifacts/<experiment>``; servers choose their own."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    database = Path(tracking_uri[len("sqlite:///"):])
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", experiment).strip("._") or "experiment"
    return (database.parent / "mlartifacts" / safe).as_uri()


def probe(tracking_uri: str) -> bool:
    """A quick reachability check: ``/health`` for servers (no retries); stores on disk are tried."""
    if not tracking_uri.startswith(("http://", "https://")):
        return True
    import requests

    try:
        return requests.get(tracking_uri.rstrip("/") + "/health", timeout=(2, 3)).ok
    except requests.RequestException:
        return False


class TrackingServerError(Exception):
    """The tracking store refuses this client for good (Host header, login, permission, an unusable URI)."""


class TrackingServerDown(TrackingServerError):
    """The tracking server does not answer (it may later: a run's record waits in its folder)."""


def check_tracking_server(tracking_uri: str | None = None) -> None:
    """Raise :class:`TrackingServerError`, saying what to do, when the store cannot take records now.

    One small API call, as a run's first one would be. A server that does not answer raises
    :class:`TrackingServerDown`: a sweep needs an answer at its start (its parent run is made
    there); a single run may go on, its record waiting in its folder for ``mergan sync``.
    """
    uri = resolve_tracking_uri(tracking_uri)
    if uri.startswith("sqlite:///"):
        return  # a file MLflow makes on first use: nothing to ask, and nothing is written before the run starts
    if not uri.startswith(("http://", "https://")):
        check_store_scheme(uri)  # a typo of a scheme, refused without opening anything
    from mlflow.exceptions import MlflowException

    configure_http_client()
    server = uri.startswith(("http://", "https://"))
    try:
        open_client(uri).search_experiments(max_results=1)
    except MlflowException as error:
        if not server:
            raise TrackingServerError(f"MLflow cannot use the tracking URI {uri!r} ({short_error(error, 160)}); give "
                                      f"the http(s):// address of an MLflow server, an sqlite:///path/to/mlflow.db "
                                      f"store, or leave it out for ./mlflow.db") from None
        if is_permanent(error):
            raise TrackingServerError(refusal_advice(uri, error)) from None
        raise TrackingServerDown(f"the MLflow server at {uri} does not answer ({short_error(error, 160)}): start it "
                                 f"(`python platform/mlflow_server.py start`), or give the URI of one that "
                                 f"runs with --tracking-uri or MLFLOW_TRACKING_URI") from None


# The schemes of MLflow's own stores ('' and file: a folder); others come from plugins, if installed.
BUILTIN_STORE_SCHEMES = ("", "file", "sqlite", "postgresql", "mysql", "mssql", "databricks", "databricks-uc", "uc")


def check_store_scheme(tracking_uri: str) -> None:
    """Raise :class:`TrackingServerError` for a URI whose scheme no MLflow store takes (a typo such as
    ``junk://x``), without opening the store (an SQLite one would be created)."""
    scheme = urllib.parse.urlsplit(tracking_uri).scheme.split("+")[0]
    if scheme in BUILTIN_STORE_SCHEMES or len(scheme) == 1:  # a Windows drive letter is a path
        return
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        MlflowClient(tracking_uri=tracking_uri)  # a plugin's store, if one is installed for the scheme
    except MlflowException:
        raise TrackingServerError(
            f"tracking URI {tracking_uri}: MLflow has no store for the scheme {scheme!r}; give a server "
            f"(http://host:5000), a database (sqlite:///path/mlflow.db, postgresql://user@host/db) or a folder "
            f"(--tracking-uri or MLFLOW_TRACKING_URI)") from None


def refusal_advice(tracking_uri: str, error: BaseException) -> str:
    """One line on why the server at ``tracking_uri`` refused a request, and how to fix it."""
    from mlflow.utils.credentials import read_mlflow_creds

    if not hasattr(error, "get_http_status_code"):  # ours (TrackingServerError): it says what to do
        return str(error)
    status = error.get_http_status_code()
    address = urllib.parse.urlsplit(tracking_uri).netloc
    user = read_mlflow_creds().username
    if "Invalid Host header" in str(error):
        return (f"the MLflow server at {tracking_uri} refuses requests addressed to {address} (403 Invalid Host "
                f"header): it accepts only the host names its --allowed-hosts lists (without that option: "
                f"localhost and private IP addresses). Restart it with {address} in --allowed-hosts, e.g. "
                f"`python platform/mlflow_server.py start --host 0.0.0.0 --allowed-hosts {address},localhost:*`, "
                f"or give a tracking URI it accepts")
    if status == 401:
        if user:
            return (f"the MLflow server at {tracking_uri} refuses the credentials of user {user!r} (401): correct "
                    f"MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD or ~/.mlflow/credentials")
        return (f"the MLflow server at {tracking_uri} asks for credentials (401): set MLFLOW_TRACKING_USERNAME and "
                f"MLFLOW_TRACKING_PASSWORD, or write them to ~/.mlflow/credentials (on a cluster, the file the "
                f"cluster YAML mounts on every node; `python platform/mlflow_server.py credentials` makes one)")
    if status == 403:
        return (f"the MLflow server at {tracking_uri} denies {f'user {user!r}' if user else 'this client'} "
                f"access (403: {short_error(error)}): ask its admin for EDIT permission, or use other credentials")
    return f"the MLflow server at {tracking_uri} refuses this client ({status}: {short_error(error)})"


def short_error(error: BaseException, limit: int = 300) -> str:
    """The error's message on one line, cut at ``limit`` characters."""
    text = str(error).replace("\n", " ")
    return text if len(text) <= limit else text[:limit] + "..."



def is_permanent(error: BaseException) -> bool:
    """True for errors a retry cannot fix: MLflow 4xx answers other than timeouts and rate limits."""
    from mlflow.exceptions import MlflowException

    if isinstance(error, TrackingServerError):
        return not isinstance(error, TrackingServerDown)
    if isinstance(error, MlflowException):
        status = error.get_http_status_code()
        return 400 <= status < 500 and status not in (408, 429)
    return False


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive lock between processes, held on ``path`` (created if missing, never removed:
    removing a lock file while another process waits on it would let a third one in)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def open_client(tracking_uri: str) -> Any:
    """An ``MlflowClient`` for ``tracking_uri``; a new SQLite store's tables are created by one process at a time.

    MLflow creates (and migrates) an SQLite store's schema when a client first opens it; several
    processes doing that at once on a fresh file fail with "table ... already exists". The lock
    file ``<database>.lock`` beside the database serialises it; later opens find the tables made.
    """
    from mlflow import MlflowClient

    if not tracking_uri.startswith("sqlite:///") or ":memory:" in tracking_uri:
        return MlflowClient(tracking_uri=tracking_uri)
    database = Path(tracking_uri[len("sqlite:///"):])
    with file_lock(database.with_name(database.name + ".lock")):
        return MlflowClient(tracking_uri=tracking_uri)


def get_or_create_experiment(client: Any, name: str, artifact_location: str | None = None) -> str:
    """The id of experiment ``name``, created (with ``artifact_location``) when missing; race-safe."""
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(name, artifact_location=artifact_location)
        except MlflowException:
            experiment = client.get_experiment_by_name(name)  # another process created it first
            if experiment is None:
                raise
    if experiment.lifecycle_stage == "deleted":
        raise TrackingServerError(f"MLflow experiment {name!r} is deleted; restore it (mlflow experiments restore "
                                  f"--experiment-id {experiment.experiment_id}) or choose another name")
    return experiment.experiment_id


def quote(value: Any) -> str:
    """``value`` as a quoted string literal of MLflow's search filter syntax."""
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"
