"""The README's examples work as written: every YAML block is valid YAML, and nothing is pinned to a
tag that does not exist (issue 14, items 14 and 15)."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def yaml_blocks(markdown: str) -> list[tuple[int, str]]:
    """(line, text) of every ```yaml / ```yml fenced block."""
    return [(markdown[:m.start()].count("\n") + 1, m.group(1))
            for m in re.finditer(r"^```ya?ml[^\n]*\n(.*?)^```", markdown, re.M | re.S)]


def test_every_yaml_block_of_the_readme_is_valid_yaml() -> None:
    """A user who copies any YAML example of the README (workflows, pre-commit) gets YAML that parses."""
    blocks = yaml_blocks(README)
    assert len(blocks) >= 3
    for line, text in blocks:
        try:
            yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise AssertionError(f"README.md:{line}: the YAML block does not parse: {exc}") from None


def test_the_readme_workflow_example_reports_the_scores_in_a_step_that_parses() -> None:
    """The workflow example's last step is a real step with the run command and its env."""
    workflows = [yaml.safe_load(t) for _, t in yaml_blocks(README) if "jobs:" in t and "schedule" in t]
    assert workflows
    steps = workflows[0]["jobs"]["train"]["steps"]
    last = steps[-1]
    assert "validation $BASE -> $SCORE: $URL" in last["run"] and set(last["env"]) == {"BASE", "SCORE", "URL"}


def _tags() -> set[str]:
    proc = subprocess.run(["git", "tag", "--list"], cwd=ROOT, capture_output=True, text=True)
    return set(proc.stdout.split())


def test_the_readme_pins_forgegit_only_to_commits_or_tags_that_exist() -> None:
    """Every `OWNER/forgegit@REF` and pre-commit `rev:` in the README's examples is a commit placeholder or a tag
    this repository has: none says `v1` or `v0.1.0` before they are released."""
    tags = _tags()
    examples = "\n".join(m.group(1) for m in re.finditer(r"^```[^\n]*\n(.*?)^```", README, re.M | re.S))
    refs = re.findall(r"OWNER/forgegit@([\w.-]+)", examples)
    refs += re.findall(r"^\s*rev:\s*([\w.-]+)", examples, re.M)
    assert refs
    for ref in refs:
        assert ref == "COMMIT_SHA" or ref in tags or re.fullmatch(r"[0-9a-f]{40}", ref), ref


def test_the_readme_has_a_release_checklist_with_the_version_and_moving_action_tags() -> None:
    """Maintainers find how to release: the version tag, the moving `v1` tag for the Action, and
    pinning by commit until then."""
    section = README[README.index("### Pinning forgegit itself"):]
    section = section[:section.index("\n## ")]
    for needed in ("git tag -a v0.1.0", "git push origin v0.1.0", "git tag -f -a v1", "git push -f origin v1",
                   "pyproject.toml", "git ls-remote"):
        assert needed in section, needed
