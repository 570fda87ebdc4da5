"""The auditor's services over the access log: search, aggregates, export, checkpoints, proofs, alerts.

Each call asks the decision point (actions audit:* and alert:read) and is itself recorded. Sits above
policies (which it asks) and audit (which it reads); beside identity.
"""
