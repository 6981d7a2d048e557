"""Celery entry points for messaging: thin shells over one service each.

Sends run on one queue per channel (``messages.email``, ``messages.sms``, ``messages.push``)
so a slow provider never starves another channel.
"""

from __future__ import annotations

from celery import Task, shared_task

from messaging import sending, services


@shared_task(name="messaging.email.send", ignore_result=True)
def email_send_task(message_ids: list[int]) -> int:
    return _send("email", message_ids)


@shared_task(name="messaging.sms.send", ignore_result=True)
def sms_send_task(message_ids: list[int]) -> int:
    return _send("sms", message_ids)


@shared_task(name="messaging.push.send", ignore_result=True)
def push_send_task(message_ids: list[int]) -> int:
    return _send("push", message_ids)


#: Batches of its channel's backlog one send task takes after its own messages.
DRAIN_ROUNDS = 10


def _send(channel: str, message_ids: list[int]) -> int:
    """Send the messages this task was handed, then drain the channel's other due messages
    (a task per decision batch queues behind the others; the first to run takes them all,
    and the rest find nothing to claim). Stops at a rate limit: those wait for their time."""
    summary = sending.messages_send(channel, message_ids)
    sent = summary.sent
    for _ in range(DRAIN_ROUNDS):
        if summary.retrying:
            break
        summary = sending.messages_send_due(channel)
        sent += summary.sent
        if not summary.claimed:
            break
    return sent


_SEND_TASKS: dict[str, Task] = {  # type: ignore[type-arg]
    "email": email_send_task,
    "sms": sms_send_task,
    "push": push_send_task,
}


def messages_send_task(channel: str) -> Task:  # type: ignore[type-arg]
    return _SEND_TASKS[channel]


@shared_task(name="messaging.due", ignore_result=True)
def messages_due_task() -> int:
    """Beat: deferred messages whose time came, due retries, lost wake-ups, stale claims."""
    summary = services.messages_due_process()
    return summary.redecided + summary.dispatched + summary.reconciled
