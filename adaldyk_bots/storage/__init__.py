"""Persistence: tables, engines, the unit of work and migrations."""
