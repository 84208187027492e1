"""forgegit's git helpers on real repositories: no hook ever runs, and symlinks never pass as function files."""
from __future__ import annotations

import os
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
