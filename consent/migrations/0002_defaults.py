"""Sensible defaults a new install starts with; all editable in the admin.

- Quiet hours: no SMS or push between 21:00 and 08:00 in the customer's local time.
- Topics: transactional (account and security notices), marketing, product updates.
- Region policies: the EU/EEA, the UK and Switzerland send marketing only on an explicit
  opt-in; Germany and Austria also need a confirmed (double) email opt-in. Regions without a
  row follow ``CONSENT_DEFAULT_MODE`` (opt-out unless configured).
"""

import datetime as dt

from django.db import migrations

OPT_IN_REGIONS = [
    "EU",
    "AT",
    "BE",
    "BG",
    "HR",
    "CY",
    "CZ",
    "DK",
    "EE",
    "FI",
    "FR",
    "DE",
    "GR",
    "HU",
    "IE",
    "IT",
    "LV",
    "LT",
    "LU",
    "MT",
    "NL",
    "PL",
    "PT",
    "RO",
    "SK",
    "SI",
    "ES",
    "SE",
    "IS",
    "LI",
    "NO",
    "GB",
    "CH",
]
DOUBLE_OPT_IN_REGIONS = {"DE", "AT"}
TOPICS = (
    ("transactional", "Account and security", "Receipts, password resets, security alerts.", True),
    ("marketing", "News and offers", "Product news, tips and offers.", False),
    ("product-updates", "Product updates", "What is new in the product.", False),
)


def forwards(apps, schema_editor):
    QuietHours = apps.get_model("consent", "QuietHours")
    Topic = apps.get_model("consent", "Topic")
    RegionPolicy = apps.get_model("consent", "RegionPolicy")
    for channel in ("sms", "push"):
        QuietHours.objects.get_or_create(
            channel=channel, defaults={"starts_at": dt.time(21), "ends_at": dt.time(8)}
        )
    for key, name, description, is_transactional in TOPICS:
        Topic.objects.get_or_create(
            key=key,
            defaults={
                "name": name,
                "description": description,
                "is_transactional": is_transactional,
            },
        )
    for region in OPT_IN_REGIONS:
        RegionPolicy.objects.get_or_create(
            region=region,
            defaults={
                "mode": "opt_in",
                "requires_double_opt_in": region in DOUBLE_OPT_IN_REGIONS,
            },
        )


class Migration(migrations.Migration):
    dependencies = [("consent", "0001_initial")]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
