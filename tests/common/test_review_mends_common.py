"""UploadLimitsMixin (common/uploads.py): the one place a DRF viewset puts `limit_upload_sizes`
first among a request's upload handlers, for the actions its `upload_limits` names only."""
from __future__ import annotations

from rest_framework import viewsets
from rest_framework.test import APIRequestFactory

from common.uploads import StreamingSizeLimit, UploadLimitsMixin


class _Views(UploadLimitsMixin, viewsets.ViewSet):
    def upload_limits(self):
        if self.action == "create":
            return {"max_file_bytes": 10, "file_fields": ["file"]}
        return None


def _handlers(action: str, method: str) -> list:
    view = _Views()
    view.action_map = {method: action}
    view.action = action
    django_request = getattr(APIRequestFactory(), method)("/x/")
    view.initialize_request(django_request)
    return django_request.upload_handlers


def test_the_limit_goes_first_for_an_upload_action():
    handlers = _handlers("create", "post")
    assert isinstance(handlers[0], StreamingSizeLimit) and handlers[0].max_file_bytes == 10
    assert sum(isinstance(h, StreamingSizeLimit) for h in handlers) == 1


def test_other_actions_are_not_limited():
    assert not any(isinstance(h, StreamingSizeLimit) for h in _handlers("list", "get"))
