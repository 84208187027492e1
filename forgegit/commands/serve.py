"""`forgegit serve`: the functions of a revision as an MCP server (stdio, or streamable HTTP with --http)."""
from __future__ import annotations

import asyncio
import ipaddress
from typing import Optional

import click

from .. import git
from ..errors import ForgegitError
from ..toolbox import Toolbox
from ..workspace import Workspace

LOOPBACK = "127.0.0.1"


def parse_http(value: str) -> tuple[str, int]:
    """'HOST:PORT', ':PORT' or 'PORT' (host 127.0.0.1), '[::1]:PORT' -> (host, port)."""
    text = value.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
        if not sep or not port_text:
            raise ForgegitError(f"--http {value!r}: expected HOST:PORT, e.g. 127.0.0.1:8000 or [::1]:8000")
    elif ":" in text:
        host, _, port_text = text.rpartition(":")
    else:
        host, port_text = "", text
    try:
        port = int(port_text)
    except ValueError:
        raise ForgegitError(f"--http {value!r}: expected HOST:PORT, e.g. 127.0.0.1:8000") from None
    if not 0 <= port <= 65535:
        raise ForgegitError(f"--http {value!r}: the port must be between 0 and 65535")
    return host or LOOPBACK, port


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def say(text: str) -> None:
    """Everything serve says goes to stderr: stdout is the MCP channel."""
    click.echo(text, err=True)


def announce(tools: Toolbox, dirty: bool) -> None:
    rev = tools.revision
    say(f"forgegit serve: {len(tools.names)} tools from {rev.describe()}: {', '.join(tools.names) or 'none'}")
    if dirty:
        say("note: functions/ has uncommitted changes; they are not served (the functions are read from git)")
    iso = tools.isolation
    if iso is not None:
        if iso.safe:
            say(f"sandbox: {iso.summary()}")
        else:
            say(f"sandbox: WARNING, running function code unsafely as asked: {iso.summary()}")
    for fname, error in sorted(tools.import_errors.items()):
        say(f"warning: {fname} fails to import, its calls will fail: {error}")
    for s in rev.scores:
        say(f"recorded score: {s.line()}")


@click.command("serve")
@click.option("--rev", "rev", default="HEAD", show_default=True, metavar="REV",
              help="Serve exactly the functions of this revision (branch, tag or commit), read from git.")
@click.option("--http", "http", metavar="[HOST:]PORT",
              help="Serve the streamable HTTP transport at http://HOST:PORT/mcp (host 127.0.0.1 unless given) "
                   "instead of stdio.")
@click.option("--repo", "repo", default=".", type=click.Path(exists=True, file_okay=False),
              help="The repository (default: the current directory); MCP clients often start servers elsewhere.")
@click.option("--workers", type=click.IntRange(1, 64), default=2, show_default=True,
              help="Sandbox worker processes (calls beyond this wait).")
@click.option("--python-tool", "python_tool", is_flag=True,
              help="Also serve the agent's `python` tool (code run in the sandbox with every function importable).")
@click.option("--config", "config", type=click.Path(dir_okay=False),
              help="forgegit.toml to use (default: the nearest one); its limits and sandbox setting apply.")
@click.option("--unsafe-sandbox", "unsafe_sandbox", is_flag=True,
              help="Run function code even where the sandbox cannot reach the secrets-safe level.")
def command(rev: str, http: Optional[str], repo: str, workers: int, python_tool: bool, config: Optional[str],
            unsafe_sandbox: bool) -> None:
    """Serve the functions at a revision as an MCP server, over stdio (as MCP clients launch servers)."""
    address = parse_http(http) if http is not None else None
    ws = Workspace.open(repo, config, sandbox="unsafe" if unsafe_sandbox else None)
    tools = Toolbox.open(ws.root, rev, ws.settings, workers=workers, python_tool=python_tool)
    dirty = tools.revision.commit == git.resolve(ws.root, "HEAD") and bool(
        git.out(["status", "--porcelain", "--", git.FUNCTIONS_DIR], ws.root))
    asyncio.run(_serve(tools, address, dirty))


async def _serve(tools: Toolbox, address: Optional[tuple[str, int]], dirty: bool) -> None:
    from .. import mcp_server

    sock = None
    if address is not None:
        host, port = address
        try:
            sock = mcp_server.listen(host, port)
        except OSError as exc:
            raise ForgegitError(f"--http: cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    try:
        await tools.start()  # SandboxRefused (one line) below secrets-safe, before any client connects
        announce(tools, dirty)
        if sock is None:
            await mcp_server.serve_stdio(tools, on_ready=lambda: say("serving MCP over stdio"))
        else:
            host = sock.getsockname()[0]
            if not _is_loopback(host):
                say(f"WARNING: listening on {host}, not loopback: anyone who can reach it can call the functions "
                    "(there is no authentication)")
            await mcp_server.serve_http(tools, sock, on_ready=lambda url: say(f"serving MCP (streamable HTTP) at {url}"))
    finally:
        await tools.close()
        if sock is not None:
            sock.close()
