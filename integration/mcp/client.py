"""A real MCP client (the official Python SDK, streamable HTTP) for the end-to-end tests.

    client.py URL CREDENTIAL TOOL [TOOL ...]

Connects with `Authorization: Bearer CREDENTIAL`, lists the tools, calls each TOOL, and prints
one JSON object: {"tools": [names listed], "calls": {tool: {"is_error": bool, "text": str}}}.
"""
import asyncio
import json
import sys

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


async def main(url: str, credential: str, tools: list[str]) -> None:
    out = {"tools": [], "calls": {}}
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {credential}"}, timeout=20) as http:
        async with Client(streamable_http_client(url, http_client=http)) as client:
            listed = await client.list_tools()
            out["tools"] = sorted(t.name for t in listed.tools)
            for name in tools:
                result = await client.call_tool(name, {})
                text = " ".join(getattr(c, "text", "") for c in result.content)
                out["calls"][name] = {"is_error": bool(result.is_error), "text": text}
    print(json.dumps(out))


asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
