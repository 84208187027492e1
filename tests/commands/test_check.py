"""`forgegit check`: exit codes, `path:line: message` lines, GitHub annotations, never a traceback."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from forgegit.cli import cli

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

GOOD = 'def add(a: int, b: int = 2) -> int:\n    """Add."""\n    return a + b\n'
BAD = 'import os\n\nos.getcwd()\n\ndef bad(x, *args):\n    return x\n'


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, ["check", *args])


@pytest.fixture
def functions(repo: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A repository (the current directory) with one good function file."""
    d = repo / "functions"
    d.mkdir()
    (d / "add.py").write_text(GOOD)
    monkeypatch.chdir(repo)
    return d


def test_good_functions_exit_0_with_files_ok(functions: Path) -> None:
    result = invoke()
    assert result.exit_code == 0, result.output
    assert result.stdout == "1 file OK\n"


def test_bad_file_exits_1_with_path_line_message(functions: Path) -> None:
    """Each problem is one `path:line: message` line, in line order."""
    (functions / "bad.py").write_text(BAD)
    result = invoke()
    assert result.exit_code == 1
    out = result.stdout.splitlines()
    assert [line.split(": ", 1)[0] for line in out] == [
        "functions/bad.py:3", "functions/bad.py:5", "functions/bad.py:5", "functions/bad.py:5",
    ]
    assert "code at the top level would run on import: `os.getcwd()`" in out[0]
    assert "forgegit check: 4 problems in 1 of 2 files" in result.stderr


def test_default_paths_are_the_repo_functions_from_a_subdirectory(functions: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run from anywhere inside the repository, `check` finds the root's functions/."""
    (functions / "bad.py").write_text(BAD)
    sub = functions.parent / "docs" / "deep"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    result = invoke()
    assert result.exit_code == 1
    assert result.stdout.splitlines()[0].startswith(f"{(functions / 'bad.py').as_posix()}:3: ")


def test_explicit_files_and_directories(functions: Path) -> None:
    (functions / "bad.py").write_text(BAD)
    assert invoke("functions/add.py").exit_code == 0
    result = invoke("functions")
    assert result.exit_code == 1 and "functions/bad.py:5:" in result.stdout


def test_github_format_prints_error_annotations(functions: Path) -> None:
    (functions / "bad.py").write_text(BAD)
    result = invoke("--format", "github", "functions/bad.py")
    assert result.exit_code == 1
    first = result.stdout.splitlines()[0]
    assert first == (
        "::error file=functions/bad.py,line=3::code at the top level would run on import: `os.getcwd()` "
        "(only imports, def/class, constants and a docstring may sit there)"
    )
    assert all(line.startswith("::error file=functions/bad.py,line=") for line in result.stdout.splitlines())


def test_github_format_escapes_the_file_property(functions: Path) -> None:
    weird = functions / "a,b:c.py"
    weird.write_text(GOOD)
    result = invoke("--format", "github", str(weird.relative_to(functions.parent)))
    assert result.stdout.startswith("::error file=functions/a%2Cb%3Ac.py,line=1::`a,b:c` cannot be a function name")


def test_unknown_format_is_a_usage_error(functions: Path) -> None:
    result = invoke("--format", "json")
    assert result.exit_code == 2 and "json" in result.output


def test_outside_a_repository_is_one_error_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    proc = subprocess.run([str(BIN / "forgegit"), "check"], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.startswith("forgegit: error: ") and "not inside a git repository" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_repository_without_functions_dir_is_one_error_line(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(repo)
    proc = subprocess.run([str(BIN / "forgegit"), "check"], capture_output=True, text=True)
    assert proc.returncode == 1 and "no functions/ directory" in proc.stderr and "Traceback" not in proc.stderr


GARBAGE = {
    "binary.py": b"\x7fELF\x02\x01\x01\x00\xff\xfe" + bytes(range(256)),
    "latin.py": "def latin():\n    '''Caf\xe9.'''\n".encode("latin-1"),
    "empty.py": b"",
    "syntax.py": b"def syntax(:\n",
    "deep.py": b"x = " + b"(" * 500 + b")" * 500 + b"\n",
    "long_chain.py": b"X = " + b"+".join([b"1"] * 20000) + b"\n",
}


def test_garbage_files_never_print_a_traceback(functions: Path) -> None:
    """A binary, non-UTF-8, empty, broken, deeply nested file, a directory and a missing path: lines, not crashes."""
    for name, data in GARBAGE.items():
        (functions / name).write_bytes(data)
    (functions / "adir.py").mkdir()
    proc = subprocess.run(
        [str(BIN / "forgegit"), "check", "functions", "functions/missing.py"],
        capture_output=True, text=True, cwd=functions.parent,
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    reported = {line.split(":", 1)[0] for line in proc.stdout.splitlines()}
    expected = {f"functions/{n}" for n in GARBAGE} | {"functions/adir.py", "functions/missing.py"}
    assert expected <= reported


# --------------------------------------------------------------------------- pre-commit hook


def manifest_hook() -> dict[str, object]:
    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert isinstance(hooks, list) and len(hooks) == 1
    hook: dict[str, object] = hooks[0]
    return hook


def test_pre_commit_manifest_declares_forgegit_check() -> None:
    """`repo: forgegit` + `id: forgegit-check` in a .pre-commit-config.yaml resolves to `forgegit check FILES`."""
    hook = manifest_hook()
    assert hook["id"] == "forgegit-check"
    assert hook["name"]
    assert hook["entry"] == "forgegit check"
    assert hook["language"] == "python"
    assert hook["files"] == r"^functions/.*\.py$"
    assert hook["pass_filenames"] is True


def test_pre_commit_runs_the_hook_on_function_files_only(repo: Path, tmp_path: Path) -> None:
    """Real pre-commit with the manifest's fields (as a local system hook, so it needs no network)."""
    pre_commit = BIN / "pre-commit"
    if not pre_commit.exists():
        pytest.skip("pre-commit is not installed")
    hook = dict(manifest_hook(), language="system", entry=f"{BIN / 'forgegit'} check")
    (repo / ".pre-commit-config.yaml").write_text(yaml.safe_dump({"repos": [{"repo": "local", "hooks": [hook]}]}))
    (repo / "functions").mkdir()
    (repo / "functions" / "add.py").write_text(GOOD)
    (repo / "helper.py").write_text(BAD)  # outside functions/: not a function file
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "pc-home")}

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(pre_commit), "run", "--all-files"], cwd=repo, capture_output=True, text=True, env=env)

    ok = run()
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "forgegit check" in ok.stdout and "Passed" in ok.stdout

    (repo / "functions" / "bad.py").write_text(BAD)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    failed = run()
    assert failed.returncode == 1
    assert "functions/bad.py:3: code at the top level would run on import" in failed.stdout
    assert "helper.py" not in failed.stdout


@pytest.mark.skipif(
    os.environ.get("FORGEGIT_NETWORK_TESTS") != "1",
    reason="pre-commit try-repo pip-installs forgegit's dependencies (network, ~35 s): set FORGEGIT_NETWORK_TESTS=1",
)
def test_pre_commit_try_repo_installs_and_runs_the_published_hook(repo: Path, tmp_path: Path) -> None:
    """What a user's `repo: <forgegit>` + `id: forgegit-check` does, end to end (language: python)."""
    (repo / "functions").mkdir()
    (repo / "functions" / "add.py").write_text(GOOD)
    (repo / "functions" / "bad.py").write_text(BAD)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    proc = subprocess.run(
        [str(BIN / "pre-commit"), "try-repo", str(ROOT), "forgegit-check", "--all-files"],
        cwd=repo, capture_output=True, text=True, env={**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "pc")},
        timeout=600,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "functions/bad.py:3: code at the top level would run on import" in proc.stdout


# --------------------------------------------------------------------------- what check refuses


def test_check_refuses_every_construct_that_runs_code_on_import(functions: Path) -> None:
    """A private decorator, a metaclass, `__init_subclass__`, `__class_getitem__`, an f-string of an object,
    a class property, ...: `forgegit check` fails on each file, naming it."""
    from import_time_cases import CASES, source

    for name, code, *_ in CASES:
        (functions / f"{name}.py").write_text(source(name, code))
    result = invoke()
    assert result.exit_code == 1
    reported = {line.split(":", 1)[0] for line in result.stdout.splitlines()}
    assert {f"functions/{name}.py" for name, *_ in CASES} <= reported
    assert "functions/add.py" not in reported


def test_the_repositorys_own_functions_pass_check() -> None:
    proc = subprocess.run([str(BIN / "forgegit"), "check"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("name", ["conftest", "test_pwn", "pwn_test", "sitecustomize", "setup", "noxfile", "python"])
def test_check_refuses_a_function_named_so_a_tool_runs_it(functions: Path, name: str) -> None:
    """`pytest` at the repository root ran functions/test_pwn.py on its own."""
    (functions / f"{name}.py").write_text(f'def {name}(x: int) -> int:\n    """Echo."""\n    return x\n')
    result = invoke()
    assert result.exit_code == 1
    assert any(line.startswith(f"functions/{name}.py:1: `{name}` cannot be a function name: functions/{name}.py would")
               for line in result.stdout.splitlines()), result.stdout


def test_check_refuses_a_symlinked_function_file(functions: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.py"
    secret.write_text(GOOD.replace("add", "secret"))
    (functions / "secret.py").symlink_to(secret)
    result = invoke()
    assert result.exit_code == 1
    assert result.stdout.startswith("functions/secret.py:1: functions/secret.py is a symbolic link")


def test_check_refuses_a_symlinked_functions_directory(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / "add.py").write_text(GOOD)
    (repo / "functions").symlink_to(real)
    monkeypatch.chdir(repo)
    result = invoke()
    assert result.exit_code == 1 and "functions is a symbolic link" in result.stdout


def test_check_refuses_an_oversized_function_file_naming_it_and_the_limit(functions: Path) -> None:
    """A 10 MB function body was accepted; it then filled every optimizer prompt and agent request."""
    from forgegit.functions import MAX_FILE_BYTES

    (functions / "huge.py").write_text(GOOD.replace("add", "huge") + "# " + "x" * (10 * 1024 * 1024) + "\n")
    result = invoke()
    assert result.exit_code == 1
    assert "functions/huge.py:1: functions/huge.py is 10,485," in result.stdout
    assert f"over the limit of {MAX_FILE_BYTES:,} bytes" in result.stdout


def test_check_refuses_function_files_over_the_total_limit(functions: Path) -> None:
    from forgegit.functions import MAX_FILE_BYTES, MAX_TOTAL_BYTES

    for i in range(MAX_TOTAL_BYTES // MAX_FILE_BYTES + 1):
        name = f"f{i:02d}"
        (functions / f"{name}.py").write_text(GOOD.replace("add", name) + "# " + "x" * (MAX_FILE_BYTES - 200) + "\n")
    result = invoke()
    assert result.exit_code == 1
    assert f"over the limit of {MAX_TOTAL_BYTES:,} bytes" in result.stdout


def test_a_file_name_cannot_print_a_workflow_command(functions: Path) -> None:
    """`forgegit check` prints file names; one holding `\\n::error …` must not start a line of its own."""
    (functions / "x\n::error file=README.md::forged\n.py").write_text(GOOD)
    text = invoke()
    assert text.exit_code == 1 and "forged" in text.stdout
    assert not [line for line in text.stdout.splitlines() if line.lstrip().startswith("::")]
    github = invoke("--format", "github")
    assert github.exit_code == 1 and "forged" in github.stdout
    assert all(line.startswith("::error file=functions/") for line in github.stdout.splitlines())


def test_an_error_line_cannot_print_a_workflow_command(functions: Path) -> None:
    """The one error line on stderr (the Actions runner reads it too) stays one line whatever it quotes."""
    proc = subprocess.run([str(BIN / "forgegit"), "eval", "--tasks", "x\n::error::forged.jsonl"],
                          capture_output=True, text=True, cwd=functions.parent)
    assert proc.returncode == 1 and "forged" in proc.stderr and "task file not found" in proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith("forgegit: error: ")
