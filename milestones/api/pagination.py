"""Keyset pagination of the outcomes feed with an opaque, resumable cursor.

Unlike DRF's ``CursorPagination``, the feed always hands back a cursor: an external system
stores it and polls with it later, so the end of the feed is a place to resume, not a dead end.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any, Final

from django.db.models import QuerySet
from rest_framework import serializers
from rest_framework.pagination import BasePagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param

from milestones.feed import FeedPosition, outcomes_after

PAGE_SIZE: Final = 100
MAX_PAGE_SIZE: Final = 1000
_POSITION: Final = re.compile(r"(\d{0,19}):(\d{1,19})")
_MAX_CURSOR_LENGTH: Final = 64
_BIGINT_MAX: Final = 2**63 - 1
_BAD_CURSOR: Final = "Not a cursor of this feed: pass the `cursor` of a previous page as it is."


def cursor_encode(position: FeedPosition) -> str:
    xact = "" if position.xact_id is None else str(position.xact_id)
    return base64.urlsafe_b64encode(f"{xact}:{position.id}".encode()).decode().rstrip("=")


def cursor_decode(cursor: str) -> FeedPosition:
    """Raises ``ValueError`` for anything ``cursor_encode`` did not make."""
    if len(cursor) > _MAX_CURSOR_LENGTH:
        raise ValueError("cursor too long")
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        text = base64.b64decode(padded, altchars=b"-_", validate=True).decode("ascii")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError("not base64 of ascii") from exc
    match = _POSITION.fullmatch(text)
    if match is None:
        raise ValueError("not a feed position")
    xact, row = match.groups()
    position = FeedPosition(xact_id=int(xact) if xact else None, id=int(row))
    if max(position.xact_id or 0, position.id) > _BIGINT_MAX:
        raise ValueError("past a bigint")
    return position


class FeedCursorField(serializers.CharField):
    default_error_messages = {"invalid": _BAD_CURSOR}

    def to_internal_value(self, data: Any) -> FeedPosition:  # type: ignore[override]
        try:
            return cursor_decode(str(super().to_internal_value(data)))
        except ValueError:
            self.fail("invalid")


class FeedPageSerializer(serializers.Serializer[None]):
    cursor = FeedCursorField(required=False)
    page_size = serializers.IntegerField(
        required=False, default=PAGE_SIZE, min_value=1, max_value=MAX_PAGE_SIZE
    )


class OutcomeFeedPagination(BasePagination):
    def __init__(self) -> None:
        self.request: Request | None = None
        self.position: FeedPosition | None = None
        self.has_more = False

    def paginate_queryset(
        self, queryset: QuerySet[Any, Any], request: Request, view: Any = None
    ) -> list[Any]:
        page = FeedPageSerializer(data=request.query_params)
        page.is_valid(raise_exception=True)
        self.request = request
        self.position = page.validated_data.get("cursor")
        size: int = page.validated_data["page_size"]
        if self.position is not None:
            queryset = outcomes_after(queryset, self.position)
        rows = list(queryset[: size + 1])
        self.has_more = len(rows) > size
        rows = rows[:size]
        if rows:
            self.position = FeedPosition(xact_id=rows[-1].xact_id, id=rows[-1].pk)
        return rows

    def get_paginated_response(self, data: Any) -> Response:
        cursor = None if self.position is None else cursor_encode(self.position)
        return Response(
            {
                "cursor": cursor,
                "next": self._link(cursor),
                "has_more": self.has_more,
                "results": data,
            }
        )

    def _link(self, cursor: str | None) -> str:
        assert self.request is not None  # noqa: S101 (set by paginate_queryset)
        url = self.request.build_absolute_uri()
        if cursor is None:
            return remove_query_param(url, "cursor")
        return replace_query_param(url, "cursor", cursor)

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "object",
            "required": ["cursor", "next", "has_more", "results"],
            "properties": {
                "cursor": {
                    "type": "string",
                    "nullable": True,
                    "description": "Where this page ends; pass it back as `cursor` to resume. "
                    "Null only while nothing has been read.",
                },
                "next": {
                    "type": "string",
                    "format": "uri",
                    "description": "This request with `cursor` set: follow it at once while "
                    "`has_more`, and poll it later otherwise.",
                },
                "has_more": {
                    "type": "boolean",
                    "description": "More outcomes are visible past this page right now.",
                },
                "results": schema,
            },
        }

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return [
            {
                "name": "cursor",
                "required": False,
                "in": "query",
                "description": "The `cursor` of the previous page; omit to start at the oldest.",
                "schema": {"type": "string"},
            },
            {
                "name": "page_size",
                "required": False,
                "in": "query",
                "description": f"Outcomes per page, at most {MAX_PAGE_SIZE} (default {PAGE_SIZE}).",
                "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE},
            },
        ]
