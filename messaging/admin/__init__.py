"""Admin for messaging, where marketers edit templates and caps and support reads the send log.

Templates are written only through ``messaging.templating`` (the form validates with
``variants_check``, saving calls ``template_save``; Activate and Archive are POST-only views
calling one service each) and previewed live; "Send test" asks for a real message through
``messages_request``, so the real delivery policy applies. Messages are read-only: each page
explains in sentences why the message went or didn't; the one write is the retry action
(``messaging.retry``). Lists of messages never count the whole table.
"""

from messaging.admin import caps, messages, templates

__all__ = ["caps", "messages", "templates"]
