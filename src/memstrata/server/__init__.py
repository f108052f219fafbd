"""Network interfaces over ``Memory``: the REST server (``rest``), its API keys
(``auth``) and the MCP server (``mcp``). They call only the public ``Memory`` API."""
