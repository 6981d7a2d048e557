"""The journey editor: the working copy saved through ``journey_save``; Go live, Pause,
Archive, Dry run and "Move running enrollments" as POST-only views calling one service each;
the go-live check, per-step counts and lift, versions and the change log on the page."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Final

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
)
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from audit.admin import AuditTrailMixin
from config.admin_buttons import ServiceButtonsMixin
from customers.admin import CappedCountPaginator
from journeys.admin.forms import JourneyForm
from journeys.dryrun import BUCKETS, REFUSED, JourneyDryRun, journey_dry_run
from journeys.migrate import enrollments_migrate
from journeys.models import (
    Enrollment,
    EnrollmentState,
    Journey,
    JourneyStatus,
    JourneyVersion,
)
from journeys.reports import JourneyReport, journey_report
from journeys.services import (
    DEFINITION_FIELDS,
    JourneyInvalid,
    go_live_problems,
    journey_archive,
    journey_go_live,
    journey_pause,
    journey_save,
)
from messaging.explain import channel_label
from milestones.selectors import subject_labels

VERSIONS_SHOWN: Final = 50
CHANGES_SHOWN: Final = 100
DRY_RUN_LIMIT: Final = 10_000
MAX_DRY_RUN_HOURS: Final = 24 * 30
_RUNNING: Final = (EnrollmentState.ACTIVE, EnrollmentState.WAITING)
_EMPTY: Final = "—"
_BUCKET_WORDS: Final = {
    "would_enter": "would enter",
    "held_out": "would be held out (control group)",
    "ineligible": "would be kept out by the entry rules",
    "already_entered": "already entered (re-entry policy)",
}


def trigger_text(trigger: object) -> str:
    """A trigger in words: ``milestone “activated” missed``, ``event “Report Created”``."""
    if not isinstance(trigger, dict):
        return _EMPTY
    kind = str(trigger.get("kind", ""))
    if kind.startswith("milestone_"):
        return f"milestone “{trigger.get('milestone')}” {kind.removeprefix('milestone_')}"
    if kind == "event":
        filtered = " (filtered)" if trigger.get("filters") else ""
        return f"event “{trigger.get('event')}”{filtered}"
    if kind == "stage_changed":
        return f"stage changes to “{trigger.get('to')}”"
    return kind or _EMPTY


def problem_words(problem: str, steps: object) -> str:
    """A services problem with its step path (``steps$[1].next: …``) naming the step."""
    found = re.match(r"^steps\$\[(\d+)\]\.?([\w.\[\]]*): (.*)$", problem)
    if found is None:
        return problem.removeprefix("steps$: ")
    index = int(found[1])
    step = steps[index] if isinstance(steps, list) and index < len(steps) else {}
    key = step.get("key") if isinstance(step, dict) else None
    where = f"Step {index + 1}" + (f" (“{key}”)" if key else "")
    field = f", {found[2]}" if found[2] else ""
    return f"{where}{field}: {found[3]}"


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, Decimal) else value


def has_unreleased_changes(journey: Journey) -> bool:
    """Whether the working copy differs from the live version (what Go live would release)."""
    version = journey.active_version
    return version is None or any(
        _plain(getattr(version, f)) != _plain(getattr(journey, f)) for f in DEFINITION_FIELDS
    )


@dataclasses.dataclass(frozen=True, slots=True)
class _Button:
    label: str
    url: str
    help: str


class JourneyChangeList(ChangeList):
    """Attaches the page's enrollment counts, in one grouped query."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        rows = list(self.result_list)
        counts = {
            row["journey_id"]: (row["enrolled"], row["running"])
            for row in Enrollment.objects.filter(journey_id__in=[j.pk for j in rows])
            .values("journey_id")
            .annotate(enrolled=Count("pk"), running=Count("pk", filter=Q(state__in=_RUNNING)))
            .order_by()
        }
        for row in rows:
            row.counts = counts.get(row.pk, (0, 0))


@admin.register(Journey)
class JourneyAdmin(AuditTrailMixin, ServiceButtonsMixin):
    form = JourneyForm
    list_display = ("name", "key", "status", "trigger", "live_version", "enrolled", "in_progress")
    list_filter = ("status",)
    list_select_related = ("active_version",)
    search_fields = ("key", "name")
    ordering = ("name",)
    sortable_by = ("name", "key", "status")
    show_full_result_count = False
    paginator = CappedCountPaginator
    readonly_fields = (
        "status",
        "live_version",
        "definition",
        "go_live_check",
        "version_history",
        "change_log",
    )

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return JourneyChangeList

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        about: tuple[str, ...] = ("key", "name", "description")
        if obj is not None:
            about = (*about, "status", "live_version")
        if obj is not None and not self.has_change_permission(request, obj):
            return [  # shown, not edited: the definition as stored
                (None, {"fields": about}),
                ("Definition", {"fields": ("definition",)}),
                ("Versions", {"fields": ("version_history",)}),
                ("Change log", {"fields": ("change_log",)}),
            ]
        fieldsets: list[Any] = [
            (None, {"fields": about}),
            (
                "Who enters",
                {
                    "fields": (
                        "trigger_kind",
                        "trigger_milestone",
                        "trigger_event",
                        "trigger_filters",
                        "trigger_stage",
                        "entry_plans",
                        "entry_regions",
                        "entry_stages",
                        "reentry",
                        "reentry_days",
                        "holdout_percent",
                        "priority",
                    )
                },
            ),
            (
                "Goal and exit",
                {"fields": ("goal_milestone", "goal_within", "exit_milestones", "exit_events")},
            ),
        ]
        if obj is not None:
            fieldsets += [
                ("Ready to go live?", {"fields": ("go_live_check",)}),
                ("Versions", {"fields": ("version_history",)}),
                ("Change log", {"fields": ("change_log",)}),
            ]
        return fieldsets

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # The key names the journey on its messages and caps: fixed once made.
        return self.readonly_fields if obj is None else ("key", *self.readonly_fields)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and obj.status == JourneyStatus.ARCHIVED:
            return False  # archived journeys are history: shown, never edited
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Versions and enrollments point here: a journey is archived instead.
        return False

    # --- list columns

    @admin.display(description="trigger")
    def trigger(self, journey: Journey) -> str:
        return trigger_text(journey.trigger)

    @admin.display(description="live version")
    def live_version(self, journey: Journey) -> str:
        version = journey.active_version
        return _EMPTY if version is None else f"v{version.number}"

    @admin.display(description="enrolled")
    def enrolled(self, journey: Journey) -> int:
        return self._counts(journey)[0]

    @admin.display(description="in progress")
    def in_progress(self, journey: Journey) -> int:
        return self._counts(journey)[1]

    def _counts(self, journey: Journey) -> tuple[int, int]:
        counts: tuple[int, int] | None = getattr(journey, "counts", None)
        if counts is None:
            found = Enrollment.objects.filter(journey_id=journey.pk).aggregate(
                enrolled=Count("pk"), running=Count("pk", filter=Q(state__in=_RUNNING))
            )
            counts = (found["enrolled"], found["running"])
        return counts

    # --- change page sections

    @admin.display(description="check")
    def go_live_check(self, journey: Journey) -> str:
        try:
            problems = go_live_problems(journey)
        except JourneyInvalid as exc:
            problems = [str(exc)]
        return render_to_string(
            "admin/journeys/journey/go_live_check.html",
            {
                "problems": [problem_words(p, journey.steps) for p in problems],
                "changed": has_unreleased_changes(journey),
                "version": journey.active_version,
            },
        )

    @admin.display(description="definition")
    def definition(self, journey: Journey) -> str:
        return render_to_string(
            "admin/journeys/journey/definition.html",
            {
                "trigger": trigger_text(journey.trigger),
                "fields": [
                    (name.replace("_", " "), json.dumps(_plain(getattr(journey, name)),
                                                        indent=2, ensure_ascii=False))
                    for name in DEFINITION_FIELDS
                ],
            },
        )  # fmt: skip

    @admin.display(description="versions")
    def version_history(self, journey: Journey) -> str:
        versions = journey.versions.select_related("created_by").order_by("-number")
        return render_to_string(
            "admin/journeys/journey/versions.html",
            {
                "rows": [
                    (
                        version,
                        version.pk == journey.active_version_id,
                        trigger_text(version.trigger),
                        json.dumps(version.steps, indent=2, ensure_ascii=False),
                    )
                    for version in versions[:VERSIONS_SHOWN]
                ]
            },
        )

    @admin.display(description="changes")
    def change_log(self, journey: Journey) -> str:
        changes = journey.changes.select_related("user")[:CHANGES_SHOWN]
        return render_to_string(
            "admin/journeys/journey/changes.html",
            {
                "rows": [
                    (change, json.dumps(change.changes, ensure_ascii=False, sort_keys=True))
                    for change in changes
                ]
            },
        )

    # --- saving through the service

    def save_model(self, request: HttpRequest, obj: Journey, form: Any, change: bool) -> None:
        data = form.cleaned_data
        saved = journey_save(
            key=obj.key if change else data["key"],
            user=request.user,  # type: ignore[arg-type]
            name=data["name"],
            description=data["description"],
            reentry=data["reentry"],
            reentry_days=data["reentry_days"],
            priority=data["priority"],
            holdout_percent=data["holdout_percent"],
            **form.definition,
        )
        # The form's instance becomes the stored row, so the admin's log and redirect use it.
        obj.pk = saved.pk
        obj.refresh_from_db()
        obj._state.adding = False
        if not change:
            messages.info(request, "Saved as a draft: nobody enters until you press Go live.")
        elif saved.active_version is not None and has_unreleased_changes(saved):
            messages.warning(
                request,
                f"Saved the working copy. The journey keeps running "
                f"v{saved.active_version.number} until you press Go live.",
            )

    # --- the change page: buttons, steps editor, report

    button_views = ("go_live", "pause", "archive", "dry_run", "migrate")

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        context = dict(extra_context or {})
        journey = self.get_object(request, unquote(object_id)) if object_id else None
        if journey is not None:
            if self.has_change_permission(request, journey):
                context["journey_buttons"] = self._buttons(journey)
            context.update(self._report_context(request, journey))
        return super().changeform_view(request, object_id, form_url, context)

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Any = None,
    ) -> HttpResponse:
        form = context["adminform"].form
        context["steps_formset"] = getattr(form, "steps_formset", None)
        context["steps_mode"] = form["steps_mode"] if "steps_mode" in form.fields else None
        context["steps_json"] = form["steps_json"] if "steps_json" in form.fields else None
        return super().render_change_form(request, context, add, change, form_url, obj)

    def _report_context(self, request: HttpRequest, journey: Journey) -> dict[str, Any]:
        versions = list(journey.versions.order_by("-number").values_list("number", "pk"))
        chosen = request.GET.get("report_version", "")
        version = None
        if chosen.isdigit():
            number = int(chosen)
            version = JourneyVersion.objects.filter(journey=journey, number=number).first()
        report: JourneyReport = journey_report(journey=journey, version=version)
        return {
            "journey_report": report,
            "report_rows": [_report_row(step) for step in report.steps],
            "report_versions": [number for number, _ in versions],
        }

    def _url(self, name: str, journey: Journey) -> str:
        return reverse(f"admin:journeys_journey_{name}", args=(journey.pk,))

    def _buttons(self, journey: Journey) -> list[_Button]:
        buttons = []
        status = journey.status
        if status != JourneyStatus.ARCHIVED and (
            status != JourneyStatus.LIVE or has_unreleased_changes(journey)
        ):
            buttons.append(
                _Button(
                    "Go live",
                    self._url("go_live", journey),
                    "Snapshot the saved working copy as the next version and enroll with it",
                )
            )
        if status == JourneyStatus.LIVE:
            buttons.append(
                _Button("Pause", self._url("pause", journey), "Stop enrolling and advancing")
            )
        buttons.append(
            _Button(
                "Dry run",
                self._url("dry_run", journey),
                "Who would have entered in the last 24 hours and what they would get "
                "(writes nothing)",
            )
        )
        older = self._older_running(journey)
        if older and journey.active_version is not None and status != JourneyStatus.ARCHIVED:
            buttons.append(
                _Button(
                    f"Move {older} running to v{journey.active_version.number}",
                    self._url("migrate", journey),
                    "Move running enrollments of older versions whose current step exists "
                    "in the live version; the others stay on their version",
                )
            )
        if status != JourneyStatus.ARCHIVED:
            buttons.append(
                _Button(
                    "Archive",
                    self._url("archive", journey),
                    "Stop for good; enrollments and reports are kept",
                )
            )
        return buttons

    @staticmethod
    def _older_running(journey: Journey) -> int:
        if journey.active_version_id is None:
            return 0
        return (
            Enrollment.objects.filter(journey_id=journey.pk, state__in=_RUNNING)
            .exclude(version_id=journey.active_version_id)
            .count()
        )

    def _target(self, request: HttpRequest, object_id: str) -> Journey:
        """The journey a button acts on, after the permission check."""
        if not super().has_change_permission(request):
            raise PermissionDenied
        journey: Journey | None = self.get_object(request, unquote(object_id))
        if journey is None:
            raise Http404("No such journey.")
        return journey

    def _back(self, journey: Journey) -> HttpResponseRedirect:
        return HttpResponseRedirect(self._url("change", journey))

    def go_live_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        journey = self._target(request, object_id)
        try:
            problems = go_live_problems(journey)
        except JourneyInvalid as exc:
            problems = [str(exc)]
        if problems:
            messages.error(request, f"“{journey}” is not live: fix these first.")
            for problem in problems:
                messages.error(request, problem_words(problem, journey.steps))
            return self._back(journey)
        try:
            version = journey_go_live(journey_id=journey.pk, user=request.user)  # type: ignore[arg-type]
        except JourneyInvalid as exc:
            messages.error(request, f"“{journey}” is not live: {problem_words(str(exc), [])}")
        else:
            messages.success(
                request,
                f"“{journey}” is live with v{version.number}: customers it triggers enter from "
                "now on. Running enrollments stay on the version they started on.",
            )
        return self._back(journey)

    def pause_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._status_change(
            request, object_id, journey_pause, "Not paused",
            "Paused “{}”: nobody enters or moves on; enrollments keep their place until it "
            "goes live again.",
        )  # fmt: skip

    def archive_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._status_change(
            request, object_id, journey_archive, "Not archived",
            "Archived “{}”: it stops for good; its history is kept.",
        )  # fmt: skip

    def _status_change(
        self,
        request: HttpRequest,
        object_id: str,
        service: Callable[..., None],
        refused: str,
        done: str,
    ) -> HttpResponse:
        journey = self._target(request, object_id)
        try:
            service(journey_id=journey.pk, user=request.user)
        except JourneyInvalid as exc:
            messages.error(request, f"{refused}: {exc}")
        else:
            messages.success(request, done.format(journey))
        return self._back(journey)

    def migrate_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        journey = self._target(request, object_id)
        try:
            moved = enrollments_migrate(journey_id=journey.pk, user=request.user)  # type: ignore[arg-type]
        except JourneyInvalid as exc:
            messages.error(request, f"Nothing moved: {exc}")
            return self._back(journey)
        stayed = ""
        if moved.stayed:
            where = ", ".join(f"{count} at {place}" for place, count in moved.stayed_at.items())
            stayed = (
                f" {moved.stayed} stay on their version because their step is not in "
                f"v{moved.version} or they are already in it ({where})."
            )
        messages.success(
            request,
            f"Moved {moved.moved} running enrollment{'' if moved.moved == 1 else 's'} to "
            f"v{moved.version}.{stayed}",
        )
        return self._back(journey)

    def dry_run_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        journey = self._target(request, object_id)
        value = request.POST.get("hours", "").strip()
        hours = int(value) if value.isdigit() and 1 <= int(value) <= MAX_DRY_RUN_HOURS else 24
        try:
            result = journey_dry_run(journey=journey, hours=hours, limit=DRY_RUN_LIMIT)
        except JourneyInvalid as exc:
            messages.error(request, f"No dry run: {problem_words(str(exc), journey.steps)}")
            return self._back(journey)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": journey,
            "title": f"Dry run of “{journey}”",
            "result": result,
            "hours": hours,
            "max_hours": MAX_DRY_RUN_HOURS,
            "limit": DRY_RUN_LIMIT,
            "buckets": _dry_run_buckets(result),
            "deliveries": _deliveries(result),
            "url": self._url("dry_run", journey),
        }
        return TemplateResponse(request, "admin/journeys/journey/dry_run.html", context)


def _when(value: dt.datetime) -> str:
    return f"{value.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC"


def _dry_run_buckets(result: JourneyDryRun) -> list[dict[str, Any]]:
    ids = {c.customer_id for samples in result.samples.values() for c in samples}
    labels = subject_labels(unit="customer", subject_ids=ids)
    return [
        {
            "label": _BUCKET_WORDS[bucket],
            "count": result.counts[bucket],
            "samples": [
                {
                    "url": reverse("admin:customers_customer_change", args=(c.customer_id,)),
                    "name": labels[c.customer_id],
                    "entry": c.entry_key,
                    "at": _when(c.at),
                    "plan": c.plan,
                }
                for c in result.samples[bucket]
            ],
        }
        for bucket in BUCKETS
    ]


def _deliveries(result: JourneyDryRun) -> list[tuple[str, int]]:
    rows = []
    for (status, channel, reason), count in sorted(result.deliveries.items()):
        if status == "queued":
            label = f"would go by {channel_label(channel)}"
        elif status == REFUSED:
            label = "refused: a template is missing or inactive"
        else:
            label = f"{status}: {reason.replace('_', ' ')}"
        rows.append((label, count))
    return rows


def _report_row(step: Any) -> dict[str, Any]:
    def reasons(found: dict[str, int]) -> str:
        return ", ".join(f"{count} {reason.replace('_', ' ') or 'no reason'}" for reason, count
                         in sorted(found.items()))  # fmt: skip

    return {
        "step": step,
        "suppressed": sum(step.suppressed.values()),
        "suppressed_reasons": reasons(step.suppressed),
        "failed": sum(step.failed.values()),
        "failed_reasons": reasons(step.failed),
        "key": format_html("<code>{}</code>", step.key),
    }
