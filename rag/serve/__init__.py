"""`rag serve` (HTTP API, SSE, the page, cached PDFs) and `rag mcp` (MCP tools over stdio) over one Library.

service.py answers both; app.py is the ASGI app, guard.py who may call it, mcp.py the MCP server; static/ the page.
"""
