"""Receivers of the signals messaging listens to (connected in ``MessagingConfig.ready``)."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.utils import timezone

from consent import links
from messaging.models import Template, TemplateStatus
from messaging.services import SendRequest, messages_request

logger = logging.getLogger(__name__)


def on_confirmation_requested(
    sender: Any, customer_id: int, topic_keys: list[str], **kwargs: Any
) -> None:
    """Send the double opt-in confirmation email (transactional: the customer just asked),
    with a signed link to ``/c/confirm/<token>``."""
    key = settings.MESSAGING_DOUBLE_OPT_IN_TEMPLATE
    if not Template.objects.filter(key=key, status=TemplateStatus.ACTIVE).exists():
        logger.warning("no active %r template: double opt-in email not sent", key)
        return
    confirm = links.link_url(links.CONFIRM, links.LinkClaim(customer_id, "email", ""))
    stamp = timezone.now().strftime("%Y%m%d%H%M%S")
    messages_request(
        [
            SendRequest(
                key=f"double-opt-in:{customer_id}:{stamp}",
                customer_id=customer_id,
                templates=(key,),
                context={"confirm_url": confirm, "topics": topic_keys},
            )
        ]
    )
