"""Wiring: build the parts once from settings, then run web, pollers and scheduled jobs in one loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import uvicorn
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from adaldyk_bots import answers, data_collection, pruning
from adaldyk_bots.approval_rules import APPROVAL_FILE, ApprovalRules
from adaldyk_bots.calendar import OVERRIDES_FILE, CalendarOverrides, WorkingCalendar
from adaldyk_bots.categories import CATEGORIES_FILE, CategoryRules
from adaldyk_bots.deadlines import Deadlines, SweepReport
from adaldyk_bots.dispatcher import Dispatcher
from adaldyk_bots.intake import Intake
from adaldyk_bots.language import preload_models
from adaldyk_bots.org_config import ORG_FILE, OrgConfig, load_org
from adaldyk_bots.ports import Connector, ConnectorFactory, LoopSpec, load_connector_factories
from adaldyk_bots.ratelimit import BudgetUnavailable, ScopeLimiter
from adaldyk_bots.settings import Settings
from adaldyk_bots.staff_alerts import EMAIL_CHANNEL, Alerts
from adaldyk_bots.step_notices import StepNotices
from adaldyk_bots.storage.db import make_engine, unit_of_work, utcnow
from adaldyk_bots.storage.locks import PollerLock
from adaldyk_bots.supervisor import Supervisor
from adaldyk_bots.terms import TERMS_FILE, Terms
from adaldyk_bots.texts import Texts
from adaldyk_bots.workflow import Workflow

log = logging.getLogger(__name__)

# Names on /healthz (loops) and in the scheduler (jobs).
PROCESSOR_LOOP = "intake:processor"
PROCESSOR_LOCK = "intake:processor"  # Intake.processor_lock() takes the same lock (replay)
DISPATCH_JOB = "dispatch_due_outbox"
OVERDUE_JOB = "mark_overdue_appeals"  # at the start of every minute: overdue from the minute (R7)
DEADLINES_JOB = "deadline_sweep"  # forwarding, reminders, extension notices, digests (deadlines.py)
DEADLINES_SECONDS = 60.0
PRUNE_JOB = "prune_sessions_and_attempts"  # expired sessions, old login attempts (pruning.py)
PRUNE_SECONDS = 600.0


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    workflow: Workflow
    intake: Intake
    connectors: dict[str, Connector] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)  # channel -> why it could not load
    off: list[str] = field(default_factory=list)  # installed channels without credentials
    org: OrgConfig = field(default_factory=OrgConfig)  # config/org.toml, checked at start (routing reads it)

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        engine: Engine | None = None,
        factories: Mapping[str, ConnectorFactory] | None = None,
        channels: Collection[str] | None = None,
    ) -> Runtime:
        """The parts, built once; `factories` replaces the registry (a test's own connectors),
        `channels` limits the installed connectors used (the sandbox)."""
        # A wrong org.toml stops start-up here (OrgConfigError: the line and the reason), before anything
        # runs: routing and the notices' recipients would otherwise follow a tree nobody meant.
        org = load_org(settings.config_dir / ORG_FILE)
        engine = engine or make_engine(settings.database_url)
        calendar = WorkingCalendar(
            tz=settings.tz,
            work_start=settings.working_hours_start,
            work_end=settings.working_hours_end,
            overrides=CalendarOverrides.load(settings.config_dir / OVERRIDES_FILE),
        )
        texts = Texts.load(settings.config_dir / "templates", settings.tz)
        workflow = Workflow(
            calendar=calendar,
            texts=texts,
            term_days=settings.answer_term_working_days,
            number_prefix=settings.appeal_number_prefix,
            categories=CategoryRules.load(settings.config_dir / CATEGORIES_FILE),
            approval=ApprovalRules.load(settings.config_dir / APPROVAL_FILE),
            hooks=StepNotices(),
            terms=Terms.load(settings.config_dir / TERMS_FILE, default_term=_explicit_term(settings)),
            dialogue=data_collection.answer,  # the R12 dialogue (triage.py's formal decision)
            status_url=f"{(settings.public_url or '').rstrip('/')}/public/status",
        )
        connectors: dict[str, Connector] = {}
        unavailable: dict[str, str] = {}
        if factories is None:
            factories, unavailable = load_connector_factories()
        off: list[str] = []
        for name, reason in unavailable.items():
            log.error("channel %s is unavailable: %s", name, reason)
        for name, factory in sorted(factories.items()):
            if channels is not None and name not in channels:
                continue
            connector = factory.from_settings(settings)
            if connector is None:
                log.info("channel %s is off (no credentials configured)", name)
                off.append(name)
            else:
                connectors[name] = connector
        mail = connectors.get(EMAIL_CHANNEL)
        # Staff notices are copied by e-mail through the running e-mail connector; off: the page is enough.
        workflow.alerts = Alerts(mail_account=mail.account if mail is not None else None)
        return cls(
            unavailable=unavailable,
            off=off,
            settings=settings,
            engine=engine,
            workflow=workflow,
            intake=Intake(engine, workflow, {name: c.parse_payload for name, c in connectors.items()}),
            connectors=connectors,
            org=org,
        )

    def dispatcher(self) -> Dispatcher:
        s = self.settings
        limiter = ScopeLimiter(s.redis_url)
        if s.redis_url:
            try:
                limiter.check()
            except BudgetUnavailable as exc:  # sends wait until Redis answers; the rest runs
                log.error("shared rate budgets: %s; sends wait until it answers", exc)
        return Dispatcher(
            engine=self.engine,
            connectors=self.connectors,
            limiter=limiter,
            lease_seconds=s.outbox_lease_seconds,
            max_attempts=s.outbox_max_attempts,
            send_timeout=s.send_timeout_seconds,
            concurrency=s.dispatch_concurrency,
            fallback_writer=self.workflow.enqueue_fallback,
            elsewhere_writer=self.workflow.enqueue_elsewhere,
            notice_fields=self.workflow.notice_fields,
        )

    @property
    def deadlines(self) -> Deadlines:
        return Deadlines(self.workflow, approvals=answers.awaiting_approval)  # four eyes in the digest

    def mark_overdue(self, now: datetime | None = None) -> int:
        """R7 and its escalation, in one transaction."""
        with unit_of_work(self.engine) as s:
            return self.deadlines.mark_overdue(s, now=now or utcnow())

    def sweep_deadlines(self, now: datetime | None = None) -> SweepReport:
        """One round of the other clocks, each step in its own transaction (one failing step does not
        undo what the others did; the supervisor records the error and the next round tries again)."""
        now, deadlines, report = now or utcnow(), self.deadlines, SweepReport()
        with unit_of_work(self.engine) as s:
            report.forwarding = deadlines.flag_forwarding(s, now=now)
        with unit_of_work(self.engine) as s:
            report.reminders = deadlines.remind(s, now=now)
        with unit_of_work(self.engine) as s:
            report.extension_notices = deadlines.check_extension_notices(s, now=now)
        with unit_of_work(self.engine) as s:
            report.digests = deadlines.send_digests(s, now=now)
        return report

    def prune(self, now: datetime | None = None) -> pruning.PruneReport:
        """Expired workspace sessions and login attempts the throttle no longer reads (pruning.py)."""
        idle = timedelta(hours=self.settings.session_idle_hours)
        return pruning.prune(self.engine, now=now or utcnow(), idle=idle)


class Service:
    """The long-running part: connectors receiving, the scheduler sending, optionally the web server.
    Every loop runs under the one supervisor (adaldyk_bots/supervisor.py), which /healthz reports."""

    def __init__(self, runtime: Runtime, *, web: bool, worker: bool) -> None:
        self.runtime = runtime
        self.web = web
        self.worker = worker
        self.dispatcher = runtime.dispatcher()
        self.scheduler = AsyncIOScheduler(timezone="UTC")
        self.supervisor = Supervisor(lambda name: PollerLock(runtime.engine, name))
        self._stop = asyncio.Event()
        self._server: uvicorn.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._received = asyncio.Event()  # set when intake stored something new
        self._models_loaded = False  # lingua's, before the processor's first round (_process_round)

    async def run(self) -> None:
        rt = self.runtime
        self._loop = asyncio.get_running_loop()
        supervisor = self.supervisor
        if self.worker:
            rt.intake.on_received = self._wake_processor
            supervisor.add(LoopSpec(PROCESSOR_LOOP, self._process_round, lock=PROCESSOR_LOCK))
        for connector in rt.connectors.values():
            # A web-only process serves webhooks but leaves polling and registration to the worker.
            await connector.start(rt.intake, receive=self.worker)
            if self.worker:
                for spec in connector.background_loops(rt.intake):
                    supervisor.add(spec)
        if self.worker:
            supervisor.add(supervisor.heartbeat_loop(rt.engine))
            supervisor.schedule(
                self.scheduler,
                DISPATCH_JOB,
                self.dispatcher.dispatch_due,
                seconds=rt.settings.dispatch_interval_seconds,
            )
            supervisor.schedule(
                self.scheduler,
                OVERDUE_JOB,
                lambda: asyncio.to_thread(rt.mark_overdue),
                seconds=60,
                on_the_minute=True,
            )
            supervisor.schedule(
                self.scheduler,
                DEADLINES_JOB,
                lambda: asyncio.to_thread(rt.sweep_deadlines),
                seconds=DEADLINES_SECONDS,
            )
            supervisor.schedule(
                self.scheduler,
                PRUNE_JOB,
                lambda: asyncio.to_thread(rt.prune),
                seconds=PRUNE_SECONDS,
            )
            self.scheduler.start()
        supervisor.start()
        try:
            # Also under uvicorn: it re-raises the signal it caught after its graceful stop, and with
            # our handler in place that ends here, in a clean exit (code 0), not in death by SIGTERM.
            self._install_signal_handlers()
            if self.web:
                await self._serve_web()
            else:
                await self._stop.wait()
        finally:
            if self.worker:
                self.scheduler.shutdown(wait=False)
            await supervisor.stop()
            if self.worker:
                try:  # the last word of this process on /healthz: its loops stopped
                    await asyncio.to_thread(supervisor.write_heartbeats, rt.engine)
                except SQLAlchemyError as exc:
                    log.warning("could not record the stopped loops: %s", exc)
            for connector in rt.connectors.values():
                await connector.stop()
            await asyncio.to_thread(self.dispatcher.close)
            log.info("stopped cleanly")

    async def _process_round(self) -> None:
        """Step two of intake: stored events become messages and appeals, then the dispatcher is nudged
        so the acknowledgement does not wait for its next tick."""
        self._received.clear()
        if not self._models_loaded:
            # Half a second of CPU, spent at start while nothing waits, rather than inside the first
            # citizen's message (and inside every step-two figure of bench/intake_bench.py).
            await asyncio.to_thread(preload_models)
            self._models_loaded = True
        handled = await asyncio.to_thread(self.runtime.intake.process_received)
        if handled:
            self._nudge_dispatcher()
            return
        with contextlib.suppress(TimeoutError):
            # Events stored by another process (a separate `web`) arrive without a wake-up.
            await asyncio.wait_for(self._received.wait(), timeout=0.5)

    def _wake_processor(self) -> None:
        if self._loop is not None:  # called from web threads and pollers alike
            self._loop.call_soon_threadsafe(self._received.set)

    def _nudge_dispatcher(self) -> None:
        job = self.scheduler.get_job(DISPATCH_JOB)
        if job is not None:
            job.modify(next_run_time=datetime.now(UTC))

    async def _serve_web(self) -> None:
        from adaldyk_bots.web.app import WebServer, create_app  # the worker alone never needs the web stack

        s = self.runtime.settings
        config = uvicorn.Config(
            create_app(self.runtime, supervisor=self.supervisor),
            host=s.host,
            port=s.port,
            log_config=None,
            access_log=False,
            lifespan="off",
            # uvicorn would otherwise take X-Forwarded-For from any loopback peer as the client's address;
            # the web reads it itself, only from ADALDYK_TRUSTED_PROXIES (web/deps.py client_address).
            proxy_headers=False,
        )
        server = self._server = WebServer(config)
        log.info("web listening on http://%s:%s", s.host, s.port)
        await server.serve()  # uvicorn handles SIGINT/SIGTERM and returns after a graceful stop

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # a service in a thread (tests, the sandbox) is stopped with stop()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stop_now)

    def stop(self) -> None:
        """Ask the service to stop; safe to call from another thread (tests, the sandbox)."""
        if self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._stop_now)

    def _stop_now(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.should_exit = True


def _explicit_term(settings: Settings) -> int | None:
    """ADALDYK_ANSWER_TERM_WORKING_DAYS when it was set (config/terms.toml's [term] default wins)."""
    return (
        settings.answer_term_working_days if "answer_term_working_days" in settings.model_fields_set else None
    )
