"""The registry of named actions: every service call that reads data or changes state names one of these.

The Cedar schema declares exactly these actions; a test walks this registry to prove each is decided
and audited. Add an action here first, then its rules, then the service that uses it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ActionSpec:
    name: str
    resource: str  # Cedar resource type the action applies to
    changes_state: bool
    description: str


ACTIONS: dict[str, ActionSpec] = {
    a.name: a
    for a in (
        # identity and keys
        ActionSpec("principal:create", "Organisation", True, "create a principal and issue its first token"),
        ActionSpec("token:issue", "Organisation", True, "issue an API token to a principal"),
        ActionSpec("token:revoke", "Organisation", True, "revoke an API token"),
        ActionSpec(
            "organisation:create", "Organisation", True, "register a department, enterprise or office"
        ),
        ActionSpec(
            "enterprise:onboard", "Organisation", True, "onboard an enterprise with its SM2 public key"
        ),
        ActionSpec("enterprise:list", "Organisation", False, "list the onboarded enterprises and their status"),
        # catalog
        ActionSpec("dataset:register", "Dataset", True, "register a dataset and its fields"),
        ActionSpec("dataset:update", "Dataset", True, "change a dataset's metadata"),
        ActionSpec("dataset:publish", "Dataset", True, "upload and publish a new version"),
        ActionSpec("dataset:read_metadata", "Dataset", False, "read a dataset's metadata and dictionary"),
        ActionSpec("dataset:read_quality", "Dataset", False, "read a version's quality report"),
        ActionSpec("dataset:read_open", "Dataset", False, "read rows or download the open edition"),
        ActionSpec("dataset:read_shared", "Dataset", False, "read a dataset through a sharing grant"),
        # sandbox and sharing
        ActionSpec("request:create", "Dataset", True, "request sandbox access or sharing for a dataset"),
        ActionSpec("request:approve", "Dataset", True, "approve a request as owning department or operator"),
        ActionSpec("request:deny", "Dataset", True, "deny a request with a reason"),
        ActionSpec("grant:revoke", "Dataset", True, "revoke an active grant at once"),
        ActionSpec("workspace:query", "Dataset", False, "run a query in a sandbox workspace"),
        ActionSpec("export:create", "Dataset", True, "seal an approved result into an export package"),
        ActionSpec("export:review", "Dataset", True, "release or refuse an export held for review"),
        ActionSpec("export:download", "Dataset", False, "download a released export package"),
        # audit
        ActionSpec("audit:search", "AuditLog", False, "search and aggregate the access log"),
        ActionSpec("audit:export", "AuditLog", False, "export the log with checkpoints and proofs"),
        ActionSpec("audit:checkpoint", "AuditLog", True, "sign a checkpoint now"),
        ActionSpec("alert:read", "AuditLog", False, "list risk alerts"),
        # data range
        ActionSpec("scenario:activate", "Scenario", True, "switch an emergency scenario on for a window"),
        ActionSpec("scenario:deactivate", "Scenario", True, "switch an emergency scenario off early"),
        ActionSpec("experiment:run", "Scenario", True, "run a data-range experiment"),
        ActionSpec("experiment:read", "Scenario", False, "read an experiment and its report"),
    )
}


def spec(name: str) -> ActionSpec:
    """The registered action, or KeyError naming it."""
    try:
        return ACTIONS[name]
    except KeyError:
        raise KeyError(f"unregistered action {name!r}") from None
