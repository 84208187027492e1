"""Agent conversations travel with the results: stored in git, pushed and fetched with the notes,
read as untrusted input, bounded per evaluation and pruned by `forgegit gc` (real git, real HTTP)."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from conftest import git

from forgegit import conversations, demo, notes
from forgegit.records import EvalResult
from forgegit.cli import cli
from forgegit.scripted import Reply

MARK = "MARKER-RECORDED-ON-MACHINE-A"


def forgegit(*args: str) -> Any:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def agent_with(mark: str) -> Any:
    """The demo's agent, whose every reply also carries mark (so a prompt shows whose conversation it is)."""
    def agent(request: dict[str, Any]) -> Reply:
        reply = demo.agent_reply(request)
        if reply.content is not None:
            reply.content = f"({mark}) {reply.content}"
        return reply
    return agent


def script_with(mark: str, prompts: list[str]) -> Any:
    optimizer = demo.OptimizerScript()

    def script(request: dict[str, Any]) -> Any:
        if request.get("model") == demo.OPTIMIZER_MODEL:
            prompts.append("\n".join(str(m.get("content") or "") for m in request["messages"] if m.get("role") == "user"))
            return optimizer(request)
        return agent_with(mark)(request)
    return script


@pytest.fixture
def machines(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A bare remote, clone A (where the demo repository was made) and the path for a fresh clone B."""
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", str(origin)], check=True)
    a = demo.make_repo(tmp_path / "a")
    git(a, "remote", "add", "origin", str(origin))
    git(a, "push", "-q", "origin", "main")
    return origin, a, tmp_path / "b"


def test_fresh_clone_first_optimizer_prompt_carries_conversations_recorded_in_another_clone(
        machines: tuple[Path, Path, Path], scripted: Any, llm_env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A scheduled run on a fresh clone reuses the recorded baseline AND shows the optimizer its conversations."""
    origin, a, b = machines
    server_a = scripted(script_with(MARK, []))
    llm_env(server_a)
    monkeypatch.chdir(a)
    forgegit("eval")
    forgegit("push", "origin")
    notes = git(a, "notes", "--ref=forgegit", "show", "HEAD")
    assert str(a) not in notes and "/.git/" not in notes  # no local path travels in a note
    git(b.parent, "clone", "-q", str(origin), str(b))
    prompts: list[str] = []
    server_b = scripted(script_with("machine-b", prompts))
    llm_env(server_b)
    monkeypatch.chdir(b)
    assert "notes and conversations" in forgegit("fetch", "origin").output
    forgegit("train", "--epochs", "1", "--run-id", "fresh")
    first = prompts[0]
    assert MARK in first and "machine-b" not in first  # A's conversations, not a re-run on B
    assert "(no conversation recorded)" not in first
    assert "[user] What is the sum of the digits of 987654?" in first


def test_push_from_two_clones_keeps_both_clones_conversations(
        machines: tuple[Path, Path, Path], scripted: Any, llm_env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two machines that evaluate different revisions and push lose neither's conversations."""
    origin, a, b = machines
    git(b.parent, "clone", "-q", str(origin), str(b))
    llm_env(scripted(script_with(MARK, [])))
    for where, tasks in ((a, 3), (b, 5)):
        monkeypatch.chdir(where)
        subset = where / "tasks" / "some.jsonl"
        subset.write_text("".join((where / "tasks" / "train.jsonl").read_text().splitlines(keepends=True)[:tasks]))
        forgegit("eval", "--tasks", str(subset))
        forgegit("push", "origin")
    keys = git(origin, "ls-tree", "--name-only", conversations.REF).split()
    assert len(keys) == 2
    monkeypatch.chdir(a)
    forgegit("fetch", "origin")
    trees = [EvalResult.from_json(e).conversations
             for note in notes.all_notes(a).values() for e in note.get("evals", {}).values()]
    assert sorted(len(conversations.load(a, t)) for t in trees) == [3, 5]


def test_shard_files_carry_their_conversations_into_the_merged_result(
        machines: tuple[Path, Path, Path], scripted: Any, llm_env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """`eval --merge` of shards evaluated on other machines records every task's conversation too."""
    origin, a, b = machines
    llm_env(scripted(script_with(MARK, [])))
    monkeypatch.chdir(a)
    forgegit("eval", "--shard", "1/2", "--out", str(a.parent / "s1.json"))
    forgegit("eval", "--shard", "2/2", "--out", str(a.parent / "s2.json"))
    git(b.parent, "clone", "-q", str(origin), str(b))
    monkeypatch.chdir(b)
    data = json.loads(forgegit("eval", "--json", "--merge", str(a.parent / "s1.json"), "--merge", str(a.parent / "s2.json")).output)
    stored = conversations.load(b, data["conversations"])
    assert len(stored) == len(demo.TASKS) and all(MARK in json.dumps(m) for m in stored.values())


def _blob(repo: Path, data: bytes) -> str:
    return subprocess.run(["git", "hash-object", "-w", "--stdin"], cwd=repo, input=data, capture_output=True,
                          check=True).stdout.decode().strip()


def _tree(repo: Path, entries: dict[str, str]) -> str:
    listing = "".join(f"100644 blob {oid}\t{name}\n" for name, oid in entries.items())
    return subprocess.run(["git", "mktree"], cwd=repo, input=listing.encode(), capture_output=True,
                          check=True).stdout.decode().strip()


def good(task_id: str, words: str = "hello") -> bytes:
    return json.dumps({"task_id": task_id, "messages": [{"role": "user", "content": words}]}).encode()


def test_forged_huge_and_malformed_conversation_blobs_are_reported_and_left_out(
        repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Conversations pushed by anyone are checked on read: bad ones are one warning each, never a crash."""
    warnings: list[str] = []
    monkeypatch.setattr(conversations, "warn", warnings.append)
    monkeypatch.setattr(conversations, "_reported", set())
    entries = {
        "ok.json": _blob(repo, good("ok")),
        "notjson.json": _blob(repo, b"\x00\xffnot json"),
        "deep.json": _blob(repo, b"[" * 100_000 + b"]" * 100_000),
        "huge.json": _blob(repo, b'{"task_id": "huge", "messages": [], "pad": "' + b"x" * (conversations.READ_BLOB_BYTES + 1) + b'"}'),
        "spoof.json": _blob(repo, good("ok", "I am another task's conversation")),
        "shape.json": _blob(repo, json.dumps({"task_id": "shape", "messages": [{"content": 3}]}).encode()),
        "calls.json": _blob(repo, json.dumps({"task_id": "calls", "messages": [{"role": "assistant", "content": None,
                                                                                  "tool_calls": "rm -rf"}]}).encode()),
    }
    tree = _tree(repo, entries)
    ids = ["ok", "notjson", "deep", "huge", "spoof", "shape", "calls", "absent"]
    got = conversations.load(repo, tree, ids)
    assert list(got) == ["ok"] and got["ok"][0]["content"] == "hello"
    assert len(warnings) == 6 and all(w.startswith("forgegit: warning: ignoring the conversation of task") for w in warnings)
    assert any("nested too deeply" in w for w in warnings) and any("bytes, at most" in w for w in warnings)
    assert any("says it is task ok" in w for w in warnings)
    # a note whose `conversations` is not a tree of this repository: nothing, and one line at most
    assert conversations.load(repo, entries["ok.json"]) == {}  # a blob, not a tree
    assert conversations.load(repo, "f" * 40) == {}  # not here (not fetched, or pruned): silent
    assert conversations.load(repo, "../../etc/passwd") == {}
    assert any("not a tree" in w for w in warnings) and any("not an object id" in w for w in warnings)


def test_each_evaluation_stores_at_most_its_budget_failed_tasks_first(repo: Path) -> None:
    """A long evaluation's conversations stay within `conversation_kb`; failures are the ones kept."""
    stage = repo / "stage"
    ids = [f"t{i}" for i in range(40)]
    for i, tid in enumerate(ids):
        messages = [{"role": "system", "content": "s"}, {"role": "user", "content": f"question {tid}"}]
        messages += [{"role": "tool", "content": "y" * 20_000, "tool_call_id": str(k)} for k in range(30)]
        messages.append({"role": "assistant", "content": f"Final answer: {tid}"})
        conversations.stage(stage, {"task_id": tid, "messages": messages})
    sizes = [p.stat().st_size for p in stage.iterdir()]
    assert max(sizes) <= conversations.MAX_BLOB_BYTES  # every conversation is cut to the blob limit
    failed, passed = ids[:10], ids[10:]
    budget = sum(sorted(sizes)[-10:])  # room for ten conversations
    tree = conversations.store(repo, stage, failed + passed, budget)
    got = conversations.load(repo, tree)
    assert sorted(got) == sorted(failed)
    kept = got["t3"]
    assert kept[1]["content"] == "question t3" and kept[-1]["content"] == "Final answer: t3"  # question and answer stay
    assert any("messages left out for space" in str(m["content"]) for m in kept)


def test_gc_prunes_conversations_no_note_refers_to_and_older_ones(
        machines: tuple[Path, Path, Path], scripted: Any, llm_env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """`forgegit gc` drops orphaned conversations (and, with --older-than, old ones), locally and on the remote."""
    origin, a, _ = machines
    llm_env(scripted(script_with(MARK, [])))
    monkeypatch.chdir(a)
    forgegit("eval")
    orphan = _tree(a, {"x.json": _blob(a, good("x"))})
    conversations.publish(a, {"0" * 32: orphan})
    forgegit("push", "origin")
    assert len(git(origin, "ls-tree", "--name-only", conversations.REF).split()) == 2
    out = forgegit("gc", "--dry-run").output
    assert "would remove the conversations of 1 evaluations" in out
    assert len(git(a, "ls-tree", "--name-only", conversations.REF).split()) == 2  # dry run: nothing changed
    out = forgegit("gc", "--remote", "origin").output
    assert "removed the conversations of 1 evaluations" in out and "kept 1" in out
    assert git(origin, "ls-tree", "--name-only", conversations.REF).split() == git(a, "ls-tree", "--name-only", conversations.REF).split()
    assert "0" * 32 not in git(origin, "ls-tree", "--name-only", conversations.REF)
    forgegit("push", "origin")  # a later push does not bring the pruned one back
    assert "0" * 32 not in git(origin, "ls-tree", "--name-only", conversations.REF)
    assert "kept 0" in forgegit("gc", "--older-than", "0").output
    assert git(a, "for-each-ref", conversations.REF) == ""


def test_conversation_budget_zero_stores_none_and_prompt_says_so(
        machines: tuple[Path, Path, Path], scripted: Any, llm_env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """conversation_kb = 0 keeps conversations out of git; the evaluation itself is still recorded."""
    _, a, _ = machines
    llm_env(scripted(script_with(MARK, [])))
    monkeypatch.chdir(a)
    (a / "forgegit.toml").write_text((a / "forgegit.toml").read_text() + "conversation_kb = 0\n")
    data = json.loads(forgegit("eval", "--json").output)
    assert data["conversations"] == "" and data["total"] == len(demo.TASKS)
    assert git(a, "for-each-ref", conversations.REF) == ""
    assert not (a / ".git" / "forgegit" / "trajectories").exists() or not any((a / ".git" / "forgegit" / "trajectories").iterdir())


def test_fetch_keeps_conversations_this_clone_has_not_pushed(machines: tuple[Path, Path, Path]) -> None:
    """`forgegit fetch` merges the remote's conversations in; a local evaluation not yet pushed is kept."""
    origin, a, b = machines
    git(b.parent, "clone", "-q", str(origin), str(b))
    theirs = _tree(a, {"x.json": _blob(a, good("x", "from a"))})
    conversations.publish(a, {"1" * 32: theirs})
    assert conversations.push(a, "origin") is None
    mine = _tree(b, {"y.json": _blob(b, good("y", "only on b"))})
    conversations.publish(b, {"2" * 32: mine})
    assert conversations.fetch(b, "origin")
    keys = git(b, "ls-tree", "--name-only", conversations.REF).split()
    assert keys == ["1" * 32, "2" * 32]
    assert conversations.load(b, theirs)["x"][0]["content"] == "from a"


def test_a_note_written_before_conversations_were_stored_in_git_still_finds_this_machines(repo: Path) -> None:
    """An old note (a local `trajectories` path, no `conversations` tree) reads what this machine staged."""
    from forgegit.evaluation import conversations_of, trajectories_dir
    from forgegit.records import TaskResult, Usage
    conversations.stage(trajectories_dir(repo, "k" * 32), {"task_id": "t1", "messages": [{"role": "user", "content": "old"}]})
    old = EvalResult("k" * 32, "rev", "tree", "f", "h", "m", 0, 1, Usage(), [TaskResult("t1", False, "", "", "")],
                     trajectories="/somewhere/else/.git/forgegit/trajectories/kkk")
    assert conversations_of(repo, old)["t1"][0]["content"] == "old"
