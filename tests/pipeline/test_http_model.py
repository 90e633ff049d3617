"""An external full-pipeline model over real HTTP: a tiny server in a thread that fetches the
signed image URLs it is sent (no token: proof that they work for an outside model) and answers
known regions and LaTeX. Offline evaluation scores it end to end; pre-labeling stores its
answers; a broken answer fails the run (or the items) with a clear reason."""
from __future__ import annotations

import hashlib
import json
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sacrebleu

from curation.models import SnapshotItem
from pipeline import evaluation, runtime, services
from pipeline.models import EvaluationSample, Prediction, PrelabelItem
from pipeline.selectors import prelabel_job_progress
from tests import factories
from tests.pipeline.evaluation_helpers import box
from tests.pipeline.test_evaluation_service import TRUTH, TRUTH_BOX, three_image_snapshot

# The live server makes these tests transactional. serialized_rollback, as the other live-server and
# real-worker tests: a plain flush re-creates content types that a later serialized_rollback test
# would then insert twice.
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

SPURIOUS = box(150, 60, 190, 90)
SQUARE = [[0, 0], [9, 0], [9, 9], [0, 9]]


class FakeModel:
    """A model server on 127.0.0.1 (port 0). For each request it fetches every URL itself,
    records what it got, and answers ``answer(fetched)`` (the JSON body) with ``status``."""

    def __init__(self):
        self.requests: list[list[str]] = []
        self.fetched: list[tuple[str, int, str]] = []  # (url, status, sha256 of the body)
        self.replies: list[list[dict]] = []  # one "results" list per request, in order
        self.status = 200
        self.raw_body: bytes | None = None
        model = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                urls = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["images"]
                model.requests.append(urls)
                for url in urls:
                    try:
                        with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - our own test URL
                            model.fetched.append((url, resp.status, hashlib.sha256(resp.read()).hexdigest()))
                    except urllib.error.HTTPError as exc:
                        model.fetched.append((url, exc.code, ""))
                body = model.raw_body
                if body is None:
                    results = model.replies.pop(0) if model.replies else [{"regions": []} for _ in urls]
                    body = json.dumps({"results": results}).encode()
                self.send_response(model.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/predict"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def model(live_server, settings):
    settings.PUBLIC_BASE_URL = live_server.url  # where the model reaches us
    runtime.clear_cache()
    fake = FakeModel()
    yield fake
    fake.close()
    runtime.clear_cache()


def found(points, latex, score=0.9):
    return {"points": points, "score": score, "latex": latex, "latex_confidence": 0.8}


@pytest.fixture
def pipeline_version(model):
    return services.model_version_register_http(name="ext", version="1", endpoint_url=model.url)


def test_http_pipeline_is_evaluated_end_to_end_from_signed_urls(model, pipeline_version, live_server):
    snap = three_image_snapshot(requirements=[{"metric": "exact_match", "threshold": 0.6}])
    # batch 1 (2 images): image 1 right + a spurious box; image 2 shifted (IoU 0.6) and read right.
    # batch 2: image 3's formula missed (only a spurious box, whose LaTeX is the truth: it must not count).
    model.replies = [[{"regions": [found(TRUTH_BOX, TRUTH[0]), found(SPURIOUS, "y")]},
                      {"regions": [found(box(30, 10, 110, 40), "a + b")]}],
                     [{"regions": [found(SPURIOUS, TRUTH[2])]}]]
    run = evaluation.evaluation_create(snapshot=snap, detector_version=pipeline_version, recognizer_version=None,
                                       created_by=None, batch_size=2)
    run = evaluation.evaluation_run(run=run)

    assert run.status == "done", run.error
    items = list(SnapshotItem.objects.filter(snapshot=snap).order_by("image_id"))
    assert [len(r) for r in model.requests] == [2, 1]
    urls = [u for r in model.requests for u in r]
    assert all(u.startswith(f"{live_server.url}/signed-files/") for u in urls)
    # the model fetched every frozen file itself, without any login
    assert [(status, digest) for _, status, digest in model.fetched] == [(200, item.sha256) for item in items]

    o = run.metrics["overall"]
    assert (o["true_positives"], o["false_positives"], o["false_negatives"]) == (2, 2, 1)
    assert o["detection_precision"] == pytest.approx(0.5) and o["detection_recall"] == pytest.approx(2 / 3)
    assert o["mean_iou"] == pytest.approx((1.0 + 0.6) / 2)
    # recognition end to end: the missed formula is a wrong (empty) reading
    assert o["recognized"] == 3 and o["exact_match"] == pytest.approx(2 / 3)
    assert o["token_edit_distance"] == pytest.approx((0 + 0 + 1) / 3)
    hyps, refs = ["x ^ { 2 } + 1", "a + b", ""], ["x ^ { 2 } + 1", "a + b", r"\frac { 1 } { 2 }"]
    assert o["bleu4"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs], tokenize="none", force=True).score / 100)
    assert run.metrics["by_category"]["handwritten"]["exact_match"] == 0.0
    assert run.metrics["by_category"]["printed"]["exact_match"] == 1.0
    assert run.verdicts[0]["met"] is True and run.passed is True
    # its latex_confidence (0.8) is scored on the two formulas it found and read right; the missed one gave none
    assert (o["confidence_rated"], o["confidence_mean"]) == (2, pytest.approx(0.8))
    assert o["confidence_ece"] == pytest.approx(0.2) and o["confidence_auroc"] is None

    missed = EvaluationSample.objects.get(run=run, item=items[2])
    assert (missed.predicted_latex, missed.exact, missed.iou, missed.edits) == ("", False, None, 7)
    assert EvaluationSample.objects.get(run=run, item=items[1]).iou == pytest.approx(0.6)
    # time per image = the batch's round trip / its images
    latencies = list(EvaluationSample.objects.filter(run=run).order_by("item_id").values_list("latency_ms", flat=True))
    assert latencies[0] == latencies[1] > 0 and latencies[2] > 0
    assert run.qps == pytest.approx(3 / (sum(latencies) / 1000))
    assert run.device.startswith("HTTP 127.0.0.1:")


@pytest.mark.parametrize(("reply", "status", "expected"), [
    (b'{"results": []}', 200, "one result per image"),
    (b'{"results": [{"regions": [{"points": [[0, 0], [1, 1]]}]}]}', 200, "results[0].regions[0].points"),
    (b"<html>oops</html>", 200, "not JSON"),
    (b'{"detail": "model crashed"}', 500, "HTTP 500"),
    (json.dumps({"results": [{"regions": [{"points": SQUARE, "latex": "x" * 4001}]}]}).encode(), 200,
     "results[0].regions[0].latex is 4001 characters long"),
    (json.dumps({"results": [{"regions": [{"points": SQUARE}] * 501}]}).encode(), 200,
     "results[0].regions must be a list of at most 500 regions"),
    (json.dumps({"results": [{"regions": [{"points": SQUARE, "latex": "x", "latex_confidence": 7.5}]}]}).encode(), 200,
     "results[0].regions[0].latex_confidence must be a probability between 0 and 1, got 7.5"),
    (json.dumps({"results": [{"regions": [{"points": SQUARE, "score": -0.1}]}]}).encode(), 200,
     "results[0].regions[0].score must be a probability between 0 and 1"),
])
def test_a_broken_answer_fails_the_run_with_the_reason(model, pipeline_version, reply, status, expected):
    snap = three_image_snapshot()
    model.raw_body, model.status = reply, status
    run = evaluation.evaluation_run(run=evaluation.evaluation_create(
        snapshot=snap, detector_version=pipeline_version, recognizer_version=None, created_by=None, batch_size=1))
    assert run.status == "failed"
    assert "ExternalModelError" in run.error and expected in run.error, run.error
    assert not EvaluationSample.objects.filter(run=run).exists()


def test_prelabeling_sends_signed_urls_the_model_can_fetch(model, pipeline_version, curator, spec):
    images = [factories.make_image(spec=spec) for _ in range(3)]
    services.model_version_activate(version=pipeline_version)
    model.replies = [[{"regions": [found(box(1, 1, 20, 10), f"x_{n}", score=0.5 + n / 10)]} for n in range(3)]]
    job = services.prelabel_job_create(created_by=curator, spec=spec, chunk_size=16)  # eager worker, after commit

    assert prelabel_job_progress(job)["done"] == 3
    assert [(status, digest) for _, status, digest in model.fetched] == [(200, im.sha256) for im in images]
    preds = {p.image_id: p for p in Prediction.objects.filter(job=job)}
    assert [preds[im.pk].regions[0]["latex"] for im in images] == ["x_0", "x_1", "x_2"]
    assert preds[images[0].pk].min_confidence == pytest.approx(0.5) and preds[images[0].pk].seconds > 0


def test_a_malformed_answer_fails_the_prelabel_items_with_the_reason(model, pipeline_version, curator, spec):
    for _ in range(2):
        factories.make_image(spec=spec)
    services.model_version_activate(version=pipeline_version)
    model.raw_body = b'{"results": [{"regions": "none"}, {"regions": []}]}'
    job = services.prelabel_job_create(created_by=curator, spec=spec)

    progress = prelabel_job_progress(job)
    assert (progress["failed"], progress["done"]) == (2, 0)
    errors = set(PrelabelItem.objects.filter(job=job).values_list("error", flat=True))
    assert len(errors) == 1 and "results[0].regions must be a list" in errors.pop()
    assert not Prediction.objects.filter(job=job).exists()


def test_a_redirecting_model_is_refused_without_following_the_redirect():
    """requests would follow a 302 from the POST with a GET of the new address and the error would
    carry what that address answered: a way to read internal pages (cloud metadata) back."""
    hits: list[tuple[str, str]] = []

    class Redirector(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            hits.append(("POST", self.path))
            self.send_response(302)
            self.send_header("Location", "/internal-secret")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self):  # noqa: N802
            hits.append(("GET", self.path))
            body = b"INTERNAL-SECRET"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(runtime.ExternalModelError, match="302") as exc:
            runtime.HttpPredictor(f"http://127.0.0.1:{server.server_address[1]}/predict").read_urls(["http://x/1"])
    finally:
        server.shutdown()
        server.server_close()
    assert "INTERNAL-SECRET" not in str(exc.value)
    assert hits == [("POST", "/predict")]
