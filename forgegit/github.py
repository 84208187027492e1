"""Push a training branch and open or update its pull request through the GitHub REST API.

Order matters: the branch (and the notes) are pushed first, the API is called after, so an API
failure never loses the trained functions; the error then says how to open the PR by hand.

One open forgegit PR per base branch: a new run has a new branch (`forgegit/train/<run-id>`), and a
PR's head cannot change, so the new run opens a new PR and closes the previous forgegit PR for the
same base with a comment "Superseded by #N". Re-running `forgegit pr` for the same run updates its
PR (title, body, labels) instead of opening a second one (GitHub answers 422 to that).
"""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from email.message import Message
from typing import Any, Mapping, Optional, Sequence, Union, cast

from . import conversations, git, notes
from .errors import ForgegitError
from .records import RunRecord
from .report import MARKER_PREFIX, pct, render_markdown

TRAIN_PREFIX = "forgegit/train/"
NOTES_REF = "refs/notes/forgegit"
SUMMARY_REF = "refs/notes/forgegit-summary"
DEFAULT_API_URL = "https://api.github.com"
TIMEOUT = 30.0
MAX_PAGES = 10  # of 100 items: what forgegit reads of one list


class GitHubError(ForgegitError):
    """The GitHub API refused or failed a request (one line for the user)."""

    def __init__(self, message: str, status: Optional[int] = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class PrResult:
    """What `open_or_update_pr` did: action is "opened", "updated" or "none"."""

    url: Optional[str]
    number: Optional[int]
    action: str
    message: str = ""
    warnings: list[str] = field(default_factory=list)
    superseded: list[int] = field(default_factory=list)


def server_url_for(api_url: str) -> str:
    """The web URL for an API URL: api.github.com -> github.com, GHES .../api/v3 -> ...."""
    api_url = api_url.rstrip("/")
    if api_url == DEFAULT_API_URL:
        return "https://github.com"
    if api_url.endswith("/api/v3"):
        return api_url[: -len("/api/v3")]
    return api_url


# --- errors ---------------------------------------------------------------------------

Headers = Union[Mapping[str, str], Message]  # an HTTPError's headers, or a dict in tests


def _rate_limited(status: int, headers: Headers, message: str) -> Optional[str]:
    """The rate-limit message for a 403/429 that is a rate limit, else None."""
    remaining = headers.get("x-ratelimit-remaining")
    retry_after = headers.get("retry-after")
    if status not in (403, 429):
        return None
    if remaining == "0":
        reset = headers.get("x-ratelimit-reset")
        when = (time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(int(reset)))
                if reset and reset.isdigit() else "in up to an hour")
        return f"GitHub API rate limit exceeded; it resets at {when}"
    if retry_after or status == 429 or "rate limit" in message.lower():
        wait = f"retry after {retry_after} s" if retry_after else "wait a few minutes and retry"
        return f"GitHub API secondary rate limit hit; {wait}"
    return None


def _validation_message(payload: object) -> str:
    """GitHub's 422 message with its error details, e.g. 'Validation Failed: No commits between ...'."""
    if not isinstance(payload, dict):
        return str(payload or "Validation Failed")
    details = []
    for e in payload.get("errors") or []:
        if isinstance(e, dict):
            details.append(e.get("message") or " ".join(
                str(e[k]) for k in ("resource", "field", "code") if e.get(k)))
        else:
            details.append(str(e))
    msg = str(payload.get("message") or "Validation Failed")
    return f"{msg}: {'; '.join(d for d in details if d)}" if any(details) else msg


def error_for(status: int, headers: Headers, payload: object, what: str, repository: str) -> GitHubError:
    """One clear line for a failed API call."""
    message = str(payload.get("message", "")) if isinstance(payload, dict) else str(payload or "")
    limited = _rate_limited(status, headers, message)
    if limited:
        return GitHubError(f"{limited} ({what})", status)
    if status == 401:
        text = "GITHUB_TOKEN rejected (401): check the github-token input / secret"
    elif status == 403:
        text = (f"GitHub refused {what} (403{': ' + message if message else ''}): the token needs "
                "contents: write and pull-requests: write; and the repository setting "
                "'Allow GitHub Actions to create and approve pull requests'")
    elif status == 404:
        text = f"GitHub repository {repository} not found (404) or the token cannot see it ({what})"
    elif status == 422:
        text = f"GitHub rejected {what} (422): {_validation_message(payload)}"
    else:
        text = f"GitHub API error {status} on {what}{': ' + message if message else ''}"
    return GitHubError(" ".join(text.split()), status)


# --- the client -----------------------------------------------------------------------


class GitHubClient:
    """A minimal GitHub REST client (pulls, labels, comments) on urllib."""

    def __init__(self, api_url: str, repository: str, token: str, *, timeout: float = TIMEOUT) -> None:
        if repository.count("/") != 1 or not all(repository.split("/")):
            raise ForgegitError(f"GITHUB_REPOSITORY must look like owner/name, not {repository!r}")
        self.api_url = api_url.rstrip("/")
        self.repository = repository
        self.owner = repository.split("/")[0]
        self.token = token
        self.timeout = timeout

    def request(self, method: str, path: str, body: Optional[dict[str, Any]] = None,
                query: Optional[dict[str, Any]] = None, *, what: str = "") -> Any:
        """Send one request to /repos/{repository}{path}; the parsed JSON answer, or a GitHubError."""
        url = f"{self.api_url}/repos/{self.repository}{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method, headers={
            "Accept": "application/vnd.github+json",
            "Authorization": f"Bearer {self.token}",
            "X-GitHub-Api-Version": "2022-11-28",
            "User-Agent": "forgegit",
            **({"Content-Type": "application/json"} if data is not None else {}),
        })
        what = what or f"{method} {path}"
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            raise error_for(exc.code, exc.headers, _parse(raw), what, self.repository) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise GitHubError(f"cannot reach the GitHub API at {self.api_url} ({what}): {reason}") from None
        return _parse(raw)

    def find_open_pr(self, head_branch: str, base: str) -> Optional[dict[str, Any]]:
        """The open PR from head_branch into base, or None."""
        pulls = self.request("GET", "/pulls", query={
            "state": "open", "head": f"{self.owner}:{head_branch}", "base": base, "per_page": 10,
        }, what="listing pull requests")
        return pulls[0] if pulls else None

    def find_forgegit_prs(self, base: str) -> list[dict[str, Any]]:
        """forgegit's open PRs into base (a training-branch head, plus its label or marker)."""
        pulls = self.request("GET", "/pulls", query={"state": "open", "base": base, "per_page": 100},
                             what="listing pull requests")
        return [p for p in pulls if _is_forgegit_pr(p)]

    def create_pr(self, title: str, head: str, base: str, body: str, *, draft: bool = False) -> dict[str, Any]:
        pr = self.request("POST", "/pulls", {"title": title, "head": head, "base": base, "body": body,
                                             "draft": draft, "maintainer_can_modify": True},
                          what="opening the pull request")
        return cast(dict[str, Any], pr)  # GitHub's JSON

    def update_pr(self, number: int, title: Optional[str] = None, body: Optional[str] = None,
                  state: Optional[str] = None) -> dict[str, Any]:
        fields = {k: v for k, v in (("title", title), ("body", body), ("state", state)) if v is not None}
        pr = self.request("PATCH", f"/pulls/{number}", fields, what=f"updating pull request #{number}")
        return cast(dict[str, Any], pr)  # GitHub's JSON

    def add_labels(self, number: int, labels: Sequence[str]) -> Any:
        return self.request("POST", f"/issues/{number}/labels", {"labels": list(labels)},
                            what=f"labelling pull request #{number}")

    def get_pr(self, number: int) -> dict[str, Any]:
        pr = self.request("GET", f"/pulls/{number}", what=f"reading pull request #{number}")
        if not isinstance(pr, dict):
            raise GitHubError(f"GitHub answered pull request #{number} with something that is not a pull request")
        return cast(dict[str, Any], pr)  # GitHub's JSON

    def list_open_prs(self) -> list[dict[str, Any]]:
        """Every open pull request (up to MAX_PAGES pages)."""
        return self.pages("/pulls", {"state": "open"}, what="listing pull requests")

    def review_comments(self, number: int) -> list[dict[str, Any]]:
        """The PR's line comments (on a file and line of the diff)."""
        return self.pages(f"/pulls/{number}/comments", {}, what=f"reading the line comments of #{number}")

    def reviews(self, number: int) -> list[dict[str, Any]]:
        return self.pages(f"/pulls/{number}/reviews", {}, what=f"reading the reviews of #{number}")

    def issue_comments(self, number: int) -> list[dict[str, Any]]:
        """The PR's conversation comments."""
        return self.pages(f"/issues/{number}/comments", {}, what=f"reading the comments of #{number}")

    def pages(self, path: str, query: dict[str, Any], *, what: str) -> list[dict[str, Any]]:
        """GET a list, page after page (100 a page, at most MAX_PAGES pages); items that are not objects are dropped."""
        items: list[dict[str, Any]] = []
        for page in range(1, MAX_PAGES + 1):
            got = self.request("GET", path, query={**query, "per_page": 100, "page": page}, what=what)
            if not isinstance(got, list):
                raise GitHubError(f"GitHub answered {what} with something that is not a list")
            items += [x for x in got if isinstance(x, dict)]
            if len(got) < 100:
                break
        return items

    def comment(self, number: int, body: str) -> dict[str, Any]:
        comment = self.request("POST", f"/issues/{number}/comments", {"body": body},
                               what=f"commenting on #{number}")
        return cast(dict[str, Any], comment)  # GitHub's JSON


def _parse(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")[:200]


def _is_forgegit_pr(pr: dict[str, Any]) -> bool:
    head = (pr.get("head") or {}).get("ref", "")
    labels = {(label or {}).get("name") for label in pr.get("labels") or []}
    return head.startswith(TRAIN_PREFIX) and ("forgegit" in labels or MARKER_PREFIX in (pr.get("body") or ""))


# --- pushing --------------------------------------------------------------------------


def check_training_branch(branch: str) -> None:
    """Refuse anything but a forgegit training branch: the base branch is never pushed."""
    if not branch.startswith(TRAIN_PREFIX) or branch == TRAIN_PREFIX or ".." in branch:
        raise ForgegitError(f"refusing to push {branch!r}: forgegit only pushes its training branches "
                            f"({TRAIN_PREFIX}<run-id>)")


def push_branch(repo: Path, branch: str, remote: str = "origin") -> None:
    """Push the training branch (force-with-lease: a resumed run rewrites nothing it did not write)."""
    check_training_branch(branch)
    if not git.branch_exists(repo, branch):
        raise ForgegitError(f"no local branch {branch!r} to push")
    ref = f"refs/heads/{branch}"
    proc = git.run(["push", "--force-with-lease", remote, f"{ref}:{ref}"], repo, check=False)
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        raise ForgegitError(f"git push of {branch} to {remote} failed: {lines[-1] if lines else proc.returncode}")


def push_notes(repo: Path, remote: str = "origin") -> Optional[str]:
    """Push refs/notes/forgegit (and its one-line summaries, refs/notes/forgegit-summary), merging the
    remote's notes first if they moved; a warning or None."""
    warnings = [w for w in (_push_notes_ref(repo, remote, ref) for ref in (NOTES_REF, SUMMARY_REF)) if w]
    return "; ".join(warnings) or None


def _push_notes_ref(repo: Path, remote: str, ref: str) -> Optional[str]:
    if git.run(["rev-parse", "--verify", "--quiet", ref], repo, check=False).returncode != 0:
        return None
    spec = f"{ref}:{ref}"
    if git.run(["push", remote, spec], repo, check=False).returncode == 0:
        return None
    # Someone else added notes: merge theirs in (both sides' results kept), then push again.
    theirs = f"{ref}-remote"
    fetched = git.run(["fetch", remote, f"+{ref}:{theirs}"], repo, check=False)
    if fetched.returncode == 0:
        if ref == NOTES_REF:
            notes.merge_from(repo, theirs)  # a note both sides wrote keeps both's results
        else:  # the one-line summaries: ours wins for the same commit
            with notes.notes_lock(repo):  # no forgegit writer moves the ref while the merge does
                git.run(["notes", f"--ref={ref}", "merge", "-s", "ours", theirs], repo, check=False)
        if git.run(["push", remote, spec], repo, check=False).returncode == 0:
            return None
    if ref == SUMMARY_REF:
        return f"could not push {ref} to {remote}: `git log --notes=forgegit-summary` elsewhere lacks this run's lines"
    return f"could not push {ref} to {remote}: the PR is fine, but `forgegit log` elsewhere lacks this run"


# --- the pull request -----------------------------------------------------------------


def pr_title(run: RunRecord) -> str:
    g = run.final_gate
    if g:
        return f"forgegit: trained functions, validation {pct(g.base_score)} → {pct(g.head_score)} ({run.run_id})"
    return f"forgegit: trained functions, training {pct(run.baseline_score)} → {pct(run.trained_score)} ({run.run_id})"


def manual_hint(server_url: str, repository: str, base: str, branch: str, remote: str) -> str:
    quoted = urllib.parse.quote(branch, safe="/")
    return (f"branch {branch} is pushed to {remote}; open the pull request by hand: "
            f"{server_url.rstrip('/')}/{repository}/compare/{urllib.parse.quote(base, safe='/')}...{quoted}?expand=1")


def open_or_update_pr(
    repo_path: Path,
    run: RunRecord,
    *,
    client: GitHubClient,
    remote: str = "origin",
    draft: bool = False,
    labels: Sequence[str] = ("forgegit",),
    server_url: Optional[str] = None,
    body: Optional[str] = None,
) -> PrResult:
    """Push the run's branch and notes, then open its PR (or update the open one); nothing when not improved."""
    check_training_branch(run.branch)
    if not run.improved and not (run.reviews and client.find_open_pr(run.branch, run.base_branch)):
        # (a run continued from its PR's reviews updates that PR whatever the gate says: the reviewers asked)
        why = "the validation gate did not pass" if run.final_gate else "there is no validation result"
        return PrResult(None, None, "none", f"no pull request: run {run.run_id} did not improve ({why})")
    if not run.base_branch:
        raise ForgegitError(f"run {run.run_id} records no base branch to open the pull request against")
    server_url = server_url or server_url_for(client.api_url)
    push_branch(repo_path, run.branch, remote)
    warnings = [w for w in [push_notes(repo_path, remote), conversations.push(repo_path, remote)] if w]
    if body is None:
        body = render_markdown(run, server_url=server_url, repository=client.repository)
    try:
        result = _open_or_update(client, run, body, draft=draft, labels=labels)
    except GitHubError as exc:
        hint = manual_hint(server_url, client.repository, run.base_branch, run.branch, remote)
        raise GitHubError(f"{exc.message} — {hint}", exc.status) from None
    result.warnings = warnings + result.warnings
    return result


def _open_or_update(client: GitHubClient, run: RunRecord, body: str, *, draft: bool,
                    labels: Sequence[str]) -> PrResult:
    title = pr_title(run)
    existing = client.find_open_pr(run.branch, run.base_branch)
    if existing is None:
        try:
            pr = client.create_pr(title, run.branch, run.base_branch, body, draft=draft)
            action = "opened"
        except GitHubError as exc:  # opened meanwhile by a concurrent run of `forgegit pr`
            if exc.status != 422 or "already exists" not in exc.message:
                raise
            existing = client.find_open_pr(run.branch, run.base_branch)
            if existing is None:
                raise
    if existing is not None:
        pr = client.update_pr(existing["number"], title=title, body=body)
        action = "updated"
    result = PrResult(pr.get("html_url"), pr["number"], action, f"{action} pull request #{pr['number']}: "
                      f"{pr.get('html_url')}")
    try:  # the PR exists now: later failures are warnings, not errors
        if labels:
            client.add_labels(pr["number"], labels)
        if action == "opened":
            result.superseded = close_superseded(client, run, pr["number"])
    except GitHubError as exc:
        result.warnings.append(exc.message)
    return result


def close_superseded(client: GitHubClient, run: RunRecord, number: int) -> list[int]:
    """Close forgegit's older open PRs into the same base, pointing at the new one."""
    closed = []
    for old in client.find_forgegit_prs(run.base_branch):
        if old["number"] == number or (old.get("head") or {}).get("ref") == run.branch:
            continue
        client.comment(old["number"], f"Superseded by #{number} (forgegit run `{run.run_id}`).")
        client.update_pr(old["number"], state="closed")
        closed.append(old["number"])
    return closed
