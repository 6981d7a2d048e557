"""Admin for milestones, where marketers configure and watch them.

Definitions are written only through ``milestones.services``: the add and change forms
validate with ``definition_validate`` and save with ``definition_create`` /
``definition_update`` (which versions an active definition); the condition is built as rows
or written as raw JSON (``milestones.condition_editor``). The Activate, Archive,
Backfill and Dry run buttons are POST-only views that call one service each. What evaluation
stores (progress, outcomes, backfills, stage history, the change log) is read-only. Lists
never count a whole table (``CappedCountPaginator``) and compute their statistics and subject
names per page, in a fixed number of queries.

The customer and account pages get a Milestones section from here: ``customers`` must not
import ``milestones``, so this module re-registers those admins with a subclass.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections import defaultdict
from typing import Any, Final

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
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
from django.utils.safestring import SafeString

from audit.admin import AuditTrailMixin
from config.admin_base import ModelAdmin
from config.admin_buttons import ServiceButtonsMixin
from customers.admin import AccountAdmin, CappedCountPaginator, CustomerAdmin
from customers.models import Account, Customer
from milestones.condition_editor import ROW_TYPES, ConditionEditorForm
from milestones.dryrun import BUCKETS, definition_dry_run
from milestones.forms import (
    CONDITION_LIMITS,
    CONDITION_TYPES,
    FILTER_HELP,
    LifecycleStageForm,
    window_text,
)
from milestones.models import (
    Backfill,
    DefinitionChange,
    DefinitionStatus,
    LifecycleStage,
    MilestoneDefinition,
    MilestoneOutcome,
    Progress,
    StageChange,
    Unit,
)
from milestones.selectors import (
    DefinitionStats,
    backfill_latest,
    definition_stats,
    subject_labels,
    subject_progress,
)
from milestones.services import (
    EDITABLE_FIELDS,
    DefinitionInvalid,
    backfill_request,
    definition_activate,
    definition_archive,
    definition_create,
    definition_update,
)

#: Subjects a dry run from the admin reads at most; the page says when it stopped early.
DRY_RUN_LIMIT: Final = 10_000
VERSIONS_SHOWN: Final = 50
CHANGES_SHOWN: Final = 100
_EMPTY: Final = "—"


# --- Display helpers ----------------------------------------------------------------------


def progress_bar(done: int, total: int) -> SafeString:
    """An HTML ``<progress>`` bar with ``done/total`` beside it."""
    maximum = max(total, 1)
    value = maximum if total == 0 else min(done, maximum)
    percent = round(100 * value / maximum)
    return format_html(
        '<progress value="{}" max="{}" title="{}%">{}%</progress> {}/{}',
        value,
        maximum,
        percent,
        percent,
        done,
        total,
    )


def duration_text(value: dt.timedelta | None) -> str:
    """At most two units, largest first: ``3d 4h``, ``2h 30m``, ``5m 10s``, ``42s``."""
    if value is None:
        return _EMPTY
    seconds = int(value.total_seconds())
    parts: list[str] = []
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        amount, seconds = divmod(seconds, size)
        if amount or parts:
            parts.append(f"{amount}{unit}")
    return " ".join(parts[:2]) or "0s"


def rate_text(rate: float | None) -> str:
    return _EMPTY if rate is None else f"{100 * rate:.1f}%"


def _subject_url(unit: str, subject_id: int) -> str:
    model = "account" if unit == Unit.ACCOUNT else "customer"
    return reverse(f"admin:customers_{model}_change", args=(subject_id,))


def _subject_link(row: Progress | MilestoneOutcome) -> SafeString:
    label = getattr(row, "subject_label", None)  # set per page by SubjectChangeList
    if label is None:
        label = subject_labels(unit=row.unit, subject_ids=[row.subject_id])[row.subject_id]
    return format_html('<a href="{}">{}</a>', _subject_url(row.unit, row.subject_id), label)


def _user(request: HttpRequest) -> Any:
    return request.user


class _ReadOnlyAdmin(ModelAdmin):  # type: ignore[type-arg]
    """Rows written by evaluation: listed and shown, never added, edited or deleted here."""

    show_full_result_count = False
    paginator = CappedCountPaginator
    ordering = ("-id",)
    sortable_by = ()

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class SubjectChangeList(ChangeList):
    """Names the page's subjects (customers, accounts) in one query per unit."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        rows = list(self.result_list)
        by_unit: dict[str, set[int]] = defaultdict(set)
        for row in rows:
            by_unit[row.unit].add(row.subject_id)
        labels = {unit: subject_labels(unit=unit, subject_ids=ids) for unit, ids in by_unit.items()}
        for row in rows:
            row.subject_label = labels[row.unit][row.subject_id]


class _SubjectRowsAdmin(_ReadOnlyAdmin):
    list_select_related = ("definition", "version")

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return SubjectChangeList

    @admin.display(description="subject")
    def subject(self, row: Progress | MilestoneOutcome) -> SafeString:
        return _subject_link(row)

    @admin.display(description="version")
    def version_number(self, row: Progress | MilestoneOutcome) -> str:
        return f"v{row.version.number}"


# --- Definitions --------------------------------------------------------------------------


class DefinitionChangeList(ChangeList):
    """Attaches each listed definition's statistics, computed for the page in one go."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        rows = list(self.result_list)
        stats = definition_stats(row.pk for row in rows)
        for row in rows:
            row.stats = stats[row.pk]


@dataclasses.dataclass(frozen=True, slots=True)
class _Button:
    label: str
    url: str
    help: str


@admin.register(MilestoneDefinition)
class MilestoneDefinitionAdmin(AuditTrailMixin, ServiceButtonsMixin):
    form = ConditionEditorForm
    list_display = (
        "key",
        "name",
        "kind",
        "unit",
        "status",
        "version_number",
        "completion_rate",
        "median_time",
    )
    list_filter = ("status", "kind", "unit")
    list_select_related = ("active_version",)
    search_fields = ("key", "name")
    ordering = ("key",)
    sortable_by = ("key", "name", "kind", "unit", "status")
    show_full_result_count = False
    paginator = CappedCountPaginator
    readonly_fields = (
        "status",
        "version_number",
        "condition_help",
        "statistics",
        "latest_backfill",
        "version_history",
        "change_log",
        "created_at",
        "created_by",
        "updated_at",
        "updated_by",
    )

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return DefinitionChangeList

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        about = ("key", "name", "description", "kind", "unit", "parent")
        editor = (
            ("Condition", {"fields": ("condition", "condition_help")}),
            (
                "Clock and audience",
                {"fields": ("anchor", "anchor_event", "anchor_milestone", "window", "eligibility")},
            ),
        )
        if obj is None:
            return ((None, {"fields": about}), *editor)
        return (
            (None, {"fields": (*about, "status", "version_number")}),
            *editor,
            ("Statistics (active version)", {"fields": ("statistics",)}),
            ("Latest backfill", {"fields": ("latest_backfill",)}),
            ("Versions", {"fields": ("version_history",)}),
            (
                "Change log",
                {"fields": ("change_log", "created_at", "created_by", "updated_at", "updated_by")},
            ),
        )

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # The key names the milestone in other conditions and in journeys: fixed once made.
        return self.readonly_fields if obj is None else ("key", *self.readonly_fields)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and obj.status == DefinitionStatus.ARCHIVED:
            return False  # archived definitions are history: shown, never edited
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Versions, progress and outcomes point here; a milestone is archived instead.
        return False

    # --- list columns

    @admin.display(description="active version")
    def version_number(self, definition: MilestoneDefinition) -> str:
        version = definition.active_version
        return _EMPTY if version is None else f"v{version.number}"

    @admin.display(description="completion rate")
    def completion_rate(self, definition: MilestoneDefinition) -> str:
        return rate_text(self._stats(definition).completion_rate)

    @admin.display(description="median time to milestone")
    def median_time(self, definition: MilestoneDefinition) -> str:
        return duration_text(self._stats(definition).median)

    def _stats(self, definition: MilestoneDefinition) -> DefinitionStats:
        stats: DefinitionStats | None = getattr(definition, "stats", None)
        if stats is None:
            stats = definition_stats([definition.pk])[definition.pk]
            definition.stats = stats  # type: ignore[attr-defined]
        return stats

    # --- change page sections

    @admin.display(description="condition types")
    def condition_help(self, definition: MilestoneDefinition | None) -> str:
        return render_to_string(
            "admin/milestones/milestonedefinition/condition_help.html",
            {"types": CONDITION_TYPES, "filters": FILTER_HELP, "limits": CONDITION_LIMITS},
        )

    @admin.display(description="statistics")
    def statistics(self, definition: MilestoneDefinition) -> str:
        stats = self._stats(definition)
        changelist = reverse("admin:milestones_progress_changelist")
        states = [
            (
                label,
                stats.counts[state],
                f"{changelist}?definition__id__exact={definition.pk}&state__exact={state}",
            )
            for state, label in Progress._meta.get_field("state").choices or ()
        ]
        return render_to_string(
            "admin/milestones/milestonedefinition/statistics.html",
            {
                "version": definition.active_version,
                "states": states,
                "total": stats.total,
                "completion_rate": rate_text(stats.completion_rate),
                "median": duration_text(stats.median),
                "p90": duration_text(stats.p90),
            },
        )

    @admin.display(description="latest backfill")
    def latest_backfill(self, definition: MilestoneDefinition) -> str:
        backfill = backfill_latest(definition_id=definition.pk)
        return render_to_string(
            "admin/milestones/backfill/latest.html",
            {
                "backfill": backfill,
                "bar": None
                if backfill is None
                else progress_bar(backfill.processed, backfill.total),
                "all_url": reverse("admin:milestones_backfill_changelist"),
            },
        )

    @admin.display(description="version history")
    def version_history(self, definition: MilestoneDefinition) -> str:
        versions = definition.versions.select_related("created_by").order_by("-number")
        return render_to_string(
            "admin/milestones/milestonedefinition/versions.html",
            {
                "rows": [
                    (
                        version,
                        version.pk == definition.active_version_id,
                        json.dumps(version.condition, indent=2, ensure_ascii=False),
                        window_text(version.window) if version.window else _EMPTY,
                    )
                    for version in versions[:VERSIONS_SHOWN]
                ]
            },
        )

    @admin.display(description="changes")
    def change_log(self, definition: MilestoneDefinition) -> str:
        changes = definition.changes.select_related("user", "version")[:CHANGES_SHOWN]
        return render_to_string(
            "admin/milestones/milestonedefinition/changes.html",
            {
                "rows": [
                    (change, json.dumps(change.detail, ensure_ascii=False, sort_keys=True))
                    for change in changes
                ]
            },
        )

    # --- the condition editor (milestones.condition_editor)

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Any = None,
    ) -> HttpResponse:
        adminform = context["adminform"]
        form = adminform.form
        if isinstance(form, ConditionEditorForm) and "condition" not in adminform.readonly_fields:
            context.update(
                condition_formset=form.condition_formset,
                condition_mode=form["condition_mode"],
                condition_match=form["condition_match"],
                condition_json=form["condition"],
                condition_note=form.condition_note,
                condition_help=self.condition_help(obj),
                row_types=ROW_TYPES,
            )
        return super().render_change_form(request, context, add, change, form_url, obj)

    # --- saving through the services

    def save_model(
        self, request: HttpRequest, obj: MilestoneDefinition, form: Any, change: bool
    ) -> None:
        fields = {name: form.cleaned_data[name] for name in EDITABLE_FIELDS if name in form.fields}
        if not change:
            created = definition_create(user=_user(request), key=form.cleaned_data["key"], **fields)
            # The form's instance becomes the stored row, so the admin's log and redirect use it.
            obj.pk = created.pk
            obj.refresh_from_db()
            obj._state.adding = False
            messages.info(request, "Saved as a draft: nothing is evaluated until it is activated.")
            return
        before = obj.active_version_id
        updated = definition_update(definition=obj, user=_user(request), **fields)
        if updated.active_version_id != before and updated.active_version is not None:
            previous = "" if before is None else " Progress so far stays with the previous version."
            messages.warning(
                request,
                f"The change made a new version, v{updated.active_version.number}, which is "
                f"now active; a backfill evaluates existing subjects from history.{previous}",
            )

    # --- buttons: custom POST-only views

    button_views = ("activate", "archive", "backfill", "dry_run")

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        definition = self.get_object(request, unquote(object_id))
        context = dict(extra_context or {})
        if definition is not None and super().has_change_permission(request):
            context["milestone_buttons"] = self._buttons(definition)
        return super().change_view(request, object_id, form_url, context)

    def _buttons(self, definition: MilestoneDefinition) -> list[_Button]:
        def url(name: str) -> str:
            return reverse(f"admin:milestones_milestonedefinition_{name}", args=(definition.pk,))

        dry_run = _Button("Dry run", url("dry_run"), "Who would qualify now (writes nothing)")
        archive = _Button("Archive", url("archive"), "Stop evaluating; history is kept")
        if definition.status == DefinitionStatus.DRAFT:
            activate = _Button("Activate", url("activate"), "Make version 1 live and backfill")
            return [activate, dry_run, archive]
        if definition.status == DefinitionStatus.ACTIVE:
            backfill = _Button("Backfill", url("backfill"), "Re-evaluate everyone from history")
            return [backfill, dry_run, archive]
        return [dry_run]

    def _target(self, request: HttpRequest, object_id: str) -> MilestoneDefinition:
        """The definition a button acts on, after the method and permission checks."""
        if not super().has_change_permission(request):
            raise PermissionDenied
        definition: MilestoneDefinition | None = self.get_object(request, unquote(object_id))
        if definition is None:
            raise Http404("No such milestone definition.")
        return definition

    def _back(self, definition: MilestoneDefinition) -> HttpResponseRedirect:
        return HttpResponseRedirect(
            reverse("admin:milestones_milestonedefinition_change", args=(definition.pk,))
        )

    def activate_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        definition = self._target(request, object_id)
        try:
            activation = definition_activate(definition=definition, user=_user(request))
        except DefinitionInvalid as exc:
            messages.error(request, f"Not activated: {_explain(exc)}")
        else:
            messages.success(
                request,
                f"Activated version v{activation.version.number} of “{definition}”. A backfill "
                f"evaluates existing {definition.unit}s from history.",
            )
        return self._back(definition)

    def archive_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        definition = self._target(request, object_id)
        try:
            definition_archive(definition=definition, user=_user(request))
        except DefinitionInvalid as exc:
            messages.error(request, f"Not archived: {_explain(exc)}")
        else:
            messages.success(
                request,
                f"Archived “{definition}”: it is no longer evaluated; its progress and "
                "outcomes are kept.",
            )
        return self._back(definition)

    def backfill_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        definition = self._target(request, object_id)
        try:
            backfill = backfill_request(definition=definition, user=_user(request))
        except DefinitionInvalid as exc:
            messages.error(request, f"Not backfilled: {_explain(exc)}")
        else:
            messages.success(
                request,
                f"Backfill of v{backfill.version.number} queued; its progress shows below.",
            )
        return self._back(definition)

    def dry_run_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        definition = self._target(request, object_id)
        try:
            result = definition_dry_run(definition=definition, limit=DRY_RUN_LIMIT)
        except DefinitionInvalid as exc:
            messages.error(request, f"No dry run: {_explain(exc)}")
            return self._back(definition)
        sampled = {s for ids in result.samples.values() for s in ids}
        labels = subject_labels(unit=definition.unit, subject_ids=sampled)
        buckets = [
            (
                bucket.replace("_", " "),
                result.counts[bucket],
                [(_subject_url(definition.unit, s), labels[s]) for s in result.samples[bucket]],
            )
            for bucket in BUCKETS
        ]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": definition,
            "title": f"Dry run of “{definition}”",
            "result": result,
            "buckets": buckets,
            "limit": DRY_RUN_LIMIT,
        }
        return TemplateResponse(
            request, "admin/milestones/milestonedefinition/dry_run.html", context
        )


def _explain(exc: DefinitionInvalid) -> str:
    return "; ".join(
        message if field == "status" else f"{field}: {message}"
        for field, message in exc.errors.items()
    )


# --- What evaluation stores ---------------------------------------------------------------


@admin.register(Progress)
class ProgressAdmin(_SubjectRowsAdmin):
    list_display = (
        "subject",
        "definition",
        "version_number",
        "state",
        "progress",
        "anchor_at",
        "deadline_at",
        "achieved_at",
    )
    list_filter = ("state", "definition", "unit", "is_late")
    readonly_fields = ("subject", "progress")
    fields = (
        "subject",
        "definition",
        "version",
        "state",
        "progress",
        "label",
        "anchor_at",
        "deadline_at",
        "achieved_at",
        "missed_at",
        "is_late",
        "ineligible_reason",
        "detail",
        "evaluated_at",
        "created_at",
        "updated_at",
    )

    @admin.display(description="progress")
    def progress(self, row: Progress) -> SafeString:
        return progress_bar(row.done, row.total)


@admin.register(MilestoneOutcome)
class MilestoneOutcomeAdmin(_SubjectRowsAdmin):
    list_display = (
        "subject",
        "definition",
        "version_number",
        "kind",
        "is_late",
        "occurred_at",
        "recorded_at",
    )
    list_filter = ("kind", "definition", "unit", "is_late")
    readonly_fields = ("subject",)
    fields = ("subject", "definition", "version", "kind", "is_late", "occurred_at", "recorded_at")


@admin.register(Backfill)
class BackfillAdmin(_ReadOnlyAdmin):
    list_display = (
        "__str__",
        "milestone",
        "status",
        "progress",
        "achieved",
        "missed",
        "method",
        "requested_by",
        "created_at",
        "finished_at",
    )
    list_filter = ("status",)
    list_select_related = ("version__definition", "requested_by")
    readonly_fields = ("milestone", "progress")
    fields = (
        "milestone",
        "version",
        "status",
        "progress",
        "achieved",
        "missed",
        "method",
        "error",
        "requested_by",
        "created_at",
        "started_at",
        "finished_at",
    )

    @admin.display(description="milestone")
    def milestone(self, backfill: Backfill) -> SafeString:
        definition = backfill.version.definition
        return format_html(
            '<a href="{}">{}</a> v{}',
            reverse("admin:milestones_milestonedefinition_change", args=(definition.pk,)),
            definition.key,
            backfill.version.number,
        )

    @admin.display(description="progress")
    def progress(self, backfill: Backfill) -> SafeString:
        return progress_bar(backfill.processed, backfill.total)


@admin.register(DefinitionChange)
class DefinitionChangeAdmin(_ReadOnlyAdmin):
    list_display = ("at", "definition", "action", "version", "user")
    list_filter = ("action",)
    list_select_related = ("definition", "version__definition", "user")
    fields = ("definition", "action", "version", "user", "at", "detail")


# --- Lifecycle stages ---------------------------------------------------------------------


@admin.register(LifecycleStage)
class LifecycleStageAdmin(AuditTrailMixin, ModelAdmin):  # type: ignore[type-arg]
    form = LifecycleStageForm
    list_display = ("key", "name", "priority", "is_active", "rules_text")
    list_filter = ("is_active",)
    ordering = ("priority", "key")

    @admin.display(description="rules")
    def rules_text(self, stage: LifecycleStage) -> str:
        rules = stage.rules if isinstance(stage.rules, list) else []
        return ", ".join(
            f"{rule.get('milestone')} {rule.get('state')}"
            for rule in rules
            if isinstance(rule, dict)
        )


@admin.register(StageChange)
class StageChangeAdmin(_ReadOnlyAdmin):
    list_display = ("changed_at", "customer_link", "from_stage", "to_stage", "cause")
    list_filter = ("to_stage",)
    list_select_related = ("customer",)
    readonly_fields = ("customer_link",)
    fields = ("customer_link", "from_stage", "to_stage", "changed_at", "cause")

    @admin.display(description="customer")
    def customer_link(self, change: StageChange) -> SafeString:
        customer = change.customer
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:customers_customer_change", args=(customer.pk,)),
            customer.external_id or f"anonymous #{customer.pk}",
        )


# --- The customer and account pages -------------------------------------------------------


def subject_milestones_once(subject: Any, unit: str) -> str:
    """``subject_milestones``, kept on the subject object: the admin theme may ask for a
    readonly field more than once while rendering one page."""
    shown = subject.__dict__.get("_milestones_html")
    if not isinstance(shown, str):
        shown = subject_milestones(unit, subject.pk)
        subject.__dict__["_milestones_html"] = shown
    return shown


def subject_milestones(unit: str, subject_id: int) -> str:
    """A subject's progress rows with bars, for its admin page."""
    rows = subject_progress(unit=unit, subject_id=subject_id)
    return render_to_string(
        "admin/milestones/progress/subject_milestones.html",
        {
            "rows": [
                (
                    row,
                    reverse(
                        "admin:milestones_milestonedefinition_change", args=(row.definition_id,)
                    ),
                    progress_bar(row.done, row.total),
                    row.version.retired_at is None,
                )
                for row in rows
            ],
        },
    )


_MILESTONES_SECTION: Final = ("Milestones", {"fields": ("milestones",)})


def _with_milestones(fieldsets: Any, *, after: str | None = None) -> list[Any]:
    """The fieldsets with a Milestones section after the one titled ``after`` (or last)."""
    result = list(fieldsets)
    titles = [fieldset[0] for fieldset in result]
    at = titles.index(after) + 1 if after in titles else len(result)
    return [*result[:at], _MILESTONES_SECTION, *result[at:]]


class CustomerMilestonesAdmin(CustomerAdmin):
    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return (*super().get_readonly_fields(request, obj), "milestones")

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        return _with_milestones(super().get_fieldsets(request, obj), after="Lifecycle")

    @admin.display(description="milestones")
    def milestones(self, customer: Customer) -> str:
        return subject_milestones_once(customer, Unit.CUSTOMER)


class AccountMilestonesAdmin(AccountAdmin):
    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return (*super().get_readonly_fields(request, obj), "milestones")

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        return _with_milestones(super().get_fieldsets(request, obj))

    @admin.display(description="milestones")
    def milestones(self, account: Account) -> str:
        return subject_milestones_once(account, Unit.ACCOUNT)


admin.site.unregister(Customer)
admin.site.register(Customer, CustomerMilestonesAdmin)
admin.site.unregister(Account)
admin.site.register(Account, AccountMilestonesAdmin)
