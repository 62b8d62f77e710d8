"""FastAPI dependencies that let a request through only with a live operator token of a role
high enough: none or a bad one is 401, too low a role 403.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import HTTPException, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from host.api.operators import NotSignedIn, OperatorAuth, Principal
from host.api.schemas import ErrorOut

bearer_scheme = HTTPBearer(
    auto_error=False,
    description="A token from POST /auth/token, sent as `Authorization: Bearer TOKEN`.",
)

SIGN_IN_FIRST = "sign in first: POST /auth/token, then send Authorization: Bearer TOKEN"
CHALLENGE = {"WWW-Authenticate": "Bearer"}

# The refusals every protected route may answer, for the OpenAPI schema.
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "no token, or one that is not valid any more"},
    403: {"model": ErrorOut, "description": "the operator's role does not allow this"},
}


def require_role(auth: OperatorAuth, role: str) -> Callable[..., Principal]:
    """A dependency giving the signed-in operator, refusing roles below `role`."""

    def signed_in(
        credentials: HTTPAuthorizationCredentials | None = Security(bearer_scheme),  # noqa: B008
    ) -> Principal:
        if credentials is None or not credentials.credentials:
            raise HTTPException(401, SIGN_IN_FIRST, headers=CHALLENGE)
        try:
            principal = auth.authenticate(credentials.credentials)
        except NotSignedIn as err:
            raise HTTPException(401, str(err), headers=CHALLENGE) from None
        if not principal.may(role):
            raise HTTPException(
                403, f"this needs the {role} role; {principal.name} has {principal.role}"
            )
        return principal

    return signed_in
