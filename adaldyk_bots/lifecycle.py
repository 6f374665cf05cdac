"""The appeal's legal life in one table: which status may follow which, and what each step requires.

Read it as a lawyer would (kz-appeals-law.md): a signal (a social message, R13) is triaged into a formal
appeal (registered, R1; its term starts, R3), an informational answer, a forwarding to the competent body
(R5) or spam. A formal appeal is assigned to the unit whose head answers for it, worked on, may pass a
hearing (R6) or be extended by the head's reasoned decision (R4), and is answered (R10) and closed. The
citizen's "not resolved" reopens it. Any step not in the table is refused (IllegalTransition), and every
step taken is an AppealEvent and an audit record (workflow.change_status).
"""

from __future__ import annotations

from dataclasses import dataclass

from adaldyk_bots.domain import AppealStatus as S
from adaldyk_bots.errors import IllegalTransition

__all__ = ["NOTICE_OF", "REASON_REQUIRED", "TRANSITIONS", "Step", "allowed", "check", "next_statuses"]


@dataclass(frozen=True)
class Step:
    to: S
    reason: bool = False  # a reasoned decision: the reason is recorded and the citizen told it
    # The notice the law owes the citizen when this step is taken (notices.py; once per appeal and kind)
    notice: str | None = None


def _steps(*steps: Step) -> dict[S, Step]:
    return {step.to: step for step in steps}


_REGISTER = Step(S.REGISTERED, notice="registration")  # R2: number, date and time, who accepted it
_FORWARD = Step(S.FORWARDED, reason=True, notice="forwarding")  # R5: within 3 working days, with a notice
_EXTEND = Step(S.EXTENDED, reason=True, notice="extension")  # R4: the head's decision, notice in 3 wd
_ANSWER = Step(S.ANSWERED, notice="answer")  # R10: in the appeal's language
_HEARING = Step(S.HEARING, reason=True, notice="hearing")  # R6: the preliminary decision, 2 wd to object
_REJECT = Step(S.REJECTED, reason=True)  # spam, not an appeal, anonymous (R9)
_MERGE = Step(S.MERGED, reason=True)  # a duplicate: the other appeal carries on
_REOPEN = Step(S.REOPENED, reason=True)
_WORK = Step(S.IN_PROGRESS)
_ASSIGN = Step(S.ASSIGNED)
_CLOSE = Step(S.CLOSED)

TRANSITIONS: dict[S, dict[S, Step]] = {
    # A signal: triage (informational answer, formal appeal, forwarding, spam) or a duplicate.
    S.RECEIVED: _steps(_REGISTER, _WORK, _ANSWER, _FORWARD, _REJECT, _MERGE, _CLOSE),
    S.REGISTERED: _steps(_ASSIGN, _WORK, _FORWARD, _ANSWER, _REJECT, _MERGE),
    S.ASSIGNED: _steps(_WORK, _HEARING, _EXTEND, _ANSWER, _FORWARD, _REJECT, _MERGE),
    S.IN_PROGRESS: _steps(_REGISTER, _HEARING, _EXTEND, _ANSWER, _FORWARD, _REJECT, _MERGE),
    S.HEARING: _steps(_WORK, _EXTEND, _ANSWER),
    S.EXTENDED: _steps(_WORK, _HEARING, _ANSWER, _FORWARD),
    S.ANSWERED: _steps(_CLOSE, _REOPEN),
    S.CLOSED: _steps(_REOPEN),
    S.FORWARDED: _steps(_CLOSE, _REOPEN),
    S.REJECTED: _steps(_REOPEN),
    S.MERGED: _steps(_REOPEN),
    S.REOPENED: _steps(_ASSIGN, _WORK, _HEARING, _EXTEND, _ANSWER, _FORWARD, _MERGE),
}

_ALL_STEPS = [step for steps in TRANSITIONS.values() for step in steps.values()]
REASON_REQUIRED = frozenset(step.to for step in _ALL_STEPS if step.reason)
NOTICE_OF = {step.to: step.notice for step in _ALL_STEPS if step.notice}


def next_statuses(current: str) -> tuple[S, ...]:
    """The statuses an appeal in `current` may go to, in the table's order (what a page offers)."""
    return tuple(TRANSITIONS.get(S(current), {}))


def allowed(current: str, to: str) -> bool:
    return S(to) in TRANSITIONS.get(S(current), {})


def check(current: str, to: str) -> Step:
    """The step from `current` to `to`, or IllegalTransition saying which steps are legal from here."""
    step = TRANSITIONS.get(S(current), {}).get(S(to))
    if step is None:
        legal = ", ".join(next_statuses(current)) or "none"
        raise IllegalTransition(f"an appeal that is {current} cannot become {to}; from {current}: {legal}")
    return step
