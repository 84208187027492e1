"""forgegit's git helpers on real repositories: no hook ever runs, and symlinks never pass as function files."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from conftest import git as sh_git
from conftest import make_repo

from forgegit import git, notes

GOOD = 'def add(a: int, b: int) -> int:\n    """Add."""\n    return a + b\n'
HOOKS = ("pre-commit", "prepare-commit-msg", "commit-msg", "post-commit", "post-checkout", "post-merge",
         "reference-transaction", "post-rewrite", "pre-auto-gc")


def plant_hooks(hooks_dir: Path, marker: Path) -> None:
    hooks_dir.mkdir(parents=True, exist_ok=True)
    for hook in HOOKS:
        script = hooks_dir / hook
        script.write_text(f"#!/bin/sh\necho {hook} >> '{marker}'\n")
        script.chmod(0o755)


@pytest.mark.parametrize("where", ["dot-git-hooks", "core.hooksPath"])
def test_no_git_command_forgegit_runs_runs_a_hook(tmp_path: Path, where: str) -> None:
    """A hook planted in .git/hooks (or a hooks directory the repository's config names) never runs:
    not on commit (post-commit ignores --no-verify), checkout, worktree add, merge, revert or update-ref."""
    repo = make_repo(tmp_path / "repo", {"functions/add.py": GOOD})
    marker = tmp_path / "hooks-ran"
    if where == "dot-git-hooks":
        plant_hooks(repo / ".git" / "hooks", marker)
    else:
        plant_hooks(tmp_path / "elsewhere", marker)
        sh_git(repo, "config", "core.hooksPath", str(tmp_path / "elsewhere"))
    assert sh_git(repo, "commit", "-q", "--allow-empty", "-m", "with hooks") == "" and marker.exists()
    marker.unlink()  # git itself runs them: the hooks are real

    (repo / "functions" / "add.py").write_text(GOOD + "# more\n")
    git.run(["add", "-A"], repo)
    git.run(["commit", "--quiet", "--no-verify", "-m", "edit"], repo)
    git.run(["revert", "--no-edit", "HEAD"], repo)
    git.run(["branch", "side", "HEAD~1"], repo)
    git.run(["worktree", "add", "--quiet", "--detach", str(tmp_path / "wt"), "side"], repo)
    git.run(["checkout", "--quiet", "-b", "topic"], repo)
    git.run(["commit", "--quiet", "--allow-empty", "-m", "topic"], repo)
    git.run(["checkout", "--quiet", "main"], repo)
    git.run(["merge", "--no-ff", "--no-edit", "-m", "merge topic", "topic"], repo)
    git.run(["update-ref", "refs/heads/side", git.out(["rev-parse", "HEAD"], repo)], repo)
    notes.update_note(repo, git.out(["rev-parse", "HEAD"], repo), final={"run": "r"})
    assert notes.all_notes(repo)
    assert not marker.exists(), marker.read_text()


def test_git_commands_carry_the_hooks_off_switch() -> None:
    assert git.command(["commit", "-m", "x"])[:3] == ["git", "-c", "core.hooksPath=/dev/null"]


def _commit_symlink(repo: Path, link: str, target: str) -> str:
    os.symlink(target, repo / link)
    sh_git(repo, "add", "-A")
    sh_git(repo, "commit", "-q", "-m", f"link {link}")
    return sh_git(repo, "rev-parse", "HEAD")


def test_reading_functions_refuses_a_symlinked_function_file(tmp_path: Path) -> None:
    """functions/x.py -> ../.git/config (or the sealed test split) must not become a function's source."""
    repo = make_repo(tmp_path / "repo", {"functions/add.py": GOOD, "secret.txt": "sealed answers\n"})
    rev = _commit_symlink(repo, "functions/leak.py", "../secret.txt")
    with pytest.raises(git.SymlinkError, match=r"functions/leak\.py is a symbolic link"):
        git.read_functions(repo, rev)


def test_reading_functions_refuses_any_symlink_in_functions(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"functions/add.py": GOOD})
    rev = _commit_symlink(repo, "functions/data", "/etc")
    with pytest.raises(git.SymlinkError, match=r"functions/data is a symbolic link"):
        git.read_functions(repo, rev)


def test_reading_functions_refuses_a_symlinked_functions_directory(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"real/add.py": GOOD})
    rev = _commit_symlink(repo, "functions", "real")
    with pytest.raises(git.SymlinkError, match=r"functions is a symbolic link"):
        git.read_functions(repo, rev)


def test_reading_functions_returns_the_regular_files(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"functions/add.py": GOOD, "functions/README.md": "notes\n"})
    assert git.read_functions(repo, "HEAD") == {"add.py": GOOD.encode()}


def test_object_reads_treat_untrusted_ids_as_absent(tmp_path: Path) -> None:
    """An id from a forged note (malformed, missing, or naming the wrong kind of object) reads as absent:
    no traceback in log, eval or the optimizer's prompt."""
    repo = make_repo(tmp_path / "repo", {"functions/add.py": GOOD})
    blob = sh_git(repo, "rev-parse", "HEAD:functions/add.py")
    with git.Objects(repo) as objects:
        for bad in ("", "HEAD", "zz" * 20, "0" * 40, blob[:12], blob + "\n", "-" + blob[1:]):
            assert objects.info(bad) is None and objects.blob(bad, 1 << 20) is None and objects.entries(bad) == []
        assert objects.entries(blob) == []  # a blob is not a tree
        assert objects.blob(sh_git(repo, "rev-parse", "HEAD^{tree}"), 1 << 20) is None  # a tree is not a blob


def test_object_reads_return_what_git_stores_and_refuse_oversized_blobs(tmp_path: Path) -> None:
    """Blobs come back byte for byte up to the caller's limit; a tree lists its entries, a commit its tree's."""
    repo = make_repo(tmp_path / "repo", {"functions/add.py": GOOD})
    blob = sh_git(repo, "rev-parse", "HEAD:functions/add.py")
    with git.Objects(repo) as objects:
        assert objects.info(blob) == ("blob", len(GOOD.encode()))
        assert objects.blob(blob, len(GOOD)) == GOOD.encode()
        assert objects.blob(blob, len(GOOD) - 1) is None
        top = {e.name: e for e in objects.entries(sh_git(repo, "rev-parse", "HEAD"))}
        assert top["functions"].kind == "tree" and top["functions"].mode == 0o40000
        inside = objects.entries(top["functions"].oid)
        assert [(e.name, e.kind, e.oid) for e in inside] == [("add.py", "blob", blob)]


def test_object_reads_ignore_a_git_dir_inherited_from_a_hook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run from a git hook (GIT_DIR set to another repository), forgegit still reads its own repository."""
    repo = make_repo(tmp_path / "repo", {"functions/add.py": GOOD})
    other = make_repo(tmp_path / "other", {"functions/other.py": GOOD.replace("add", "other")})
    blob = sh_git(repo, "rev-parse", "HEAD:functions/add.py")
    monkeypatch.setenv("GIT_DIR", str(other / ".git"))
    with git.Objects(repo) as objects:
        assert objects.blob(blob, 1 << 20) == GOOD.encode()


def test_many_blobs_read_at_once_skip_what_is_missing_or_too_large(tmp_path: Path) -> None:
    """Reading every note at once: a missing id, a tree's id or a blob over the limit is left out
    (the too-large one reported with its size), and the others come back byte for byte."""
    repo = make_repo(tmp_path / "repo", {"functions/add.py": GOOD, "big.txt": "x" * 5000})
    small = sh_git(repo, "rev-parse", "HEAD:functions/add.py")
    big = sh_git(repo, "rev-parse", "HEAD:big.txt")
    tree = sh_git(repo, "rev-parse", "HEAD^{tree}")
    told: list[tuple[str, int]] = []
    got = git.read_blobs(repo, ["0" * 40, small, tree, big, "not-an-id", small], 1000,
                         lambda oid, size: told.append((oid, size)))
    assert got == {small: GOOD.encode()} and told == [(big, 5000)]
    assert git.read_blobs(repo, [], 1000) == {} and git.read_blobs(repo, ["0" * 40], 1000) == {}


def _forged_tree(repo: Path, entries: list[tuple[bytes, bytes, str]]) -> str:
    """A tree object written byte by byte (git's own checks skipped), as a push with fsck off can bring."""
    data = b"".join(mode + b" " + name + b"\0" + bytes.fromhex(oid) for mode, name, oid in entries)
    proc = subprocess.run(["git", "hash-object", "-t", "tree", "-w", "--literally", "--stdin"], cwd=repo,
                          input=data, capture_output=True, check=True)
    return proc.stdout.decode().strip()


def test_forged_trees_read_as_absent_or_list_their_entries(tmp_path: Path) -> None:
    """A conversations tree pushed by someone else may hold a submodule, a name aliasing .git or a bad mode:
    forgegit lists what it can (a submodule is a "commit" entry) or reads the tree as absent, never a traceback."""
    repo = make_repo(tmp_path / "repo", {"functions/add.py": GOOD})
    blob = sh_git(repo, "rev-parse", "HEAD:functions/add.py")
    with_submodule = _forged_tree(repo, [(b"100644", b"a.json", blob), (b"160000", b"sub", "1" * 40)])
    aliasing = _forged_tree(repo, [(b"100644", b".git", blob)])
    bad_mode = _forged_tree(repo, [(b"70000", b"x.json", blob)])
    with git.Objects(repo) as objects:
        listed = [(e.name, e.kind) for e in objects.entries(with_submodule)]
        assert listed == [("a.json", "blob"), ("sub", "commit")]
        assert objects.entries(aliasing) == [] and objects.entries(bad_mode) == []
        assert objects.entries(with_submodule, max_bytes=10) == []  # larger than the caller allows


def test_a_commit_whose_tree_is_missing_lists_nothing(tmp_path: Path) -> None:
    """A conversations ref pointing at a commit whose tree was never fetched reads as empty."""
    repo = make_repo(tmp_path / "repo", {"functions/add.py": GOOD})
    data = f"tree {'2' * 40}\nauthor a <a@b> 0 +0000\ncommitter a <a@b> 0 +0000\n\nforged\n".encode()
    commit = subprocess.run(["git", "hash-object", "-t", "commit", "-w", "--literally", "--stdin"], cwd=repo,
                            input=data, capture_output=True, check=True).stdout.decode().strip()
    with git.Objects(repo) as objects:
        assert objects.info(commit) is not None and objects.entries(commit) == []


def test_an_id_that_names_a_ref_is_not_resolved_as_one(tmp_path: Path) -> None:
    """A 64-digit "id" in a SHA-1 repository is a valid ref name to git: forgegit never follows it to that ref."""
    repo = make_repo(tmp_path / "repo", {"functions/add.py": GOOD})
    name = "f" * 64
    sh_git(repo, "tag", name, sh_git(repo, "rev-parse", "HEAD:functions/add.py"))
    with git.Objects(repo) as objects:
        assert objects.info(name) is None and objects.blob(name, 1 << 20) is None
    assert git.read_blobs(repo, [name], 1 << 20) == {}


def test_object_reads_ignore_an_object_directory_inherited_from_a_hook(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside a hook or a push quarantine (GIT_OBJECT_DIRECTORY set elsewhere), reads use the repository's own objects."""
    repo = make_repo(tmp_path / "repo", {"functions/add.py": GOOD})
    other = make_repo(tmp_path / "other", {"functions/other.py": GOOD.replace("add", "other")})
    blob = sh_git(repo, "rev-parse", "HEAD:functions/add.py")
    monkeypatch.setenv("GIT_OBJECT_DIRECTORY", str(other / ".git" / "objects"))
    with git.Objects(repo) as objects:
        assert objects.blob(blob, 1 << 20) == GOOD.encode()
