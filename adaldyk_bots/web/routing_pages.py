"""The appeal page's routing card (templates/appeal_routing.html): suggested units as one-click forms
posting the page's own unit action (`POST /appeals/{number}/unit`), outside bodies to forward to, and
the moderators' "corruption report concerning unit X" action (`POST /appeals/{number}/corruption`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Path
from fastapi.responses import RedirectResponse
from sqlmodel import Session, col, select

from adaldyk_bots.access import Role, Viewer, visible_appeal
from adaldyk_bots.corruption import mark_corruption_report
from adaldyk_bots.errors import Conflict, Forbidden, StatusUnchanged, UnknownUnit
from adaldyk_bots.org import PROJECT_OFFICE
from adaldyk_bots.org_config import ORG_FILE, load_org
from adaldyk_bots.routing import Router, Suggestion
from adaldyk_bots.storage.db import unit_of_work
from adaldyk_bots.storage.models import Appeal, Unit
from adaldyk_bots.web.deps import PageWriter
from adaldyk_bots.web.parts import AppParts

__all__ = ["build_routing_router", "may_report_corruption", "routing_context", "routing_rules"]

Number = Annotated[str, Path(max_length=32)]


def routing_rules(runtime: AppParts) -> Router:
    """The compiled suggestion rules of config/org.toml (checked at start-up by Runtime.build)."""
    return Router(load_org(runtime.settings.config_dir / ORG_FILE))


def may_report_corruption(viewer: Viewer) -> bool:
    return viewer.role in (Role.MODERATOR, Role.ADMIN)


def routing_context(s: Session, router: Router, viewer: Viewer, appeal: Appeal, text: str) -> dict[str, Any]:
    """What appeal_routing.html shows: suggestions the viewer may act on, and the report form's units."""
    current = s.get(Unit, appeal.unit_id) if appeal.unit_id else None
    suggestions: list[Suggestion] = []
    if appeal.concerned_unit_id is None:  # a corruption report stays with the project office
        suggestions = router.suggest(text, exclude={current.code} if current else ())
    units = {u.code: u for u in s.exec(select(Unit).order_by(col(Unit.code)))}
    allowed = [
        g
        for g in suggestions
        if g.kind == "outside"
        or (g.code in units and (viewer.unit_ids is None or units[g.code].id in viewer.unit_ids))
    ]
    concerned = s.get(Unit, appeal.concerned_unit_id) if appeal.concerned_unit_id else None
    first_unit = next((g.code for g in suggestions if g.kind == "unit" and g.code != PROJECT_OFFICE), None)
    return {
        "routing_units": [g for g in allowed if g.kind == "unit"],
        "routing_outside": [g for g in allowed if g.kind == "outside"],
        "routing_may_report": may_report_corruption(viewer) and viewer.can_write,
        "routing_report_units": [u for u in units.values() if u.code != PROJECT_OFFICE],
        "routing_report_default": concerned.code if concerned else first_unit,
        "routing_concerned": concerned,
    }


def _back(number: str, *, done: str | None = None, error: str | None = None) -> RedirectResponse:
    query = f"?done={done}" if done else f"?error={error}" if error else ""
    return RedirectResponse(f"/appeals/{number}{query}#routing", status_code=303)


def build_routing_router(runtime: AppParts) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    engine = runtime.engine
    workflow = runtime.workflow

    @router.post("/appeals/{number}/corruption")
    def corruption_report(
        number: Number, viewer: PageWriter, unit: Annotated[str, Form(max_length=64)] = ""
    ) -> RedirectResponse:
        """Mark the appeal a confidential corruption report about `unit`, handled by the project office."""
        if not may_report_corruption(viewer):
            raise Forbidden("only the project office's moderators mark corruption reports")
        try:
            with unit_of_work(engine) as s:
                appeal = visible_appeal(s, viewer, number)
                mark_corruption_report(workflow, s, appeal, unit, actor=viewer.actor)
        except UnknownUnit:
            return _back(number, error="unit")
        except StatusUnchanged:
            return _back(number, error="unchanged")
        except Conflict:
            return _back(number, error="no_office")
        return _back(number, done="corruption")

    return router
