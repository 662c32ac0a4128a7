"""Connectors: publish events onto the zonewatch input topics (replay of files, the bundled simulation)."""
