"""The MCP edge: server construction, tool adapters, the HTTP app. No domain logic lives here."""
