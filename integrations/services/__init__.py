"""Writes of the integrations app (one module per concern)."""
