"""Admin for journeys."""

from journeys.admin import notices

__all__ = ["notices"]
