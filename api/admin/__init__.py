"""The admin API (JSON under /api, OpenAPI at /api/docs)."""
