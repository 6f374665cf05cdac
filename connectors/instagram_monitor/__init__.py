"""Read-only Instagram monitor: comments under the ministry's public posts, read with instaloader.

Optional and off by default (ADALDYK_INSTALOADER_ACCOUNT). It needs no Meta app review, and it cannot
reply: appeals it opens are answered by hand (its sends fail with `instagram_monitor.cannot_reply`)."""

from connectors.instagram_monitor.connector import InstagramMonitorConnector

__all__ = ["InstagramMonitorConnector"]
