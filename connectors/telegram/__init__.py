"""Telegram Bot API channel."""

from connectors.telegram.connector import TelegramConnector

__all__ = ["TelegramConnector"]
