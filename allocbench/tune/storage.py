"""Study storage: any Optuna RDB URL (PostgreSQL for many machines), an SQLite file by default.

Workers started with the same settings and study name share one study; a trial lost to a
killed process is failed after a heartbeat grace period and run again by the next worker.
"""

from __future__ import annotations

import re
import time
import warnings
from pathlib import Path

from allocbench.errors import ConfigError
from allocbench.tune.config import DEFAULT_DIR, GRACE_S, HEARTBEAT_S


def quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # we print our own lines
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def redact(url: str) -> str:
    """The URL with its password hidden."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def default_storage(study_name: str, folder: Path | None = None, create: bool = True) -> str:
    """``sqlite:///FOLDER/STUDY.db`` (absolute), FOLDER = ``results/tune`` unless given (the
    tune command passes its ``--out``); ``create`` makes the folder."""
    folder = Path(folder) if folder is not None else DEFAULT_DIR
    if create:
        folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(folder / f'{study_name}.db').resolve()}"


def storage_id(url: str) -> str:
    """What names one storage, for telling whether two URLs are the same: the redacted URL,
    with an SQLite file's path made absolute (relative to the working folder)."""
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        if path and path != ":memory:" and "?" not in path:
            return f"sqlite:///{Path(path).resolve()}"
    return redact(url)


def open_storage(url: str, attempts: int = 3):
    """An Optuna RDB storage for ``url``, or a one-line ConfigError saying why not.

    SQLite: every transaction is ``BEGIN IMMEDIATE``, so concurrent writers (worker processes,
    Optuna's heartbeat thread) wait for the lock (up to 120 s) instead of failing at once with
    "database is locked", as SQLite's deferred transactions do when two of them upgrade; the
    file is put in WAL mode with synchronous=NORMAL (3x faster commits, still crash-safe; the
    file must be on a local disk, as SQLite's locking needs anyway).
    """
    import optuna

    quiet_optuna()
    sqlite = url.startswith("sqlite")
    engine_kwargs: dict = {}
    if sqlite:
        engine_kwargs = {"connect_args": {"timeout": 120, "isolation_level": None}}
        _sqlite_wal(url)
    elif url.startswith(("postgresql", "postgres")):
        engine_kwargs = {"connect_args": {"connect_timeout": 10}}
    if hasattr(optuna.storages, "RetryHeartbeatStaleTrialCallback"):  # optuna >= 4.9
        retry = {"heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=2)}
    else:
        retry = {"failed_trial_callback": optuna.storages.RetryFailedTrialCallback(max_retry=2)}
    for attempt in range(attempts):
        try:
            storage = optuna.storages.RDBStorage(
                _with_driver(url), engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                **retry)
            break
        except ImportError as e:  # optuna re-raises the driver's ModuleNotFoundError as ImportError
            missing = getattr(e.__cause__, "name", None) or getattr(e, "name", None) or "its database driver"
            hint = " (pip install psycopg2-binary)" if "psycopg" in str(missing) else ""
            raise ConfigError(f"cannot open study storage {redact(url)}: {missing} is not installed{hint}") from None
        except Exception as e:  # sqlalchemy's errors: unreachable server, bad URL, bad path, auth
            reason = str(getattr(e, "orig", None) or e).strip().splitlines()
            reason = reason[0] if reason else "unknown error"
            # two workers creating the tables of a new storage at once: the loser retries
            if attempt + 1 < attempts and (re.search(r"exist|duplicate|locked|unique", reason, re.I) or "Integrity" in type(e).__name__):
                time.sleep(0.5 + attempt)
                continue
            raise ConfigError(f"cannot open study storage {redact(url)}: {type(e).__name__}: {reason}") from None
    if sqlite:
        from sqlalchemy import event

        event.listen(storage.engine, "connect", lambda dbapi, record: dbapi.execute("PRAGMA synchronous=NORMAL"))
        event.listen(storage.engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
        storage.engine.dispose()  # the connections opened so far lack the pragma
    return storage


def _sqlite_wal(url: str) -> None:
    """Switch the SQLite file to WAL mode (kept in the file); a failure (no such folder, another
    worker holding it) is left to the storage to report or is harmless."""
    import sqlite3

    from sqlalchemy.engine import make_url

    try:
        path = make_url(url).database
        if path and path != ":memory:" and Path(path).parent.is_dir():
            with sqlite3.connect(path, timeout=10) as db:
                db.execute("PRAGMA journal_mode=WAL")
            db.close()
    except Exception:
        pass


def _with_driver(url: str) -> str:
    """``postgres(ql)://`` with the PostgreSQL driver that is installed: SQLAlchemy 2.1 takes
    psycopg (3) by default, 2.0 psycopg2; either works."""
    import importlib.util

    scheme, sep, rest = url.partition("://")
    if scheme not in ("postgres", "postgresql"):
        return url
    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
        return f"postgresql+psycopg2{sep}{rest}"
    return f"postgresql{sep}{rest}"
