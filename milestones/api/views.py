"""Native REST API over milestones. Thin shells: parse the request, call a selector (or the dry
run), serialize. Authentication and the read permission are the customers API's."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, permissions, status, viewsets
from rest_framework.exceptions import NotFound
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer
from rest_framework.views import APIView

from customers.api.views import CanView
from milestones.api import selectors
from milestones.api.filters import MilestoneDefinitionFilter
from milestones.api.pagination import OutcomeFeedPagination
from milestones.api.serializers import (
    DefinitionErrorsSerializer,
    DryRunRequestSerializer,
    DryRunSerializer,
    MilestoneDefinitionDetailSerializer,
    MilestoneDefinitionSerializer,
    OutcomeQuerySerializer,
    OutcomeSerializer,
    ProgressSerializer,
)
from milestones.dryrun import definition_dry_run
from milestones.feed import outcomes_feed
from milestones.models import MilestoneDefinition, MilestoneOutcome, Progress, Unit
from milestones.services import DefinitionInvalid


class CanChange(permissions.BasePermission):
    """Users holding the view's ``change_permission``. Being staff is not enough: as in the
    admin, changing milestones (or running what only editors need) is its own permission."""

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(user.is_authenticated and user.has_perm(view.change_permission))


class MilestoneDefinitionViewSet(viewsets.ReadOnlyModelViewSet[MilestoneDefinition]):
    """Milestone definitions by key; the detail adds the version history and the active
    version's progress counts."""

    permission_classes = (CanView,)
    view_permission = "milestones.view_milestonedefinition"
    lookup_field = "key"
    lookup_value_regex = r"[-a-zA-Z0-9_]+"
    filter_backends = (DjangoFilterBackend,)
    filterset_class = MilestoneDefinitionFilter

    def get_queryset(self) -> QuerySet[MilestoneDefinition]:
        if self.action == "retrieve":
            return selectors.definitions_with_versions()
        return selectors.definitions_listed()

    def get_serializer_class(self) -> type[BaseSerializer[MilestoneDefinition]]:
        if self.action == "retrieve":
            return MilestoneDefinitionDetailSerializer
        return MilestoneDefinitionSerializer


class _SubjectProgressList(generics.ListAPIView[Progress]):
    permission_classes = (CanView,)
    view_permission = "milestones.view_progress"
    serializer_class = ProgressSerializer
    filter_backends = ()
    unit: str
    subject_kwarg: str

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        subject_id: int = kwargs[self.subject_kwarg]
        if not selectors.subject_exists(unit=self.unit, subject_id=subject_id):
            raise NotFound(f"No {self.unit} with this id.")
        progress = selectors.subject_progress(unit=self.unit, subject_id=subject_id)
        page = self.paginate_queryset(progress)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


_PROGRESS_DESCRIPTION = (
    "The {unit}'s progress on every milestone version it was evaluated on, by definition key "
    "and newest version first (`is_current` marks the active version's row). "
    "404 when the {unit} does not exist."
)


@extend_schema(
    parameters=[
        OpenApiParameter(
            "customer_id", OpenApiTypes.INT, OpenApiParameter.PATH, description="Customer id."
        )
    ],
    description=_PROGRESS_DESCRIPTION.format(unit="customer"),
)
class CustomerProgressList(_SubjectProgressList):
    unit = Unit.CUSTOMER
    subject_kwarg = "customer_id"


@extend_schema(
    parameters=[
        OpenApiParameter(
            "account_id", OpenApiTypes.INT, OpenApiParameter.PATH, description="Account id."
        )
    ],
    description=_PROGRESS_DESCRIPTION.format(unit="account"),
)
class AccountProgressList(_SubjectProgressList):
    unit = Unit.ACCOUNT
    subject_kwarg = "account_id"


@extend_schema(
    parameters=[OutcomeQuerySerializer],
    description="Achieved and missed outcomes, oldest first, for external systems to follow. "
    "Keep the `cursor` of the last page and poll with it: the feed is gap-free, since an "
    "outcome is served only once every transaction that could precede it has finished, so a "
    "row committed late is never behind a cursor that has moved on. Filters narrow the feed "
    "and may change between calls; the cursor stays valid.",
)
class OutcomeFeed(generics.ListAPIView[MilestoneOutcome]):
    permission_classes = (CanView,)
    view_permission = "milestones.view_milestoneoutcome"
    serializer_class = OutcomeSerializer
    pagination_class = OutcomeFeedPagination
    # The query is validated by OutcomeQuerySerializer; no filter or ordering backends.
    filter_backends = ()

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        query = OutcomeQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        outcomes = outcomes_feed(
            definition_key=params.get("definition"),
            kind=params.get("kind"),
            unit=params.get("unit"),
            subject_id=params.get("subject_id"),
        )
        page = self.paginate_queryset(outcomes)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


class MilestoneDryRun(APIView):
    permission_classes = (CanChange,)
    change_permission = "milestones.change_milestonedefinition"
    parser_classes = (JSONParser,)

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "key", OpenApiTypes.STR, OpenApiParameter.PATH, description="Definition key."
            )
        ],
        request=DryRunRequestSerializer,
        responses={
            200: DryRunSerializer,
            400: OpenApiResponse(
                DefinitionErrorsSerializer,
                description="The working copy (with the given edits) does not validate. "
                "A malformed body is the usual field → messages object instead.",
            ),
        },
        description="Who would qualify now, and who would have missed, if the definition's "
        "working copy were active: drafts included. Optional `condition`, `anchor`, "
        "`anchor_event`, `anchor_milestone`, `window` and `eligibility` preview an edit; "
        "nothing is saved. Needs the permission to change milestone definitions.",
    )
    def post(self, request: Request, key: str) -> Response:
        definition = selectors.definition_for_key(key=key)
        if definition is None:
            raise NotFound("No milestone with this key.")
        params = DryRunRequestSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        preview = selectors.definition_preview(definition, params.overrides())
        try:
            result = definition_dry_run(
                definition=preview,
                limit=params.validated_data["limit"],
                sample_size=params.validated_data["sample_size"],
            )
        except DefinitionInvalid as exc:
            return Response(
                {"detail": "The milestone definition is invalid.", "errors": exc.errors},
                status=status.HTTP_400_BAD_REQUEST,
            )
        return Response(DryRunSerializer(result).data)
