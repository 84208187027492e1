"""A loopback fake of the GitHub REST API subset forgegit uses: pulls, issue labels and comments, and the
review feedback forgegit reads (line comments with file and line, reviews, conversation comments; paginated).

It records every request, answers like GitHub (including 422 for a second PR on the same head and
for a head branch missing from `origin`), and has switchable failure modes:

    with FakeGitHub("octo/repo", token="t", origin=bare_repo) as gh:
        gh.fail("401")              # every request; or gh.fail("422", only="POST /pulls")
        gh.add_line_comment(1, "functions/add.py", 3, "handle negatives", user="alice")
"""
from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Optional

DOCS = "https://docs.github.com/rest"


def bare_origin(repo: Path, origin: Path) -> Path:
    """A bare repository at origin, added to repo as its `origin` remote, with repo's main pushed to it."""
    for args, cwd in ((["init", "-q", "--bare", "-b", "main", str(origin)], origin.parent),
                      (["remote", "add", "origin", str(origin)], repo), (["push", "-q", "origin", "main"], repo)):
        subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)
    return origin


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    headers: dict[str, str]

    @property
    def route(self) -> str:
        return f"{self.method} {self.path}"


@dataclass
class Failure:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def failure(mode: str) -> Failure:
    """The answer GitHub gives in each failure mode."""
    if mode == "401":
        return Failure(401, {"message": "Bad credentials", "documentation_url": DOCS, "status": "401"})
    if mode == "403":
        return Failure(403, {"message": "Resource not accessible by integration", "documentation_url": DOCS,
                             "status": "403"}, {"x-ratelimit-remaining": "4999"})
    if mode == "404":
        return Failure(404, {"message": "Not Found", "documentation_url": DOCS, "status": "404"})
    if mode == "422":
        return Failure(422, {"message": "Validation Failed", "errors": [
            {"resource": "PullRequest", "code": "custom", "message": "No commits between main and the head"}],
            "documentation_url": DOCS, "status": "422"})
    if mode == "rate_limit":
        return Failure(403, {"message": "API rate limit exceeded for installation ID 1.", "documentation_url": DOCS},
                       {"x-ratelimit-remaining": "0", "x-ratelimit-limit": "1000",
                        "x-ratelimit-reset": str(RESET_AT)})
    if mode == "secondary_rate_limit":
        return Failure(429, {"message": "You have exceeded a secondary rate limit.", "documentation_url": DOCS},
                       {"retry-after": "60"})
    raise ValueError(mode)


def now() -> str:
    """GitHub's time format, for what is created now (seeded feedback defaults to it)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


RESET_AT = 1_900_000_000  # 2030-03-17 17:46:40 UTC


class FakeGitHub:
    """The fake API server; `api_url` points a GitHubClient at it."""

    def __init__(self, repository: str = "octo/repo", token: str = "ghs_test", origin: Optional[Path] = None,
                 server_url: str = "https://github.example") -> None:
        self.repository = repository
        self.token = token
        self.origin = origin
        self.server_url = server_url
        self.requests: list[Request] = []
        self.pulls: dict[int, dict[str, Any]] = {}
        self.comments: dict[int, list[str]] = {}
        self.feedback: dict[tuple[int, str], list[dict[str, Any]]] = {}  # (pr, "line"|"review"|"comment") -> items
        self._ids = 1000
        self._next = 1
        self._failure: Optional[Failure] = None
        self._only: Optional[str] = None
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> "FakeGitHub":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "FakeGitHub":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def env(self) -> dict[str, str]:
        """The variables a workflow step gets, pointing forgegit at this fake."""
        return {"GITHUB_API_URL": self.api_url, "GITHUB_SERVER_URL": self.server_url,
                "GITHUB_REPOSITORY": self.repository, "GITHUB_TOKEN": self.token}

    def fail(self, mode: Optional[str], only: Optional[str] = None) -> None:
        """Answer every request (or only those whose 'METHOD /path' starts with `only`) with a failure."""
        self._failure = failure(mode) if mode else None
        self._only = only

    def routes(self) -> list[str]:
        return [r.route for r in self.requests]

    def add_pr(self, head: str, base: str = "main", body: str = "", labels: tuple[str, ...] = ()) -> dict[str, Any]:
        """Seed an open PR (as if opened earlier)."""
        return self._create({"title": "seeded", "head": head, "base": base, "body": body, "draft": False},
                            labels=list(labels))

    def _seed(self, number: int, kind: str, item: dict[str, Any]) -> dict[str, Any]:
        self._ids += 1
        item = {"id": self._ids, "html_url": f"{self.server_url}/{self.repository}/pull/{number}#c{self._ids}", **item}
        self.feedback.setdefault((number, kind), []).append(item)
        return item

    def add_line_comment(self, number: int, path: str, line: int, body: str, user: str = "alice",
                         created: Optional[str] = None) -> dict[str, Any]:
        """A review comment on a file and line of PR number's diff, as GET /pulls/N/comments lists it."""
        return self._seed(number, "line", {"path": path, "line": line, "original_line": line, "body": body,
                                           "user": {"login": user, "type": "User"}, "created_at": created or now(),
                                           "updated_at": created or now(), "side": "RIGHT"})

    def add_review(self, number: int, body: str, state: str = "CHANGES_REQUESTED", user: str = "bob",
                   submitted: Optional[str] = None) -> dict[str, Any]:
        """A review of PR number, as GET /pulls/N/reviews lists it."""
        return self._seed(number, "review", {"body": body, "state": state, "user": {"login": user, "type": "User"},
                                             "submitted_at": submitted or now()})

    def add_comment(self, number: int, body: str, user: str = "carol",
                    created: Optional[str] = None) -> dict[str, Any]:
        """A conversation comment on PR number, as GET /issues/N/comments lists it."""
        return self._seed(number, "comment", {"body": body, "user": {"login": user, "type": "User"},
                                              "created_at": created or now(), "updated_at": created or now()})

    # --- behaviour ---------------------------------------------------------------

    def _page(self, items: list[dict[str, Any]], query: dict[str, str]) -> list[dict[str, Any]]:
        """GitHub's pagination: per_page (default 30, at most 100) and page (from 1)."""
        per_page = min(100, int(query.get("per_page", 30)))
        page = int(query.get("page", 1))
        return items[(page - 1) * per_page:page * per_page]

    def _create(self, data: dict[str, Any], labels: Optional[list[str]] = None) -> dict[str, Any]:
        n = self._next
        self._next += 1
        owner = self.repository.split("/")[0]
        pr = {
            "number": n, "state": "open", "title": data.get("title"), "body": data.get("body"),
            "draft": bool(data.get("draft")),
            "html_url": f"{self.server_url}/{self.repository}/pull/{n}",
            "url": f"{self.api_url}/repos/{self.repository}/pulls/{n}",
            "head": {"ref": data["head"], "label": f"{owner}:{data['head']}"},
            "base": {"ref": data["base"]},
            "labels": [{"name": name} for name in labels or []],
        }
        self.pulls[n] = pr
        return pr

    def _branch_on_origin(self, branch: str) -> bool:
        if self.origin is None:
            return True
        proc = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"],
                              cwd=self.origin, capture_output=True)
        return proc.returncode == 0

    def handle(self, req: Request) -> tuple[int, Any, dict[str, str]]:
        """The status, JSON body and headers GitHub would answer."""
        if self._failure and (self._only is None or req.route.startswith(self._only)):
            return self._failure.status, self._failure.body, self._failure.headers
        if req.headers.get("authorization") != f"Bearer {self.token}":
            return 401, failure("401").body, {}
        prefix = f"/repos/{self.repository}"
        if not req.path.startswith(prefix + "/"):
            return 404, failure("404").body, {}
        path = req.path[len(prefix):]
        parts = path.strip("/").split("/")
        if path == "/pulls" and req.method == "GET":
            return 200, self._page(self._list(req.query), req.query), {}
        if parts[0] in ("pulls", "issues") and len(parts) >= 2 and req.method == "GET":
            n = int(parts[1])
            if n not in self.pulls:
                return 404, failure("404").body, {}
            if parts[0] == "pulls" and len(parts) == 2:
                return 200, self.pulls[n], {}
            kind = {("pulls", "comments"): "line", ("pulls", "reviews"): "review",
                    ("issues", "comments"): "comment"}.get((parts[0], parts[2]) if len(parts) == 3 else ("", ""))
            if kind is None:
                return 404, failure("404").body, {}
            items = list(self.feedback.get((n, kind), []))
            if kind == "comment":  # what forgegit posted itself is in the conversation too
                items += [{"id": i + 1, "body": b, "user": {"login": "github-actions[bot]", "type": "Bot"},
                           "created_at": now()} for i, b in enumerate(self.comments.get(n, []))]
            return 200, self._page(items, req.query), {}
        if path == "/pulls" and req.method == "POST":
            return self._post_pull(req.body)
        if parts[0] == "pulls" and len(parts) == 2 and req.method == "PATCH":
            pr = self.pulls.get(int(parts[1]))
            if pr is None:
                return 404, failure("404").body, {}
            for key in ("title", "body", "state"):
                if key in req.body:
                    pr[key] = req.body[key]
            return 200, pr, {}
        if parts[0] == "issues" and len(parts) == 3 and req.method == "POST":
            n = int(parts[1])
            if n not in self.pulls:
                return 404, failure("404").body, {}
            if parts[2] == "labels":
                names = [x["name"] for x in self.pulls[n]["labels"]]
                names += [x for x in req.body["labels"] if x not in names]
                self.pulls[n]["labels"] = [{"name": x} for x in names]
                return 200, self.pulls[n]["labels"], {}
            if parts[2] == "comments":
                self.comments.setdefault(n, []).append(req.body["body"])
                return 201, {"id": len(self.comments[n]), "body": req.body["body"]}, {}
        return 404, failure("404").body, {}

    def _list(self, query: dict[str, str]) -> list[dict[str, Any]]:
        owner = self.repository.split("/")[0]
        out = []
        for pr in self.pulls.values():
            if query.get("state", "open") != "all" and pr["state"] != query.get("state", "open"):
                continue
            if "head" in query and f"{owner}:{pr['head']['ref']}" != query["head"]:
                continue
            if "base" in query and pr["base"]["ref"] != query["base"]:
                continue
            out.append(pr)
        return out

    def _post_pull(self, data: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        owner = self.repository.split("/")[0]
        missing = [k for k in ("title", "head", "base") if not data.get(k)]
        if missing:
            return 422, {"message": "Validation Failed", "errors": [
                {"resource": "PullRequest", "field": k, "code": "missing_field"} for k in missing]}, {}
        if not self._branch_on_origin(data["head"]):
            return 422, {"message": "Validation Failed", "errors": [
                {"resource": "PullRequest", "field": "head", "code": "invalid"}]}, {}
        for pr in self.pulls.values():
            if pr["state"] == "open" and pr["head"]["ref"] == data["head"] and pr["base"]["ref"] == data["base"]:
                return 422, {"message": "Validation Failed", "errors": [{
                    "resource": "PullRequest", "code": "custom",
                    "message": f"A pull request already exists for {owner}:{data['head']}."}]}, {}
        return 201, self._create(data), {}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                req = Request(self.command, url.path, dict(urllib.parse.parse_qsl(url.query)),
                              json.loads(raw) if raw else None, {k.lower(): v for k, v in self.headers.items()})
                with fake._lock:
                    fake.requests.append(req)
                    status, body, headers = fake.handle(req)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json; charset=utf-8")
                self.send_header("content-length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = _serve

            def log_message(self, *args: object) -> None:
                pass

        return Handler


def reset_time_text() -> str:
    """How forgegit should print RESET_AT."""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(RESET_AT))
