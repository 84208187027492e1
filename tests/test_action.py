"""The composite action (action.yml) and the training workflow: schema-valid, injection-safe, secrets scoped.

The action's `run:` steps are executed with bash in a GitHub-like temp environment where `forgegit`
and the setup-python interpreter are stubs recording argv, environment and working directory.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import make_repo

ROOT = Path(__file__).resolve().parents[1]
ACTION = ROOT / "action.yml"
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
TRAIN_WORKFLOW = ROOT / ".github" / "workflows" / "train.yml"
OUTPUTS = {"score", "baseline-score", "branch", "pr-url", "pr-number", "shard-file"}


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    if True in data:  # YAML 1.1 reads the `on:` key as True
        data["on"] = data.pop(True)
    return data


def action() -> dict[str, Any]:
    return load(ACTION)


def steps() -> list[dict[str, Any]]:
    return action()["runs"]["steps"]


def step(step_id: str) -> dict[str, Any]:
    return next(s for s in steps() if s.get("id") == step_id)


def check_jsonschema() -> str:
    exe = Path(sys.executable).parent / "check-jsonschema"
    found = str(exe) if exe.exists() else shutil.which("check-jsonschema")
    if not found:
        pytest.skip("check-jsonschema is not installed (pip install -e '.[dev]')")
    return found


# --- schema validation ------------------------------------------------------------------


def test_action_yml_is_valid_for_github() -> None:
    """action.yml passes GitHub's action schema (vendored in check-jsonschema, offline)."""
    proc = subprocess.run([check_jsonschema(), "--builtin-schema", "vendor.github-actions", str(ACTION)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=[w.name for w in WORKFLOWS])
def test_workflows_are_valid_for_github(workflow: Path) -> None:
    """Each workflow file passes GitHub's workflow schema."""
    proc = subprocess.run([check_jsonschema(), "--builtin-schema", "vendor.github-workflows", str(workflow)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- structure ------------------------------------------------------------------------


def test_every_run_step_says_shell_bash() -> None:
    """Composite run steps without `shell:` fail at load time on GitHub."""
    runs = [s for s in steps() if "run" in s]
    assert runs and all(s.get("shell") == "bash" for s in runs)
    for job in load(TRAIN_WORKFLOW)["jobs"].values():
        assert all(s.get("shell") == "bash" for s in job["steps"] if "run" in s)


@pytest.mark.parametrize("path", [ACTION, *WORKFLOWS], ids=lambda p: p.name)
def test_no_expressions_inside_run_scripts(path: Path) -> None:
    """No `${{ inputs.* }}` (or other user-controlled expression) is pasted into a shell script: no script injection."""
    data = load(path)
    all_steps = data["runs"]["steps"] if "runs" in data else [s for j in data["jobs"].values() for s in j["steps"]]
    for s in all_steps:
        script = s.get("run", "")
        assert "${{ inputs." not in script and "${{inputs." not in script
        assert not re.search(r"\$\{\{\s*(inputs|github\.event|steps)\.", script), script
        if path in (ACTION, TRAIN_WORKFLOW):
            assert "${{" not in script, f"{s.get('name')}: pass values through env:"


def test_every_input_is_mapped_and_secrets_go_only_where_needed() -> None:
    """Each input reaches a step via env (or working-directory); the API key only trains, the token only opens the PR."""
    act = action()
    text_by_step = {s.get("id") or s.get("name"): yaml.safe_dump({k: s.get(k) for k in ("env", "with", "working-directory")})
                    for s in act["runs"]["steps"]}
    for name in act["inputs"]:
        assert any(f"inputs.{name} }}" in t for t in text_by_step.values()), f"input {name} is never used"
    api_users = [k for k, t in text_by_step.items() if "inputs.api-key" in t]
    token_users = [k for k, t in text_by_step.items() if "inputs.github-token" in t]
    assert api_users == ["train"] and step("train")["env"]["OPENAI_API_KEY"] == "${{ inputs.api-key }}"
    assert token_users == ["reviews", "pr"] and step("pr")["env"]["GITHUB_TOKEN"] == "${{ inputs.github-token }}"
    assert step("reviews")["env"]["GITHUB_TOKEN"] == "${{ inputs.github-token }}"
    assert step("train")["env"]["OPENAI_BASE_URL"] == "${{ inputs.base-url }}"
    assert act["inputs"]["github-token"]["default"] == "${{ github.token }}"


def test_action_declares_outputs_branding_and_a_private_python() -> None:
    """Users get the five outputs; setup-python does not change the caller's Python (update-environment: false)."""
    act = action()
    assert set(act["outputs"]) == OUTPUTS
    assert act["branding"]["icon"] and act["branding"]["color"]
    setup = next(s for s in steps() if str(s.get("uses", "")).startswith("actions/setup-python@"))
    assert setup["uses"] == "actions/setup-python@v5"
    assert setup["with"]["update-environment"] is False
    assert "runner.temp" in step("install")["env"]["FORGEGIT_VENV"]


def test_training_workflow_is_scheduled_serialised_and_least_privileged() -> None:
    """The self-training workflow: weekly + manual, never cancelled mid-push, only contents/pull-requests write."""
    wf = load(TRAIN_WORKFLOW)
    assert set(wf["on"]) == {"schedule", "workflow_dispatch"}
    assert re.fullmatch(r"[\d*]+ [\d*]+ \* \* [0-6]", wf["on"]["schedule"][0]["cron"])
    assert wf["permissions"] == {"contents": "write", "pull-requests": "write"}
    assert wf["concurrency"]["cancel-in-progress"] is False and wf["concurrency"]["group"]
    (job,) = wf["jobs"].values()
    assert "permissions" not in job
    checkout = next(s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/checkout@"))
    assert checkout["uses"] == "actions/checkout@v4" and checkout["with"]["fetch-depth"] == 0
    ours = next(s for s in job["steps"] if s.get("uses") == "./")
    assert set(ours["with"]) <= set(action()["inputs"]), "the workflow passes an input action.yml lacks"
    assert ours["with"]["api-key"] == "${{ secrets.OPENAI_API_KEY }}"
    assert "vars." in ours["with"]["model"] and "vars." in ours["with"]["base-url"]
    assert ours["with"]["tasks"] == "examples/gsm8k/train.jsonl" and ours["with"]["val"] == "examples/gsm8k/val.jsonl"
    for split in ("train", "val"):
        assert (ROOT / "examples" / "gsm8k" / f"{split}.jsonl").exists()


def test_no_permissions_broader_than_needed_in_any_workflow() -> None:
    """No workflow asks for write-all or permissions beyond contents and pull-requests."""
    for path in WORKFLOWS:
        wf = load(path)
        for perms in [wf.get("permissions")] + [j.get("permissions") for j in wf["jobs"].values()]:
            if perms is None:
                continue
            assert perms not in ("write-all", "read-all")
            assert set(perms) <= {"contents", "pull-requests"}, path.name


# --- simulating the action's run steps ------------------------------------------------


EXPR = re.compile(r"\$\{\{(.*?)\}\}")


def evaluate(text: str, ctx: dict[str, Any]) -> str:
    """Expand `${{ a.b || 'literal' }}` the way the runner would (the subset action.yml uses)."""
    def one(m: re.Match[str]) -> str:
        for alt in m.group(1).split("||"):
            alt = alt.strip()
            value: Any = alt.strip("'") if alt.startswith("'") else ctx
            if not alt.startswith("'"):
                for part in alt.split("."):
                    value = value.get(part, "") if isinstance(value, dict) else ""
            if value not in ("", None):
                return str(value).lower() if isinstance(value, bool) else str(value)
        return ""
    return EXPR.sub(one, str(text))


def parse_outputs(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    lines = path.read_text().splitlines() if path.exists() else []
    i = 0
    while i < len(lines):
        if "<<" in lines[i] and "=" not in lines[i].split("<<")[0]:
            name, delim = lines[i].split("<<", 1)
            end = lines.index(delim, i + 1)
            values[name], i = "\n".join(lines[i + 1:end]), end + 1
        else:
            name, value = lines[i].split("=", 1)
            values[name], i = value, i + 1
    return values


STUB_FORGEGIT = '''#!{python}
import json, os, sys
with open({log!r}, "a") as f:
    f.write(json.dumps({{"argv": sys.argv[1:], "env": dict(os.environ), "cwd": os.getcwd()}}) + "\\n")
outputs = {{}}
if sys.argv[1] == "train":
    outputs = {{"branch": "forgegit/train/r1", "score": "0.7000", "baseline-score": "0.5000"}}
elif sys.argv[1] == "reviews":
    pending = os.path.join(os.environ["RUNNER_TEMP"], "pending-pr")  # a test says a PR has new feedback
    if os.path.exists(pending):
        out = sys.argv[sys.argv.index("--out") + 1]
        open(out, "w").write("{{}}")
        outputs = {{"pr-number": open(pending).read().strip(), "feedback-file": out}}
elif sys.argv[1] == "pr":
    outputs = {{"score": "0.7500", "baseline-score": "0.6000", "branch": sys.argv[2] if len(sys.argv) > 2 else "",
               "pr-url": "https://github.com/octo/agent/pull/7", "pr-number": "7"}}
with open(os.environ["GITHUB_OUTPUT"], "a") as f:
    f.writelines(f"{{k}}={{v}}\\n" for k, v in outputs.items())
'''

STUB_PYTHON = '''#!/usr/bin/env bash
printf '%s\\n' "$*" >> {log!r}
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then mkdir -p "$3/bin" && cp "$0" "$3/bin/python"; fi
'''


class Runner:
    """Runs action.yml's steps like the Actions runner: step env, working-directory, outputs, bash -eo pipefail."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.workspace = make_repo(tmp / "workspace", {"README.md": "hi\n", "sub/README.md": "sub\n"})
        self.home = tmp / "runner-home"
        self.home.mkdir()
        (self.home / ".gitconfig").write_text("[init]\n\tdefaultBranch = main\n")  # no user.email, like a runner
        self.temp = tmp / "runner-temp"
        self.temp.mkdir()
        self.stubs = tmp / "stubs"
        self.stubs.mkdir()
        self.log = tmp / "forgegit-calls.jsonl"
        self.python_log = tmp / "python-calls.txt"
        self._stub("forgegit", STUB_FORGEGIT.format(python=sys.executable, log=str(self.log)))
        self._stub("setup-python", STUB_PYTHON.format(log=str(self.python_log)))
        self.summary = tmp / "summary.md"
        self.step_env: dict[str, dict[str, str]] = {}

    def _stub(self, name: str, text: str) -> None:
        path = self.stubs / name
        path.write_text(text)
        path.chmod(0o755)

    def base_env(self) -> dict[str, str]:
        return {
            "PATH": f"{self.stubs}{os.pathsep}{os.environ['PATH']}", "HOME": str(self.home),
            "GIT_CONFIG_GLOBAL": str(self.home / ".gitconfig"), "GIT_CONFIG_NOSYSTEM": "1",
            "GITHUB_ACTIONS": "true", "CI": "true", "GITHUB_REPOSITORY": "octo/agent",
            "GITHUB_SERVER_URL": "https://github.com", "GITHUB_API_URL": "https://api.github.com",
            "GITHUB_WORKSPACE": str(self.workspace), "RUNNER_TEMP": str(self.temp),
            "GITHUB_STEP_SUMMARY": str(self.summary), "GITHUB_ENV": str(self.tmp / "github_env"),
            "GITHUB_PATH": str(self.tmp / "github_path"),
        }

    def run(self, inputs: dict[str, str]) -> dict[str, str]:
        """Run every step with these inputs; the action's outputs."""
        act = action()
        unknown = set(inputs) - set(act["inputs"])
        assert not unknown, f"not inputs of action.yml: {unknown}"
        ctx: dict[str, Any] = {
            "github": {"action_path": str(ROOT), "token": "ghs_default_job_token", "workspace": str(self.workspace)},
            "runner": {"temp": str(self.temp)}, "steps": {},
        }
        ctx["inputs"] = {k: evaluate(v.get("default", ""), ctx) for k, v in act["inputs"].items()}
        ctx["inputs"].update(inputs)
        for i, s in enumerate(act["runs"]["steps"]):
            sid = s.get("id") or f"step{i}"
            if "uses" in s:  # setup-python: stand in with the stub interpreter
                ctx["steps"][sid] = {"outputs": {"python-path": str(self.stubs / "setup-python")}}
                continue
            ctx["steps"][sid] = {"outputs": self._run_step(sid, s, ctx)}
        return {k: evaluate(v["value"], ctx) for k, v in act["outputs"].items()}

    def _run_step(self, sid: str, s: dict[str, Any], ctx: dict[str, Any]) -> dict[str, str]:
        env = self.base_env()
        env.update({k: evaluate(v, ctx) for k, v in (s.get("env") or {}).items()})
        self.step_env[sid] = env
        output = self.tmp / f"output-{sid}"
        env["GITHUB_OUTPUT"] = str(output)
        script = self.tmp / f"step-{sid}.sh"
        script.write_text(s["run"])
        cwd = self.workspace / evaluate(s.get("working-directory", "."), ctx)
        proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
                              cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, f"step {sid} failed: {proc.stdout}{proc.stderr}"
        return parse_outputs(output)

    def calls(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def call(self, command: str) -> dict[str, Any]:
        (found,) = [c for c in self.calls() if c["argv"][0] == command]
        return found


@pytest.fixture
def runner(tmp_path: Path) -> Runner:
    return Runner(tmp_path)


ALL_INPUTS = {
    "model": "gpt-4o-mini", "base-url": "http://llm.internal/v1", "api-key": "sk-secret-key",
    "tasks": "tasks/train.jsonl", "val": "tasks/val.jsonl", "test": "tasks/test.jsonl", "checker": "gsm8k",
    "epochs": "4", "patience": "2", "max-actions": "3", "budget": "1.5",
    "github-token": "ghp_pr_token", "draft": "true", "labels": "forgegit, needs-review", "working-directory": "sub",
}


def test_inputs_reach_the_train_and_pr_command_lines(runner: Runner) -> None:
    """Every training input becomes its `forgegit train` flag; draft, labels and the branch reach `forgegit pr`."""
    runner.run(ALL_INPUTS)
    assert runner.call("train")["argv"] == [
        "train", "--model", "gpt-4o-mini", "--tasks", "tasks/train.jsonl", "--val", "tasks/val.jsonl",
        "--test", "tasks/test.jsonl", "--checker", "gsm8k", "--epochs", "4", "--patience", "2",
        "--max-actions", "3", "--budget", "1.5",
    ]
    assert runner.call("pr")["argv"] == ["pr", "forgegit/train/r1", "--draft", "--label", "forgegit, needs-review"]
    assert [c["argv"][0] for c in runner.calls()] == ["reviews", "train", "pr"]


def test_empty_inputs_fall_back_to_forgegit_toml(runner: Runner) -> None:
    """With no inputs, `forgegit train` gets no flags (forgegit.toml decides) and no empty OPENAI_* variables."""
    runner.run({})
    train = runner.call("train")
    assert train["argv"] == ["train"]
    assert "OPENAI_BASE_URL" not in train["env"] and "OPENAI_API_KEY" not in train["env"]
    assert runner.call("pr")["argv"] == ["pr", "forgegit/train/r1"]


def test_api_key_reaches_only_training_and_token_only_the_pr(runner: Runner) -> None:
    """OPENAI_API_KEY is in `forgegit train`'s environment only; GITHUB_TOKEN in `forgegit reviews`' and `pr`'s only."""
    runner.run(ALL_INPUTS)
    reviews = runner.call("reviews")["env"]
    assert reviews["GITHUB_TOKEN"] == "ghp_pr_token" and not any("sk-secret-key" in v for v in reviews.values())
    train, pr = runner.call("train")["env"], runner.call("pr")["env"]
    assert train["OPENAI_API_KEY"] == "sk-secret-key" and train["OPENAI_BASE_URL"] == "http://llm.internal/v1"
    assert "GITHUB_TOKEN" not in train
    assert pr["GITHUB_TOKEN"] == "ghp_pr_token"
    assert "OPENAI_API_KEY" not in pr and not any("sk-secret-key" in v for v in pr.values())
    install = runner.step_env["install"]
    assert not any(v in ("sk-secret-key", "ghp_pr_token") for v in install.values())


def test_review_feedback_on_an_open_pr_continues_its_run(runner: Runner) -> None:
    """When `forgegit reviews --pending` finds PR 7 with new review comments, training continues PR 7's run from the
    feedback file (`train --from-pr 7 --reviews F`, without the token) and `forgegit pr` updates its branch."""
    (runner.temp / "pending-pr").write_text("7\n")
    runner.run(ALL_INPUTS)
    reviews = runner.call("reviews")
    feedback = str(runner.temp / "forgegit-review-feedback.json")
    assert reviews["argv"] == ["reviews", "--pending", "--out", feedback]
    train = runner.call("train")
    assert train["argv"][:5] == ["train", "--from-pr", "7", "--reviews", feedback]
    assert "GITHUB_TOKEN" not in train["env"]
    assert runner.call("pr")["argv"][:2] == ["pr", "forgegit/train/r1"]


def test_learn_from_reviews_false_always_starts_a_new_run(runner: Runner) -> None:
    """learn-from-reviews: "false" reads no pull request and trains a new run."""
    (runner.temp / "pending-pr").write_text("7\n")
    runner.run({"learn-from-reviews": "false"})
    assert [c["argv"][0] for c in runner.calls()] == ["train", "pr"] and runner.call("train")["argv"] == ["train"]


def test_github_token_defaults_to_the_job_token(runner: Runner) -> None:
    """Without the github-token input, `forgegit pr` uses the workflow's GITHUB_TOKEN."""
    runner.run({"api-key": "sk-x"})
    assert runner.call("pr")["env"]["GITHUB_TOKEN"] == "ghs_default_job_token"


@pytest.mark.parametrize("hostile", [
    '$(touch "$GITHUB_WORKSPACE/pwned")', '"; touch pwned; echo "', "`touch pwned`", "x\ntouch pwned",
    "'; touch pwned #", "a b  c",
])
def test_hostile_input_values_are_passed_literally(runner: Runner, hostile: str) -> None:
    """Input values with shell syntax reach forgegit verbatim and run nothing (no script injection)."""
    runner.run({"model": hostile, "labels": hostile, "budget": hostile})
    assert runner.call("train")["argv"][1:3] == ["--model", hostile]
    assert runner.call("train")["argv"][-2:] == ["--budget", hostile]
    assert runner.call("pr")["argv"][-2:] == ["--label", hostile]
    assert not list(runner.workspace.rglob("pwned")) and not list(runner.tmp.rglob("pwned"))


def test_working_directory_is_where_forgegit_runs(runner: Runner) -> None:
    """`working-directory: sub` runs both commands in that directory of the checkout."""
    runner.run({"working-directory": "sub"})
    assert {c["cwd"] for c in runner.calls()} == {str(runner.workspace / "sub")}


def test_install_uses_a_private_venv_from_the_action_path(runner: Runner) -> None:
    """forgegit is pip-installed from the action's own checkout into a venv under runner.temp."""
    runner.run({})
    venv = runner.temp / "forgegit-venv"
    assert runner.python_log.read_text().splitlines() == [
        f"-m venv {venv}", f"-m pip install --disable-pip-version-check {ROOT}",
    ]
    assert runner.call("train")["env"]["PATH"].startswith(f"{venv / 'bin'}{os.pathsep}")


def test_action_outputs_come_from_forgegit_pr(runner: Runner) -> None:
    """The action's outputs (score, baseline-score, branch, pr-url, pr-number) are what `forgegit pr` wrote."""
    outputs = runner.run({})
    assert outputs == {"score": "0.7500", "baseline-score": "0.6000", "branch": "forgegit/train/r1",
                       "pr-url": "https://github.com/octo/agent/pull/7", "pr-number": "7", "shard-file": ""}


def test_shard_mode_evaluates_one_slice_and_opens_no_pull_request(runner: Runner) -> None:
    """A matrix job with shards/shard runs `forgegit eval --shard K/N --out FILE` and nothing else."""
    outputs = runner.run({"shards": "4", "shard": "2", "tasks": "tasks/big.jsonl", "model": "m"})
    argvs = [c["argv"] for c in runner.calls()]
    assert argvs == [["eval", "--shard", "2/4", "--out", "forgegit-shard-2-of-4.json", "--model", "m",
                      "--tasks", "tasks/big.jsonl"]]
    assert outputs["shard-file"] == "forgegit-shard-2-of-4.json" and outputs["pr-url"] == ""


def test_merge_mode_merges_every_shard_file(runner: Runner, tmp_path: Path) -> None:
    """The matrix's final job passes every downloaded shard file to `forgegit eval --merge`."""
    shards = runner.workspace / "shards"
    for k in (1, 2):
        (shards / f"forgegit-shard-{k}-of-2").mkdir(parents=True)
        (shards / f"forgegit-shard-{k}-of-2" / f"forgegit-shard-{k}-of-2.json").write_text("{}")
    runner.run({"merge-shards": "shards"})
    call, push = runner.calls()
    merged = [a for i, a in enumerate(call["argv"]) if i and call["argv"][i - 1] == "--merge"]
    assert call["argv"][:2] == ["eval", "--json"] and len(merged) == 2
    assert push["argv"] == ["push", "origin"]  # the merged result's notes and conversations go to origin


def test_training_commits_get_a_bot_identity_when_none_is_configured(runner: Runner) -> None:
    """On a fresh runner (no git user), epoch commits are authored by github-actions[bot]."""
    runner.run({})
    env = runner.call("train")["env"]
    assert env["GIT_AUTHOR_NAME"] == env["GIT_COMMITTER_NAME"] == "github-actions[bot]"
    assert env["GIT_AUTHOR_EMAIL"].endswith("@users.noreply.github.com")


def test_configured_git_identity_is_kept(runner: Runner) -> None:
    """A workflow that configured `git config user.email` keeps its own identity."""
    subprocess.run(["git", "config", "user.email", "me@example.com"], cwd=runner.workspace, check=True)
    runner.run({})
    assert "GIT_AUTHOR_EMAIL" not in runner.call("train")["env"]


def test_notes_from_origin_are_fetched_before_training(runner: Runner, tmp_path: Path) -> None:
    """Earlier runs' notes (cached evaluations) are on the runner before `forgegit train` starts."""
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(runner.workspace), str(origin)], check=True)
    subprocess.run(["git", "remote", "add", "origin", str(origin)], cwd=runner.workspace, check=True)
    subprocess.run(["git", "notes", "--ref=forgegit", "add", "-m", "{}", "HEAD"], cwd=runner.workspace, check=True)
    subprocess.run(["git", "push", "-q", "origin", "refs/notes/forgegit"], cwd=runner.workspace, check=True)
    subprocess.run(["git", "update-ref", "-d", "refs/notes/forgegit"], cwd=runner.workspace, check=True)
    runner.run({})
    proc = subprocess.run(["git", "rev-parse", "--verify", "refs/notes/forgegit"], cwd=runner.workspace)
    assert proc.returncode == 0


def test_conversations_from_origin_are_fetched_before_training(runner: Runner, tmp_path: Path) -> None:
    """The agent conversations other runs recorded (refs/forgegit/conversations) reach the runner before training."""
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(runner.workspace), str(origin)], check=True)
    subprocess.run(["git", "remote", "add", "origin", str(origin)], cwd=runner.workspace, check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=runner.workspace, capture_output=True, text=True).stdout.strip()
    subprocess.run(["git", "push", "-q", "origin", f"{head}:refs/forgegit/conversations"], cwd=runner.workspace, check=True)
    runner.run({})
    proc = subprocess.run(["git", "rev-parse", "--verify", "refs/forgegit/conversations"], cwd=runner.workspace,
                          capture_output=True, text=True)
    assert proc.stdout.strip() == head


def test_run_scripts_parse(tmp_path: Path) -> None:
    """Every run script in action.yml and the workflows is valid bash."""
    for path in [ACTION, *WORKFLOWS]:
        data = load(path)
        all_steps = data["runs"]["steps"] if "runs" in data else [s for j in data["jobs"].values() for s in j["steps"]]
        for s in all_steps:
            if "run" in s:
                script = tmp_path / "s.sh"
                script.write_text(s["run"])
                proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
                assert proc.returncode == 0, f"{path.name}: {s.get('name')}: {proc.stderr}"


STUB_SUDO = '''#!/usr/bin/env bash
printf '%s\\n' "$*" >> {log!r}
while [ "${{1#-}}" != "$1" ]; do shift; done  # drop -n, --preserve-env
exec "$@"
'''
STUB_ID = '''#!/usr/bin/env bash
case "$1" in -u|-g) echo 1001 ;; *) exec /usr/bin/id "$@" ;; esac
'''


def _as_runner_user_with_sudo(runner: Runner) -> Path:
    """Make the simulated runner a non-root user (uid 1001) with passwordless sudo, as GitHub-hosted runners are."""
    log = runner.tmp / "sudo-calls.txt"
    runner._stub("sudo", STUB_SUDO.format(log=str(log)))
    runner._stub("id", STUB_ID)
    return log


@pytest.mark.skipif(os.uname().sysname != "Linux", reason="the root sandbox is for Linux runners")
def test_on_a_hosted_runner_training_runs_as_root_and_the_checkout_is_given_back(runner: Runner) -> None:
    """sandbox: auto with passwordless sudo: `forgegit train` runs through sudo with the step's environment
    (so every sandbox worker gets its own uid and namespaces), and the checkout is chowned back after."""
    log = _as_runner_user_with_sudo(runner)
    runner.run({"api-key": "sk-secret-key"})
    sudo_calls = log.read_text().splitlines()
    assert sudo_calls[0] == "-n true"
    assert sudo_calls[1].startswith("-n --preserve-env env PATH=") and sudo_calls[1].endswith("forgegit train")
    assert runner.call("train")["env"]["OPENAI_API_KEY"] == "sk-secret-key"  # preserved through sudo
    assert sudo_calls[2] == f"-n chown -R 1001:1001 {runner.workspace}"
    assert "GITHUB_TOKEN" not in runner.call("train")["env"]
    assert not any("forgegit pr" in c for c in sudo_calls)  # the pull request step never runs as root


def test_sandbox_runner_or_unsafe_never_uses_sudo(runner: Runner) -> None:
    """sandbox: runner keeps forgegit the runner's user; sandbox: unsafe passes --unsafe-sandbox, also without sudo."""
    log = _as_runner_user_with_sudo(runner)
    runner.run({"sandbox": "runner"})
    assert not log.exists() and runner.call("train")["argv"] == ["train"]
    runner.log.unlink()
    runner.run({"sandbox": "unsafe"})
    assert not log.exists() and runner.call("train")["argv"] == ["train", "--unsafe-sandbox"]
