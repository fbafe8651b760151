"""MCP for coding agents: the code graph and retrieval as tools, at ``/mcp`` (streamable HTTP,
stateless), behind the same Gate, keys and scope as every other route.

Tools: ``search_symbols``, ``get_definition`` (the code and where it is), ``callers``,
``callees``, ``file_outline`` (what a file contains and imports) and ``retrieve`` (what the
workspace knows about a question: the archival memory's retrieval). A workspace the key may
not use is answered like one that does not exist.
"""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from sparkstack_common.rag_client import RagClient, RagRefused, RagUnavailable
from starlette.routing import Route

from .errors import APIError
from .gate import principal_of, scoped_workspace

INSTRUCTIONS = (
    "sparkstack's code graph and knowledge base. Symbols are named <path>:<qualname> "
    "(e.g. json/encoder.py:JSONEncoder.iterencode), files <path>. Find names with "
    "search_symbols, read code with get_definition, follow calls with callers/callees, see a "
    "file's structure with file_outline, and ask questions with retrieve. `workspace` may be "
    "left out when your key has a single workspace."
)


class ToolFailed(ToolError):
    """What the agent is told, in one line (the call's ``is_error`` result); anything else
    that escapes a tool reaches the agent only as "Error executing tool"."""


def _workspace(ctx: Context, workspace: str | None) -> tuple[str, RagClient]:
    request = ctx.request_context.request
    if request is None:
        raise ToolFailed("no HTTP request behind this call")
    try:
        ws = scoped_workspace(principal_of(request.scope), workspace or None)
    except APIError as exc:
        raise ToolFailed(exc.message) from None
    return ws, request.app.state.runtime.archive.rag


async def _get(rag: RagClient, path: str, ws: str, params: dict[str, Any], missing: str) -> Any:
    try:
        r = await rag.request("GET", path, ws, params=params, missing_ok=True)
    except (RagUnavailable, RagRefused) as exc:
        raise ToolFailed(str(exc)) from None
    if r is None:
        raise ToolFailed(missing)
    return r.json()


def build() -> MCPServer:
    server = MCPServer("sparkstack", instructions=INSTRUCTIONS)

    @server.tool()
    async def search_symbols(
        query: str, ctx: Context, workspace: str | None = None, limit: int = 20
    ) -> list[str]:
        """Entity names (files, classes, functions, methods...) matching `query`, best first."""
        ws, rag = _workspace(ctx, workspace)
        return await _get(
            rag,
            "/graph/label/search",
            ws,
            {"q": query, "limit": max(1, min(limit, 200))},
            f"workspace {ws!r} has no knowledge yet",
        )

    @server.tool()
    async def get_definition(
        symbol: str, ctx: Context, workspace: str | None = None
    ) -> dict[str, Any]:
        """A symbol's kind, signature and docstring, its file, and the code that defines it."""
        ws, rag = _workspace(ctx, workspace)
        return await _get(
            rag, "/graph/entity", ws, {"name": symbol}, f"no symbol {symbol!r} in {ws!r}"
        )

    async def neighbors(
        ctx: Context, workspace: str | None, name: str, kind: str, direction: str
    ) -> list[dict[str, Any]]:
        ws, rag = _workspace(ctx, workspace)
        answer = await _get(
            rag,
            "/graph/neighbors",
            ws,
            {"name": name, "kind": kind, "direction": direction},
            f"no symbol {name!r} in {ws!r}",
        )
        return answer["neighbors"]

    @server.tool()
    async def callers(
        symbol: str, ctx: Context, workspace: str | None = None
    ) -> list[dict[str, Any]]:
        """The symbols that call `symbol` (resolved from the code, not guessed)."""
        return await neighbors(ctx, workspace, symbol, "calls", "in")

    @server.tool()
    async def callees(
        symbol: str, ctx: Context, workspace: str | None = None
    ) -> list[dict[str, Any]]:
        """The symbols `symbol` calls, where the target is known."""
        return await neighbors(ctx, workspace, symbol, "calls", "out")

    @server.tool()
    async def file_outline(path: str, ctx: Context, workspace: str | None = None) -> dict[str, Any]:
        """What a file contains (its top-level symbols) and which files of the codebase it
        imports."""
        contains = await neighbors(ctx, workspace, path, "contains", "out")
        imports = await neighbors(ctx, workspace, path, "imports", "out")
        return {
            "path": path,
            "contains": sorted(n["entity"] for n in contains),
            "imports": sorted(n["entity"] for n in imports),
        }

    @server.tool()
    async def retrieve(
        question: str, ctx: Context, workspace: str | None = None, mode: str = "mix", top_k: int = 8
    ) -> dict[str, Any]:
        """What the workspace knows about `question`: code and text chunks with their sources,
        entities and relationships. `mode`: naive (vectors only), local, global, hybrid, mix."""
        if mode not in ("naive", "local", "global", "hybrid", "mix"):
            raise ToolFailed("mode must be naive, local, global, hybrid or mix")
        ws, rag = _workspace(ctx, workspace)
        body = {"query": question, "mode": mode, "top_k": top_k, "chunk_top_k": top_k}
        try:
            answer = await rag.query_data(ws, body)
        except (RagUnavailable, RagRefused) as exc:
            raise ToolFailed(str(exc)) from None
        data = (answer or {}).get("data") or {}
        return {
            "chunks": [
                {"source": c.get("file_path"), "content": c.get("content")}
                for c in data.get("chunks") or []
            ],
            "entities": [
                {"name": e.get("entity_name"), "description": e.get("description")}
                for e in data.get("entities") or []
            ],
        }

    return server


def mount(server: MCPServer, routes: list[Any]) -> None:
    """Add ``/mcp`` to the app's routes. The Gate in front already checks Host and key, so
    the SDK's own DNS-rebinding check is off (it would refuse the cluster's host names)."""
    mcp_app = server.streamable_http_app(
        streamable_http_path="/mcp",
        stateless_http=True,
        json_response=True,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
    route = next(r for r in mcp_app.routes if isinstance(r, Route) and r.path == "/mcp")
    routes.append(route)
