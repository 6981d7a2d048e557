from __future__ import annotations

import hashlib
import io

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from customers.models import ApiToken, Source
from customers.selectors import api_token_for_key, source_for_key
from customers.services import api_token_create, source_create

pytestmark = pytest.mark.django_db


def _run(*args: str) -> list[str]:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue().splitlines()


@pytest.fixture
def user() -> User:
    return User.objects.create_user("integrations")


def test_source_create_prints_a_write_key_that_authenticates_on_the_last_line() -> None:
    lines = _run("source_create", "web app")

    source = Source.objects.get()
    key = lines[-1]
    assert source.name == "web app"
    assert hashlib.sha256(key.encode()).hexdigest() == source.key_hash
    assert source_for_key(key) == source.pk
    assert lines[:-1] == [
        f"Created source “web app” (id {source.pk}). Its write key follows; it is shown only "
        "this once."
    ]


def test_source_create_refuses_a_name_that_is_taken() -> None:
    source_create(name="web app")

    with pytest.raises(CommandError) as raised:
        _run("source_create", "web app")

    assert str(raised.value) == "A source named “web app” already exists."
    assert Source.objects.count() == 1


@pytest.mark.parametrize("name", ["", "   ", "x" * 101])
def test_source_create_refuses_a_blank_or_overlong_name(name: str) -> None:
    with pytest.raises(CommandError) as raised:
        _run("source_create", name)

    assert str(raised.value) == "The name must be 1 to 100 characters."
    assert Source.objects.count() == 0


def test_apitoken_create_prints_a_token_that_authenticates_as_the_user(user: User) -> None:
    lines = _run("apitoken_create", "integrations", "ci")

    token = ApiToken.objects.get()
    key = lines[-1]
    assert (token.user, token.name) == (user, "ci")
    assert hashlib.sha256(key.encode()).hexdigest() == token.key_hash
    assert api_token_for_key(key) == token
    assert len(lines) == 2


def test_apitoken_create_refuses_an_unknown_user() -> None:
    with pytest.raises(CommandError) as raised:
        _run("apitoken_create", "nobody", "ci")

    assert str(raised.value) == "There is no user “nobody”."
    assert ApiToken.objects.count() == 0


def test_apitoken_create_refuses_an_inactive_user(user: User) -> None:
    user.is_active = False
    user.save()

    with pytest.raises(CommandError) as raised:
        _run("apitoken_create", "integrations", "ci")

    assert str(raised.value) == "User “integrations” is inactive; their tokens would not work."
    assert ApiToken.objects.count() == 0


def test_apitoken_create_refuses_a_second_active_token_with_the_same_name(user: User) -> None:
    api_token_create(user=user, name="ci")

    with pytest.raises(CommandError) as raised:
        _run("apitoken_create", "integrations", "ci")

    assert str(raised.value) == "User “integrations” already has an active token named “ci”."
    assert ApiToken.objects.count() == 1


def test_apitoken_create_reuses_the_name_of_a_deactivated_token(user: User) -> None:
    api_token_create(user=user, name="ci")
    ApiToken.objects.update(is_active=False)

    key = _run("apitoken_create", "integrations", "ci")[-1]

    assert api_token_for_key(key) == ApiToken.objects.get(is_active=True)
    assert ApiToken.objects.count() == 2
