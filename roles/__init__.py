"""Roles: the groups a Milepost team is made of, and exactly what each may do.

``definitions.ROLES`` is the source of truth; ``roles_sync`` makes the groups match it (after
every ``migrate`` and with ``manage.py roles_sync``). Give a person a role by adding them to
its group (and ``is_staff`` so they can sign in to the admin).
"""
