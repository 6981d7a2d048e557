"""Admin for journeys, where marketers build, release and watch them.

Journeys are written only through ``journeys.services``: the editor (``journeys``, with the
step rows of ``steps`` and the form of ``forms``) validates with the services' own pure checks
and saves with ``journey_save``; Go live, Pause, Archive, Dry run and "Move running
enrollments" are POST-only views calling one service each. Enrollments and their step
history are read-only (``enrollments``). Teams, webhook endpoints and the notices outbox are
in ``notices``.
"""

from journeys.admin import enrollments, journeys, notices

__all__ = ["enrollments", "journeys", "notices"]
