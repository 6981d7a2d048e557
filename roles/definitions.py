"""What each role may do, as Django permissions ("app_label.codename").

- **Marketer** builds milestones, journeys and templates (and the teams journeys notify),
  and reads the audience, consent, deliveries and reports.
- **Analyst** reads everything a marketer sees, and the reports; changes nothing.
- **Ops** runs the machinery: the ops console, retries of failed messages and notices, the
  beat schedules; reads the rest.
- **Admin** may do everything, and is the only role that manages write keys, API tokens,
  webhook endpoints, users and roles.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType

#: Apps whose every model a reading role may view.
_PRODUCT_APPS = ("customers", "consent", "milestones", "messaging", "journeys", "audit")
#: Models only Admin may touch, even to view: the keys into the platform, and webhook
#: endpoints, whose page shows the signing secret their receivers verify.
ADMIN_ONLY_MODELS = frozenset(
    {"customers.source", "customers.apitoken", "journeys.webhookendpoint"}
)


@dataclasses.dataclass(frozen=True, slots=True)
class Role:
    description: str
    #: App labels whose models this role may view (ADMIN_ONLY_MODELS excepted).
    views: tuple[str, ...] = ()
    #: Further permissions, "app_label.codename".
    grants: frozenset[str] = frozenset()
    #: Every permission there is.
    everything: bool = False


def _manage(*models: str, delete: bool = False) -> frozenset[str]:
    actions = ("add", "change", "view", "delete") if delete else ("add", "change", "view")
    found: set[str] = set()
    for model in models:
        app, name = model.split(".")
        found.update(f"{app}.{action}_{name}" for action in actions)
    return frozenset(found)


ROLES: Mapping[str, Role] = MappingProxyType(
    {
        "Marketer": Role(
            description="Builds milestones, journeys and templates; reads the audience.",
            views=_PRODUCT_APPS,
            grants=_manage(
                "milestones.milestonedefinition",
                "milestones.lifecyclestage",
                "journeys.journey",
                "journeys.team",
                "messaging.template",
            )
            | {"reports.view_reports"},
        ),
        "Analyst": Role(
            description="Reads everything and the reports; changes nothing.",
            views=_PRODUCT_APPS,
            grants=frozenset({"reports.view_reports"}),
        ),
        "Ops": Role(
            description="Ops console, retries, beat schedules; reads the rest.",
            views=(*_PRODUCT_APPS, "ops", "django_celery_beat"),
            grants=frozenset(
                {
                    "ops.view_ops_console",
                    "reports.view_reports",
                    "messaging.change_message",  # retry failed messages
                    "journeys.change_notice",  # retry failed notices
                }
            )
            | _manage(
                "django_celery_beat.periodictask",
                "django_celery_beat.intervalschedule",
                "django_celery_beat.crontabschedule",
                "django_celery_beat.clockedschedule",
                "django_celery_beat.solarschedule",
                delete=True,
            ),
        ),
        "Admin": Role(description="Everything, including keys, users and roles.", everything=True),
    }
)
