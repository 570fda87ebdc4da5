"""Organisations, principals and API tokens: who can act, and how they prove it.

Sits above policies (its services ask the decision point) and below catalog and sandbox (which look
up organisations and enterprises' registered keys).
"""

from identity.models import ApiToken, Organisation, Principal
from identity.service import (
    authenticate,
    create_organisation,
    create_principal,
    get_organisation,
    issue_token,
    revoke_token,
)

__all__ = [
    "ApiToken",
    "Organisation",
    "Principal",
    "authenticate",
    "create_organisation",
    "create_principal",
    "get_organisation",
    "issue_token",
    "revoke_token",
]
