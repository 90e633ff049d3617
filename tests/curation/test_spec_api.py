"""/api/v1/specs/ and /categories/: specs with default kinds, quotas, requirements and progress."""
import pytest

from curation.models import Category, DatasetSpec
from tests.factories import make_image, make_spec

pytestmark = pytest.mark.django_db

SPEC = {
    "name": "Photographed school math",
    "requirement": "Read photographed school-math formulas into LaTeX on phones",
    "intended_use": "commercial",
    "answer_formats": ["quad", "mask", "latex"],
    "max_ms_per_image": 300,
    "target_qps": 20,
    "serving_target": "mobile",
    "requirements": [{"metric": "exact_match", "threshold": 0.9}, {"metric": "detection_f1", "threshold": 0.95}],
    "custom_categories": [{"name": "Graph paper", "target_quota": 50}],
    "default_quota": 100,
}


def test_curator_creates_spec_with_five_default_kinds_and_custom_ones(curator_api):
    r = curator_api.post("/api/v1/specs/", SPEC, format="json")
    assert r.status_code == 201, r.content
    body = r.json()
    assert body["slug"] == "photographed-school-math"
    assert [c["slug"] for c in body["categories"]] == ["printed", "handwritten", "shadow", "highlighter", "whiteout",
                                                        "graph-paper"]
    assert [c["target_quota"] for c in body["categories"]] == [100] * 5 + [50]
    assert {(q["metric"], q["threshold"]) for q in body["requirements"]} == {("exact_match", 0.9), ("detection_f1", 0.95)}
    assert body["serving_target"] == "mobile" and body["max_ms_per_image"] == 300


@pytest.mark.parametrize(
    "change, field",
    [
        ({"answer_formats": []}, "answer_formats"),
        ({"answer_formats": ["polygon"]}, "answer_formats"),
        ({"intended_use": "personal"}, "intended_use"),
        ({"serving_target": "toaster"}, "serving_target"),
        ({"requirements": [{"metric": "accuracy", "threshold": 1}]}, "requirements"),
        ({"requirements": [{"metric": "exact_match", "threshold": 95}]}, "requirements"),  # a percentage
        ({"requirements": [{"metric": "bleu4", "threshold": -3}]}, "requirements"),
        ({"target_qps": -1}, "target_qps"),
        ({"target_qps": 0}, "target_qps"),  # no requirement: leave it out instead
        ({"target_qps": 1e300}, "target_qps"),
        ({"name": ""}, "name"),
        ({"default_quota": 2**31}, "default_quota"),   # beyond the quota column: not a database error
        ({"default_quota": 10**20}, "default_quota"),
    ],
)
def test_bad_spec_input_is_400_naming_the_field_and_stores_nothing(curator_api, change, field):
    r = curator_api.post("/api/v1/specs/", {**SPEC, **change}, format="json")
    assert r.status_code == 400 and field in r.json(), r.content
    assert DatasetSpec.objects.count() == 0 and Category.objects.count() == 0


def test_duplicate_requirement_metric_is_refused_and_rolls_back(curator_api):
    reqs = [{"metric": "bleu4", "threshold": 0.7}, {"metric": "bleu4", "threshold": 0.8}]
    r = curator_api.post("/api/v1/specs/", {**SPEC, "requirements": reqs}, format="json")
    assert r.status_code == 400 and "given twice" in r.json()["requirements"][0]
    assert DatasetSpec.objects.count() == 0


def test_category_progress_counts_collected_images(curator_api, source):
    spec = make_spec(default_quota=4)
    for _ in range(3):
        make_image(spec=spec, source=source, categories=["handwritten", "shadow"])
    make_image(spec=spec, source=source, categories=["printed"])
    cats = {c["slug"]: c for c in curator_api.get(f"/api/v1/specs/{spec.id}/").json()["categories"]}
    assert (cats["handwritten"]["collected"], cats["handwritten"]["progress"]) == (3, 0.75)
    assert (cats["printed"]["collected"], cats["whiteout"]["collected"]) == (1, 0)
    listed = curator_api.get(f"/api/v1/categories/?spec={spec.id}&slug=shadow").json()["results"]
    assert [(c["slug"], c["collected"]) for c in listed] == [("shadow", 3)]


def test_research_spec_with_nc_images_cannot_turn_commercial(curator_api, nc_source):
    spec = make_spec(intended_use="research")
    make_image(spec=spec, source=nc_source)
    r = curator_api.patch(f"/api/v1/specs/{spec.id}/", {"intended_use": "commercial"}, format="json")
    assert r.status_code == 400 and "forbids commercial use" in r.json()["intended_use"][0]
    spec.refresh_from_db()
    assert spec.intended_use == "research"


@pytest.mark.parametrize("change", [
    {"default_quota": 7},
    {"custom_categories": [{"name": "Graph paper", "target_quota": 50}]},
    {"default_quota": 7, "name": "Renamed"},   # nothing of the request is stored
])
def test_spec_patch_sending_a_create_only_field_is_400_naming_it_and_stores_nothing(curator_api, change):
    spec = make_spec(default_quota=10)
    before = (spec.name, sorted(spec.categories.values_list("slug", "target_quota")))
    r = curator_api.patch(f"/api/v1/specs/{spec.id}/", change, format="json")
    assert r.status_code == 400, r.content
    sent = sorted(set(change) - {"name"})
    assert {f: r.json()[f] for f in sent} == {f: ["This field cannot be changed."] for f in sent}
    spec.refresh_from_db()
    assert (spec.name, sorted(spec.categories.values_list("slug", "target_quota"))) == before


def test_spec_sent_back_whole_with_a_change_is_saved(curator_api):
    spec = make_spec()
    body = curator_api.get(f"/api/v1/specs/{spec.id}/").json()
    r = curator_api.patch(f"/api/v1/specs/{spec.id}/", {**body, "requirement": "Read board photos"}, format="json")
    assert r.status_code == 200, r.content
    spec.refresh_from_db()
    assert spec.requirement == "Read board photos"


def test_category_patch_refuses_another_slug_or_spec_and_stores_nothing(curator_api):
    spec, other = make_spec(), make_spec()
    category = spec.categories.get(slug="shadow")
    for change, field in [({"slug": "shade", "target_quota": 9}, "slug"), ({"spec": other.id, "target_quota": 9}, "spec")]:
        r = curator_api.patch(f"/api/v1/categories/{category.id}/", change, format="json")
        assert r.status_code == 400 and r.json() == {field: ["This field cannot be changed."]}, r.content
    category.refresh_from_db()
    assert (category.spec_id, category.slug, category.target_quota) == (spec.id, "shadow", 10)


def test_category_sent_back_whole_with_a_new_quota_is_saved(curator_api):
    spec = make_spec()
    category = spec.categories.get(slug="shadow")
    body = curator_api.get(f"/api/v1/categories/{category.id}/").json()
    r = curator_api.patch(f"/api/v1/categories/{category.id}/", {**body, "target_quota": 25, "name": "Shade"},
                          format="json")
    assert r.status_code == 200, r.content
    assert (r.json()["slug"], r.json()["spec"], r.json()["target_quota"], r.json()["name"]) == \
        ("shadow", spec.id, 25, "Shade")


def test_custom_category_added_and_deleted_but_builtin_kept(curator_api, spec):
    r = curator_api.post("/api/v1/categories/", {"spec": spec.id, "name": "Chalkboard", "target_quota": 7})
    assert r.status_code == 201, r.content
    assert curator_api.post("/api/v1/categories/", {"spec": spec.id, "name": "Chalkboard"}).status_code == 400
    assert curator_api.delete(f"/api/v1/categories/{r.json()['id']}/").status_code == 204
    builtin = spec.categories.get(slug="printed")
    r = curator_api.delete(f"/api/v1/categories/{builtin.id}/")
    assert r.status_code == 400 and "Built-in" in r.json()["category"][0]


def test_spec_list_query_count_does_not_grow(curator_api, django_assert_max_num_queries, source):
    for _ in range(2):
        make_image(spec=make_spec(), source=source)
    with django_assert_max_num_queries(8) as small:
        curator_api.get("/api/v1/specs/")
    for _ in range(6):
        make_image(spec=make_spec(), source=source)
    with django_assert_max_num_queries(len(small.captured_queries)):
        r = curator_api.get("/api/v1/specs/")
    assert r.json()["count"] == 8


def test_only_curators_write_specs(api, model_team, annotator):
    for user in (model_team, annotator):
        api.force_authenticate(user)
        assert api.post("/api/v1/specs/", SPEC, format="json").status_code == 403


def test_quota_progress_counts_labeled_and_accepted_images(curator_api):
    from common import roles
    from labeling import services as labeling
    from tests import factories
    from tests.factories import quad

    vendor = factories.make_vendor()
    spec = make_spec(default_quota=10)
    batch = factories.make_batch(spec, vendor, images=3)
    for image in spec.images.all():
        image.categories.add(spec.categories.get(slug="printed"))
    annotator = factories.make_user(roles.ANNOTATOR, vendor=vendor)
    reviewer = factories.make_user(roles.REVIEWER, vendor=vendor)
    for decision in ("accept", None):
        task = labeling.task_claim_next(annotator=annotator).task
        annotation = labeling.annotation_create(task=task, annotator=annotator, submit=True, regions=[quad()])
        if decision:
            labeling.review_create(annotation=annotation, reviewer=reviewer, decision=decision)
    assert batch.tasks.count() == 3
    printed = {c["slug"]: c for c in curator_api.get(f"/api/v1/specs/{spec.id}/").json()["categories"]}["printed"]
    assert (printed["collected"], printed["labeled"], printed["accepted"]) == (3, 2, 1)
    listed = curator_api.get(f"/api/v1/categories/?spec={spec.id}&slug=printed").json()["results"][0]
    assert (listed["labeled"], listed["accepted"]) == (2, 1)
