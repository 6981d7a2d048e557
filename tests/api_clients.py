"""Users and bearer-token clients for the REST API tests."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser, Permission
from rest_framework.test import APIClient

from customers.services import api_token_create


def user_with(
    app_label: str, username: str, *codenames: str, is_staff: bool = False
) -> AbstractUser:
    """A user holding exactly ``codenames`` of ``app_label``'s permissions."""
    user: AbstractUser = get_user_model().objects.create_user(username=username, is_staff=is_staff)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label=app_label, codename__in=codenames)
    )
    return user


def token_client(user: AbstractUser) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_token_create(user=user, name='ci').key}")
    return client
