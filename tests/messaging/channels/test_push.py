"""The push backend sends iOS through APNs and Android and web through FCM."""

from __future__ import annotations

from pathlib import Path

import pytest

from messaging.channels.base import PermanentError, Sent
from messaging.channels.push import PushBackend
from tests.messaging.channels.conftest import FCM_SEND_PATH, RecordingServer, Reply
from tests.messaging.channels.messages import outgoing

APNS_PATH = "/3/device/device-token"


@pytest.fixture(autouse=True)
def _providers(apns_provider: Path, fcm_provider: Path, http_server: RecordingServer) -> None:
    http_server.reply(APNS_PATH, Reply(200, b"", {"apns-id": "0b1c"}))
    http_server.reply(FCM_SEND_PATH, Reply(200, {"name": "projects/milepost-demo/messages/1"}))


@pytest.mark.parametrize(
    ("platform", "paths", "provider_id"),
    [
        ("ios", [APNS_PATH], "0b1c"),
        ("android", ["/token", FCM_SEND_PATH], "projects/milepost-demo/messages/1"),
        ("web", ["/token", FCM_SEND_PATH], "projects/milepost-demo/messages/1"),
    ],
)
def test_each_platform_goes_to_its_provider(
    http_server: RecordingServer, platform: str, paths: list[str], provider_id: str
) -> None:
    sent = PushBackend().send(outgoing(channel="push", platform=platform, to="device-token"))

    assert sent == Sent(provider_id=provider_id)
    assert [r.path for r in http_server.requests] == paths


def test_an_unknown_platform_is_permanent_and_sends_nothing(http_server: RecordingServer) -> None:
    with pytest.raises(PermanentError) as raised:
        PushBackend().send(outgoing(channel="push", platform="", to="device-token"))

    assert (raised.value.reason, raised.value.is_bad_address) == ("unknown push platform ''", False)
    assert http_server.requests == []
