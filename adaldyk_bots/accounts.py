"""Staff accounts: passwords (argon2), server-side sessions, login throttling, user administration.

No web imports: the workspace (web/deps.py, web/auth_pages.py), the CLI and tests share these. Every
function takes the session of the caller's unit of work and never commits (STYLE habit 6); times are
passed in (`now`) so that throttling and idle expiry are tested with a clock, not with sleep.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import update
from sqlmodel import Session, col, select

from adaldyk_bots.access import ROLES, Role
from adaldyk_bots.audit import record
from adaldyk_bots.errors import Conflict, Invalid, NotFound, UnknownUnit
from adaldyk_bots.storage.db import as_utc
from adaldyk_bots.storage.models import LoginAttempt, StaffUser, Unit, WebSession

__all__ = [
    "FAILURE_LIMIT",
    "FAILURE_WINDOW",
    "LOCK_DURATION",
    "PASSWORD_MIN_LENGTH",
    "Login",
    "AccountRefused",
    "PasswordRejected",
    "audit",
    "authenticate",
    "change_password",
    "create_user",
    "digest",
    "end_session",
    "end_user_sessions",
    "locked_until",
    "record_attempt",
    "resolve_session",
    "set_password",
    "start_session",
    "throttle_key",
    "update_user",
]

PASSWORD_MIN_LENGTH = 10
PASSWORD_MAX_LENGTH = 1024  # argon2 hashes any length; a megabyte "password" is only a way to burn CPU
# Failed logins: FAILURE_LIMIT for one (account, address) pair within FAILURE_WINDOW lock that pair —
# and only that pair, so an attacker elsewhere never locks the real user out — for LOCK_DURATION.
FAILURE_LIMIT = 10
FAILURE_WINDOW = timedelta(minutes=15)
LOCK_DURATION = timedelta(minutes=15)
# last_seen_at is written at most this often: idle expiry measured in hours does not need a write per
# request (each one would queue behind SQLite's single writer).
SEEN_PRECISION = timedelta(minutes=1)

_hasher = PasswordHasher()


class AccountRefused(Invalid):
    """An account change that is not valid; `reason` is a stable code the pages translate:
    bad_username, unknown_role, officer_unit, own_account (and PasswordRejected's)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class PasswordRejected(AccountRefused):
    """A new password that is not acceptable, or a wrong current one: too_short, too_long,
    same_as_username, mismatch, wrong_current."""


def digest(value: str) -> str:
    # Session ids and API tokens are 256-bit random strings: a plain SHA-256 keeps them out of the
    # database, and a slow hash would only add latency to every request.
    return hashlib.sha256(value.encode()).hexdigest()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


@functools.cache
def _dummy_hash() -> str:
    return _hasher.hash(secrets.token_urlsafe(16))


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def check_new_password(password: str, *, username: str) -> None:
    if len(password) < PASSWORD_MIN_LENGTH:
        raise PasswordRejected(
            "too_short", f"the password must have at least {PASSWORD_MIN_LENGTH} characters"
        )
    if len(password) > PASSWORD_MAX_LENGTH:
        raise PasswordRejected("too_long", f"the password must have at most {PASSWORD_MAX_LENGTH} characters")
    if password.casefold() == username.casefold():
        raise PasswordRejected("same_as_username", "the password must not be the user name")


def audit(
    s: Session, *, actor: str, action: str, subject: str, detail: dict[str, Any], address: str | None = None
) -> None:
    """The one call site of accounts for the audit log (logins, logouts, failed logins, user changes):
    written by audit.record in the caller's transaction, so it is there exactly when the change is."""
    record(s, actor=actor, action=action, subject=subject, detail=detail, address=address)


# --- throttling ------------------------------------------------------------------------------------


def throttle_key(username: str) -> str:
    """The account part of the throttling pair: as typed, case-folded (unknown names count too)."""
    return username.strip().casefold()[:100]


def locked_until(s: Session, *, username: str, address: str, now: datetime) -> datetime | None:
    """When the lock on this (account, address) pair ends, or None if it may try now.

    A lock starts at the FAILURE_LIMIT-th failure within FAILURE_WINDOW and lasts LOCK_DURATION from
    that failure; attempts refused while locked are not counted (they never reach the password)."""
    since = now - FAILURE_WINDOW - LOCK_DURATION
    rows = s.exec(
        select(LoginAttempt.at, LoginAttempt.ok)
        .where(
            LoginAttempt.username == throttle_key(username),
            LoginAttempt.address == address[:64],
            LoginAttempt.at > since,
        )
        .order_by(col(LoginAttempt.at))
    ).all()
    failures: list[datetime] = []
    until: datetime | None = None
    for at, ok in rows:
        if ok:  # a success from this address proves the owner is there: count again from zero
            failures = []
            continue
        failures.append(as_utc(at))
        if len(failures) >= FAILURE_LIMIT and failures[-1] - failures[-FAILURE_LIMIT] <= FAILURE_WINDOW:
            until = failures[-1] + LOCK_DURATION
    return until if until is not None and until > now else None


def record_attempt(s: Session, *, username: str, address: str, ok: bool, now: datetime) -> None:
    s.add(LoginAttempt(username=throttle_key(username), address=address[:64], at=now, ok=ok))


def authenticate(s: Session, *, username: str, password: str) -> StaffUser | None:
    """The account if the password is right and the account is enabled; None otherwise (without saying
    which, and in about the same time: an unknown name is checked against a dummy hash)."""
    user = s.exec(select(StaffUser).where(StaffUser.username == username.strip())).first()
    if user is None or len(password) > PASSWORD_MAX_LENGTH:
        _verify(_dummy_hash(), password[:PASSWORD_MAX_LENGTH])
        return None
    if not _verify(user.password_hash, password) or user.disabled_at is not None:
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
        s.add(user)
    return user


# --- sessions --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Login:
    """A live workspace session: whose, and the CSRF token its forms must carry."""

    session_id: str  # the sha256 of the cookie value
    user: StaffUser
    csrf_token: str
    last_seen_at: datetime

    def needs_touch(self, now: datetime) -> bool:
        return now - self.last_seen_at >= SEEN_PRECISION


def start_session(
    s: Session, user: StaffUser, *, address: str, user_agent: str, now: datetime
) -> tuple[str, WebSession]:
    """A new session for `user`; returns the cookie value (shown once, stored only as its digest)."""
    if user.id is None:
        raise ValueError("start_session needs a stored user")
    cookie = secrets.token_urlsafe(32)
    row = WebSession(
        id=digest(cookie),
        user_id=user.id,
        csrf_token=secrets.token_urlsafe(32),
        created_at=now,
        last_seen_at=now,
        address=address[:64],
        user_agent=user_agent[:300],
    )
    s.add(row)
    return cookie, row


def resolve_session(s: Session, cookie: str, *, now: datetime, idle: timedelta) -> Login | WebSession | None:
    """The live session behind a cookie value; the WebSession itself if it has just run idle (the
    caller ends it in a write transaction); None if there is none, it ended, or its user is disabled."""
    if not cookie or len(cookie) > 200:
        return None
    found = s.exec(
        select(WebSession, StaffUser)
        .join(StaffUser, col(StaffUser.id) == WebSession.user_id)
        .where(WebSession.id == digest(cookie), col(WebSession.ended_at).is_(None))
    ).first()
    if found is None:
        return None
    row, user = found
    if user.disabled_at is not None:
        return None
    last_seen = as_utc(row.last_seen_at)
    if now - last_seen >= idle:
        return row
    return Login(session_id=row.id, user=user, csrf_token=row.csrf_token, last_seen_at=last_seen)


def touch_session(s: Session, session_id: str, *, now: datetime) -> None:
    s.execute(
        update(WebSession)
        .where(col(WebSession.id) == session_id, col(WebSession.ended_at).is_(None))
        .values(last_seen_at=now)
    )


def end_session(s: Session, session_id: str, *, reason: str, now: datetime) -> None:
    s.execute(
        update(WebSession)
        .where(col(WebSession.id) == session_id, col(WebSession.ended_at).is_(None))
        .values(ended_at=now, end_reason=reason)
    )


def end_user_sessions(
    s: Session, user_id: int, *, reason: str, now: datetime, keep: str | None = None
) -> None:
    """End every live session of a user (password changed or reset, account disabled), but `keep`."""
    query = update(WebSession).where(col(WebSession.user_id) == user_id, col(WebSession.ended_at).is_(None))
    if keep is not None:
        query = query.where(col(WebSession.id) != keep)
    s.execute(query.values(ended_at=now, end_reason=reason))


# --- passwords and users ---------------------------------------------------------------------------


def change_password(
    s: Session, user: StaffUser, *, current: str, new: str, repeated: str, now: datetime, keep_session: str
) -> None:
    """The owner's change: the current password, the new one twice; their other sessions end."""
    if not _verify(user.password_hash, current[:PASSWORD_MAX_LENGTH]):
        raise PasswordRejected("wrong_current", "the current password is wrong")
    if new != repeated:
        raise PasswordRejected("mismatch", "the two new passwords differ")
    set_password(s, user, new, now=now, keep_session=keep_session)


def set_password(
    s: Session, user: StaffUser, password: str, *, now: datetime, keep_session: str | None = None
) -> None:
    """A new password (the owner's change or an admin's reset): every other session of the user ends."""
    check_new_password(password, username=user.username)
    user.password_hash = hash_password(password)
    user.password_changed_at = now
    s.add(user)
    if user.id is not None:
        end_user_sessions(s, user.id, reason="password", now=now, keep=keep_session)


def _unit_id(s: Session, role: str, unit_code: str | None) -> int | None:
    if role not in ROLES:
        raise AccountRefused("unknown_role", f"unknown role {role!r}: one of {', '.join(ROLES)}")
    code = (unit_code or "").strip()
    if not code:
        if role == Role.OFFICER:
            raise AccountRefused(
                "officer_unit",
                "an officer needs a unit (--unit CODE): officers see only their unit's appeals",
            )
        return None
    unit_id = s.exec(select(Unit.id).where(Unit.code == code)).first()
    if unit_id is None:
        raise UnknownUnit(f"unknown unit {code!r} (see config/org.toml, then `adaldyk migrate`)")
    return unit_id


def create_user(
    s: Session,
    *,
    username: str,
    role: str,
    password: str,
    now: datetime,
    unit_code: str | None = None,
    full_name: str = "",
    position: str = "",
) -> StaffUser:
    username = username.strip()
    if not username or len(username) > 100 or any(c.isspace() for c in username):
        raise AccountRefused("bad_username", "a user name has 1 to 100 characters and no spaces")
    unit_id = _unit_id(s, role, unit_code)
    check_new_password(password, username=username)
    if s.exec(select(StaffUser.id).where(StaffUser.username == username)).first() is not None:
        raise Conflict(f"user {username} already exists")
    user = StaffUser(
        username=username,
        full_name=full_name.strip()[:200],
        position=position.strip()[:200],
        role=role,
        unit_id=unit_id,
        password_hash=hash_password(password),
        created_at=now,
        password_changed_at=now,
    )
    s.add(user)
    s.flush()
    return user


def update_user(
    s: Session,
    user: StaffUser,
    *,
    role: str,
    unit_code: str | None,
    full_name: str,
    disabled: bool,
    now: datetime,
    position: str | None = None,
) -> dict[str, Any]:
    """An admin's change of role, unit, name, position or state; returns what changed (for the audit log).
    Disabling ends the user's sessions at once."""
    unit_id = _unit_id(s, role, unit_code)
    changes: dict[str, Any] = {}
    fields: list[tuple[str, Any]] = [
        ("role", role),
        ("unit_id", unit_id),
        ("full_name", full_name.strip()[:200]),
    ]
    if position is not None:  # None: not part of this change (callers from before positions existed)
        fields.append(("position", position.strip()[:200]))
    for field, value in fields:
        if getattr(user, field) != value:
            changes[field] = {"from": getattr(user, field), "to": value}
            setattr(user, field, value)
    if disabled != (user.disabled_at is not None):
        changes["disabled"] = {"from": not disabled, "to": disabled}
        user.disabled_at = now if disabled else None
        if disabled and user.id is not None:
            end_user_sessions(s, user.id, reason="disabled", now=now)
    s.add(user)
    return changes


def user_by_id(s: Session, user_id: int) -> StaffUser:
    user = s.get(StaffUser, user_id)
    if user is None:
        raise NotFound(f"user {user_id} not found")
    return user
