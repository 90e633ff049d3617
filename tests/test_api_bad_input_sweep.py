"""Bad input never makes a 500 nor half-stores anything: a sweep driven by the OpenAPI schema.

For every write operation of the schema (POST, PUT, PATCH, action endpoints included), as a role
allowed to call it and with real ids in its path, each field of the request body is replaced in
turn by a wrong type (a string for a number, an object for a string, a list for a scalar, null
where it is not nullable) and by out-of-range values (2**70, negative ids, "NaN", 100k
characters, NUL bytes, which PostgreSQL refuses in text, lone surrogates, which it cannot
encode); the whole body is also sent as a list, a string, a number, null and nothing. List
endpoints get the same kind of values in their query parameters (filters, limit, offset,
ordering). Every answer must be below 500; a 4xx names a field (or is a plain ``detail`` /
``non_field_errors`` error); and a refused request leaves the row counts of every table and the
files under MEDIA_ROOT as they were.

Run it on both databases: NUL bytes and 64-bit overflow only break on PostgreSQL
(``DATABASE_URL=postgres://... pytest tests/test_api_bad_input_sweep.py``). The full sweep runs
when MATHSET_BAD_INPUT_SWEEP=1 (about 3 minutes on SQLite, 6 on PostgreSQL;
MATHSET_BAD_INPUT_ONLY=<regex of schema paths> narrows it, MATHSET_BAD_INPUT_VERBOSE=1 prints the
role used and the answers each operation gave); the focused regression tests and a quick sweep of
the upload and free-form-JSON operations always run.
"""
from __future__ import annotations

import copy
import io
import json
import os
import re

import pytest
from django.apps import apps
from django.db import transaction
from drf_spectacular.generators import SchemaGenerator

from common import roles
from labeling import services
from tests import factories
from tests.conftest import stored_files
from tests.factories import quad
from tests.labeling.conftest import client_for

pytestmark = pytest.mark.django_db

HUGE = 2**70
LONG = "x" * 100_000
NUL = "a\x00b"
SURROGATE = "a\ud800b"
BAD_STRINGS = [NUL, SURROGATE, LONG, "NaN", "Infinity", "-1", str(HUGE), ""]
ROLE_ORDER = [roles.CURATOR, roles.MODEL_TEAM, roles.VENDOR_MANAGER, roles.ANNOTATOR, roles.REVIEWER]
# Who calls what, where the first role of ROLE_ORDER allowed to would miss the interesting path.
ROLE_FOR = {
    "/api/v1/annotations/": "claimer", "/api/v1/annotations/{id}/": roles.ANNOTATOR,
    "/api/v1/annotations/{id}/submit/": roles.ANNOTATOR, "/api/v1/tasks/next/": roles.ANNOTATOR,
    "/api/v1/tasks/{id}/release/": "claimer", "/api/v1/reviews/": roles.REVIEWER,
    "/api/v1/annotations/review-next/": roles.REVIEWER, "/api/v1/questions/": roles.ANNOTATOR,
}
# Rows written by design whatever the answer (a refused login, say); none so far.
COUNT_EXEMPT: set[str] = set()


def media_files() -> list[str]:
    return stored_files()


def table_counts() -> dict[str, int]:
    return {m._meta.label: m._base_manager.count() for m in apps.get_models()
            if m._meta.label not in COUNT_EXEMPT and not m._meta.proxy}


def state() -> tuple:
    return table_counts(), media_files()


# ---------------------------------------------------------------- the world the sweep writes into


@pytest.fixture
def world(db):
    """One vendor with people, a spec, a batch, a draft and a submitted annotation, a guide, a
    question, a snapshot, an export, a prelabel job and an evaluation: an id for every path."""
    from curation import snapshots as curation_snapshots
    from guides import services as guides_services
    from pipeline import evaluation as pipeline_evaluation
    from pipeline import services as pipeline_services
    from tests.pipeline.evaluation_helpers import StubReader

    vendor = factories.make_vendor("Vendor Sweep")
    spec = factories.make_spec(name="Spec Sweep")
    source = factories.make_source(name="Source Sweep")
    batch = factories.make_batch(spec, vendor, images=5, source=source)
    people = {role: factories.make_user(role, vendor=vendor) for role in
              (roles.ANNOTATOR, roles.REVIEWER, roles.VENDOR_MANAGER)}
    people[roles.CURATOR] = factories.make_user(roles.CURATOR)
    people[roles.MODEL_TEAM] = factories.make_user(roles.MODEL_TEAM)
    ann, rev, curator = people[roles.ANNOTATOR], people[roles.REVIEWER], people[roles.CURATOR]
    submitted = services.annotation_create(task=services.task_claim_next(annotator=ann).task, annotator=ann,
                                           submit=True, regions=[quad(latex="x")])
    second = factories.make_user(roles.ANNOTATOR, vendor=vendor)
    accepted = services.annotation_create(task=services.task_claim_next(annotator=second).task, annotator=second,
                                          submit=True, regions=[quad(latex="y")])
    services.review_create(annotation=accepted, reviewer=rev, decision="accept")
    draft_task = services.task_claim_next(annotator=ann).task
    draft = services.annotation_create(task=draft_task, annotator=ann, submit=False, regions=[quad(latex="z")])
    snapshot = factories.make_snapshot(spec=spec, name="Snapshot Sweep", created_by=curator)
    export = curation_snapshots.export_run(job=curation_snapshots.export_create(
        snapshot=snapshot, format="coco", created_by=curator))
    eval_snapshot = factories.make_snapshot(spec=spec, name="Eval Sweep", created_by=curator, ratios=(0, 0, 1))
    detector = pipeline_services.model_version_builtin(kind="detector")
    recognizer = pipeline_services.model_version_builtin(kind="recognizer")
    evaluation = pipeline_evaluation.evaluation_run(
        run=pipeline_evaluation.evaluation_create(snapshot=eval_snapshot, detector_version=detector,
                                                  recognizer_version=recognizer, created_by=curator),
        reader=StubReader(detections=[[quad()["points"]]], readings=["x"]))
    image = draft_task.image
    contract = factories.make_contract(vendor=vendor, spec=spec)
    version = factories.make_guide(spec=spec, body="One quad per formula.", title="Guide Sweep", publish=False)
    version = guides_services.guide_version_publish(version=version, by=curator)
    guides_services.guide_acknowledge(version=version, user=ann)
    draft_version = guides_services.guide_version_create(guide=version.guide, created_by=curator)
    question = guides_services.question_ask(asked_by=ann, spec=spec, title="Question", body="How?",
                                            guide_version=version)
    guides_services.question_answer(question=question, author=curator, body="Like this.")
    # Someone holding a lease on a task they have not annotated (annotations/ POST, tasks/release).
    claimer = factories.make_user(roles.ANNOTATOR, vendor=vendor)
    guides_services.guide_acknowledge(version=version, user=claimer)
    leased = services.task_claim_next(annotator=claimer).task
    people["claimer"] = claimer
    # A vendor and a spec without a contract, a spec without a guide, a guide without a draft.
    vendor2 = factories.make_vendor("Vendor Two")
    spec2 = factories.make_spec(name="Spec Two")
    guide3 = factories.make_guide(spec=factories.make_spec(name="Spec Three"), title="Guide Three").guide
    notification = guides_services.notifications_create(users=[ann], kind="answer", message="Note",
                                                        question=question)[0]
    prelabel_job = pipeline_services.prelabel_job_create(created_by=curator, images=[image])
    from curation.models import Category

    return dict(leased=leased, vendor2=vendor2, spec2=spec2, guide3=guide3, eval_snapshot=eval_snapshot,
                vendor=vendor, spec=spec, source=source, batch=batch, people=people, annotation=draft,
                submitted=submitted, snapshot=snapshot, export=export, detector=detector, recognizer=recognizer,
                evaluation=evaluation, image=image, task=draft_task, contract=contract, version=version,
                draft_version=draft_version, guide=version.guide, question=question, notification=notification,
                prelabel_job=prelabel_job, category=Category.objects.filter(spec=spec).first())


def path_ids(w: dict) -> dict[str, int]:
    """The id each `/{id}/` path of the schema takes, by its first segment."""
    return {"annotations": w["annotation"].pk, "batches": w["batch"].pk, "categories": w["category"].pk,
            "contracts": w["contract"].pk, "evaluations": w["evaluation"].pk, "exports": w["export"].pk,
            "guide-versions": w["draft_version"].pk, "guides": w["guide"].pk, "images": w["image"].pk,
            "model-versions": w["detector"].pk, "notifications": w["notification"].pk,
            "prelabel-jobs": w["prelabel_job"].pk, "questions": w["question"].pk, "sources": w["source"].pk,
            "specs": w["spec"].pk, "tasks": w["leased"].pk, "users": w["people"][roles.ANNOTATOR].pk,
            "vendors": w["vendor"].pk, "snapshots": w["snapshot"].pk, "licences": 1}


def field_values(w: dict) -> dict:
    """Valid values by field name, for the base body every mutation starts from."""
    return {"task": w["task"].pk, "annotation": w["submitted"].pk, "spec": w["spec"].pk, "vendor": w["vendor"].pk,
            "batch": w["batch"].pk, "image": w["image"].pk, "guide": w["guide"].pk, "source": w["source"].pk,
            "snapshot": w["snapshot"].pk, "version": w["annotation"].version,
            "guide_version": w["version"].pk, "detector_version": w["detector"].pk,
            "recognizer_version": w["recognizer"].pk, "decision": "accept", "regions": [quad()],
            "model_name": "m", "model_version": "1", "items": [{"image": w["image"].pk, "regions": [quad()]}],
            "unit_price": "0.10", "quantity": 1, "username": "sweep-user", "password": "pass-word-123",
            "role": roles.ANNOTATOR, "title": "t", "body": "b", "body_md": "b", "name": "Sweep name",
            "kind": "good", "format": "coco", "target_quota": 3, "gold_answer": {"latex": "x"},
            "image_ids": [w["image"].pk], "licence": "cc-by-4.0", "copyright_holder": "Holder",
            "endpoint_url": "https://models.example/predict", "ratios": [0.8, 0.1, 0.1], "seed": 1,
            "answer_formats": ["latex"], "intended_use": "research", "requirement": "detector",
            "agreed_quantity": 5, "price_regions": "0.1", "price_latex": "0.1", "price_full": "0.2",
            "deadline": "2031-01-01", "starts_on": "2030-01-01", "code": "sweep-licence", "family": "other",
            "currency": "EUR", "reasons": [], "categories": [], "task_ref": None, "region": None,
            "started_from": None, "chunk_size": 10, "batch_size": 4, "overlap": 1, "url": "https://example.com/",
            "email": "sweep@example.com", "contact_email": "sweep@example.com", "config": {}, "metrics": {},
            "slug": "sweep-slug"}


def body_overrides(w: dict) -> dict[tuple[str, str], dict]:
    """Per operation: fields of the base body to change (None: to leave out), so that the base body
    is accepted and each mutation tests one field, not a refusal the base already earns."""
    return {
        ("post", "/api/v1/annotations/"): {"task": w["leased"].pk},
        ("post", "/api/v1/batches/"): {"currency": "USD"},
        ("patch", "/api/v1/batches/{id}/"): {"currency": None, "unit_price": None},
        ("patch", "/api/v1/categories/{id}/"): {"slug": None, "spec": None},
        ("post", "/api/v1/contracts/"): {"vendor": w["vendor2"].pk, "spec": w["spec2"].pk},
        ("patch", "/api/v1/contracts/{id}/"): {"vendor": None, "spec": None},
        ("post", "/api/v1/evaluations/"): {"snapshot": w["eval_snapshot"].pk},
        ("post", "/api/v1/guide-examples/"): {"version": w["draft_version"].pk, "regions": [quad()["points"]]},
        ("post", "/api/v1/guide-versions/"): {"guide": w["guide3"].pk},
        ("post", "/api/v1/guides/"): {"spec": w["spec2"].pk},
        ("post", "/api/v1/model-versions/"): {"name": "sweep-model"},
        ("post", "/api/v1/model-versions/http/"): {"name": "sweep-model"},
        ("post", "/api/v1/prelabel-jobs/"): {"spec": None},
        ("patch", "/api/v1/specs/{id}/"): {"answer_formats": ["quad", "latex"], "slug": None},
        ("post", "/api/v1/specs/"): {"answer_formats": ["quad", "latex"]},
        ("post", "/api/v1/vendors/"): {"active": True},
    }


# ---------------------------------------------------------------- the schema


def load_schema() -> dict:
    return json.loads(json.dumps(SchemaGenerator().get_schema(request=None, public=True), default=str))


def resolve(schema: dict, node: dict | None) -> dict:
    node = node or {}
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
    for key in ("allOf", "oneOf", "anyOf"):
        if key in node and node[key]:
            merged = {k: v for k, v in node.items() if k != key}
            first = resolve(schema, node[key][0])
            return {**first, **merged}
    return node


def write_operations(schema: dict) -> list[tuple[str, str, dict]]:
    return [(path, method, op) for path, ops in schema["paths"].items() for method, op in ops.items()
            if method in ("post", "put", "patch")]


def request_schema(schema: dict, op: dict) -> tuple[str | None, dict]:
    content = op.get("requestBody", {}).get("content", {})
    if not content:
        return None, {}
    media = "application/json" if "application/json" in content else next(iter(content))
    return media, resolve(schema, content[media]["schema"])


def sample(schema: dict, name: str, prop: dict, known: dict):
    prop = resolve(schema, prop)
    if name in known and ("enum" not in prop or known[name] in prop["enum"]):
        return copy.deepcopy(known[name])
    if "enum" in prop:
        return next((v for v in prop["enum"] if v not in (None, "")), None)
    kind = prop.get("type")
    if kind == "integer":
        return max(1, prop.get("minimum", 1))
    if kind == "number":
        return 1.0
    if kind == "boolean":
        return False
    if kind == "array":
        return []
    if kind == "object":
        return {}
    fmt = prop.get("format")
    if fmt == "date":
        return "2031-01-01"
    if fmt == "date-time":
        return "2031-01-01T00:00:00Z"
    if fmt == "uri":
        return "https://example.com/"
    if fmt == "email":
        return "x@example.com"
    return "x"


def base_body(schema: dict, req: dict, known: dict) -> dict:
    return {name: sample(schema, name, prop, known) for name, prop in req.get("properties", {}).items()
            if not prop.get("readOnly") and resolve(schema, prop).get("format") != "binary"
            and not (resolve(schema, prop).get("type") == "array"
                     and resolve(schema, resolve(schema, prop).get("items")).get("format") == "binary")}


def bad_values(schema: dict, prop: dict, known_item: dict | None = None) -> list:
    """Values that must be refused (or accepted harmlessly) for a field of schema `prop`."""
    prop = resolve(schema, prop)
    kind = prop.get("type")
    out: list = [[1], {"a": 1}, ["x"], {"\x00": 1}, [NUL], {"k": NUL}, {"k": SURROGATE}, True, 1.5, -1,
                 HUGE, -HUGE, 2**63, 2**31, *BAD_STRINGS]
    if not prop.get("nullable"):
        out.append(None)
    if kind == "array":
        item = resolve(schema, prop.get("items"))
        out += [[v] for v in (None, HUGE, -HUGE, -1, NUL, SURROGATE, LONG, {"a": NUL}, [NUL], "NaN")]
        if item.get("type") == "object" and item.get("properties"):
            good = ({n: sample(schema, n, p, {}) for n, p in item["properties"].items() if not p.get("readOnly")}
                    if not known_item else known_item)
            for n in item["properties"]:
                for v in (None, HUGE, -1, NUL, SURROGATE, LONG, {"a": 1}, [1]):
                    out.append([{**good, n: v}])
    return out


def _first_item(value) -> dict | None:
    return value[0] if isinstance(value, list) and value and isinstance(value[0], dict) else None


def names_a_field(body) -> bool:
    """A 4xx body that says what was wrong: field (or ``detail`` / ``non_field_errors``) -> messages,
    field names possibly nested (``regions[0].latex``), or a plain list of messages."""
    if isinstance(body, dict):
        return bool(body) and all(isinstance(k, str) and k and not k.isdigit() and v not in (None, "", [], {})
                                  for k, v in body.items())
    return isinstance(body, list) and bool(body) and all(isinstance(m, str) and m for m in body)


class Recorder:
    """Sends one request in a savepoint (a database error must not break the test's transaction)
    and collects what broke the rules."""

    def __init__(self):
        self.failures: list[tuple] = []
        self.sent = 0
        self.statuses: dict[str, dict] = {}  # operation -> status -> how many (to see what the sweep reached)

    def send(self, api, method: str, path: str, *, data=None, raw: bytes | None = None,
             content_type: str | None = None, label="", query=None):
        """Send in a savepoint rolled back afterwards, so every request meets the same rows (and a
        database error cannot break the test's transaction); the checks run before the rollback."""
        self.sent += 1
        try:
            with transaction.atomic():
                before = state()
                if raw is not None:
                    r = getattr(api, method)(path, data=raw, content_type=content_type or "application/json")
                elif content_type == "multipart":
                    r = getattr(api, method)(path, data, format="multipart")
                elif query is not None:
                    r = api.get(path, query)
                else:  # ASCII JSON: "\ud800" goes as an escape, as a client would send it
                    r = getattr(api, method)(path, data=json.dumps(data), content_type="application/json")
                self.check(method, path, label, r, before)
                raise _Rollback
        except _Rollback:
            pass
        except Exception as exc:  # noqa: BLE001 - a 500 in production; recorded with its cause
            self.failures.append((method, path, label, "exception", f"{type(exc).__name__}: {str(exc)[:200]}"))

    def check(self, method, path, label, r, before) -> None:
        status = r.status_code
        by_status = self.statuses.setdefault(f"{method} {path}", {})
        by_status[status] = by_status.get(status, 0) + 1
        if status >= 500:
            self.failures.append((method, path, label, status, r.content[:200]))
            return
        if status < 300:
            return
        after = state()
        if after != before:
            diff = {k: (before[0].get(k), v) for k, v in after[0].items() if before[0].get(k) != v}
            self.failures.append((method, path, label, status, f"half-stored: {diff} "
                                  f"files {set(after[1]) ^ set(before[1])}"))
        if 400 <= status < 500 and status not in (404, 405, 415) and r.get("Content-Type", "").startswith(
                "application/json"):
            try:
                body = r.json()
            except ValueError:
                body = None
            if not names_a_field(body):
                self.failures.append((method, path, label, status, f"names no field: {str(body)[:200]}"))


class _Rollback(Exception):
    pass


def fill_path(path: str, ids: dict[str, int]) -> str:
    segment = path.split("/")[3]
    return path.replace("{id}", str(ids.get(segment, 1)))


def choose_role(path: str, method: str, clients: dict, url: str, body) -> str | None:
    if path in ROLE_FOR:
        return ROLE_FOR[path]
    for role in ROLE_ORDER:
        with transaction.atomic():
            sid = transaction.savepoint()
            try:
                r = getattr(clients[role], method)(url, body, format="json")
            except Exception:  # noqa: BLE001 - the sweep itself will report it
                transaction.savepoint_rollback(sid)
                return role
            transaction.savepoint_rollback(sid)
        if r.status_code not in (401, 403, 404, 405):
            return role
    return None


def zip_file():
    import zipfile

    from tests.factories import png_bytes

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("a.png", png_bytes(seed=7))
        z.writestr("b.png", png_bytes(seed=8))
    buf.seek(0)
    buf.name = "photos.zip"
    return buf


def png_file(name="f.png"):
    from tests.factories import png_bytes

    f = io.BytesIO(png_bytes())
    f.name = name
    return f


def sweep_writes(world, recorder: Recorder, only: str | None = None) -> int:
    schema = load_schema()
    ids, known, overrides = path_ids(world), field_values(world), body_overrides(world)
    clients = {key: client_for(user) for key, user in world["people"].items()}
    swept = 0
    for path, method, op in write_operations(schema):
        if only and not re.search(only, path):
            continue
        url = fill_path(path, ids)
        media, req = request_schema(schema, op)
        body = base_body(schema, req, known) if req else {}
        for k, v in overrides.get((method, path), {}).items():
            if v is None:
                body.pop(k, None)
            else:
                body[k] = v
        role = choose_role(path, method, clients, url, body)
        if os.environ.get("MATHSET_BAD_INPUT_VERBOSE"):
            print(f"{method} {path} as {role}")
        if role is None:
            continue
        api = clients[role]
        swept += 1
        label = f"{role} {method} {path}"
        for raw in (b"[]", b'"x"', b"1", b"null", b"", b"[{}]", b'{"a": NaN}', b"{\"x\": 1e999}",
                    b'{"\\u0000": 1}', b"\xff\xfe", b"{" * 5000):
            recorder.send(api, method, url, raw=raw, label=f"{label} body={raw[:20]!r}")
        props = {n: p for n, p in req.get("properties", {}).items() if not p.get("readOnly")}
        multipart = media == "multipart/form-data"
        for name, prop in props.items():
            binary = resolve(schema, prop).get("format") == "binary" or resolve(
                schema, resolve(schema, prop).get("items")).get("format") == "binary"
            if binary:
                continue
            values = ([NUL, LONG, str(HUGE), "-1", "abc", "NaN", "[1]", "{}"] if multipart
                      else bad_values(schema, prop, _first_item(known.get(name))))
            for value in values:
                data = {**body, name: value}
                if multipart:
                    data = {k: v for k, v in data.items() if v is not None and not isinstance(v, dict)}
                    for fname, fprop in props.items():
                        fp = resolve(schema, fprop)
                        if fp.get("format") == "binary":
                            data[fname] = zip_file() if fname == "archive" else png_file()
                        elif resolve(schema, fp.get("items")).get("format") == "binary":
                            data[fname] = [png_file("a.png"), png_file("b.png")]
                    recorder.send(api, method, url, data=data, content_type="multipart",
                                  label=f"{label} {name}={str(value)[:30]!r}")
                else:
                    recorder.send(api, method, url, data=data,
                                  label=f"{label} {name}={str(value)[:30]!r}")
    return swept


def sweep_queries(world, recorder: Recorder) -> int:
    schema = load_schema()
    swept = 0
    for role in (roles.CURATOR, roles.ANNOTATOR):
        api = client_for(world["people"][role])
        for path, ops in schema["paths"].items():
            if "{" in path or "get" not in ops:
                continue
            params = {p["name"] for p in ops["get"].get("parameters", []) if p["in"] == "query"}
            params |= {"limit", "offset", "ordering"}
            swept += 1
            for param in sorted(params):
                for value in (NUL, "\x00", str(HUGE), str(-HUGE), "-1", "1e20", "NaN", "abc", LONG[:5000],
                              "9223372036854775808", ["1", "x"], "-id,\x00", "__all__"):
                    recorder.send(api, "get", path, query={param: value},
                                  label=f"{role} GET {path}?{param}={str(value)[:30]!r}")
                # A lone surrogate cannot be encoded; its UTF-8 bytes (invalid UTF-8) go as they would.
                recorder.send(api, "get", f"{path}?{param}=%ED%A0%80", query={},
                              label=f"{role} GET {path}?{param}=<lone surrogate bytes>")
    return swept


def report(recorder: Recorder) -> str:
    return "\n".join(" | ".join(str(x) for x in f) for f in recorder.failures)


SWEEP = os.environ.get("MATHSET_BAD_INPUT_SWEEP") == "1"


@pytest.mark.skipif(not SWEEP, reason="the full sweep takes minutes: set MATHSET_BAD_INPUT_SWEEP=1")
def test_every_write_operation_refuses_bad_input_with_a_400_and_stores_nothing(world):
    recorder = Recorder()
    swept = sweep_writes(world, recorder, only=os.environ.get("MATHSET_BAD_INPUT_ONLY"))
    if os.environ.get("MATHSET_BAD_INPUT_VERBOSE"):
        print("\n".join(f"{op}: {dict(sorted(st.items()))}" for op, st in recorder.statuses.items()))
    assert swept >= 40 or os.environ.get("MATHSET_BAD_INPUT_ONLY")
    assert not recorder.failures, f"{len(recorder.failures)} of {recorder.sent}:\n{report(recorder)}"


@pytest.mark.skipif(not SWEEP, reason="the full sweep takes minutes: set MATHSET_BAD_INPUT_SWEEP=1")
def test_every_list_refuses_bad_query_parameters_without_a_500(world):
    recorder = Recorder()
    assert sweep_queries(world, recorder) > 20
    assert not recorder.failures, f"{len(recorder.failures)} of {recorder.sent}:\n{report(recorder)}"


# ---------------------------------------------------------------- what the sweep found (always run)


def _json_400(r, field: str) -> dict:
    assert r.status_code == 400, (r.status_code, r.content[:300])
    body = json.loads(r.content.decode("utf-8"))  # valid UTF-8 JSON, not a 500 from the renderer
    assert field in body, body
    return body


@pytest.mark.parametrize("field, value", [("intended_use", SURROGATE), ("status", SURROGATE),
                                          ("answer_formats", [SURROGATE]), ("serving_target", "\udfff")])
def test_a_lone_surrogate_in_a_choice_is_a_400_naming_the_field(curator_api, field, value):
    """The choice's error quotes the input: '"a\\ud800b" is not a valid choice.'; the JSON renderer
    could not encode it as UTF-8 (UnicodeEncodeError, a 500) and the spec was refused anyway."""
    from curation.models import DatasetSpec

    body = {"name": "Sweep", "requirement": "detector", "intended_use": "research", "answer_formats": ["quad"],
            field: value}
    r = curator_api.post("/api/v1/specs/", data=json.dumps(body), content_type="application/json")
    errors = _json_400(r, field)
    assert "\ufffd" in json.dumps(errors, ensure_ascii=False)  # the character shown replaced, not dropped
    assert not DatasetSpec.objects.filter(name="Sweep").exists()


def test_a_lone_surrogate_in_a_members_role_is_a_400(curator_api, vendor):
    body = {"username": "sweep-member", "password": "pass-word-123", "role": SURROGATE}
    r = curator_api.post(f"/api/v1/vendors/{vendor.pk}/members/", data=json.dumps(body),
                         content_type="application/json")
    _json_400(r, "role")


def test_error_details_keep_their_codes_when_surrogates_are_replaced():
    from rest_framework.exceptions import ErrorDetail

    from common.exceptions import encodable

    out = encodable({"k\ud800": [ErrorDetail("bad \ud800", code="invalid_choice")], "n": 1})
    assert out == {"k\ufffd": ["bad \ufffd"], "n": 1}
    assert out["k\ufffd"][0].code == "invalid_choice"


@pytest.mark.parametrize("url", ["/api/v1/cost-report/", "/api/v1/cost-report/csv/"])
@pytest.mark.parametrize("param", ["vendor", "spec"])
@pytest.mark.parametrize("value", [str(HUGE), "9223372036854775808"])
def test_the_cost_report_refuses_an_id_beyond_64_bits(curator_api, url, param, value):
    """Was an OverflowError (SQLite) / DataError (PostgreSQL) in the batches query: a 500."""
    _json_400(curator_api.get(url, {param: value}), param)
    assert curator_api.get(url, {param: "9223372036854775807"}).status_code == 200  # the largest id: nothing found


def test_a_vendor_can_be_registered_switched_off(curator_api):
    """`active` is a documented field of POST /api/v1/vendors/; sending it was a TypeError (a 500)."""
    from labeling.models import Vendor

    r = curator_api.post("/api/v1/vendors/", {"name": "Dormant Ltd", "active": False}, format="json")
    assert r.status_code == 201, r.content
    assert Vendor.objects.get(pk=r.json()["id"]).active is False
    r = curator_api.post("/api/v1/vendors/", {"name": "Busy Ltd", "active": True}, format="json")
    assert r.status_code == 201 and Vendor.objects.get(pk=r.json()["id"]).active is True


# A short sweep always run: the operations that store files or free-form JSON, where a refusal
# most easily leaves a file or a row behind (the full sweep above covers every operation).
QUICK = r"^/api/v1/(images/|images/bulk/|import-jobs/|predictions/bulk/|vendors/|tasks/\{id\}/gold/)$"


def test_a_quick_sweep_of_uploads_and_json_writes(world):
    recorder = Recorder()
    assert sweep_writes(world, recorder, only=QUICK) >= 6
    assert not recorder.failures, f"{len(recorder.failures)} of {recorder.sent}:\n{report(recorder)}"
