"""The VK channel's settings (ADALDYK_VK_*): a community token, Bots Long Poll or Callback API."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from adaldyk_bots.settings import ChannelSettings, FieldError, http_url


class VKSettings(ChannelSettings):
    vk_token: SecretStr | None = None
    vk_group_id: int | None = Field(default=None, ge=1)
    vk_api_url: str = "https://api.vk.com"
    # message_new carries {"message", "client_info"} only from 5.103 on (platforms.md §2a); vk-api's
    # own default (5.92) would give the legacy shape.
    vk_api_version: str = Field(default="5.199", pattern=r"^5\.\d{1,3}$")
    vk_mode: Literal["longpoll", "callback"] = "longpoll"
    vk_confirmation: str | None = None
    vk_secret: SecretStr | None = None
    # Bots Long Poll `wait`: at most 90; 25 is VK's advice because proxies cut requests at 30 s.
    vk_longpoll_wait: int = Field(default=25, ge=1, le=90)

    @field_validator("vk_api_url")
    @classmethod
    def _vk_http_url(cls, value: str) -> str:
        return http_url(value)

    @field_validator("vk_api_version")
    @classmethod
    def _vk_modern_version(cls, value: str) -> str:
        if int(value.split(".")[1]) < 103:
            raise ValueError("must be 5.103 or later (older versions send message_new in the legacy shape)")
        return value

    @field_validator("vk_token", "vk_secret")
    @classmethod
    def _vk_blank_is_unset(cls, value: SecretStr | None) -> SecretStr | None:
        return value if value is not None and value.get_secret_value().strip() else None

    @model_validator(mode="after")
    def _consistent(self) -> VKSettings:
        if self.vk_token and self.vk_group_id is None:
            raise FieldError("vk_group_id", "is required when ADALDYK_VK_TOKEN is set (the community's id)")
        if self.vk_token and self.vk_mode == "callback":
            if not self.vk_confirmation:
                raise FieldError("vk_confirmation", "is required when ADALDYK_VK_MODE=callback")
            if not self.vk_secret:
                raise FieldError("vk_secret", "is required when ADALDYK_VK_MODE=callback")
        return self
