"""The core's exceptions: what a request can be refused for, each kind with one HTTP answer.

    AdaldykError                 a refusal; the message is shown to the caller as `detail`
    ├── NotFound                 404  nothing there, or nothing the caller may see
    │   ├── AppealNotFound
    │   └── UnknownUnit              (a unit code that is not in config/org.toml)
    ├── Conflict                 409  the request is valid but the state does not allow it
    │   ├── StatusUnchanged          (the appeal already has that status)
    │   ├── IllegalTransition        (a step the legal table, lifecycle.py, does not allow)
    │   ├── ApprovalRequired         (a final answer that must wait for the head's approval: answers.py)
    │   └── NoFile                   (an attachment kind that holds no file)
    ├── Invalid                  422  the request is well-formed but not a valid instruction
    │   ├── UnknownStatus            (the API's schema refuses these first; kept for other callers)
    │   ├── EmptyReply
    │   ├── UseExtension             (status "extended" without the extension's decision: deadlines.extend)
    │   ├── UseForwarding            (status "forwarded" without the outside body: forwarding.forward)
    │   └── InvalidFilter            (an inbox filter value that means nothing: appeal_query.py)
    ├── Unauthorized             401  no token, or one that is unknown or revoked
    ├── Forbidden                403  known caller, not allowed (an auditor's write, a non-admin's admin)
    │   └── CsrfRefused              (a state-changing request without the session's CSRF token)
    ├── TooManyAttempts          429  failed logins throttled for this account and address
    ├── UpstreamFailed           502  a platform refused or could not be reached
    └── Unavailable              503  a part we depend on (the database) is down: try again later

WorkflowError is the base of the workflow's refusals (AppealNotFound … EmptyReply) and is kept for
code that catches it. `web/errors.py` maps the tree to HTTP in one handler; nothing else chooses a
status code for these.
"""

from __future__ import annotations

__all__ = [
    "AdaldykError",
    "AppealNotFound",
    "ApprovalRequired",
    "Conflict",
    "CsrfRefused",
    "EmptyReply",
    "Forbidden",
    "IllegalTransition",
    "Invalid",
    "InvalidFilter",
    "NoFile",
    "NotFound",
    "StatusUnchanged",
    "TooManyAttempts",
    "Unauthorized",
    "Unavailable",
    "UnknownStatus",
    "UnknownUnit",
    "UseExtension",
    "UseForwarding",
    "UpstreamFailed",
    "WorkflowError",
]


class AdaldykError(Exception):
    """A request the core refuses; `str(exc)` says why, in words for the caller."""

    status_code = 400
    code = "refused"


class NotFound(AdaldykError):
    status_code = 404
    code = "not_found"


class Conflict(AdaldykError):
    status_code = 409
    code = "conflict"


class Invalid(AdaldykError):
    status_code = 422
    code = "invalid"


class Unauthorized(AdaldykError):
    status_code = 401
    code = "unauthorized"


class Forbidden(AdaldykError):
    status_code = 403
    code = "forbidden"


class CsrfRefused(Forbidden):
    code = "csrf"


class TooManyAttempts(AdaldykError):
    status_code = 429
    code = "too_many_attempts"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UpstreamFailed(AdaldykError):
    status_code = 502
    code = "upstream_failed"


class Unavailable(AdaldykError):
    status_code = 503
    code = "unavailable"


class WorkflowError(AdaldykError):
    """A request the workflow refuses (unknown appeal, status or unit); the message says why."""


class AppealNotFound(WorkflowError, NotFound):
    pass


class StatusUnchanged(WorkflowError, Conflict):
    pass


class IllegalTransition(WorkflowError, Conflict):
    pass


class ApprovalRequired(WorkflowError, Conflict):
    """A final answer to a formal appeal sent without the four eyes (answers.py: save a draft instead)."""


class UnknownStatus(WorkflowError, Invalid):
    pass


class UnknownUnit(WorkflowError, NotFound):
    pass


class EmptyReply(WorkflowError, Invalid):
    pass


class UseExtension(WorkflowError, Invalid):
    """R4: an extension moves the due date by the head's decision; a bare status change cannot do it."""


class UseForwarding(WorkflowError, Invalid):
    """R5: a forwarding names the outside body the appeal goes to; a bare status change cannot."""


class NoFile(Conflict):
    pass


class InvalidFilter(Invalid):
    """A query parameter of the inbox (status, unit, due_within, cursor …) that is not a valid value."""
