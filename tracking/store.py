"""Where MLflow records go: the tracking URI, the HTTP client's settings, and whether the store takes them."""

from __future__ import annotations

import os
import re
import urllib.parse
from pathlib import Path

DEFAULT_EXPERIMENT = "mergan"  # where a run or a sweep goes when neither a flag nor MLFLOW_EXPERIMENT_NAME names one
# MLflow's HTTP client retries for minutes by default (7 retries, backoff factor 2, 120 s timeout).
# A run keeps its records in the outbox instead, so a failing server should be noticed in seconds.
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
    """The tracking server refuses this client for good (Host header, login, permission) or does not answer."""


def check_tracking_server(tracking_uri: str | None = None) -> None:
    """Raise :class:`TrackingServerError`, saying what to do, when the server cannot take a sweep's records.

    Servers only (``http(s)://``): one small API call, as a trial's first one would be. A sweep
    needs an answer at its start (its parent run is made there), so a server that does not answer
    is an error too; trials that lose it later keep their records in the outbox.
    """
    uri = resolve_tracking_uri(tracking_uri)
    if not uri.startswith(("http://", "https://")):
        check_store_scheme(uri)
        return
    from mlflow.exceptions import MlflowException

    from tracking.outbox import is_permanent, open_client

    configure_http_client()
    try:
        open_client(uri).search_experiments(max_results=1)
    except MlflowException as error:
        if is_permanent(error):
            raise TrackingServerError(refusal_advice(uri, error)) from None
        raise TrackingServerError(f"the MLflow server at {uri} does not answer ({short_error(error, 160)}): start it "
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

    status = error.get_http_status_code() if hasattr(error, "get_http_status_code") else None
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

