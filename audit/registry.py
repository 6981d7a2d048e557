"""Which models are audited, and which of their fields are noise or secret."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType

from django.db import models


@dataclasses.dataclass(frozen=True, slots=True)
class Audited:
    #: Fields the system keeps up to date itself (timestamps, run counters): not diffed.
    exclude: frozenset[str] = frozenset()
    #: Fields whose change is recorded without their values (key hashes, passwords).
    secret: frozenset[str] = frozenset()


_UPDATED = frozenset({"updated_at"})

AUDITED: Mapping[str, Audited] = MappingProxyType(
    {
        "milestones.milestonedefinition": Audited(exclude=_UPDATED | {"updated_by"}),
        "milestones.lifecyclestage": Audited(),
        "journeys.journey": Audited(exclude=_UPDATED),
        "journeys.team": Audited(),
        "journeys.webhookendpoint": Audited(),
        "messaging.template": Audited(exclude=_UPDATED),
        "messaging.frequencycap": Audited(),
        "consent.topic": Audited(),
        "consent.regionpolicy": Audited(),
        "consent.quiethours": Audited(),
        "customers.source": Audited(secret=frozenset({"key_hash"})),
        "customers.apitoken": Audited(
            exclude=frozenset({"last_used_at"}), secret=frozenset({"key_hash"})
        ),
        "django_celery_beat.periodictask": Audited(
            exclude=frozenset({"last_run_at", "total_run_count", "date_changed"})
        ),
        "auth.user": Audited(exclude=frozenset({"last_login"}), secret=frozenset({"password"})),
    }
)


def audited(model: type[models.Model]) -> Audited | None:
    """How ``model`` is audited, or None when it is not."""
    return AUDITED.get(model._meta.label_lower)
