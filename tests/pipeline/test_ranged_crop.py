"""An evaluation sample's crop: byte ranges, validators and HEAD (see tests/ranged.py);
another team's run is still a 404."""
from __future__ import annotations

import pytest

from common import roles
from pipeline import evaluation
from pipeline.services import model_version_builtin
from tests import factories
from tests.labeling.conftest import client_for
from tests.pipeline.test_evaluation_service import known_answer_reader, three_image_snapshot
from tests.ranged import assert_serves_ranges

pytestmark = pytest.mark.django_db


def test_a_sample_crop_resumes_and_revalidates(model_team, curator):
    versions = model_version_builtin(kind="detector"), model_version_builtin(kind="recognizer")
    run = evaluation.evaluation_create(snapshot=three_image_snapshot(), detector_version=versions[0],
                                       recognizer_version=versions[1], created_by=curator)
    evaluation.evaluation_run(run=run, reader=known_answer_reader())
    team = client_for(model_team)
    sample = team.get(f"/api/v1/evaluations/{run.pk}/samples/").json()["results"][0]
    crop = assert_serves_ranges(team, sample["crop_url"])
    assert crop[:3] == b"\xff\xd8\xff"
    assert team.get(sample["crop_url"])["Cache-Control"] == "private, max-age=3600"
    stranger = client_for(factories.make_user(roles.ANNOTATOR))
    assert stranger.get(sample["crop_url"], HTTP_RANGE="bytes=0-10").status_code == 404
