"""Network edges: the public WebSocket endpoint and the internal HTTP API."""
