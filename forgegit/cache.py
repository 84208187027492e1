"""Content-addressed model-response cache and call log in one SQLite file (`.git/forgegit/cache.sqlite`).

Deterministic requests (temperature 0, one choice) are cached by the sha256 of their canonical
JSON; every call, cached or not, is logged in the `calls` table (like simonw/llm's logs.db).
The schema evolves through numbered migrations recorded in `_migrations`.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional

from . import safejson
from .chat import Message, ToolSchema
from .errors import ForgegitError

BUSY_TIMEOUT_S = 30.0


def request_key(model: str, messages: list[Message], tools: list[ToolSchema] | None, params: dict[str, Any]) -> str:
    """The cache key of a request: sha256 of its canonical JSON (sorted keys, no spaces)."""
    canonical = json.dumps(
        {"model": model, "messages": messages, "tools": tools, "params": params},
        sort_keys=True, separators=(",", ":"), ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _logged(text: str) -> Any:
    """A logged request or response, decoded (a damaged one as a note saying so)."""
    try:
        return safejson.loads(text, max_depth=256)
    except ValueError as exc:
        return {"undecodable": str(exc)}


def is_deterministic(params: dict[str, Any]) -> bool:
    """Whether a response may be reused: temperature explicitly 0 (absent means 1) and a single choice."""
    temperature = params.get("temperature")
    return temperature is not None and float(temperature) == 0.0 and params.get("n") in (None, 1)


def _m001_initial(db: sqlite3.Connection) -> None:
    db.execute(
        "CREATE TABLE responses (key TEXT PRIMARY KEY, model TEXT, request TEXT NOT NULL,"
        " response TEXT NOT NULL, created TEXT NOT NULL)"
    )
    db.execute(
        "CREATE TABLE calls (id INTEGER PRIMARY KEY AUTOINCREMENT, datetime_utc TEXT NOT NULL, model TEXT,"
        " request TEXT NOT NULL, response TEXT, error TEXT, duration REAL, cached INTEGER NOT NULL,"
        " prompt_tokens INTEGER, completion_tokens INTEGER)"
    )
    db.execute("CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)")
    db.execute("INSERT INTO counters VALUES ('hits', 0), ('misses', 0)")


def _m002_calls_index(db: sqlite3.Connection) -> None:
    db.execute("CREATE INDEX calls_datetime ON calls (datetime_utc)")


MIGRATIONS: list[tuple[str, Callable[[sqlite3.Connection], None]]] = [
    ("m001_initial", _m001_initial),
    ("m002_calls_index", _m002_calls_index),
]


def migrate(db: sqlite3.Connection) -> list[str]:
    """Apply the migrations this database lacks, in order, each in its own transaction; their names."""
    db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied TEXT NOT NULL)")
    applied = []
    for name, step in MIGRATIONS:
        db.execute("BEGIN IMMEDIATE")  # a second process migrating at once waits here, then skips
        try:
            if db.execute("SELECT 1 FROM _migrations WHERE name = ?", (name,)).fetchone():
                db.execute("COMMIT")
                continue
            step(db)
            db.execute("INSERT INTO _migrations VALUES (?, ?)", (name, _now()))
            db.execute("COMMIT")
            applied.append(name)
        except BaseException:
            db.execute("ROLLBACK")
            raise
    return applied


def _wal_mode(db: sqlite3.Connection) -> None:
    """Switch to WAL, retrying: SQLite answers "database is locked" at once, without waiting in its busy
    handler, while a second process converts the same new file."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, default=str)


class ResponseCache:
    """The response cache and call log; one connection shared under a lock, so threads may share it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self._db: Optional[sqlite3.Connection] = None

    def _connect(self) -> sqlite3.Connection:
        """The open connection, creating the file, WAL mode and schema on first use."""
        if self._db is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
                try:
                    _wal_mode(db)
                    db.execute("PRAGMA synchronous=NORMAL")
                    migrate(db)
                except BaseException:
                    db.close()
                    raise
            except sqlite3.DatabaseError as exc:
                raise ForgegitError(f"response cache {self.path} is unusable ({exc}): delete the file to start afresh") from None
            except OSError as exc:
                raise ForgegitError(f"cannot create the response cache at {self.path}: {exc}") from None
            self._db = db
        return self._db

    def _execute(self, sql: str, args: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        """Run one statement under the lock, turning SQLite failures into a clear error."""
        with self._lock:
            db = self._connect()
            try:
                return db.execute(sql, args)
            except sqlite3.DatabaseError as exc:
                raise ForgegitError(f"response cache {self.path}: {exc}") from None

    def _bump(self, counter: str) -> None:
        self._execute("UPDATE counters SET value = value + 1 WHERE name = ?", (counter,))

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored response for key (a chat.completion dict), or None; counts a hit or a miss."""
        with self._lock:
            row = self._execute("SELECT response FROM responses WHERE key = ?", (key,)).fetchone()
            response = self._decode(row[0]) if row else None
            if row and response is None:
                self._execute("DELETE FROM responses WHERE key = ?", (key,))
            self._bump("hits" if response is not None else "misses")
            return response

    @staticmethod
    def _decode(text: str) -> dict[str, Any] | None:
        """A stored response, or None when it is damaged (then it is treated as a miss)."""
        try:
            value = safejson.loads(text)
        except ValueError:  # not JSON, or nested too deeply to be a reply
            return None
        return value if isinstance(value, dict) else None

    def put(self, key: str, request: dict[str, Any], response: dict[str, Any]) -> None:
        """Store response under key (replacing any older one)."""
        self._execute(
            "INSERT OR REPLACE INTO responses (key, model, request, response, created) VALUES (?, ?, ?, ?, ?)",
            (key, request.get("model"), _dumps(request), _dumps(response), _now()),
        )

    def log(
        self,
        request: dict[str, Any],
        response: dict[str, Any] | None,
        *,
        error: str | None,
        duration: float,
        cached: bool,
        usage: dict[str, Any] | None,
    ) -> None:
        """Record one model call (prompt, response or error, timing, tokens) in the `calls` table."""
        usage = usage or {}
        self._execute(
            "INSERT INTO calls (datetime_utc, model, request, response, error, duration, cached,"
            " prompt_tokens, completion_tokens) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                _now(), request.get("model"), _dumps(request), None if response is None else _dumps(response),
                error, float(duration), int(bool(cached)), usage.get("prompt_tokens"), usage.get("completion_tokens"),
            ),
        )

    def calls(self, limit: int = 100) -> list[dict[str, Any]]:
        """The most recent logged calls, newest first, with request/response decoded."""
        with self._lock:
            cursor = self._execute(
                "SELECT id, datetime_utc, model, request, response, error, duration, cached, prompt_tokens,"
                " completion_tokens FROM calls ORDER BY id DESC LIMIT ?", (limit,)
            )
            names = [c[0] for c in cursor.description]
            fetched = cursor.fetchall()
        rows = []
        for values in fetched:
            row = dict(zip(names, values))
            row["request"] = _logged(row["request"])
            row["response"] = None if row["response"] is None else _logged(row["response"])
            row["cached"] = bool(row["cached"])
            rows.append(row)
        return rows

    def stats(self) -> dict[str, Any]:
        """entries, bytes (stored request + response JSON), hits, misses, calls, path; zeros if no cache yet."""
        empty = {"entries": 0, "bytes": 0, "hits": 0, "misses": 0, "calls": 0, "path": str(self.path)}
        with self._lock:
            if self._db is None and not self.path.exists():
                return empty
            entries, size = self._execute(
                "SELECT count(*), coalesce(sum(length(CAST(request AS BLOB)) + length(CAST(response AS BLOB))), 0)"
                " FROM responses"
            ).fetchone()
            counters = dict(self._execute("SELECT name, value FROM counters").fetchall())
            calls = self._execute("SELECT count(*) FROM calls").fetchone()[0]
        return {**empty, "entries": entries, "bytes": size, "hits": counters.get("hits", 0),
                "misses": counters.get("misses", 0), "calls": calls}

    def clear(self, log: bool = False) -> int:
        """Remove every cached response (and the call log too when log=True); how many responses were removed."""
        with self._lock:
            if self._db is None and not self.path.exists():
                return 0
            removed = self._execute("DELETE FROM responses").rowcount
            self._execute("UPDATE counters SET value = 0")
            if log:
                self._execute("DELETE FROM calls")
            self._execute("VACUUM")
        return max(removed, 0)

    def close(self) -> None:
        """Close the connection (the next use reopens it)."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> "ResponseCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
