"""Every list endpoint of the guides API costs the same number of queries for 1 or 5 rows."""
from django.db import connection
from django.test.utils import CaptureQueriesContext

from common import roles
from guides import services
from tests import factories

LISTS = ["/api/v1/guides/", "/api/v1/guide-versions/", "/api/v1/guide-examples/", "/api/v1/faq/",
         "/api/v1/guide-acknowledgements/", "/api/v1/questions/", "/api/v1/notifications/", "/api/v1/contracts/"]
QUAD = [[20, 10], [180, 10], [180, 60], [20, 60]]


def _add_world(curator, annotator, vendor, source):
    spec = factories.make_spec()
    factories.make_contract(vendor=vendor, spec=spec)
    image = factories.make_image(spec=spec, source=source, data=factories.png_bytes(200, 100))
    v1 = factories.make_guide(spec=spec, by=curator, publish=False)
    services.guide_example_add(version=v1, image=image, kind="good", regions=[QUAD])
    services.guide_version_publish(version=v1, by=curator)
    question = services.question_ask(asked_by=annotator, spec=spec, title="Q", body="B", image=image, region=QUAD)
    services.question_answer(question=question, author=curator, body="A")
    services.question_promote_to_faq(question=question, by=curator)
    v2 = services.guide_version_publish(version=services.guide_version_create(guide=v1.guide, created_by=curator),
                                        by=curator)
    services.guide_acknowledge(version=v2, user=annotator)


def _counts(client) -> dict[str, int]:
    counts = {}
    for url in LISTS:
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(url).status_code == 200, url
        counts[url] = len(ctx.captured_queries)
    return counts


def test_list_endpoints_do_not_grow_queries_with_rows(curator, curator_api, annotator, vendor, source, api):
    manager = factories.make_user(roles.VENDOR_MANAGER, vendor=vendor)
    api.force_authenticate(manager)
    _add_world(curator, annotator, vendor, source)
    _counts(curator_api), _counts(api)  # warm the per-user role and vendor caches
    one = {"curator": _counts(curator_api), "manager": _counts(api)}
    for _ in range(4):
        _add_world(curator, annotator, vendor, source)
    five = {"curator": _counts(curator_api), "manager": _counts(api)}
    assert five == one
    assert max(one["curator"].values()) <= 8
