"""The consent rule itself, pure (no ORM): shared by the delivery policy and the preference
centre, so what the page shows is what delivery does."""

from __future__ import annotations


def is_subscribed(status: str, channel: str, *, mode: str, requires_double_opt_in: bool) -> bool:
    """Whether marketing on ``channel`` may go out with the stored ``status`` under the
    customer's region: an explicit opt-in always; "unknown" in an opt-out region, and for
    in-app messages (they live inside the product) anywhere — but never for email in a
    double opt-in region; an opt-out or a pending confirmation never."""
    if status == "opted_in":
        return True
    if status != "unknown":
        return False
    if channel == "in_app":
        return True
    if channel == "email" and requires_double_opt_in:
        return False
    return mode == "opt_out"
