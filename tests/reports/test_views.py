"""The admin home shows the dashboard to those with ``reports.view_reports`` (and only to
them), the JSON endpoint answers them (403 for the others), in a fixed number of queries."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.db import OperationalError
from django.test import Client

from reports import selectors
from reports.models import VIEW_REPORTS
from tests.reports.conftest import HOUR, SINCE, THIS_WEEK, achieve, customer, message, staff_with

pytestmark = pytest.mark.django_db

INDEX = "/admin/"
DATA = "/admin/reports/dashboard/data.json"
FORBIDDEN = {"error": "Reading reports needs the permission 'Can view reports and dashboards'."}


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_permission_exists_with_its_name(db: None) -> None:
    permission = Permission.objects.get(content_type__app_label="reports", codename="view_reports")

    assert permission.name == "Can view reports and dashboards"
    assert list(
        Permission.objects.filter(content_type__app_label="reports").values_list(
            "codename", flat=True
        )
    ) == ["view_reports"]


def test_the_admin_home_shows_the_dashboard_above_the_app_list(seeded: dict[str, Any]) -> None:
    response = signed_in(staff_with("analyst", VIEW_REPORTS)).get(INDEX)

    assert response.status_code == 200
    page = response.content.decode()
    assert page.index('id="reports-dashboard"') < page.index('id="content-main"')
    for figure, value in (
        ("events-today", 3), ("achieved", 3), ("missed", 2), ("live-journeys", 1),
        ("sent", 3),
    ):  # fmt: skip
        assert f'<dd id="reports-{figure}">{value}</dd>' in page
    assert '<dd id="reports-suppressed">4' in page
    assert "<li><code>no_consent</code> 2</li>" in page
    assert '<option value="activated" selected>Activated</option>' in page
    assert '<option value="setup-nudge" selected>Setup nudge</option>' in page
    assert page.count('<svg xmlns="http://www.w3.org/2000/svg" class="reports-chart"') == 4
    for chart in ("cohorts", "time-to-milestone", "hierarchy", "journey"):
        assert f'id="reports-{chart}" viewBox=' in page
        assert f'aria-labelledby="reports-{chart}-title reports-{chart}-desc"' in page
    # the charts' labels and the data tables' rows
    assert ">median 16h</text>" in page
    assert ">p90 2d 21h</text>" in page
    assert ">W52</text>" in page
    assert "<td>2026-W10</td><td>2026-03-02</td>" in page
    assert '<td>1d to 2d</td><td class="number">3</td>' in page
    assert ">First report — micro-milestone</text>" in page
    assert ">↓ 4 dropped off (44.4%)</text>" in page
    assert ">nudge (send) — 1 sent · 2 suppressed</text>" in page
    assert "10 achieved since Mon 22 Dec 2025: median 16h, p90 2d 21h" in page
    assert f'href="{DATA}?milestone=activated&amp;journey=setup-nudge"' in page
    assert "<script" not in page.split('id="reports-dashboard"')[1].split("</section>")[0]


def test_staff_without_the_permission_see_the_plain_index(seeded: dict[str, Any]) -> None:
    response = signed_in(staff_with("clerk", "customers.view_customer")).get(INDEX)

    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="content-main"' in page
    assert "reports-dashboard" not in page
    assert "reports-chart" not in page


def test_the_choice_comes_from_the_query_string(
    seeded: dict[str, Any], admin_client: Client
) -> None:
    page = admin_client.get(INDEX, {"milestone": "invited-team", "journey": "winback"}).content
    text = page.decode()

    assert '<option value="invited-team" selected>Invited team</option>' in text
    assert '<option value="winback" selected>Winback</option>' in text
    assert "Journey steps: Winback" in text
    assert "No goal is set, so nothing converts." in text


def test_an_unknown_key_on_the_home_page_shows_the_default_and_says_so(
    seeded: dict[str, Any], admin_client: Client
) -> None:
    text = admin_client.get(INDEX, {"milestone": "nope"}).content.decode()

    assert (
        '<p class="errornote">No milestone has the key &#x27;nope&#x27;. Showing the default '
        "choice instead.</p>"
    ) in text
    assert '<option value="activated" selected>Activated</option>' in text


def test_a_failing_read_leaves_the_admin_home_usable(
    seeded: dict[str, Any], admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    def timed_out(**kwargs: Any) -> int:
        raise OperationalError("canceling statement due to statement timeout")

    monkeypatch.setattr(selectors, "events_received", timed_out)

    response = admin_client.get(INDEX)

    assert response.status_code == 200
    page = response.content.decode()
    assert "The dashboard could not be computed just now" in page
    assert "reports-chart" not in page
    assert 'id="content-main"' in page


def test_the_json_has_the_same_data(seeded: dict[str, Any]) -> None:
    response = signed_in(staff_with("analyst", VIEW_REPORTS)).get(DATA)

    assert response.status_code == 200
    data = response.json()
    assert data["as_of"] == "2026-03-11T12:00:00+00:00"
    assert data["windows"] == {
        "today": "2026-03-11T00:00:00+00:00",
        "this_week": "2026-03-09T00:00:00+00:00",
        "cohorts_since": "2025-12-22T00:00:00+00:00",
    }
    assert (data["milestone"], data["journey"]) == (
        {"key": "activated", "name": "Activated"},
        {"key": "setup-nudge", "name": "Setup nudge"},
    )
    assert [option["key"] for option in data["choices"]["journeys"]] == [
        "setup-nudge", "upsell", "winback",
    ]  # fmt: skip
    assert data["figures"] == {
        "events_today": 3,
        "milestones_achieved_this_week": 3,
        "milestones_missed_this_week": 2,
        "live_journeys": 1,
        "messages_sent_this_week": 3,
        "messages_suppressed_this_week": 4,
        "messages_suppressed_by_reason": [
            {"reason": "no_consent", "count": 2},
            {"reason": "frequency_cap", "count": 1},
            {"reason": "unreachable", "count": 1},
        ],
    }
    weeks = data["cohorts"]["weeks"]
    assert data["cohorts"]["unit"] == "customer"
    assert len(weeks) == 12
    assert weeks[0] == {
        "week": "2025-W52", "starts": "2025-12-22", "size": 1, "achieved": 1, "rate": 1.0
    }  # fmt: skip
    assert weeks[2] == {
        "week": "2026-W02", "starts": "2026-01-05", "size": 0, "achieved": 0, "rate": None
    }  # fmt: skip
    assert [week["rate"] for week in weeks if week["size"]] == [1.0, 0.5, 0.25, 0.0]
    hour = 3600.0
    assert data["time_to_milestone"] == {
        "achieved": 10,
        "median_seconds": 16 * hour,
        "p90_seconds": (69 * 60 + 36) * 60.0,
        "bins": [
            *({"from_seconds": n * 24 * hour, "to_seconds": (n + 1) * 24 * hour,
               "count": count} for n, count in enumerate((6, 3, 0, 0, 0, 0))),
            {"from_seconds": 144 * hour, "to_seconds": None, "count": 1},
        ],
    }  # fmt: skip
    assert data["hierarchy"] == {
        "north_star": {"key": "activated", "name": "Activated"},
        "steps": [
            {"label": "Signed up (last 12 weeks)", "count": 9, "note": "", "lost": None,
             "lost_rate": None, "of_first": 1.0},
            {"label": "First report", "count": 5, "note": "micro-milestone", "lost": 4,
             "lost_rate": 4 / 9, "of_first": 5 / 9},
            {"label": "Invited team", "count": 2, "note": "micro-milestone", "lost": 3,
             "lost_rate": 0.6, "of_first": 2 / 9},
            {"label": "Activated", "count": 3, "note": "north star", "lost": -1,
             "lost_rate": -0.5, "of_first": 3 / 9},
        ],
    }  # fmt: skip
    assert data["journey_funnel"]["has_goal"] is True
    assert [(s["label"], s["count"], s["lost"]) for s in data["journey_funnel"]["steps"]] == [
        ("Entered", 4, None), ("nudge (send)", 4, 0), ("pause (wait)", 3, 1),
        ("done (exit)", 1, 2), ("Converted", 1, 0),
    ]  # fmt: skip


def test_the_json_needs_the_permission(seeded: dict[str, Any]) -> None:
    response = signed_in(staff_with("clerk", "customers.view_customer")).get(DATA)

    assert (response.status_code, response.json()) == (403, FORBIDDEN)


def test_the_json_is_for_staff_only(seeded: dict[str, Any]) -> None:
    outsider = staff_with("outsider", VIEW_REPORTS)
    outsider.is_staff = False
    outsider.save()

    response = signed_in(outsider).get(DATA)

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/?next=")
    assert Client().get(DATA).status_code == 302


def test_the_json_rejects_a_key_that_names_nothing(
    seeded: dict[str, Any], admin_client: Client
) -> None:
    response = admin_client.get(DATA, {"journey": "nope"})

    assert (response.status_code, response.json()) == (
        400,
        {"error": "No journey has the key 'nope'."},
    )


def test_the_json_answers_get_only(seeded: dict[str, Any], admin_client: Client) -> None:
    assert admin_client.post(DATA).status_code == 405


def test_the_home_page_costs_a_fixed_number_of_queries(
    seeded: dict[str, Any], settings: Any, django_assert_max_num_queries: Any
) -> None:
    settings.REPORTS_CACHE_SECONDS = 0
    client = signed_in(staff_with("analyst", VIEW_REPORTS))
    # session, user, its permissions (2), whether it manages keys (customers.admin), the
    # dashboard (16), the recent actions
    with django_assert_max_num_queries(22):
        assert client.get(INDEX).status_code == 200

    # given many more customers, achievements and messages
    for n in range(200):
        someone = customer(SINCE + n * HOUR)
        achieve(seeded["activated"], someone, at=someone.created_at + HOUR)
        message("sent", THIS_WEEK + HOUR)

    with django_assert_max_num_queries(22):
        assert client.get(INDEX).status_code == 200
    with django_assert_max_num_queries(20):
        assert client.get(DATA).json()["time_to_milestone"]["achieved"] == 210
