"""Helpers shared by the tests: an OpenAI-compatible stub and a real redis-server."""
