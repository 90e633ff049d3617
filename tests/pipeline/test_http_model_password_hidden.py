"""An external model's URL may carry a user name and password (sent as HTTP basic auth: see
test_endpoint_addresses.py). The password is never shown back: not by the registry's API (list,
detail, the registration's answer), not in an error a worker records for a job, not in an
evaluation run's device line."""
from __future__ import annotations

import pytest

from pipeline import endpoints, evaluation, runtime
from pipeline.models import ModelVersion
from tests.predict_server import PredictServer
from tests.schema import assert_response_matches_schema

SECRET = "s3cr3t-Pa55"


@pytest.mark.parametrize("url, shown", [
    (f"https://team:{SECRET}@models.lab.example/predict", "https://team:***@models.lab.example/predict"),
    (f"http://team:{SECRET}@10.0.0.5:8080/p?x=1", "http://team:***@10.0.0.5:8080/p?x=1"),
    (f"http://:{SECRET}@[::1]:9000/p", "http://:***@[::1]:9000/p"),
    (f"http://team:{SECRET}@host/p@x", "http://team:***@host/p@x"),  # an @ in the path is not user info
    ("http://team@host/p", "http://team@host/p"),  # a user name alone is not a secret
    ("https://models.lab.example/predict", "https://models.lab.example/predict"),
])
def test_redacted_hides_only_the_password(url, shown):
    assert endpoints.redacted(url) == shown


@pytest.mark.django_db
def test_the_registry_api_never_answers_the_password(api, model_team, settings):
    settings.MATHSET_MODEL_HOSTS = "*"
    api.force_authenticate(model_team)
    url = f"https://team:{SECRET}@models.lab.example/predict"
    created = api.post("/api/v1/model-versions/http/", {"name": "x", "version": "1", "endpoint_url": url},
                       format="json")
    assert created.status_code == 201, created.content
    assert SECRET not in created.content.decode()
    assert ModelVersion.objects.get().endpoint_url == url  # stored whole: the worker needs it
    for response in (api.get("/api/v1/model-versions/"), api.get(f"/api/v1/model-versions/{created.json()['id']}/")):
        assert response.status_code == 200
        assert SECRET not in response.content.decode()
        assert_response_matches_schema(response)
    assert api.get(f"/api/v1/model-versions/{created.json()['id']}/").json()["endpoint_url"] == (
        "https://team:***@models.lab.example/predict")


def test_an_error_from_the_model_names_its_url_without_the_password(settings):
    settings.MATHSET_MODEL_HOSTS = "*"

    server = PredictServer("127.0.0.1")
    try:
        url = f"http://team:{SECRET}@127.0.0.1:{server.port}/predict"
        server.server.RequestHandlerClass.do_POST = _answer_500
        with pytest.raises(runtime.ExternalModelError) as caught:
            runtime.HttpPredictor(url, timeout=5).read_urls(["http://x.test/a.png"])
    finally:
        server.close()
    message = str(caught.value)
    assert "HTTP 500" in message and SECRET not in message and "team:***@127.0.0.1" in message


def test_a_refused_call_names_its_url_without_the_password():
    with pytest.raises(runtime.ExternalModelError) as caught:
        runtime.HttpPredictor(f"http://team:{SECRET}@169.254.169.254/p").read_urls(["http://x.test/a.png"])
    assert "is not called" in str(caught.value) and SECRET not in str(caught.value)


def test_an_evaluation_device_line_names_the_host_only():
    reader = runtime.HttpPredictor(f"https://team:{SECRET}@models.lab.example:8443/predict")
    assert evaluation._device(reader) == "HTTP models.lab.example:8443"


def _answer_500(handler):
    handler.rfile.read(int(handler.headers["Content-Length"]))
    body = b"model crashed"
    handler.send_response(500)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)
