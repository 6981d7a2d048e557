"""factory_boy factories for the customer data model. Use them behind small fixtures."""

from __future__ import annotations

import datetime as dt

import factory
from django.utils import timezone

from customers.keys import key_generate
from customers.models import Account, Customer, Device, Event, Identity, IdentityKind, Source


class SourceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Source

    name = factory.Sequence(lambda n: f"source {n}")
    key_prefix = "mpw_test"
    key_hash = factory.LazyFunction(lambda: key_generate("mpw").digest)


class AccountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Account

    external_id = factory.Sequence(lambda n: f"acct-{n}")
    name = factory.Sequence(lambda n: f"Account {n}")
    plan = "pro"
    region = "us"


class CustomerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Customer

    external_id = factory.Sequence(lambda n: f"user-{n}")
    email = factory.Sequence(lambda n: f"user{n}@example.com")
    plan = "free"
    region = "us"
    time_zone = "UTC"
    first_seen = factory.LazyFunction(timezone.now)
    last_seen = factory.LazyFunction(timezone.now)


class IdentityFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Identity

    kind = IdentityKind.ANONYMOUS
    value = factory.Sequence(lambda n: f"anon-{n}")
    customer = factory.SubFactory(CustomerFactory)


class DeviceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Device

    customer = factory.SubFactory(CustomerFactory)
    platform = "ios"
    token = factory.Sequence(lambda n: f"token-{n}")


class EventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Event

    source = factory.SubFactory(SourceFactory)
    message_id = factory.Sequence(lambda n: f"msg-{n}")
    customer = factory.SubFactory(CustomerFactory)
    account = factory.LazyAttribute(lambda o: o.customer.account)
    type = "track"
    name = "Report Created"
    properties = factory.LazyFunction(dict)
    context = factory.LazyFunction(dict)
    occurred_at = factory.LazyFunction(lambda: timezone.now() - dt.timedelta(minutes=5))
    received_at = factory.LazyFunction(timezone.now)
