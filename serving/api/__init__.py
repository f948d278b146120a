"""The HTTP API v1 (FastAPI)."""
