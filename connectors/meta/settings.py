"""The Meta channels' settings (Facebook, Instagram, WhatsApp): one model for the three, validated at
start-up with the core's, because they share the app (its secret and webhook verify token) and the
Graph API address. Each product is on when its id and token are both set."""

from __future__ import annotations

import re

from pydantic import Field, SecretStr, field_validator, model_validator

from adaldyk_bots.settings import ChannelSettings, FieldError, http_url

DEFAULT_GRAPH_API_URL = "https://graph.facebook.com/v23.0"

# Graph object ids (Page, Instagram professional account, WhatsApp phone number id) are decimal strings.
_GRAPH_ID = re.compile(r"^\d{1,32}$")
# The version is pinned in the address (facebook-sdk's own `version=` check predates two-digit versions).
_VERSIONED = re.compile(r"/v\d{1,2}\.\d{1,2}$")

# (id field, token field, variable name of the product) for the "both or neither" check.
PRODUCTS = {
    "facebook": ("facebook_page_id", "facebook_page_token"),
    "instagram": ("instagram_account_id", "instagram_token"),
    "whatsapp": ("whatsapp_phone_number_id", "whatsapp_token"),
}


class MetaSettings(ChannelSettings):
    meta_app_secret: SecretStr | None = None  # signs X-Hub-Signature-256 of every webhook delivery
    meta_verify_token: SecretStr | None = None  # the hub.verify_token we gave Meta for the handshake
    # Apps using Instagram Login sign `instagram` webhooks with the Instagram app's secret instead.
    instagram_app_secret: SecretStr | None = None
    graph_api_url: str = DEFAULT_GRAPH_API_URL
    # Default: the Graph URL (Instagram through the linked Page, Facebook Login). Instagram Login:
    # https://graph.instagram.com/v23.0
    instagram_api_url: str | None = None
    facebook_page_id: str | None = None
    facebook_page_token: SecretStr | None = None
    instagram_account_id: str | None = None
    instagram_token: SecretStr | None = None
    whatsapp_phone_number_id: str | None = None
    whatsapp_token: SecretStr | None = None
    # The app has Meta's Human Agent permission: a moderator's reply may go 24 h - 7 days after the
    # citizen's last message with MESSAGE_TAG + HUMAN_AGENT (platforms.md §3).
    meta_human_agent: bool = False
    # How often reconciliation reads recent conversations to find messages the webhook never delivered.
    meta_reconcile_seconds: float = Field(default=900.0, ge=10, le=86400)

    @field_validator("graph_api_url", "instagram_api_url")
    @classmethod
    def _graph_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        url = http_url(value.strip())
        if not _VERSIONED.search(url):
            raise ValueError("must end with the Graph API version, e.g. https://graph.facebook.com/v23.0")
        return url

    @field_validator("facebook_page_id", "instagram_account_id", "whatsapp_phone_number_id")
    @classmethod
    def _graph_id(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not _GRAPH_ID.match(value.strip()):
            raise ValueError("must be the numeric id Meta shows for it (digits only)")
        return value.strip()

    @field_validator(
        "meta_app_secret",
        "meta_verify_token",
        "instagram_app_secret",
        "facebook_page_token",
        "instagram_token",
        "whatsapp_token",
    )
    @classmethod
    def _blank_is_unset(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        if any(c.isspace() for c in value.get_secret_value()):
            raise ValueError("must not contain spaces or line breaks (copied with extra text?)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> MetaSettings:
        if self.graph_api_url is None:  # a blank value: back to the default
            self.graph_api_url = DEFAULT_GRAPH_API_URL
        for id_field, token_field in PRODUCTS.values():
            has_id, has_token = getattr(self, id_field) is not None, getattr(self, token_field) is not None
            if has_token and not has_id:
                raise FieldError(id_field, f"is required when ADALDYK_{token_field.upper()} is set")
            if has_id and not has_token:
                raise FieldError(token_field, f"is required when ADALDYK_{id_field.upper()} is set")
        if self.enabled_products():
            if self.meta_app_secret is None and not (
                self.enabled_products() == ["instagram"] and self.instagram_app_secret is not None
            ):
                raise FieldError(
                    "meta_app_secret", "is required when a Meta channel is on (it signs every webhook)"
                )
            if self.meta_verify_token is None:
                raise FieldError(
                    "meta_verify_token", "is required when a Meta channel is on (the webhook handshake)"
                )
        return self

    def enabled_products(self) -> list[str]:
        """The channels whose id and token are both set."""
        return [
            name
            for name, (id_field, token_field) in PRODUCTS.items()
            if getattr(self, id_field) is not None and getattr(self, token_field) is not None
        ]

    @property
    def instagram_url(self) -> str:
        return self.instagram_api_url or self.graph_api_url

    @property
    def instagram_login(self) -> bool:
        """Instagram Login (graph.instagram.com with the Instagram token), not through the Page."""
        return "graph.instagram.com" in self.instagram_url

    def app_secrets(self, obj: str) -> list[str]:
        """The secrets that may sign a webhook body of this `object`: Instagram accepts either app's."""
        secrets = [self.meta_app_secret]
        if obj == "instagram":
            secrets.append(self.instagram_app_secret)
        return [s.get_secret_value() for s in secrets if s is not None]
