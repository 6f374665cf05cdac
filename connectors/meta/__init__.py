"""Meta: Facebook Messenger and Page comments, Instagram direct messages and comments, WhatsApp."""

from connectors.meta.connector import FacebookConnector, InstagramConnector, WhatsAppConnector

__all__ = ["FacebookConnector", "InstagramConnector", "WhatsAppConnector"]
