"""Review mends of pipeline/webhooks.py: an event checks each owner's sight once, not once per
webhook; a malformed event list given to the service is a ValidationError, not a TypeError."""
from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from common import roles
from pipeline import webhooks
from pipeline.models import Webhook
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _webhook_settings(settings):
    settings.MATHSET_WEBHOOK_HOSTS = "*"


def test_an_event_checks_each_owners_sight_once_however_many_webhooks_they_have(django_capture_on_commit_callbacks):
    first, second = factories.make_user(roles.MODEL_TEAM), factories.make_user(roles.CURATOR)
    for owner in (first, first, first, second):
        webhooks.webhook_create(owner=owner, url="http://127.0.0.1:9/hook", events=[Webhook.Event.SNAPSHOT_READY])
    asked = []

    def visible_to(owner):
        asked.append(owner.pk)
        return owner.pk == first.pk

    with django_capture_on_commit_callbacks(execute=False):
        sent = webhooks.webhook_event_emit(event=Webhook.Event.SNAPSHOT_READY, payload={"x": 1},
                                           visible_to=visible_to)
    assert sorted(asked) == sorted([first.pk, second.pk])
    assert len(sent) == 3 and {d.webhook.owner_id for d in sent} == {first.pk}


@pytest.mark.parametrize("events", [[{"a": 1}], [["snapshot.ready"]], [None]])
def test_unhashable_or_odd_events_are_a_validation_error(events):
    owner = factories.make_user(roles.MODEL_TEAM)
    with pytest.raises(ValidationError) as exc:
        webhooks.webhook_create(owner=owner, url="https://ci.example/h", events=events)
    assert "events" in exc.value.message_dict
    assert not Webhook.objects.exists()
