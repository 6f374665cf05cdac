"""The `adaldyk` command: serve, web, worker, migrate, sandbox, user/token administration, replay, outbox."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import secrets
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from adaldyk_bots import __version__
from adaldyk_bots.access import ROLES
from adaldyk_bots.runtime import Runtime
from adaldyk_bots.settings import Settings, SettingsError, load_settings
from adaldyk_bots.terms import TermsError

log = logging.getLogger("adaldyk")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"adaldyk: configuration error: {exc}", file=sys.stderr)
        return 2
    from adaldyk_bots.logs import configure_logging

    configure_logging(settings.log_level, settings.secret_values())
    try:
        return int(args.handler(settings, args) or 0)
    except KeyboardInterrupt:
        return 130
    except _Refused as exc:
        print(f"adaldyk: {exc}", file=sys.stderr)
        return 1
    except TermsError as exc:  # config/terms.toml: the file, the key and the line
        print(f"adaldyk: configuration error: {exc}", file=sys.stderr)
        return 2


class _Refused(Exception):
    """A command cannot go on; the message says why and what to do."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adaldyk",
        description="Citizens' appeals from social networks: intake, deadlines and answers. "
        "Settings come from ADALDYK_* environment variables and a .env file (see config/.env.example).",
    )
    parser.add_argument("--version", action="version", version=f"adaldyk {__version__}")
    sub = parser.add_subparsers(metavar="COMMAND")

    def command(
        name: str, handler: Callable[[Settings, argparse.Namespace], int | None], help_: str
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(handler=handler)
        return p

    command("serve", _serve, "Web, pollers and scheduled jobs in one process (the single-machine default).")
    command("web", _web, "Only the web server: webhooks, JSON API, health.")
    command("worker", _worker, "Only pollers and scheduled jobs (outbox dispatch, overdue sweep).")
    command("migrate", _migrate, "Bring the database schema to this version and load config/org.toml.")
    sandbox = command(
        "sandbox",
        _sandbox,
        "Fake platforms on loopback (every installed channel's), simulated citizens writing in Kazakh and "
        "Russian, and the full service against them: watch the whole flow without any token. Prints a "
        "login for the workspace, where a simulated moderator takes and answers the appeals.",
    )
    sandbox.add_argument(
        "--citizens", type=int, default=4, help="how many simulated citizens per channel (default 4)"
    )
    sandbox.add_argument(
        "--channels",
        type=lambda value: [name.strip() for name in value.split(",") if name.strip()],
        default=None,
        help="comma-separated channels, e.g. telegram,vk (default: every installed channel's sandbox)",
    )
    sandbox.add_argument(
        "--duration", type=float, default=0, help="stop after this many seconds (0: run until Ctrl+C)"
    )

    user = sub.add_parser("user", help="Staff accounts.").add_subparsers(metavar="ACTION")
    create = user.add_parser(
        "create",
        help="Create a staff account. Without --password-stdin the password is asked twice (hidden).",
        description="Create a staff account for the workspace and the JSON API. Roles: admin (every "
        "appeal, users and settings), moderator (every appeal), officer (their unit and its sub-units "
        "only; needs --unit), auditor (every appeal, read-only).",
    )
    create.set_defaults(handler=_user_create)
    create.add_argument("username")
    create.add_argument(
        "--full-name", default="", help="Surname Name Patronymic (the receipt prints Surname N. P.)"
    )
    create.add_argument(
        "--position", default="", help="the post printed on receipts of appeals this user accepts"
    )
    create.add_argument("--role", choices=list(ROLES), default="moderator")
    create.add_argument("--unit", help="unit code from config/org.toml (required for officers)")
    create.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input",
    )

    token = sub.add_parser("token", help="API tokens for the JSON API.").add_subparsers(metavar="ACTION")
    tcreate = token.add_parser(
        "create",
        help="Create a bearer token for /api/v1 acting with USERNAME's rights; prints the token alone.",
    )
    tcreate.set_defaults(handler=_token_create)
    tcreate.add_argument("name", help="who or what uses the token, e.g. 'crm-sync'")
    tcreate.add_argument(
        "--user", required=True, help="the staff user whose rights the token carries (no more than theirs)"
    )
    trevoke = token.add_parser(
        "revoke", help="Revoke every live token of NAME: the next request with it is refused (401)."
    )
    trevoke.set_defaults(handler=_token_revoke)
    trevoke.add_argument("name", help="the name given to `token create`")

    outbox = sub.add_parser("outbox", help="Messages we owe citizens.").add_subparsers(metavar="ACTION")
    requeue_help = (
        "Send failed (and held) messages again, with a fresh count of attempts; each requeue is "
        "recorded in the appeal's history. Without filters: every failed and held message."
    )
    requeue = outbox.add_parser("requeue", help=requeue_help, description=requeue_help)
    requeue.set_defaults(handler=_outbox_requeue)
    requeue.add_argument("--channel", help="only this channel, e.g. telegram or vk")
    requeue.add_argument("--code", help="only rows whose last error is this code, e.g. telegram.blocked")
    requeue.add_argument("--appeal", metavar="NUMBER", help="only this appeal's messages (its public number)")

    replay = command(
        "replay",
        _replay,
        "Process quarantined events again with the current code. Holds the intake processor's lock;"
        " while a worker's processor runs, the events are handed back to it and their outcome reported.",
    )
    replay.add_argument("--id", type=int, help="only this raw event")
    replay.add_argument("--body-file", type=Path, help="a corrected payload for --id (the original is kept)")

    audit = sub.add_parser("audit", help="The audit log.").add_subparsers(metavar="ACTION")
    verify_help = (
        "Check the audit log's hash chain from the first event to the last: prints OK with the count and "
        "the head hash (keep it elsewhere to prove the log later), or names the first broken link and "
        "exits 1."
    )
    verify = audit.add_parser("verify", help=verify_help, description=verify_help)
    verify.set_defaults(handler=_audit_verify)
    return parser


def _runtime(settings: Settings, *, auto_migrate: bool) -> Runtime:
    from adaldyk_bots.org_config import OrgConfigError
    from adaldyk_bots.storage.schema import ensure_schema

    try:
        runtime = Runtime.build(settings)
    except OrgConfigError as exc:
        raise _Refused(f"config/org.toml is wrong, nothing started: {exc}") from None
    try:
        ensure_schema(runtime.engine, auto_migrate=auto_migrate)
    except RuntimeError as exc:
        raise _Refused(str(exc)) from None
    if auto_migrate:
        _load_org(settings, runtime)
    return runtime


def _load_org(settings: Settings, runtime: Runtime) -> int:
    from adaldyk_bots.org import ORG_FILE, sync_units
    from adaldyk_bots.storage.db import unit_of_work

    with unit_of_work(runtime.engine) as s:
        return sync_units(s, settings.config_dir / ORG_FILE)


def _run_service(settings: Settings, *, web: bool, worker: bool) -> int:
    from adaldyk_bots.runtime import Service

    runtime = _runtime(settings, auto_migrate=settings.is_sqlite)
    asyncio.run(Service(runtime, web=web, worker=worker).run())
    return 0


def _serve(settings: Settings, _args: argparse.Namespace) -> int:
    return _run_service(settings, web=True, worker=True)


def _web(settings: Settings, _args: argparse.Namespace) -> int:
    return _run_service(settings, web=True, worker=False)


def _worker(settings: Settings, _args: argparse.Namespace) -> int:
    return _run_service(settings, web=False, worker=True)


def _migrate(settings: Settings, _args: argparse.Namespace) -> int:
    from adaldyk_bots.storage.schema import current_and_head

    runtime = _runtime(settings, auto_migrate=True)
    current, _head = current_and_head(runtime.engine)
    units = _load_org(settings, runtime)
    print(f"database at revision {current}; {units} units loaded from config/org.toml")
    return 0


def _sandbox(settings: Settings, args: argparse.Namespace) -> int:
    from adaldyk_bots.sandbox import run_sandbox

    return run_sandbox(settings, citizens=args.citizens, duration=args.duration, channels=args.channels)


def _user_create(settings: Settings, args: argparse.Namespace) -> int:
    from adaldyk_bots.accounts import audit, check_new_password, create_user
    from adaldyk_bots.errors import AdaldykError
    from adaldyk_bots.org import link_new_account
    from adaldyk_bots.storage.db import unit_of_work, utcnow

    if args.role == "officer" and not args.unit:
        raise _Refused("an officer needs --unit CODE (officers see only their unit's appeals)")
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        # Asked twice, never echoed and never generated: a generated password would end up in the
        # terminal's scroll-back and shell logs.
        password = getpass.getpass("Password: ")
        if getpass.getpass("Password again: ") != password:
            raise _Refused("the two passwords differ")
    try:
        check_new_password(password, username=args.username)
    except AdaldykError as exc:
        raise _Refused(str(exc)) from None
    runtime = _runtime(settings, auto_migrate=settings.is_sqlite)
    try:
        with unit_of_work(runtime.engine) as s:
            user = create_user(
                s,
                username=args.username,
                role=args.role,
                unit_code=args.unit,
                full_name=args.full_name,
                position=args.position,
                password=password,
                now=utcnow(),
            )
            link_new_account(s, settings.config_dir)
            audit(
                s,
                actor="cli",
                action="user.create",
                subject=user.username,
                detail={"role": user.role, "unit": args.unit},
            )
    except AdaldykError as exc:
        raise _Refused(str(exc)) from None
    print(f"user {args.username} created ({args.role}{', unit ' + args.unit if args.unit else ''})")
    return 0


def _token_create(settings: Settings, args: argparse.Namespace) -> int:
    from sqlmodel import select

    from adaldyk_bots.accounts import audit
    from adaldyk_bots.storage.db import unit_of_work, utcnow
    from adaldyk_bots.storage.models import ApiToken, StaffUser
    from adaldyk_bots.web.api import token_digest

    runtime = _runtime(settings, auto_migrate=settings.is_sqlite)
    token = "adk_" + secrets.token_urlsafe(32)
    with unit_of_work(runtime.engine) as s:
        user = s.exec(select(StaffUser).where(StaffUser.username == args.user)).first()
        if user is None:
            raise _Refused(f"no user {args.user!r} (create one with `adaldyk user create`)")
        if user.disabled_at is not None:
            raise _Refused(f"user {args.user} is disabled")
        s.add(
            ApiToken(name=args.name, token_sha256=token_digest(token), created_at=utcnow(), user_id=user.id)
        )
        audit(
            s,
            actor="cli",
            action="token.create",
            subject=user.username,
            detail={"token": args.name},
        )
    print(token)
    print(
        f"token {args.name!r} created for {args.user} ({user.role}); it is shown only once. "
        "Use: Authorization: Bearer <token>",
        file=sys.stderr,
    )
    return 0


def _token_revoke(settings: Settings, args: argparse.Namespace) -> int:
    from sqlmodel import col, select

    from adaldyk_bots.storage.db import unit_of_work, utcnow
    from adaldyk_bots.storage.models import ApiToken

    runtime = _runtime(settings, auto_migrate=settings.is_sqlite)
    with unit_of_work(runtime.engine) as s:
        live = s.exec(
            select(ApiToken).where(ApiToken.name == args.name, col(ApiToken.revoked_at).is_(None))
        ).all()
        if not live:
            raise _Refused(f"no live token named {args.name!r}")
        now = utcnow()
        for token in live:
            token.revoked_at = now
            s.add(token)
    print(f"token {args.name!r} revoked ({len(live)} token{'s' if len(live) != 1 else ''})")
    return 0


def _replay(settings: Settings, args: argparse.Namespace) -> int:
    runtime = _runtime(settings, auto_migrate=settings.is_sqlite)
    if args.body_file and args.id is None:
        raise _Refused("--body-file needs --id: a correction belongs to one event")
    corrected = args.body_file.read_bytes() if args.body_file else None
    report = runtime.intake.replay(event_id=args.id, corrected_payload=corrected)
    for raw_id, state, reason in report:
        print(f"event {raw_id}: {state}" + (f" ({reason})" if reason else ""))
    if not report:
        print("no quarantined events")
    # "received": handed to a running processor that has not taken it within the wait.
    return 0 if all(state not in ("quarantined", "received") for _id, state, _r in report) else 1


def _outbox_requeue(settings: Settings, args: argparse.Namespace) -> int:
    from sqlmodel import col, select

    from adaldyk_bots.dispatcher import requeue
    from adaldyk_bots.storage.db import unit_of_work, utcnow
    from adaldyk_bots.storage.models import Appeal

    runtime = _runtime(settings, auto_migrate=settings.is_sqlite)
    with unit_of_work(runtime.engine) as s:
        if args.appeal and s.exec(select(Appeal.id).where(Appeal.number == args.appeal)).first() is None:
            raise _Refused(f"no appeal {args.appeal}")
        rows = requeue(s, now=utcnow(), channel=args.channel, code=args.code, appeal_number=args.appeal)
        numbers = dict(
            s.exec(
                select(Appeal.id, Appeal.number).where(
                    col(Appeal.id).in_({r.appeal_id for r in rows if r.appeal_id is not None})
                )
            ).all()
        )
        lines = [
            f"requeued {row.key} ({row.channel} {row.chat_id}; was {row.last_error_code or 'no error'})"
            + (f" appeal {numbers[row.appeal_id]}" if row.appeal_id in numbers else "")
            for row in rows
        ]
    for line in lines:
        print(line)
    print(f"{len(rows)} message(s) requeued" if rows else "nothing to requeue")
    return 0


def _audit_verify(settings: Settings, _args: argparse.Namespace) -> int:
    from adaldyk_bots.audit import verify
    from adaldyk_bots.storage.db import read_session

    runtime = _runtime(settings, auto_migrate=settings.is_sqlite)
    with read_session(runtime.engine) as s:
        result = verify(s)
    if result.broken is None:
        print(f"OK: {result.count} audit event(s), chain intact; head hash {result.head_hash}")
        return 0
    print(
        f"BROKEN at audit event {result.broken.id}: {result.broken.reason}"
        f" ({result.count} event(s) before it are intact)",
        file=sys.stderr,
    )
    return 1
