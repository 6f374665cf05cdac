"""VKontakte community channel (Bots Long Poll or Callback API in, messages.send out)."""

from connectors.vk.connector import VKConnector

__all__ = ["VKConnector"]
