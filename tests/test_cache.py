"""Response cache and call log: keys, persistence, stats, clearing, migrations, threads and processes."""
from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from forgegit.cache import MIGRATIONS, ResponseCache, is_deterministic, migrate, request_key
from forgegit.errors import ForgegitError

MESSAGES = [{"role": "user", "content": "What is 2 + 2?"}]
TOOLS = [{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}]


def completion(text: str) -> dict:
    return {"id": "c1", "object": "chat.completion", "model": "gpt-4o-mini",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}}


def request(content: str = "What is 2 + 2?") -> dict:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}], "temperature": 0}


@pytest.fixture
def cache(tmp_path: Path):
    c = ResponseCache(tmp_path / "state" / "forgegit" / "cache.sqlite")
    yield c
    c.close()


def test_request_key_is_sha256_of_canonical_json() -> None:
    """The key depends on content only, not on dict key order or whitespace."""
    expected = hashlib.sha256(
        b'{"messages":[{"content":"What is 2 + 2?","role":"user"}],"model":"m","params":{"temperature":0},"tools":null}'
    ).hexdigest()
    assert request_key("m", MESSAGES, None, {"temperature": 0}) == expected
    reordered = [{"content": "What is 2 + 2?", "role": "user"}]
    assert request_key("m", reordered, None, {"temperature": 0}) == expected


def test_request_key_changes_with_any_part_of_the_request() -> None:
    """A different model, message, tool list or parameter never reuses another request's response."""
    base = request_key("m", MESSAGES, TOOLS, {"temperature": 0})
    assert len({
        base,
        request_key("m2", MESSAGES, TOOLS, {"temperature": 0}),
        request_key("m", [{"role": "user", "content": "What is 2 + 3?"}], TOOLS, {"temperature": 0}),
        request_key("m", MESSAGES, None, {"temperature": 0}),
        request_key("m", MESSAGES, TOOLS, {"temperature": 0, "max_tokens": 5}),
    }) == 5


@pytest.mark.parametrize(
    "params, expected",
    [({"temperature": 0}, True), ({"temperature": 0.0, "n": 1}, True), ({"temperature": 0, "n": None}, True),
     ({}, False), ({"temperature": 0.7}, False), ({"temperature": 0, "n": 3}, False)],
)
def test_only_deterministic_requests_are_cacheable(params: dict, expected: bool) -> None:
    """Temperature must be explicitly 0 (the API default is 1) and only one choice requested."""
    assert is_deterministic(params) is expected


def test_put_then_get_returns_the_response_and_counts_hits(cache: ResponseCache) -> None:
    """A stored response comes back unchanged; lookups are counted as hits and misses."""
    assert cache.get("k1") is None
    cache.put("k1", request(), completion("4"))
    assert cache.get("k1") == completion("4")
    assert cache.get("k1") == completion("4")
    stats = cache.stats()
    assert (stats["entries"], stats["hits"], stats["misses"]) == (1, 2, 1)
    assert stats["bytes"] > 0 and stats["path"] == str(cache.path)


def test_cache_is_created_on_first_use_with_parent_dirs_and_wal(cache: ResponseCache) -> None:
    """Nothing is written until the cache is used; then the file exists in WAL mode."""
    assert not cache.path.exists()
    assert cache.stats()["entries"] == 0 and not cache.path.exists()
    cache.put("k", request(), completion("4"))
    assert cache.path.exists()
    with sqlite3.connect(cache.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_responses_survive_reopening(tmp_path: Path) -> None:
    """A second run (new process, new ResponseCache) reuses the first run's responses."""
    path = tmp_path / "cache.sqlite"
    with ResponseCache(path) as first:
        first.put("k", request(), completion("4"))
    with ResponseCache(path) as second:
        assert second.get("k") == completion("4")


def test_put_replaces_an_existing_entry(cache: ResponseCache) -> None:
    """Re-putting a key keeps one entry with the newest response."""
    cache.put("k", request(), completion("4"))
    cache.put("k", request(), completion("four"))
    assert cache.get("k") == completion("four") and cache.stats()["entries"] == 1


def test_every_call_is_logged_including_errors(cache: ResponseCache) -> None:
    """Prompts, responses, errors, timing and tokens of every call land in the `calls` table."""
    cache.log(request("a"), completion("4"), error=None, duration=0.25, cached=False,
              usage={"prompt_tokens": 10, "completion_tokens": 2})
    cache.log(request("b"), None, error="429 Too Many Requests", duration=0.1, cached=False, usage=None)
    cache.log(request("a"), completion("4"), error=None, duration=0.0, cached=True, usage=None)
    calls = cache.calls()
    assert [c["request"]["messages"][0]["content"] for c in calls] == ["a", "b", "a"][::-1]
    newest, failed, first = calls
    assert newest["cached"] is True
    assert failed["error"] == "429 Too Many Requests" and failed["response"] is None
    assert (first["prompt_tokens"], first["completion_tokens"], first["duration"]) == (10, 2, 0.25)
    assert first["model"] == "gpt-4o-mini" and first["response"] == completion("4")
    assert cache.stats()["calls"] == 3


def test_clear_removes_responses_but_keeps_the_log_unless_asked(cache: ResponseCache) -> None:
    """`clear()` empties the cache and resets hit counts; the call log goes only with log=True."""
    for i in range(3):
        cache.put(f"k{i}", request(str(i)), completion(str(i)))
    cache.log(request(), completion("4"), error=None, duration=0.1, cached=False, usage=None)
    cache.get("k0")
    assert cache.clear() == 3
    stats = cache.stats()
    assert (stats["entries"], stats["hits"], stats["misses"], stats["calls"]) == (0, 0, 0, 1)
    assert cache.get("k0") is None
    assert cache.clear(log=True) == 0
    assert cache.stats()["calls"] == 0


def test_clear_on_a_missing_cache_does_nothing(tmp_path: Path) -> None:
    """Clearing before anything was cached removes nothing and creates no file."""
    c = ResponseCache(tmp_path / "none.sqlite")
    assert c.clear(log=True) == 0 and not c.path.exists()


def test_damaged_entry_is_a_miss_not_a_crash(cache: ResponseCache) -> None:
    """A response row that is not valid JSON is dropped and treated as a miss."""
    cache.put("k", request(), completion("4"))
    with sqlite3.connect(cache.path) as db:
        db.execute("UPDATE responses SET response = '{broken'")
    assert cache.get("k") is None
    assert cache.stats()["entries"] == 0


def test_a_file_that_is_not_sqlite_gives_a_clear_error(tmp_path: Path) -> None:
    """A corrupted cache file is reported with its path and what to do, not a sqlite traceback."""
    path = tmp_path / "cache.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ForgegitError, match="delete the file"):
        ResponseCache(path).get("k")


def test_migrations_are_recorded_and_applied_once(tmp_path: Path) -> None:
    """Every numbered migration is recorded in _migrations; reopening applies nothing twice."""
    path = tmp_path / "cache.sqlite"
    with ResponseCache(path) as c:
        c.put("k", request(), completion("4"))
    with sqlite3.connect(path, isolation_level=None) as db:
        names = [r[0] for r in db.execute("SELECT name FROM _migrations ORDER BY name")]
        assert names == [name for name, _ in MIGRATIONS]
        assert migrate(db) == []


def test_an_older_cache_is_upgraded_in_place(tmp_path: Path) -> None:
    """A cache written by an older forgegit (first migration only) is migrated and keeps its entries."""
    path = tmp_path / "cache.sqlite"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied TEXT NOT NULL)")
    MIGRATIONS[0][1](db)
    db.execute("INSERT INTO _migrations VALUES (?, 'then')", (MIGRATIONS[0][0],))
    db.execute("INSERT INTO responses VALUES ('k', 'm', '{}', ?, 'then')", (json.dumps(completion("old")),))
    db.close()
    with ResponseCache(path) as c:
        assert c.get("k") == completion("old")
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM _migrations").fetchone()[0] == len(MIGRATIONS)


def test_many_threads_can_share_one_cache(cache: ResponseCache) -> None:
    """Concurrent evaluation threads read, write and log without 'database is locked' or lost writes."""
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            for i in range(25):
                key = f"t{t}-{i}"
                cache.put(key, request(key), completion(key))
                assert cache.get(key) == completion(key)
                cache.log(request(key), completion(key), error=None, duration=0.0, cached=False, usage=None)
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    stats = cache.stats()
    assert (stats["entries"], stats["hits"], stats["calls"]) == (200, 200, 200)


WRITER = """
import sys
from forgegit.cache import ResponseCache
c = ResponseCache(sys.argv[1])
for i in range(100):
    c.put(f"{sys.argv[2]}-{i}", {"model": "m"}, {"n": i})
    c.log({"model": "m"}, {"n": i}, error=None, duration=0.0, cached=False, usage=None)
c.close()
"""


def test_two_processes_can_write_the_same_cache(tmp_path: Path) -> None:
    """Two forgegit processes (e.g. eval and train) sharing a repository both keep all their writes."""
    path = tmp_path / "cache.sqlite"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), name], stderr=subprocess.PIPE, text=True)
             for name in ("a", "b")]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    with ResponseCache(path) as c:
        stats = c.stats()
        assert (stats["entries"], stats["calls"]) == (200, 200)
        assert c.get("a-99") == {"n": 99} and c.get("b-0") == {"n": 0}
