"""The audit trail: who changed a configuration row, when, and what (a diff per field).

Every save and delete of an audited model (``audit.registry.AUDITED``: milestone
definitions and stages, journeys, teams and webhook endpoints, templates, frequency caps,
consent topics, region policies and quiet hours, write keys and API tokens, beat
schedules, staff users) records an ``AuditEntry`` in the same transaction, whichever path
made the change: an admin form, a service behind an admin button, the REST API, a
management command. The actor is the signed-in user of the request that made it (or of the
API token), else "system".
"""
