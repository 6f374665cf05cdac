"""Settings from ADALDYK_* environment variables (and .env), validated once at the entry point.

The core's own settings are the fields of `Settings`; each connector owns the model of its channel's
(a `ChannelSettings`, named by its registry entry as `settings_model`). Building `Settings` validates
every installed connector's model too, from the same environment, `.env` file and keyword overrides,
so a wrong channel value stops start-up like a wrong core one; `settings.channel(Model)` gives it.
"""

from __future__ import annotations

import functools
import ipaddress
from datetime import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, PrivateAttr, SecretStr, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails
from pydantic_settings import BaseSettings, SettingsConfigDict

from adaldyk_bots.registry import installed_connectors

ENV_PREFIX = "ADALDYK_"
DEFAULT_CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"


class SettingsError(Exception):
    """A setting is wrong or missing; the message names the variable and says why, in one line."""


class FieldError(ValueError):
    """Raised by a model validator that checks several fields: names the variable at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


_FieldError = FieldError  # the name the core's validators have always used


@overload
def http_url(value: str) -> str: ...


@overload
def http_url(value: None) -> None: ...


def http_url(value: str | None) -> str | None:
    """A validator's body for an address setting: http(s) only, without a trailing slash."""
    if value is not None and not value.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// address")
    return value.rstrip("/") if value else value


class ChannelSettings(BaseSettings):
    """Base of a connector's settings model: the same ADALDYK_ prefix and .env file as the core.

    A field that has the name of a core field (e.g. `public_url`) receives the core's validated value,
    so a connector can check its own settings against it. Every SecretStr field is scrubbed from logs."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    def secret_values(self) -> list[str]:
        values = [getattr(self, name) for name in type(self).model_fields]
        return [v.get_secret_value() for v in values if isinstance(v, SecretStr) and v.get_secret_value()]


C = TypeVar("C", bound=ChannelSettings)


@functools.cache
def installed_channel_settings() -> dict[str, type[ChannelSettings]]:
    """The settings model of every installed connector that has one, by channel name."""
    loaded, _broken = installed_connectors()  # a broken connector is reported by the runtime
    models = {name: getattr(factory, "settings_model", None) for name, factory in loaded.items()}
    return {
        name: model
        for name, model in sorted(models.items())
        if isinstance(model, type) and issubclass(model, ChannelSettings)
    }


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    database_url: str = "sqlite:///var/adaldyk.sqlite3"
    secret_key: SecretStr | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    public_url: str | None = None
    config_dir: Path = DEFAULT_CONFIG_DIR
    files_dir: Path = Path("var/files")  # citizens' files fetched from the platforms
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Largest request body the web server reads (413 above it, before it is read). 4 MiB: a Telegram
    # update or a VK event is at most tens of KB (9000 escaped characters are ~54 KB); WhatsApp says a
    # webhook body can be up to 3 MB, the largest any platform documents (Meta batches up to 1000).
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=64 * 1024, le=1024**3)
    # Requests inside the web app at once (web/admission.py): below the database pool (30) and the worker
    # threads (40), so a burst queues instead of stalling on connections.
    web_concurrent_requests: int = Field(default=24, ge=1, le=1000)

    # Appeal rules (kz-appeals-law.md): every number is configurable because the Code is amended.
    timezone: str = "Asia/Almaty"
    working_hours_start: time = time(9, 0)
    working_hours_end: time = time(18, 0)
    answer_term_working_days: int = Field(default=15, ge=1, le=60)
    appeal_number_prefix: str = Field(default="ADL", pattern=r"^[A-Z]{1,8}$")
    # The number citizens call to ask about their appeal: printed on the receipt (R2) of phone and
    # reception appeals. Empty: the receipt names only the number and the status page.
    phone_line: str = Field(default="", max_length=64)

    # Outbox dispatcher.
    dispatch_interval_seconds: float = Field(default=0.25, gt=0, le=60)
    outbox_lease_seconds: float = Field(default=60.0, ge=1)
    outbox_max_attempts: int = Field(default=12, ge=1)
    send_timeout_seconds: float = Field(default=15.0, gt=0)
    dispatch_concurrency: int = Field(default=8, ge=1, le=100)
    # Rate budgets shared by every dispatcher (the `limits` library's Redis storage). Unset: budgets live
    # in memory and, on PostgreSQL, one elected dispatcher per database sends.
    redis_url: str | None = None

    # /healthz says "degraded" when a supervised loop has not finished a round for this long (plus
    # its own period, e.g. a long poll's timeout), or when the oldest unprocessed event or due notice
    # is older than the backlog threshold.
    loop_stale_seconds: float = Field(default=60.0, gt=0)
    backlog_degraded_seconds: float = Field(default=300.0, gt=0)

    # The workspace: a session ends after this many hours without a request (server-side, so it is
    # really over, not only forgotten by the browser).
    session_idle_hours: float = Field(default=12.0, gt=0, le=24 * 30)
    # Proxies in front of the web server (comma-separated IPs or CIDRs). Only when the TCP peer is one
    # of them is X-Forwarded-For read (its right-most address that is not a proxy): login throttling
    # and session records must not trust an address any client can write.
    trusted_proxies: str = ""
    # The open inboxes' live updates (web/inbox_events.py): how often each web process asks the database
    # what changed, and how long one event stream lasts before the browser reconnects (and so picks up
    # a changed role or unit, or a session that ended).
    inbox_poll_seconds: float = Field(default=1.0, gt=0, le=60)
    inbox_stream_seconds: float = Field(default=600.0, gt=0)
    inbox_keepalive_seconds: float = Field(default=15.0, gt=0, le=300)

    # The ministry web site's appeal form (/public/appeal, web/public_pages.py). Files: each at most
    # PUBLIC_MAX_FILE_BYTES, together PUBLIC_MAX_FILES_BYTES; the form's request may be larger than
    # MAX_BODY_BYTES up to PUBLIC_MAX_REQUEST_BYTES, so an over-limit file gets the form back with its
    # message instead of a bare 413. A form sent sooner than PUBLIC_MIN_SECONDS after it was shown is a
    # script's; PUBLIC_SUBMITS_PER_HOUR appeals and PUBLIC_LOOKUPS_PER_HOUR status look-ups per address.
    public_max_file_bytes: int = Field(default=5 * 1024 * 1024, ge=1024, le=512 * 1024**2)
    public_max_files_bytes: int = Field(default=10 * 1024 * 1024, ge=1024, le=1024**3)
    public_max_files: int = Field(default=5, ge=0, le=50)
    public_max_request_bytes: int = Field(default=25 * 1024 * 1024, ge=64 * 1024, le=2 * 1024**3)
    public_min_seconds: float = Field(default=5.0, ge=0, le=600)
    public_submits_per_hour: int = Field(default=10, ge=1, le=100_000)
    public_lookups_per_hour: int = Field(default=30, ge=1, le=100_000)
    # Origins allowed to frame /public/appeal?embed=1 (the ministry's site), space- or comma-separated,
    # e.g. "https://www.gov.kz https://ecogeo.gov.kz". Empty: no site may frame it.
    public_embed_origins: str = ""

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, value: str) -> str:
        parse_networks(value)
        return value

    @field_validator("public_embed_origins")
    @classmethod
    def _embed_origins(cls, value: str) -> str:
        for origin in value.replace(",", " ").split():
            parts = urlsplit(origin)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
                raise ValueError(f"{origin!r} is not an origin such as https://www.gov.kz")
        return value

    @property
    def embed_origins(self) -> tuple[str, ...]:
        return tuple(o.rstrip("/") for o in self.public_embed_origins.replace(",", " ").split())

    @property
    def trusted_proxy_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return parse_networks(self.trusted_proxies)

    @property
    def secure_cookies(self) -> bool:
        """Session cookies carry Secure when the public address is https."""
        return bool(self.public_url and self.public_url.startswith("https://"))

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str) -> str:
        if not value.startswith(("sqlite:", "postgresql:", "postgresql+psycopg:")):
            raise ValueError("must start with sqlite:// or postgresql:// (postgresql+psycopg://)")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url_shape(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not value.startswith(("redis://", "rediss://", "unix://", "redis+unix://")):
            raise ValueError("must be a redis:// (rediss://, unix://) address, e.g. redis://127.0.0.1:6379/0")
        return value

    @field_validator("public_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return http_url(value)

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.working_hours_end <= self.working_hours_start:
            raise _FieldError("working_hours_end", "must be later than ADALDYK_WORKING_HOURS_START")
        if self.public_max_files_bytes > self.public_max_request_bytes:
            raise _FieldError("public_max_files_bytes", "must not exceed ADALDYK_PUBLIC_MAX_REQUEST_BYTES")
        return self

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite:")

    def secret_values(self) -> list[str]:
        """Every secret in force, the connectors' included, so log output can be scrubbed of them."""
        secrets = [self.secret_key]
        values = [s.get_secret_value() for s in secrets if s is not None and s.get_secret_value()]
        redis_password = urlsplit(self.redis_url).password if self.redis_url else None
        values += [redis_password] if redis_password else []
        for model in dict.fromkeys(installed_channel_settings().values()):
            values += self.channel(model).secret_values()
        return values

    # --- the connectors' settings ----------------------------------------------------------------

    # What the caller passed that is not a core field (a connector's, e.g. telegram_token=…), and the
    # settings-source options (_env_file=…): each connector's model is built from the same.
    _channel_values: dict[str, Any] = PrivateAttr(default_factory=dict)
    _source_options: dict[str, Any] = PrivateAttr(default_factory=dict)

    def __init__(self, **values: Any) -> None:
        super().__init__(**values)
        fields = type(self).model_fields
        self._source_options = {k: v for k, v in values.items() if k.startswith("_")}
        self._channel_values = {k: v for k, v in values.items() if not k.startswith("_") and k not in fields}
        problems: list[ValidationError] = []
        # dict.fromkeys: several channels may share one model (Meta's three); it is checked once.
        for model in dict.fromkeys(installed_channel_settings().values()):
            try:
                self.channel(model)  # a wrong channel value stops start-up here, like a core one
            except ValidationError as exc:
                problems.append(exc)
        if problems:
            raise _joined(problems)

    def channel(self, model: type[C]) -> C:
        """The connector's settings, validated: environment, .env file and the keyword overrides given
        to `Settings`, plus the core's value for any field the model shares with the core."""
        fields = type(self).model_fields
        given = dict(self._channel_values)
        # model_copy(update={...}) puts values that are not core fields into __dict__.
        given.update({k: v for k, v in self.__dict__.items() if k not in fields})
        given.update({k: getattr(self, k) for k in model.model_fields if k in fields})
        return model(**self._source_options, **{k: v for k, v in given.items() if k in model.model_fields})

    if not TYPE_CHECKING:
        # Old callers read a connector's setting as an attribute (settings.telegram_token); typed code
        # asks its own model through `channel`, which is why type checkers do not see this.
        def __getattr__(self, name: str) -> Any:
            try:
                return super().__getattr__(name)
            except AttributeError:
                if name.startswith("_"):
                    raise
                for model in installed_channel_settings().values():
                    if name in model.model_fields:
                        return getattr(self.channel(model), name)
                raise


def _joined(problems: list[ValidationError]) -> ValidationError:
    """Every channel's problems in one error, so one start-up names them all."""
    if len(problems) == 1:
        return problems[0]
    details: list[InitErrorDetails] = []
    for problem in problems:
        for e in problem.errors():
            detail = InitErrorDetails(type=e["type"], loc=e["loc"], input=e["input"])
            if "ctx" in e:
                detail["ctx"] = e["ctx"]
            details.append(detail)
    try:
        return ValidationError.from_exception_data("Settings", details)
    except (TypeError, KeyError, ValueError):  # an error type that cannot be rebuilt: the first then
        return problems[0]


def parse_networks(value: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """ "10.0.0.1, 192.168.0.0/16, ::1" -> networks; a wrong entry is named in the error."""
    networks = []
    for entry in (part.strip() for part in value.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or a CIDR network such as 10.0.0.0/8") from None
    return tuple(networks)


def load_settings(**overrides: object) -> Settings:
    """Build settings once; turn any validation problem into one line that names the variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        ctx_error = (error.get("ctx") or {}).get("error")
        if isinstance(ctx_error, FieldError):
            field, message = ctx_error.field, str(ctx_error)
        else:
            field = str(error["loc"][0]) if error["loc"] else "?"
            message = error["msg"].removeprefix("Value error, ")
        given = error.get("input")
        hidden = "secret" in field or "token" in field or _is_secret(field) or isinstance(given, dict)
        shown = "" if hidden else f" (got {given!r})"
        problems.append(f"{ENV_PREFIX}{field.upper()}: {message}{shown}")
    return "; ".join(problems)


def _is_secret(field: str) -> bool:
    """A SecretStr field of the core or of any connector (e.g. an IMAP URL with its password)."""
    models: list[type[BaseSettings]] = [Settings, *installed_channel_settings().values()]
    for model in models:
        info = model.model_fields.get(field)
        if info is not None and "SecretStr" in str(info.annotation):
            return True
    return False
