"""The demo data set, sent through the real ingest path so it behaves like production data.

Three B2B accounts and some self-serve users sign up over the last 60 days, a few of them
after browsing anonymously, then use the product over the last 30 days. Everything comes
from ``random.Random(42)`` and offsets from one "now", and every message has a fixed
``messageId`` (``demo-<n>``): a second run is a pure replay, which the event dedup makes a
no-op, so ``demo_seed`` can run on every ``make demo``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from collections.abc import Iterator, Sequence
from typing import Any

import orjson
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from customers.ingest.parsing import Limits, parse_batch
from customers.ingest.service import events_ingest
from customers.models import Account, Customer, Device, Event, Identity, Source
from customers.services import source_create

DEMO_ADMIN_USERNAME = "admin"
DEMO_ADMIN_PASSWORD = "milepost-demo"  # noqa: S105 - the documented demo login
DEMO_SOURCE_NAME = "Demo app"
DEMO_SEED = 42

_BATCH_SIZE = 100
_ACTIVE_DAYS = 30
_SIGNUP_DAYS = 60
_LIBRARY = {"name": "milepost-demo", "version": "1.0.0"}
_DAY = dt.timedelta(days=1)


@dataclasses.dataclass(frozen=True, slots=True)
class DemoSeedResult:
    admin_username: str
    admin_created: bool
    source_name: str
    source_key: str | None
    """The plain write key when this run created the source; None when it already existed."""
    messages_sent: int
    events_stored: int
    accounts: int
    customers: int
    anonymous_customers: int
    identities: int
    devices: int
    events: int


def demo_seed(*, admin_password: str) -> DemoSeedResult:
    """Ensure the demo superuser, the "Demo app" source and the demo events exist.

    Idempotent. One transaction: if anything fails nothing is kept, so a source is never
    left behind whose key was not printed. The admin's password is reset on every run so
    the login printed afterwards always works.
    """
    with transaction.atomic():
        admin_created = _admin_ensure(admin_password)
        source_id, source_key = _source_ensure()
        payloads = demo_payloads(now=timezone.now())
        stored = _ingest(source_id, payloads)
    return DemoSeedResult(
        admin_username=DEMO_ADMIN_USERNAME,
        admin_created=admin_created,
        source_name=DEMO_SOURCE_NAME,
        source_key=source_key,
        messages_sent=len(payloads),
        events_stored=stored,
        accounts=Account.objects.count(),
        customers=Customer.objects.count(),
        anonymous_customers=Customer.objects.filter(external_id__isnull=True).count(),
        identities=Identity.objects.count(),
        devices=Device.objects.count(),
        events=Event.objects.filter(source_id=source_id).count(),
    )


def _admin_ensure(password: str) -> bool:
    user_model = get_user_model()
    user, created = user_model._default_manager.get_or_create(
        **{user_model.USERNAME_FIELD: DEMO_ADMIN_USERNAME},
        defaults={"email": "admin@example.com"},
    )
    user.is_active = user.is_staff = user.is_superuser = True
    user.set_password(password)
    user.save()
    return created


def _source_ensure() -> tuple[int, str | None]:
    existing = Source.objects.filter(name=DEMO_SOURCE_NAME).values_list("id", flat=True).first()
    if existing is not None:
        return existing, None
    created = source_create(name=DEMO_SOURCE_NAME)
    return created.id, created.key


def _ingest(source_id: int, payloads: Sequence[dict[str, Any]]) -> int:
    stored = 0
    for batch in _chunks(payloads, _BATCH_SIZE):
        received_at = timezone.now()
        body = orjson.dumps({"batch": batch, "context": {"library": _LIBRARY}})
        parsed = parse_batch(body, received_at, Limits())
        if parsed.errors:
            # The generator's own payloads must be valid; anything else is a bug here.
            raise ValueError(f"demo payload rejected: {parsed.errors[0]}")
        result = events_ingest(
            source_id=source_id, messages=parsed.messages, received_at=received_at
        )
        stored += result.stored
    return stored


def _chunks(items: Sequence[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


# --- The data set --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class _Account:
    group_id: str
    name: str
    plan: str
    region: str
    industry: str
    employees: int
    age_days: int
    members: int


_ACCOUNTS = (
    _Account("demo-acme", "Acme Analytics", "enterprise", "us", "Software", 420, 58, 12),
    _Account("demo-globex", "Globex Logistics", "growth", "eu", "Logistics", 130, 52, 10),
    _Account("demo-initech", "Initech Health", "starter", "apac", "Healthcare", 35, 45, 8),
)
_SELF_SERVE = 10
_ANONYMOUS_THEN_IDENTIFIED = 8
_VISITORS = 6
_PRICES = {"enterprise": 1499.0, "growth": 199.0, "starter": 49.0, "pro": 29.0}

_FIRST_NAMES = (
    "Ada", "Bruno", "Chiara", "Dmitri", "Elif", "Farah", "Goran", "Hana", "Ines", "Jonas",
    "Kofi", "Leila", "Mateo", "Nadia", "Oskar", "Priya", "Quentin", "Rosa", "Sven", "Tomoko",
    "Uma", "Viktor", "Wen", "Ximena", "Yusuf", "Zofia", "Amara", "Bilal", "Carmen", "Diego",
    "Emeka", "Freya", "Gustav", "Hiro", "Ilse", "Jamal", "Kirra", "Lucas", "Mei", "Noor",
)  # fmt: skip
_LAST_NAMES = (
    "Silva", "Novak", "Okafor", "Tanaka", "Meyer", "Haddad", "Kowalski", "Nguyen", "Rossi",
    "Larsen", "Mensah", "Ortega", "Petrov", "Sato", "Dubois", "Kaur", "Lindqvist", "Moreau",
)  # fmt: skip
_ZONES = {
    "us": ("America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles"),
    "eu": ("Europe/London", "Europe/Berlin", "Europe/Paris", "Europe/Madrid"),
    "apac": ("Asia/Tokyo", "Asia/Singapore", "Australia/Sydney"),
}
_WEB_PAGES = ("Dashboard", "Reports", "Settings", "Billing")
_MARKETING_PAGES = ("Home", "Pricing", "Features", "Customers")
_SCREENS = ("Home", "Report Detail", "Notifications")
_FEATURES = ("dashboards", "exports", "alerts", "api", "segments", "scheduled reports")
_REPORT_TYPES = ("funnel", "retention", "revenue", "cohort")
_ONBOARDING = ("Create workspace", "Connect data source", "Invite teammate", "Create report")


@dataclasses.dataclass(frozen=True, slots=True)
class _Person:
    index: int
    user_id: str
    traits: dict[str, Any]
    created_at: dt.datetime
    plan: str
    account: _Account | None
    is_owner: bool
    anonymous_id: str | None
    device: tuple[str, str] | None


class _Builder:
    def __init__(self, now: dt.datetime) -> None:
        self.rng = random.Random(DEMO_SEED)  # noqa: S311 - demo data, not security
        self.now = now
        self.sequence = 0
        self.messages: list[tuple[dt.datetime, int, dict[str, Any]]] = []

    def add(self, call_type: str, at: dt.datetime, **fields: Any) -> None:
        self.sequence += 1
        payload = {
            "type": call_type,
            "messageId": f"demo-{self.sequence}",
            "timestamp": _iso(at),
            **{key: value for key, value in fields.items() if value is not None},
        }
        self.messages.append((at, self.sequence, payload))

    def days_ago(self, low: float, high: float) -> dt.datetime:
        return self.now - dt.timedelta(days=self.rng.uniform(low, high))

    def between(self, start: dt.datetime, end: dt.datetime) -> dt.datetime:
        return start + (end - start) * self.rng.random()


def _iso(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def demo_payloads(*, now: dt.datetime) -> list[dict[str, Any]]:
    """The demo's Segment calls, oldest first. Same seed, same calls, same message ids."""
    builder = _Builder(now)
    people = _people(builder)
    for person in people:
        _signup(builder, person)
        _onboarding(builder, person)
        _activity(builder, person)
        _invoices(builder, person)
    _visitors(builder)
    return [payload for _, _, payload in sorted(builder.messages, key=lambda m: (m[0], m[1]))]


def _people(builder: _Builder) -> list[_Person]:
    rng = builder.rng
    slots: list[tuple[_Account | None, bool]] = []
    for team in _ACCOUNTS:
        slots.extend((team, member == 0) for member in range(team.members))
    slots.extend((None, False) for _ in range(_SELF_SERVE))
    returning = set(rng.sample(range(len(slots)), _ANONYMOUS_THEN_IDENTIFIED))
    people = []
    for index, (account, is_owner) in enumerate(slots):
        first, last = _FIRST_NAMES[index], rng.choice(_LAST_NAMES)
        if account is None:
            region = rng.choice(tuple(_ZONES))
            plan = rng.choice(("free", "free", "pro"))
            domain = rng.choice(("example.com", "example.org", "example.net"))
            created_at = builder.days_ago(1, _SIGNUP_DAYS)
        else:
            region, plan, domain = (
                account.region,
                account.plan,
                f"{account.name.split()[0]}.example",
            )
            opened = builder.now - dt.timedelta(days=account.age_days)
            created_at = opened if is_owner else builder.between(opened, builder.now - _DAY)
        traits: dict[str, Any] = {
            "email": f"{first}.{last}@{domain}".lower(),
            "firstName": first,
            "lastName": last,
            "name": f"{first} {last}",
            "plan": plan,
            "region": region,
            "timezone": rng.choice(_ZONES[region]),
            "createdAt": _iso(created_at),
        }
        if index % 3 == 0:
            traits["phone"] = _phone(region, index)
        platform = rng.choice(("ios", "android")) if rng.random() < 0.3 else None
        people.append(
            _Person(
                index=index,
                user_id=f"demo-user-{index + 1:02d}",
                traits=traits,
                created_at=created_at,
                plan=plan,
                account=account,
                is_owner=is_owner,
                anonymous_id=f"demo-anon-{index + 1:02d}" if index in returning else None,
                device=(platform, f"demo-{platform}-token-{index + 1:02d}") if platform else None,
            )
        )
    return people


def _phone(region: str, index: int) -> str:
    # Numbers from ranges reserved for fiction or examples, valid to libphonenumber.
    if region == "us":
        return f"+1415555{100 + index:04d}"
    if region == "eu":
        return f"+4930901820{index:02d}"
    return f"+6129876{5400 + index:04d}"


def _signup(builder: _Builder, person: _Person) -> None:
    at = person.created_at
    if person.anonymous_id:
        # Browsed the marketing site first; the identify call ties that history to the user.
        for page in builder.rng.sample(_MARKETING_PAGES, builder.rng.randint(2, 4)):
            visited = at - dt.timedelta(hours=builder.rng.uniform(1, 72))
            builder.add("page", visited, anonymousId=person.anonymous_id, **_page(page))
    ids = {"userId": person.user_id, "anonymousId": person.anonymous_id}
    builder.add("identify", at, traits=person.traits, **ids)
    if person.account:
        account = person.account
        builder.add(
            "group",
            at + dt.timedelta(seconds=20),
            userId=person.user_id,
            groupId=account.group_id,
            traits={
                "name": account.name,
                "plan": account.plan,
                "region": account.region,
                "industry": account.industry,
                "employees": account.employees,
                "createdAt": _iso(builder.now - dt.timedelta(days=account.age_days)),
            },
        )
    method = builder.rng.choice(("email", "google", "sso" if person.account else "github"))
    builder.add(
        "track",
        at + dt.timedelta(minutes=1),
        event="Signed Up",
        properties={"method": method, "plan": person.plan},
        **ids,
    )


def _onboarding(builder: _Builder, person: _Person) -> None:
    rng = builder.rng
    at = person.created_at + dt.timedelta(minutes=5)
    for step, step_name in enumerate(_ONBOARDING[: rng.randint(0, len(_ONBOARDING))], start=1):
        at += dt.timedelta(hours=rng.uniform(0.1, 30))
        if at >= builder.now:
            return
        builder.add(
            "track",
            at,
            userId=person.user_id,
            event="Onboarding Step Completed",
            properties={"step": step, "stepName": step_name},
        )


def _activity(builder: _Builder, person: _Person) -> None:
    rng = builder.rng
    start = max(person.created_at, builder.now - dt.timedelta(days=_ACTIVE_DAYS))
    start += dt.timedelta(hours=1)
    kinds = ["page", "report", "feature"]
    weights = [4, 3, 3]
    if person.device:
        kinds.append("screen")
        weights.append(3)
    if person.account:
        kinds.append("seat")
        weights.append(1)
    for _ in range(rng.randint(2, 12)):
        at = builder.between(start, builder.now - dt.timedelta(minutes=10))
        kind = rng.choices(kinds, weights)[0]
        if kind == "page":
            builder.add("page", at, userId=person.user_id, **_page(rng.choice(_WEB_PAGES), "app"))
        elif kind == "screen" and person.device:
            platform, token = person.device
            builder.add(
                "screen",
                at,
                userId=person.user_id,
                name=rng.choice(_SCREENS),
                context={
                    "device": {"type": platform, "token": token},
                    "app": {"name": "Milepost Demo", "version": "3.2.0"},
                    "os": {"name": "iOS" if platform == "ios" else "Android"},
                },
            )
        elif kind == "report":
            properties = {"reportType": rng.choice(_REPORT_TYPES), "charts": rng.randint(1, 8)}
            builder.add(
                "track", at, userId=person.user_id, event="Report Created", properties=properties
            )
        elif kind == "feature":
            properties = {"feature": rng.choice(_FEATURES)}
            builder.add(
                "track", at, userId=person.user_id, event="Feature Used", properties=properties
            )
        else:
            properties = {"role": rng.choice(("member", "member", "admin")), "seats": 1}
            builder.add(
                "track", at, userId=person.user_id, event="Seat Invited", properties=properties
            )


def _invoices(builder: _Builder, person: _Person) -> None:
    """Monthly invoices for self-serve Pro users and each account's owner (who pays)."""
    price = _PRICES.get(person.plan)
    if price is None or (person.account is not None and not person.is_owner):
        return
    month = 0
    while (at := person.created_at + dt.timedelta(days=30 * month, minutes=5)) < builder.now:
        if at >= builder.now - dt.timedelta(days=_ACTIVE_DAYS):
            builder.add(
                "track",
                at,
                userId=person.user_id,
                event="Invoice Paid",
                properties={
                    "amount": price,
                    "currency": "USD",
                    "plan": person.plan,
                    "invoiceId": f"demo-inv-{person.index + 1:02d}-{month + 1}",
                },
            )
        month += 1


def _visitors(builder: _Builder) -> None:
    """Visitors who never signed up: they stay anonymous customers."""
    for visitor in range(1, _VISITORS + 1):
        for _ in range(builder.rng.randint(1, 4)):
            builder.add(
                "page",
                builder.days_ago(0.1, _ACTIVE_DAYS),
                anonymousId=f"demo-visitor-{visitor:02d}",
                **_page(builder.rng.choice(_MARKETING_PAGES)),
            )


def _page(name: str, site: str = "www") -> dict[str, Any]:
    path = "/" if name == "Home" else f"/{name.lower()}"
    return {
        "name": name,
        "properties": {"path": path, "url": f"https://{site}.milepost.example{path}"},
    }
