"""The Telegram channel's settings (ADALDYK_TELEGRAM_*), validated at start-up with the core's."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from adaldyk_bots.settings import ChannelSettings, FieldError, http_url

# Telegram's rule for setWebhook secret_token: 1-256 characters of A-Z, a-z, 0-9, _ and -.
_TELEGRAM_SECRET = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_TELEGRAM_TOKEN = re.compile(r"^\d+:[A-Za-z0-9_-]{20,}$")


class TelegramSettings(ChannelSettings):
    telegram_token: SecretStr | None = None
    telegram_api_url: str = "https://api.telegram.org"
    telegram_mode: Literal["polling", "webhook"] = "polling"
    telegram_webhook_secret: SecretStr | None = None
    telegram_poll_timeout: int = Field(default=25, ge=0, le=50)
    public_url: str | None = None  # the core's ADALDYK_PUBLIC_URL: webhook mode registers under it

    @field_validator("telegram_api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return http_url(value)

    @field_validator("telegram_token")
    @classmethod
    def _telegram_token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if (
            value is not None
            and value.get_secret_value()
            and not _TELEGRAM_TOKEN.match(value.get_secret_value())
        ):
            raise ValueError("does not look like a bot token from @BotFather (<digits>:<secret>)")
        return value or None

    @field_validator("telegram_webhook_secret")
    @classmethod
    def _telegram_secret_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not _TELEGRAM_SECRET.match(value.get_secret_value()):
            raise ValueError("must be 1-256 characters of A-Z, a-z, 0-9, _ and - (Telegram's rule)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TelegramSettings:
        if self.telegram_token and self.telegram_mode == "webhook":
            if not self.public_url:
                raise FieldError("public_url", "is required when ADALDYK_TELEGRAM_MODE=webhook")
            if not self.telegram_webhook_secret:
                raise FieldError("telegram_webhook_secret", "is required when ADALDYK_TELEGRAM_MODE=webhook")
        return self
