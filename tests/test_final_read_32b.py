"""Final read of accept-with-corrections (fa53711) and webhooks (75c9489): defects found, each
pinned by a test written to fail first.

1. A correction keyed by a region index of more digits than Python converts to an int (4300)
   passed the key check and crashed `_corrections_apply` (int() ValueError): a 500, not a 400.
2. A correction of a region flagged illegible was stored and counted, but no export delivers
   it: im2latex skips illegible regions, ICDAR writes "###". It is refused (the flag is the
   annotator's call; reject to have the region read), naming `corrections.<index>`.
3. A webhook delivery read the receiver's whole answer (requests' default, stream=False) although
   only its status counts: a receiver sending an endless or slow body held the worker (and the
   delivery's row lock) and its memory, and a slow body after a 2xx was taken for a network error
   and retried, so the event was POSTed again.
"""
from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.exceptions import ValidationError

from labeling import services
from labeling.models import Annotation, Region
from pipeline import webhooks
from tests.factories import quad
from tests.labeling.conftest import batch, client_for, reviewer  # noqa: F401 - fixtures
from tests.labeling.test_review_corrections import FIXED, _nothing_stored, _submitted
from tests.pipeline.test_webhooks import (
    _deliver,
    _hook,
    _webhook_settings,  # noqa: F401 - autouse fixture
)

pytestmark = pytest.mark.django_db


# ------------------------------------------------------------------ corrections


def test_a_region_index_too_long_for_int_is_a_400_naming_the_field_not_a_500(batch, annotator, reviewer):  # noqa: F811
    annotation = _submitted(batch, annotator)
    key = "1" * 5000  # digits only, no leading zero: passed the key check, then int(key) raised ValueError
    r = client_for(reviewer).post("/api/v1/reviews/", {"annotation": annotation.pk, "decision": "accept",
                                                       "corrections": {key: FIXED}}, format="json")
    assert r.status_code == 400, r.content[:300]
    (field,) = r.json()
    assert field.startswith("corrections")
    _nothing_stored(annotation)


def test_a_correction_of_a_region_flagged_illegible_is_refused(batch, annotator, reviewer):  # noqa: F811
    annotation = _submitted(batch, annotator, regions=[quad(latex=r"\frac{a}{b}"),
                                                       quad(100, 50, 190, 90, latex="", illegible=True)])
    with pytest.raises(ValidationError) as exc:
        services.review_create(annotation=annotation, reviewer=reviewer, decision="accept", corrections={"1": FIXED})
    assert list(exc.value.message_dict) == ["corrections.1"]
    assert "illegible" in exc.value.message_dict["corrections.1"][0]
    _nothing_stored(annotation)
    # the legible region beside it is still corrected as before
    review = services.review_create(annotation=annotation, reviewer=reviewer, decision="accept",
                                    corrections={"0": r"\frac{a}{c}"})
    assert review.corrections == {"0": [r"\frac{a}{b}", r"\frac{a}{c}"]}
    current = Annotation.objects.get(pk=annotation.pk).current_id
    assert list(Region.objects.filter(version_id=current).order_by("index").values_list("latex", "illegible")) == \
        [(r"\frac{a}{c}", False), ("", True)]


# ------------------------------------------------------------------ webhooks


class _SlowBodyReceiver:
    """Answers 200 at once, then sends its (announced) body far slower than the delivery timeout."""

    def __init__(self, stall: float):
        self.hits = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.hits += 1
                self.send_response(200)
                self.send_header("Content-Length", str(10 ** 9))
                self.end_headers()
                self.wfile.write(b"x" * 10)
                self.wfile.flush()
                time.sleep(stall)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_a_delivery_does_not_read_the_receivers_body(model_team, settings):
    settings.MATHSET_WEBHOOK_TIMEOUT_S = 0.5
    receiver = _SlowBodyReceiver(stall=3)
    try:
        started = time.monotonic()
        delivery = _deliver(webhooks.webhook_ping(webhook=_hook(model_team, url=receiver.url).webhook))
        elapsed = time.monotonic() - started
    finally:
        receiver.close()
    # the 200 is the answer: delivered at the first try, not retried over an unread body
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("delivered", 1, 200), delivery.error
    assert receiver.hits == 1
    assert elapsed < 2
