"""Adaldyk core: domain, storage, intake, workflow, outbox, scheduler, web and CLI."""

__version__ = "0.1.0"
