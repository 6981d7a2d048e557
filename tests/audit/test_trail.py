"""Every change to an audited row is recorded: who, when, what (a diff), on every path."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.test import Client
from django.urls import reverse
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from audit.context import acting_as
from audit.models import AuditAction, AuditEntry
from audit.registry import AUDITED
from config.logs import task_context_enter, task_context_exit
from consent.models import QuietHours, RegionPolicy, Topic
from customers.models import ApiToken, Source
from customers.services import api_tokens_deactivate, source_create, sources_deactivate
from journeys.models import Team, WebhookEndpoint
from journeys.notices import endpoint_secret_rotate
from journeys.services import journey_save
from messaging.models import FrequencyCap, Template
from messaging.templating import template_activate, template_archive, template_save
from milestones.models import LifecycleStage
from milestones.services import definition_create
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db

EMAIL = {"subject": "Hi", "html": "<p>Hello {{ customer.first_name | default('you') }}</p>"}


def trail(obj: models.Model) -> list[AuditEntry]:
    return list(
        AuditEntry.objects.filter(
            content_type=ContentType.objects.get_for_model(obj), object_id=str(obj.pk)
        ).order_by("id")
    )


@pytest.fixture
def topic() -> Topic:
    return Topic.objects.create(key="tips", name="Tips")


@pytest.fixture
def marketer() -> User:
    return User.objects.create_superuser("ada", "ada@example.com", "pw-not-used-1")


def _template(topic: Topic, subject: str = "Hi") -> Template:
    return template_save(
        key="welcome", name="Welcome", channel="email", topic=topic, default_locale="en",
        variants={"en": {**EMAIL, "subject": subject}},
    )  # fmt: skip


def test_a_row_made_outside_a_request_is_recorded_as_the_system_s(topic: Topic) -> None:
    template = _template(topic)
    [entry] = trail(template)
    assert (entry.action, entry.actor, entry.actor_label) == (AuditAction.CREATED, None, "system")
    assert entry.object_label == str(template)
    assert entry.changes == {
        "key": {"to": "welcome"},
        "name": {"to": "Welcome"},
        "channel": {"to": "email"},
        "topic": {"to": topic.pk},
        "default_locale": {"to": "en"},
        "variants": {"to": {"en": EMAIL}},
        "status": {"to": "draft"},
        "created_at": {"to": template.created_at.isoformat()},
    }


def test_a_change_records_only_the_fields_that_changed_before_and_after(topic: Topic) -> None:
    _template(topic)
    template = _template(topic, subject="Hello there")
    _, changed = trail(template)
    assert changed.action == AuditAction.CHANGED
    assert changed.changes == {
        "variants": {
            "from": {"en": EMAIL},
            "to": {"en": {**EMAIL, "subject": "Hello there"}},
        }
    }


def test_a_save_that_changes_nothing_audited_records_nothing(topic: Topic) -> None:
    template = _template(topic)
    template.save()  # only updated_at moves
    assert len(trail(template)) == 1


def test_service_status_changes_are_recorded(topic: Topic) -> None:
    template = _template(topic)
    version = template_activate(template_id=template.pk)
    template_archive(template_id=template.pk)
    actions = [(e.action, e.changes) for e in trail(template)][1:]
    assert actions == [
        (
            AuditAction.CHANGED,
            {
                "status": {"from": "draft", "to": "active"},
                "active_version": {"from": None, "to": version.pk},
            },
        ),
        (
            AuditAction.CHANGED,
            {
                "status": {"from": "active", "to": "archived"},
                "active_version": {"from": version.pk, "to": None},
            },
        ),
    ]


def test_a_deletion_keeps_the_values_it_deleted() -> None:
    quiet = QuietHours.objects.create(channel="sms", starts_at=dt.time(21), ends_at=dt.time(8))
    pk = quiet.pk
    quiet.delete()
    quiet.pk = pk
    _, deleted = trail(quiet)
    assert deleted.action == AuditAction.DELETED
    assert deleted.changes == {
        "channel": {"from": "sms"},
        "starts_at": {"from": "21:00:00"},
        "ends_at": {"from": "08:00:00"},
        "is_active": {"from": True},
    }


def test_secrets_are_recorded_as_changed_without_their_values() -> None:
    source = Source.objects.get(pk=source_create(name="web app").id)
    sources_deactivate(source_ids=[source.pk])
    made, deactivated = trail(source)
    assert made.changes["key_hash"] == {"to": "(hidden)"}
    assert source.key_hash not in str(made.changes)
    assert deactivated.changes == {"is_active": {"from": True, "to": False}}


def test_deactivating_api_tokens_and_rotating_a_webhook_secret_are_recorded(
    marketer: User,
) -> None:
    token = ApiToken.objects.create(user=marketer, name="ci", key_prefix="mpt_x", key_hash="0" * 64)
    endpoint = WebhookEndpoint.objects.create(name="crm", url="https://crm.example.com/hook")
    assert api_tokens_deactivate(token_ids=[token.pk]) == 1
    endpoint_secret_rotate(endpoint.pk)
    assert trail(token)[-1].changes == {"is_active": {"from": True, "to": False}}
    assert trail(endpoint)[-1].changes == {"secret_version": {"from": 1, "to": 2}}


def test_saves_of_only_excluded_fields_cost_no_query_and_record_nothing(
    marketer: User, django_assert_num_queries: Any
) -> None:
    token = ApiToken.objects.create(user=marketer, name="ci", key_prefix="mpt_x", key_hash="1" * 64)
    with django_assert_num_queries(1):  # the UPDATE alone
        token.save(update_fields=["last_used_at"])
    assert len(trail(token)) == 1


def test_beat_bookkeeping_is_not_a_change_but_an_edit_is() -> None:
    every = IntervalSchedule.objects.create(every=30, period=IntervalSchedule.SECONDS)
    task = PeriodicTask.objects.create(
        name="sweep", task="milestones.deadlines_sweep", interval=every
    )
    task.total_run_count += 1
    task.save()
    task.enabled = False
    task.save()
    assert [e.changes for e in trail(task)][1:] == [{"enabled": {"from": True, "to": False}}]


def test_a_command_or_task_can_name_itself_as_the_actor(topic: Topic) -> None:
    with acting_as("command:seed_demo"):
        template = _template(topic)
    assert trail(template)[0].actor_label == "command:seed_demo"


def test_a_change_made_by_a_task_names_the_task(topic: Topic) -> None:
    task = SimpleNamespace(name="messaging.demo", request=SimpleNamespace())
    task_context_enter(task_id="t-1", task=task)
    try:
        template = _template(topic)
    finally:
        task_context_exit(task_id="t-1")
    assert trail(template)[0].actor_label == "task:messaging.demo"


def test_an_admin_edit_names_the_signed_in_user(client: Client, marketer: User) -> None:
    cap = FrequencyCap.objects.create(
        name="3 a week", scope="marketing", limit=3, window=dt.timedelta(days=7)
    )
    client.force_login(marketer)
    url = reverse("admin:messaging_frequencycap_change", args=[cap.pk])
    form = client.get(url).context["adminform"].form
    data = {name: form[name].value() for name in form.fields if form[name].value() is not None}
    response = client.post(url, {**data, "limit": 2}, HTTP_X_REQUEST_ID="req-42")
    assert response.status_code == 302, response.context["adminform"].form.errors
    _, changed = trail(cap)
    assert (changed.actor, changed.actor_label) == (marketer, "ada")
    assert changed.request_id == response["X-Request-ID"] == "req-42"
    assert changed.changes == {"limit": {"from": 3, "to": 2}}


def test_the_object_page_shows_its_change_history(
    client: Client, marketer: User, topic: Topic
) -> None:
    _template(topic)
    template = _template(topic, subject="Hello there")
    client.force_login(marketer)
    page = client.get(reverse("admin:messaging_template_change", args=[template.pk]))
    html = page.content.decode()
    assert page.status_code == 200
    assert "Change history" in html
    assert html.count('<td rowspan="8">system</td>') == 1  # created: eight fields
    assert html.count('<td rowspan="1">system</td>') == 1  # changed: the variants
    assert "Hello there" in html


def test_the_trail_is_read_only_in_the_admin(client: Client, marketer: User, topic: Topic) -> None:
    template = _template(topic)
    [entry] = trail(template)
    client.force_login(marketer)
    listing = client.get(reverse("admin:audit_auditentry_changelist"))
    assert listing.status_code == 200
    assert "Welcome (email)" in listing.content.decode()
    assert client.get(reverse("admin:audit_auditentry_add")).status_code == 403
    change_url = reverse("admin:audit_auditentry_change", args=[entry.pk])
    assert client.post(change_url, {"actor_label": "someone else"}).status_code == 403
    delete_url = reverse("admin:audit_auditentry_delete", args=[entry.pk])
    assert client.post(delete_url, {"post": "yes"}).status_code == 403
    assert AuditEntry.objects.get(pk=entry.pk).actor_label == "system"


def _make(label: str, user: User) -> models.Model:
    topic, _ = Topic.objects.get_or_create(key="news", defaults={"name": "News"})
    every, _ = IntervalSchedule.objects.get_or_create(every=1, period=IntervalSchedule.MINUTES)
    makers: dict[str, Any] = {
        "milestones.milestonedefinition": lambda: definition_create(
            key="first-action", name="First action", kind="onboarding",
            condition={"type": "event_count", "event": "Did It", "at_least": 1},
        ),
        "milestones.lifecyclestage": lambda: LifecycleStage.objects.create(
            key="engaged", name="Engaged", priority=1, rules={}
        ),
        "journeys.journey": lambda: journey_save(
            key="welcome", name="Welcome", trigger={"kind": "event", "event": "Signed Up"},
            steps=[{"key": "done", "type": "exit"}],
        ),
        "journeys.team": lambda: Team.objects.create(
            key="sales", name="Sales", email="sales@example.com"
        ),
        "journeys.webhookendpoint": lambda: WebhookEndpoint.objects.create(
            name="crm", url="https://crm.example.com/hook"
        ),
        "messaging.template": lambda: _template(topic),
        "messaging.frequencycap": lambda: FrequencyCap.objects.create(
            name="3 a week", scope="marketing", limit=3, window=dt.timedelta(days=7)
        ),
        "consent.topic": lambda: topic,
        "consent.regionpolicy": lambda: RegionPolicy.objects.create(region="DE", mode="opt_in"),
        "consent.quiethours": lambda: QuietHours.objects.create(
            channel="sms", starts_at=dt.time(21), ends_at=dt.time(8)
        ),
        "customers.source": lambda: Source.objects.get(pk=source_create(name="app").id),
        "customers.apitoken": lambda: ApiToken.objects.create(
            user=user, name="ci", key_prefix="mpt_x", key_hash="2" * 64
        ),
        "django_celery_beat.periodictask": lambda: PeriodicTask.objects.create(
            name="sweep", task="milestones.deadlines_sweep", interval=every
        ),
        "auth.user": lambda: user,
    }  # fmt: skip
    return makers[label]()  # type: ignore[no-any-return]


@pytest.mark.parametrize("label", sorted(AUDITED))
def test_every_audited_object_s_page_shows_its_history(
    client: Client, marketer: User, label: str
) -> None:
    obj = _make(label, marketer)
    client.force_login(marketer)
    app, model = label.split(".")
    page = client.get(reverse(f"admin:{app}_{model}_change", args=[obj.pk]))
    html = page.content.decode()
    assert page.status_code == 200
    assert '<div class="module audit-trail" id="change-history">' in html
    assert "<td>Created</td>" in html or ">Created</td>" in html


def test_saves_of_models_that_are_not_audited_never_reach_the_recorder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def unexpected(model: type[models.Model]) -> None:
        raise AssertionError(f"the recorder was asked about {model.__name__}")

    monkeypatch.setattr("audit.recorder.audited", unexpected)
    customer = CustomerFactory()
    customer.delete()
