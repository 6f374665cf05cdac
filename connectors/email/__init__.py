"""E-mail channel: IMAP in (IDLE or polling, the cursor committed with the batch), SMTP out."""

from connectors.email.connector import EmailConnector

__all__ = ["EmailConnector"]
