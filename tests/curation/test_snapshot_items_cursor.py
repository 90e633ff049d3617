"""A model team pulls a whole snapshot's items by cursor (`/api/v1/snapshots/{id}/items/?cursor=`):
the same items in the same order as by offset, the split filter kept, and each page matching the
schema."""
from __future__ import annotations

import pytest

from curation.models import DatasetSpec
from tests.common.test_model_team_api_audit import token_client
from tests.curation.test_snapshots import accepted_spec
from tests.schema import assert_response_matches_schema

pytestmark = pytest.mark.django_db


def _walk(client, url: str) -> list[int]:
    seen: list[int] = []
    while url:
        r = client.get(url)
        assert r.status_code == 200, r.content
        assert_response_matches_schema(r)
        seen += [item["image"] for item in r.json()["results"]]
        url = r.json()["next"]
    return seen


def test_snapshot_items_walk_by_cursor_as_by_offset(curator, model_team, django_capture_on_commit_callbacks):
    spec = accepted_spec(images=7, intended_use=DatasetSpec.IntendedUse.RESEARCH)
    with django_capture_on_commit_callbacks(execute=True):
        r = token_client(curator).post("/api/v1/snapshots/", {"spec": spec.pk, "name": "pull", "ratios": [1, 0, 1]},
                                       format="json")
    snap = r.json()["id"]
    team = token_client(model_team)
    base = f"/api/v1/snapshots/{snap}/items/"
    by_offset = _walk(team, f"{base}?limit=2")
    assert len(by_offset) == 7 and by_offset == sorted(by_offset)
    assert _walk(team, f"{base}?limit=2&cursor=") == by_offset
    for split in ("train", "test"):
        assert _walk(team, f"{base}?split={split}&limit=2&cursor=") == _walk(team, f"{base}?split={split}&limit=2")
    first = team.get(f"{base}?limit=3&cursor=").json()
    assert set(first) == {"next", "results"} and "cursor=" in first["next"]
    assert team.get(f"{base}?cursor=nonsense").status_code == 400
