"""A real MCP server (the official Python SDK, streamable HTTP) behind Envoy in the end-to-end
tests. Each tool appends its name to the file RAN when it runs, so a test sees what executed.

    server.py PORT RAN json|sse
"""
import sys

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings

port, ran, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
server = MCPServer("contract-003")


def record(name: str) -> str:
    with open(ran, "a") as f:
        f.write(name + "\n")
    return f"{name} ran"


@server.tool(name="agents.deploy")
def agents_deploy() -> str:
    return record("agents.deploy")


@server.tool(name="agents.stop")
def agents_stop() -> str:
    return record("agents.stop")


@server.tool(name="platform.list_roadmap_items")
def list_roadmap_items() -> str:
    return record("platform.list_roadmap_items")


@server.tool(name="platform.create_roadmap_item")
def create_roadmap_item() -> str:
    return record("platform.create_roadmap_item")


# The raw requests of the tests say `Host: localhost`; the SDK's DNS-rebinding check, meant for
# browsers, would take them for a foreign host.
security = TransportSecuritySettings(allowed_hosts=["localhost", "localhost:*", "127.0.0.1:*"])
app = server.streamable_http_app(
    streamable_http_path="/v1/mcp", json_response=(mode == "json"), stateless_http=True, transport_security=security
)
uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
