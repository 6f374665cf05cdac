"""The instaloader monitor's settings (ADALDYK_INSTALOADER_*): which public account to read, and how."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator

from adaldyk_bots.settings import ChannelSettings, FieldError, http_url


class InstaloaderSettings(ChannelSettings):
    # The ministry's public account whose posts are read (the channel is off without it).
    instaloader_account: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._]{1,30}$")
    # A session saved by `instaloader --login USER` (a pickled cookie dict). Instagram shows comments
    # only to a logged-in viewer, so without it every round stops at the login wall, visibly.
    instaloader_session_file: Path | None = None
    instaloader_login: str | None = None  # the account that session belongs to
    instaloader_posts: int = Field(default=5, ge=1, le=50)  # how many recent posts are read each round
    # Between rounds. Each round makes a few requests per post; far below what Instagram tolerates
    # from one logged-in viewer (instaloader's own RateController budget: 200 GraphQL queries / 11 min).
    instaloader_interval_seconds: float = Field(default=900.0, gt=0)
    instaloader_timeout_seconds: float = Field(default=30.0, gt=0)
    # Tests and the sandbox only: where www.instagram.com and i.instagram.com requests go instead
    # (a loopback fake; see reader.py).
    instaloader_base_url: str | None = None

    @field_validator("instaloader_base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        return http_url(value)

    @field_validator("instaloader_account", "instaloader_login", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        return value.strip().lstrip("@").lower() or None

    @model_validator(mode="after")
    def _consistent(self) -> InstaloaderSettings:
        if self.instaloader_session_file is not None and not self.instaloader_login:
            raise FieldError(
                "instaloader_login", "is required with ADALDYK_INSTALOADER_SESSION_FILE (whose session it is)"
            )
        return self
