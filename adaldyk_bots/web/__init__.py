"""The web side: the ASGI app (health, webhooks) and the JSON API."""
