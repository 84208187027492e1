"""git for forgegit: commands through the git CLI (hooks always off), objects read by id through GitPython."""
from __future__ import annotations

import binascii
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Callable, Optional, Sequence

import git as gitpython
from git.objects.fun import tree_entries_from_data

from .errors import ForgegitError

FUNCTIONS_DIR = "functions"
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"


class GitError(ForgegitError):
    """A git command failed."""


def clean_env(extra: Optional[dict[str, str]] = None) -> dict[str, str]:
    """The environment for nested git calls, without GIT_DIR/GIT_INDEX_FILE leaking in from hooks."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_") or k in _KEEP_GIT_VARS}
    env["GIT_TERMINAL_PROMPT"] = "0"
    env.update(extra or {})
    return env


_KEEP_GIT_VARS = {
    "GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL",
    "GIT_AUTHOR_DATE", "GIT_COMMITTER_DATE", "GIT_CONFIG_GLOBAL", "GIT_CONFIG_NOSYSTEM",
    "GIT_SSH_COMMAND", "GIT_ASKPASS",
}


# Every git command forgegit runs has hooks off: function code that managed to write .git/hooks (or a
# repository configured with core.hooksPath) must not get a hook run by the trainer, with the API key
# in its environment. `--no-verify` alone skips only pre-commit and commit-msg, never post-commit.
NO_HOOKS = ("-c", "core.hooksPath=/dev/null")
SYMLINK_MODE = 0o120000


def command(args: Sequence[str]) -> list[str]:
    """The argv of `git ARGS` with hooks disabled."""
    return ["git", *NO_HOOKS, *args]


def run(
    args: Sequence[str],
    cwd: str | os.PathLike[str],
    *,
    input: Optional[str] = None,
    check: bool = True,
    env: Optional[dict[str, str]] = None,
) -> subprocess.CompletedProcess[str]:
    """Run `git ARGS` in cwd (hooks disabled); on failure raise GitError with git's own message."""
    proc = subprocess.run(
        command(args), cwd=cwd, input=input, capture_output=True, text=True,
        env=clean_env(env), encoding="utf-8", errors="replace",
    )
    if check and proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        raise GitError(f"git {' '.join(args[:2])} failed: {msg[-1] if msg else 'exit ' + str(proc.returncode)}")
    return proc


def out(args: Sequence[str], cwd: str | os.PathLike[str], **kw: object) -> str:
    return run(args, cwd, **kw).stdout.strip()  # type: ignore[arg-type]


def toplevel(path: str | os.PathLike[str] = ".") -> Path:
    """The root of the repository containing path, or a clear error."""
    proc = run(["rev-parse", "--show-toplevel"], path, check=False)
    if proc.returncode != 0:
        raise ForgegitError(f"{os.path.abspath(path)} is not inside a git repository (run `git init` first)")
    return Path(proc.stdout.strip())


def common_dir(repo: str | os.PathLike[str]) -> Path:
    """The shared .git directory (the same from every worktree)."""
    return Path(out(["rev-parse", "--path-format=absolute", "--git-common-dir"], repo))


def state_dir(repo: str | os.PathLike[str]) -> Path:
    """Where forgegit keeps local state: .git/forgegit (cache, logs, trajectories, locks)."""
    d = common_dir(repo) / "forgegit"
    d.mkdir(parents=True, exist_ok=True)
    return d


def resolve(repo: str | os.PathLike[str], rev: str) -> str:
    """The full commit sha of rev, or a clear error."""
    proc = run(["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], repo, check=False)
    if proc.returncode != 0:
        if rev == "HEAD" or run(["rev-parse", "--verify", "--quiet", "HEAD"], repo, check=False).returncode != 0:
            raise ForgegitError("the repository has no commits yet: commit your functions/ first")
        raise ForgegitError(f"unknown revision {rev!r}")
    return proc.stdout.strip()


def current_branch(repo: str | os.PathLike[str]) -> Optional[str]:
    proc = run(["symbolic-ref", "--quiet", "--short", "HEAD"], repo, check=False)
    return proc.stdout.strip() or None


def functions_tree(repo: str | os.PathLike[str], rev: str) -> str:
    """The sha of `functions/` at rev (the empty tree when there is none)."""
    proc = run(["rev-parse", "--verify", "--quiet", f"{rev}:{FUNCTIONS_DIR}"], repo, check=False)
    return proc.stdout.strip() or EMPTY_TREE


class SymlinkError(ForgegitError):
    """functions/ (or a file in it) is a symbolic link in git."""


def read_functions(repo: str | os.PathLike[str], rev: str) -> dict[str, bytes]:
    """`functions/*.py` at rev as {file name: bytes}, read from git (the working tree is not touched).

    A symbolic link in functions/ (or functions/ itself as one) is refused: a link would let a function
    file stand for any file of the checkout, e.g. .git/config or the sealed test split."""
    with gitpython.Repo(repo) as r:
        try:
            tree = r.commit(rev).tree
        except (gitpython.BadName, ValueError) as exc:
            raise ForgegitError(f"unknown revision {rev!r}") from exc
        try:
            sub = tree / FUNCTIONS_DIR
        except KeyError:
            return {}
        short = str(rev)[:12]
        if sub.type != "tree":
            if sub.mode == SYMLINK_MODE:
                raise SymlinkError(f"{FUNCTIONS_DIR} is a symbolic link at {short}: forgegit only loads "
                                   f"regular files from a real {FUNCTIONS_DIR}/ directory")
            raise ForgegitError(f"{FUNCTIONS_DIR} is not a directory at {short}")
        links = sorted(b.name for b in sub.blobs if b.mode == SYMLINK_MODE)
        if links:
            raise SymlinkError(f"{FUNCTIONS_DIR}/{links[0]} is a symbolic link at {short}: forgegit only loads "
                               f"regular files from {FUNCTIONS_DIR}/ (replace it with the file itself)")
        return {b.name: b.data_stream.read() for b in sub.blobs if b.name.endswith(".py")}


def branch_exists(repo: str | os.PathLike[str], branch: str) -> bool:
    return run(["show-ref", "--verify", "--quiet", f"refs/heads/{branch}"], repo, check=False).returncode == 0


def _sha1(oid: str) -> Optional[bytes]:
    """oid as 20 bytes; None unless it is 40 lowercase hex digits (anything else git would resolve as a name)."""
    if len(oid) != 40 or any(c not in "0123456789abcdef" for c in oid):
        return None
    return bytes.fromhex(oid)


def _batch(repo: str | os.PathLike[str], option: str, oids: Sequence[str]) -> bytes:
    proc = subprocess.run(command(["cat-file", option]), cwd=repo, input=("\n".join(oids) + "\n").encode(),
                          capture_output=True, env=clean_env())
    return proc.stdout


def blob_sizes(repo: str | os.PathLike[str], oids: Sequence[str]) -> dict[str, int]:
    """{id: size in bytes} of the blobs among oids, in one `git cat-file --batch-check` (missing ids,
    other kinds of object and ids that are not 40 hex digits are left out)."""
    wanted = [o for o in dict.fromkeys(oids) if _sha1(o) is not None]
    if not wanted:
        return {}
    sizes: dict[str, int] = {}
    lines = _batch(repo, "--batch-check", wanted).decode("ascii", "replace").splitlines()
    for oid, line in zip(wanted, lines):  # one line per id, in order: "<id> <type> <size>" or "<id> missing"
        parts = line.split()
        if len(parts) == 3 and parts[0] == oid and parts[1] == "blob" and parts[2].isdigit():
            sizes[oid] = int(parts[2])
    return sizes


def read_blobs(repo: str | os.PathLike[str], oids: Sequence[str], max_bytes: int,
               too_large: Optional[Callable[[str, int], None]] = None) -> dict[str, bytes]:
    """{id: contents} of the blobs among oids of at most max_bytes each: sizes from one
    `git cat-file --batch-check`, then the contents from one `git cat-file --batch` (a forged huge blob
    is never loaded). For many objects at once (every note): GitPython reads one object per round trip,
    1.7 times slower at 3,000 notes (bench/git_reads.py). Missing ids, other kinds of object and larger
    blobs (each told to too_large with its size) are left out."""
    sizes = blob_sizes(repo, oids)  # in the order of oids, valid ids only
    for oid, size in sizes.items():
        if size > max_bytes and too_large is not None:
            too_large(oid, size)
    small = [o for o, size in sizes.items() if size <= max_bytes]
    if not small:
        return {}
    data, pos, found = _batch(repo, "--batch", small), 0, {}
    for oid in small:  # each answer: "<id> blob <size>\n<contents>\n"
        end = data.find(b"\n", pos)
        if end < 0:
            break
        header = data[pos:end].split()
        if len(header) != 3 or not header[2].isdigit():  # "<id> missing": gone between the two reads
            pos = end + 1
            continue
        size = int(header[2])
        body = data[end + 1:end + 1 + size]
        if len(body) != size:
            break  # git stopped short: keep what was read whole
        found[oid] = body
        pos = end + 1 + size + 1
    return found


@dataclass(frozen=True)
class TreeEntry:
    """One entry of a git tree: kind is "blob" (a file or a symlink), "tree", or "commit" (a submodule)."""

    name: str
    kind: str
    oid: str
    mode: int


MAX_TREE_BYTES = 64 << 20  # a tree listing larger than this is not read (about 800,000 entries)
_KINDS = {0o04: "tree", 0o10: "blob", 0o12: "blob", 0o16: "commit"}  # mode >> 12: a symlink is a blob
# What GitPython raises on an object it cannot parse: a forged tree (a name aliasing .git, a bad mode,
# cut short), a commit without a readable tree line, an object gone between two reads.
_UNREADABLE = (ValueError, TypeError, AttributeError, KeyError, binascii.Error)


class Objects:
    """Reads one repository's objects by id through GitPython, whose persistent `git cat-file` serves a
    whole read (an evaluation's conversations, a tree's entries) instead of one process per object.

    Ids come from notes and refs anyone can push, so they are untrusted: a malformed or missing id, or
    an object GitPython refuses to parse, reads as absent (None, []), never as an error. Ids are SHA-1
    (40 hex digits), as GitPython's. Use it as a context manager (it stops the git processes)."""

    def __init__(self, repo: str | os.PathLike[str]) -> None:
        self._repo = gitpython.Repo(repo)
        # GitPython sets GIT_DIR for its git processes; the object store is pinned too, so a hook's or
        # a push quarantine's GIT_OBJECT_DIRECTORY / GIT_ALTERNATE_OBJECT_DIRECTORIES is not followed.
        common = os.fspath(self._repo.common_dir)
        self._repo.git.update_environment(GIT_COMMON_DIR=common, GIT_OBJECT_DIRECTORY=os.path.join(common, "objects"),
                                          GIT_ALTERNATE_OBJECT_DIRECTORIES="")

    def __enter__(self) -> "Objects":
        return self

    def __exit__(self, kind: Optional[type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        self.close()

    def close(self) -> None:
        self._repo.close()

    def info(self, oid: str) -> Optional[tuple[str, int]]:
        """(type, size in bytes) of the object, or None when it is not in the repository."""
        binary = _sha1(oid)
        if binary is None:
            return None
        try:
            found = self._repo.odb.info(binary)
        except _UNREADABLE:  # GitPython's "could not be resolved": missing
            return None
        return found.type.decode(), found.size

    def _contents(self, oid: str) -> Optional[bytes]:
        try:
            data: bytes = self._repo.odb.stream(bytes.fromhex(oid)).read()
        except _UNREADABLE:
            return None
        return data

    def blob(self, oid: str, max_bytes: int) -> Optional[bytes]:
        """The contents of a blob of at most max_bytes; None when it is missing, not a blob or larger."""
        found = self.info(oid)
        if found is None or found[0] != "blob" or found[1] > max_bytes:
            return None
        return self._contents(oid)

    def entries(self, oid: str, max_bytes: int = MAX_TREE_BYTES) -> list[TreeEntry]:
        """The entries of a tree, or of a commit's tree; [] when oid is neither, or its tree is larger than
        max_bytes or cannot be parsed."""
        found = self.info(oid)
        if found is None or found[0] not in ("tree", "commit"):
            return []
        try:
            tree = (gitpython.Commit(self._repo, bytes.fromhex(oid)).tree.hexsha if found[0] == "commit" else oid)
            size = self.info(tree)
            if size is None or size[0] != "tree" or size[1] > max_bytes:
                return []
            data = self._contents(tree)
            raw = tree_entries_from_data(data) if data is not None else []
        except _UNREADABLE:
            return []
        return [TreeEntry(name, _KINDS.get(mode >> 12, "unknown"), binsha.hex(), mode) for binsha, mode, name in raw]
