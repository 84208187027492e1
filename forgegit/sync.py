"""Results travelling between clones: the notes and the agent conversations, pushed and fetched together."""
from __future__ import annotations

from pathlib import Path

from . import conversations, git, notes
from .github import NOTES_REF, push_notes

NOTES_REMOTE_REF = "refs/notes/forgegit-remote"


def push(repo: Path, remote: str = "origin") -> list[str]:
    """Push refs/notes/forgegit and refs/forgegit/conversations to remote, each merged with the remote's
    first (nothing of either side is lost); the warnings (empty when both went through)."""
    return [w for w in (push_notes(repo, remote), conversations.push(repo, remote)) if w]


def fetch(repo: Path, remote: str = "origin") -> list[str]:
    """Fetch the remote's notes and conversations and merge them into this clone's (a note both sides
    wrote keeps both sides' results, this clone's where they name the same key); what was fetched,
    e.g. ["notes", "conversations"]."""
    got = []
    if git.run(["fetch", "--quiet", remote, f"+{NOTES_REF}:{NOTES_REMOTE_REF}"], repo, check=False).returncode == 0:
        notes.merge_from(repo, NOTES_REMOTE_REF)
        git.run(["update-ref", "-d", NOTES_REMOTE_REF], repo, check=False)
        got.append("notes")
    if conversations.fetch(repo, remote):
        got.append("conversations")
    return got
