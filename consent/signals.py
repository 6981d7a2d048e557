"""The consent app's one outgoing signal (DESIGN.md §3: consent imports nobody).

``confirmation_requested(customer_id, topic_keys)`` is sent after commit when an email
opt-in needs a double opt-in confirmation; the messaging app sends the confirmation email.
"""

from __future__ import annotations

import django.dispatch

confirmation_requested = django.dispatch.Signal()
