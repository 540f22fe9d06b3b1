"""API errors that render as meta/v1 Status objects, with the real API server's wording."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error answered to the client as a `Status` with `code` and `reason`."""

    code = 500
    reason = "InternalError"

    def __init__(
        self,
        message: str,
        *,
        name: str | None = None,
        group: str | None = None,
        kind: str | None = None,
        causes: list[dict[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = {
            key: value for key, value in (("name", name), ("group", group), ("kind", kind)) if value
        }
        if causes:
            self.details["causes"] = causes

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = dict(self.details)
        return body


class BadRequest(ApiError):
    code = 400
    reason = "BadRequest"


class Unauthorized(ApiError):
    """No credentials, or credentials the server does not accept (an expired token, say)."""

    code = 401
    reason = "Unauthorized"


class Forbidden(ApiError):
    code = 403
    reason = "Forbidden"


class NotFound(ApiError):
    code = 404
    reason = "NotFound"


class MethodNotAllowed(ApiError):
    code = 405
    reason = "MethodNotAllowed"


class NotAcceptable(ApiError):
    code = 406
    reason = "NotAcceptable"


class Conflict(ApiError):
    code = 409
    reason = "Conflict"


class AlreadyExists(Conflict):
    """A Conflict subclass, so `except Conflict` also catches duplicate creates."""

    reason = "AlreadyExists"


class Gone(ApiError):
    code = 410
    reason = "Expired"


class UnsupportedMediaType(ApiError):
    code = 415
    reason = "UnsupportedMediaType"


class Invalid(ApiError):
    code = 422
    reason = "Invalid"


def qualified(resource: str, group: str) -> str:
    """`ingresses.networking.k8s.io`, or just `configmaps` for the core group."""
    return f"{resource}.{group}" if group else resource


def not_found(resource: str, group: str, name: str) -> NotFound:
    return NotFound(
        f'{qualified(resource, group)} "{name}" not found', name=name, group=group, kind=resource
    )


def already_exists(resource: str, group: str, name: str) -> AlreadyExists:
    return AlreadyExists(
        f'{qualified(resource, group)} "{name}" already exists',
        name=name,
        group=group,
        kind=resource,
    )


def stale(resource: str, group: str, name: str) -> Conflict:
    return Conflict(
        f'Operation cannot be fulfilled on {qualified(resource, group)} "{name}": the object has '
        "been modified; please apply your changes to the latest version and try again",
        name=name,
        group=group,
        kind=resource,
    )


def invalid(
    kind: str, group: str, name: str, field: str, detail: str, value: Any = None
) -> Invalid:
    """A single-field validation failure, worded like apimachinery's field errors."""
    if value is None:
        what = f"Required value: {detail}"
        cause_reason = "FieldValueRequired"
    else:
        what = f'Invalid value: "{value}": {detail}'
        cause_reason = "FieldValueInvalid"
    return Invalid(
        f'{qualified(kind, group)} "{name}" is invalid: {field}: {what}',
        name=name,
        group=group,
        kind=kind,
        causes=[{"reason": cause_reason, "message": what, "field": field}],
    )


def field_errors(kind: str, group: str, name: str, errors: list[tuple[str, str, str]]) -> Invalid:
    """An Invalid for several field errors: (field, cause reason, "Type: detail") each."""
    listed = ", ".join(f"{field}: {what}" for field, _, what in errors)
    shown = f"[{listed}]" if len(errors) > 1 else listed
    return Invalid(
        f'{qualified(kind, group)} "{name}" is invalid: {shown}',
        name=name,
        group=group,
        kind=kind,
        causes=[
            {"reason": reason, "message": what, "field": field} for field, reason, what in errors
        ],
    )


def no_new_finalizers(kind: str, group: str, name: str, added: list[str]) -> Invalid:
    """apimachinery's ValidateNoNewFinalizers, listing the new ones as Go's %#v would."""
    listed = ", ".join(f'"{f}"' for f in sorted(set(added)))
    detail = (
        "Forbidden: no new finalizers can be added if the object is being deleted, found new "
        f"finalizers []string{{{listed}}}"
    )
    return field_errors(kind, group, name, [("metadata.finalizers", "FieldValueForbidden", detail)])


def immutable(kind: str, group: str, name: str, field: str, value: Any) -> Invalid:
    detail = f'Invalid value: "{value}": field is immutable'
    return field_errors(kind, group, name, [(field, "FieldValueInvalid", detail)])


def unauthorized() -> Unauthorized:
    return Unauthorized("Unauthorized")


def not_allowed() -> MethodNotAllowed:
    return MethodNotAllowed("the server does not allow this method on the requested resource")


def unknown_resource() -> NotFound:
    return NotFound("the server could not find the requested resource")
