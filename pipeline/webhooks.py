"""Webhooks: tell a curator's or model team's tooling when something happens, instead of polling.

An owner (a curator or a model team member; vendor people may not) registers a URL and the events
it wants (:class:`pipeline.models.Webhook.Event`). Where the state changes (a snapshot built or
failed, an export zipped or failed, an evaluation or pre-labeling job finished, a batch closed)
the service that makes the change calls one of the ``webhook_event_*`` functions here inside its
own transaction: they record one :class:`WebhookDelivery` per subscribed webhook whose owner may
see the object (the same selectors the API reads through, so vendor isolation holds), and queue its
sending once the transaction commits; a rolled-back change sends nothing. Sight is checked again
when each delivery is sent (:func:`_sight_rules`): one queued before its owner lost sight of the
object (a role changed, the object deleted) is failed, not sent.

:func:`webhook_delivery_attempt` (run by ``pipeline.tasks.webhook_deliver``) POSTs the payload as
JSON with the headers ``X-Mathset-Event``, ``X-Mathset-Delivery`` (the delivery's id: a receiver
that sees one twice has seen it before) and ``X-Mathset-Signature: sha256=<hex HMAC-SHA256 of
the body, keyed with the webhook's secret>``. The call goes through the outbound-address guard
of external models (``pipeline/endpoints.py``: checked again now, connected to the checked
address, no proxy from the environment, no redirect followed), with the hosts
`MATHSET_WEBHOOK_HOSTS` allows. One try has `MATHSET_WEBHOOK_TIMEOUT_S` in all (resolving,
connecting, sending, the answer's status and headers), however slowly the receiver drips them. A
network error, the deadline or a 5xx is tried again later with a growing delay (settings:
``MATHSET_WEBHOOK_*``); a 3xx or 4xx is the receiver's final answer.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q, QuerySet
from django.urls import reverse
from django.utils import timezone

from common import roles
from common.fields import unstorable_char
from common.site import site_url

from . import endpoints
from .models import Webhook, WebhookDelivery

Event = Webhook.Event
EVENTS = frozenset(Event.values)
HOSTS_SETTING = "MATHSET_WEBHOOK_HOSTS"
MAX_URL_LENGTH = 2000
# A bound on what one person's webhooks add to each snapshot build or batch close (each event
# records a delivery per subscribed webhook; its owner's sight is checked once per owner).
MAX_WEBHOOKS_PER_OWNER = 20
MAX_ERROR_LENGTH = 500


@dataclass(frozen=True)
class IssuedSecret:
    """A webhook with its secret just made: `secret`, to show once, and the stored row."""

    secret: str
    webhook: Webhook


def may_own_webhooks(user: User) -> bool:
    """Curators and model teams may register webhooks (and are sent events); vendor people never."""
    return bool(user.is_active) and roles.has_role(user, roles.CURATOR, roles.MODEL_TEAM)


def _new_secret(webhook: Webhook) -> str:
    """Set a fresh secret and its prefix on `webhook` (the caller saves), made as an API token's
    key is (common.models.ApiToken.new_key); return the secret, to show once."""
    secret = Webhook.SECRET_PREFIX + secrets.token_urlsafe(32)
    webhook.secret, webhook.secret_prefix = secret, secret[:12]
    return secret


def _check_url(url: object) -> str:
    """`url` stripped, or a ValidationError naming `url`: an http(s) URL without credentials
    whose host the outbound guard lets webhooks reach (a name that does not resolve yet passes;
    it is checked again before every delivery)."""
    if not isinstance(url, str) or not url.strip():
        raise ValidationError({"url": "Give the http(s) URL to POST the events to."})
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise ValidationError({"url": f"At most {MAX_URL_LENGTH} characters."})
    if unstorable_char(url) is not None or any(c.isspace() for c in url):
        raise ValidationError({"url": "The URL holds a space or a character a URL cannot."})
    try:
        parts = urlsplit(url)
        has_credentials = parts.username is not None or parts.password is not None
    except ValueError:
        raise ValidationError({"url": "This is not a URL."}) from None
    if has_credentials:
        # a password in the URL would be stored and shown back; the signature proves the sender
        raise ValidationError({"url": "Leave the user name and password out of the URL: check the "
                                      "X-Mathset-Signature header to know a delivery comes from Mathset."})
    try:
        endpoints.check(url, must_resolve=False, hosts_setting=HOSTS_SETTING, what="webhook")
    except endpoints.EndpointRefused as exc:
        raise ValidationError({"url": str(exc)}) from None
    return url


def _check_events(events: object) -> list[str]:
    if not isinstance(events, list | tuple) or not events:
        raise ValidationError({"events": f"List at least one event of {sorted(EVENTS)}."})
    unknown = [e for e in events if not isinstance(e, str) or e not in EVENTS]  # a dict is unhashable
    if unknown:
        raise ValidationError({"events": f"Unknown event {unknown[0]!r}; choose from {sorted(EVENTS)}."})
    return sorted(set(events))


@transaction.atomic
def webhook_create(*, owner: User, url: str, events: list[str], active: bool = True) -> IssuedSecret:
    """Register a webhook of `owner` for `events` at `url`, with a fresh secret shown this once.

    Only curators and model teams may own one; the URL must pass the outbound guard now (and
    does again before each delivery)."""
    if not may_own_webhooks(owner):
        raise ValidationError({"owner": "Only curators and model teams can register webhooks."})
    url, events = _check_url(url), _check_events(events)
    # the owner's row, locked: two creations at once cannot both pass the count
    list(User.objects.select_for_update().filter(pk=owner.pk).values_list("pk", flat=True))
    if Webhook.objects.filter(owner=owner).count() >= MAX_WEBHOOKS_PER_OWNER:
        raise ValidationError({"url": f"You have {MAX_WEBHOOKS_PER_OWNER} webhooks, the most one person may "
                                      "have; delete one first."})
    webhook = Webhook(owner=owner, url=url, events=events, active=bool(active))
    secret = _new_secret(webhook)
    webhook.save()
    return IssuedSecret(secret=secret, webhook=webhook)


_UNSET = object()


@transaction.atomic
def webhook_update(*, webhook: Webhook, url: object = _UNSET, events: object = _UNSET,
                   active: object = _UNSET) -> Webhook:
    """Change a webhook's URL (checked as at creation), events or active flag. Deliveries
    already recorded keep going to the URL as it is when they are sent."""
    fields = []
    if url is not _UNSET:
        webhook.url = _check_url(url)
        fields.append("url")
    if events is not _UNSET:
        webhook.events = _check_events(events)
        fields.append("events")
    if active is not _UNSET:
        if not isinstance(active, bool):
            raise ValidationError({"active": "Must be true or false."})
        webhook.active = active
        fields.append("active")
    if fields:
        webhook.save(update_fields=fields)
    return webhook


@transaction.atomic
def webhook_secret_rotate(*, webhook: Webhook) -> IssuedSecret:
    """Give `webhook` a new secret (the old one leaked, or was lost), shown this once. Deliveries
    not yet sent are signed with the new one."""
    secret = _new_secret(webhook)
    webhook.save(update_fields=["secret", "secret_prefix"])
    return IssuedSecret(secret=secret, webhook=webhook)


@transaction.atomic
def webhook_delete(*, webhook: Webhook) -> None:
    """Delete a webhook and its delivery records; a delivery queued meanwhile finds nothing to send."""
    webhook.delete()


# ------------------------------------------------------------------------------ emitting


def _subscribers(event: str) -> list[Webhook]:
    return list(Webhook.objects.filter(active=True, owner__is_active=True, events__has_item=event)
                .select_related("owner").order_by("id"))


def _envelope(event: str, data: dict) -> dict:
    return {"event": event, "created_at": timezone.now().isoformat(), "data": data}


def _absolute(name: str, *args) -> str:
    return site_url() + reverse(name, args=args)


def _enqueue(deliveries: Iterable[WebhookDelivery]) -> None:
    from .tasks import webhook_deliver

    for delivery in deliveries:
        # robust: a broker that is down must not turn the committed change into a 500; the row
        # stays pending and can be sent again (redeliver)
        transaction.on_commit(lambda i=delivery.pk: webhook_deliver.delay(i), robust=True)


def _sight_rules() -> dict[str, tuple[str, Callable[[User], QuerySet]]]:
    """Per event: the key of its object in the payload's ``data`` and the selector through which
    an owner may see that object. Read when an event is emitted and again when each delivery is
    sent, so both checks are the same rule. Imported here, not at the top: the services that emit
    events (curation, labeling) import this module."""
    from curation.selectors import exports_visible_to, snapshots_visible_to
    from labeling.selectors import batches_visible_to

    from .selectors import evaluation_runs_visible_to, prelabel_jobs_visible_to

    return {Event.SNAPSHOT_READY: ("snapshot", snapshots_visible_to),
            Event.SNAPSHOT_FAILED: ("snapshot", snapshots_visible_to),
            Event.EXPORT_READY: ("export", exports_visible_to),
            Event.EXPORT_FAILED: ("export", exports_visible_to),
            Event.EVALUATION_FINISHED: ("evaluation", evaluation_runs_visible_to),
            Event.PRELABEL_JOB_FINISHED: ("prelabel_job", prelabel_jobs_visible_to),
            Event.BATCH_CLOSED: ("batch", batches_visible_to)}


def _may_see(owner: User, event: str, object_id: object) -> bool:
    """Whether `owner` may see the object `event` is about, the one with id `object_id`."""
    _key, visible_to = _sight_rules()[event]
    if not isinstance(object_id, int) or isinstance(object_id, bool):  # a payload without the object's id
        return False
    return visible_to(owner).filter(pk=object_id).exists()


def _unseen_reason(delivery: WebhookDelivery) -> str | None:
    """Why `delivery` may no longer be sent to its webhook's owner, or None when it may: the owner
    must still see the object it is about (its id read back from the payload, as the event wrote
    it). A ping is about the webhook itself."""
    if delivery.event == WebhookDelivery.PING:
        return None
    rule = _sight_rules().get(delivery.event)
    if rule is None:  # fail closed: an event this code no longer knows has no sight rule
        return f"Not sent: {delivery.event!r} is not an event this platform sends any more."
    key = rule[0]
    data = delivery.payload.get("data") if isinstance(delivery.payload, dict) else None
    subject = data.get(key) if isinstance(data, dict) else None
    object_id = subject.get("id") if isinstance(subject, dict) else None
    if not _may_see(delivery.webhook.owner, delivery.event, object_id):
        return (f"Not sent: the webhook's owner may no longer see {key.replace('_', ' ')} {object_id} "
                "(their role changed, or it was deleted).")
    return None


@transaction.atomic
def webhook_event_emit(*, event: str, payload: dict, visible_to: Callable[[User], bool],
                       webhooks: Iterable[Webhook] | None = None) -> list[WebhookDelivery]:
    """Record a delivery of `payload` to each active webhook subscribed to `event` (or to each
    of `webhooks`) whose owner may still own webhooks and may see the object (`visible_to(owner)`,
    a selector's answer), and send them once the caller's transaction commits."""
    targets = _subscribers(event) if webhooks is None else list(webhooks)
    allowed: dict[int, bool] = {}  # per owner: their role and sight cost queries, and one may have many webhooks
    for w in targets:
        if w.owner_id not in allowed:
            allowed[w.owner_id] = may_own_webhooks(w.owner) and bool(visible_to(w.owner))
    deliveries = [WebhookDelivery(webhook=w, event=event, payload=payload) for w in targets if allowed[w.owner_id]]
    WebhookDelivery.objects.bulk_create(deliveries)  # ids come back on PostgreSQL and SQLite >= 3.35
    _enqueue(deliveries)
    return deliveries


def _emit_about(event: str, object_id: int, describe: Callable[[], dict]) -> list[WebhookDelivery]:
    """Emit `event` about the object with id `object_id` to its subscribers who may see it (the
    event's sight rule, checked again at sending). `describe()` reads the object and returns what
    the payload says of it, under the rule's key: only called when someone subscribed."""
    targets = _subscribers(event)
    if not targets:
        return []
    key, _visible_to = _sight_rules()[event]
    data = {key: describe()}
    return webhook_event_emit(event=event, payload=_envelope(event, data),
                              visible_to=lambda owner: _may_see(owner, event, object_id), webhooks=targets)


def webhook_event_snapshot_ready(*, snapshot_id: int) -> list[WebhookDelivery]:
    """`snapshot.ready`: a snapshot was frozen (called by curation.snapshots.snapshot_build)."""

    def describe() -> dict:
        from curation.models import Snapshot
        snapshot = Snapshot.objects.get(pk=snapshot_id)
        return {"id": snapshot.pk, "name": snapshot.name, "spec": snapshot.spec_id, "status": snapshot.status,
                "items": snapshot.item_count, "split_counts": snapshot.split_counts,
                "content_hash": snapshot.content_hash, "url": _absolute("snapshot-detail", snapshot.pk),
                "items_url": _absolute("snapshot-items", snapshot.pk)}

    return _emit_about(Event.SNAPSHOT_READY, snapshot_id, describe)


def webhook_event_snapshot_failed(*, snapshot_id: int) -> list[WebhookDelivery]:
    """`snapshot.failed`: a snapshot's build failed, in its worker or given up by the sweep (called
    by curation.snapshots where it records the failure). The payload holds the error as recorded,
    which the snapshot's API answer shows its readers too."""

    def describe() -> dict:
        from curation.models import Snapshot
        snapshot = Snapshot.objects.get(pk=snapshot_id)
        return {"id": snapshot.pk, "name": snapshot.name, "spec": snapshot.spec_id, "status": snapshot.status,
                "error": snapshot.error, "url": _absolute("snapshot-detail", snapshot.pk)}

    return _emit_about(Event.SNAPSHOT_FAILED, snapshot_id, describe)


def webhook_event_export_ready(*, export_id: int) -> list[WebhookDelivery]:
    """`export.ready`: an export's zip was stored (called by curation.snapshots.export_run); the
    payload holds the absolute URL to download it from (with the owner's API token)."""

    def describe() -> dict:
        from curation.models import Export
        export = Export.objects.get(pk=export_id)
        return {"id": export.pk, "snapshot": export.snapshot_id, "format": export.format,
                "status": export.status, "size": export.size, "images": export.images,
                "url": _absolute("export-detail", export.pk),
                "download_url": _absolute("export-download", export.pk)}

    return _emit_about(Event.EXPORT_READY, export_id, describe)


def webhook_event_export_failed(*, export_id: int) -> list[WebhookDelivery]:
    """`export.failed`: an export failed, in its worker or given up by the sweep (called by
    curation.snapshots where it records the failure); with the error as recorded (the export's
    API answer shows it too) and no download URL, there being no zip."""

    def describe() -> dict:
        from curation.models import Export
        export = Export.objects.select_related("snapshot").get(pk=export_id)
        return {"id": export.pk, "snapshot": export.snapshot_id, "spec": export.snapshot.spec_id,
                "format": export.format, "status": export.status, "error": export.error,
                "url": _absolute("export-detail", export.pk)}

    return _emit_about(Event.EXPORT_FAILED, export_id, describe)


def webhook_event_evaluation_finished(*, run_id: int) -> list[WebhookDelivery]:
    """`evaluation.finished`: an evaluation run is done, failed or cancelled (pipeline.evaluation)."""

    def describe() -> dict:
        from .models import EvaluationRun
        run = EvaluationRun.objects.select_related("snapshot").get(pk=run_id)
        return {"id": run.pk, "status": run.status, "snapshot": run.snapshot_id,
                "spec": run.snapshot.spec_id, "detector_version": run.detector_version_id,
                "recognizer_version": run.recognizer_version_id, "passed": run.passed,
                "error": run.error, "url": _absolute("evaluation-detail", run.pk)}

    return _emit_about(Event.EVALUATION_FINISHED, run_id, describe)


def webhook_event_prelabel_job_finished(*, job_id: int) -> list[WebhookDelivery]:
    """`prelabel_job.finished`: a pre-labeling job is done (every image tried) or cancelled."""

    def describe() -> dict:
        from .models import PrelabelJob
        from .selectors import prelabel_job_progress
        job = PrelabelJob.objects.get(pk=job_id)
        progress = prelabel_job_progress(job)
        return {"id": job.pk, "status": job.status, "spec": job.spec_id, "total": progress["total"],
                "done": progress["done"], "skipped": progress["skipped"], "failed": progress["failed"],
                "url": _absolute("prelabel-job-detail", job.pk)}

    return _emit_about(Event.PRELABEL_JOB_FINISHED, job_id, describe)


def webhook_event_batch_closed(*, batch_id: int) -> list[WebhookDelivery]:
    """`batch.closed`: a batch was closed (labeling.services.batch_update). Batches are
    curators' and their vendor's business: a model team's webhook is sent none."""

    def describe() -> dict:
        from labeling.models import Batch
        batch = Batch.objects.get(pk=batch_id)
        # no price: who may see one is decided per field by the API's serializer, not here
        return {"id": batch.pk, "name": batch.name, "spec": batch.spec_id, "vendor": batch.vendor_id,
                "status": batch.status, "url": _absolute("batch-detail", batch.pk)}

    return _emit_about(Event.BATCH_CLOSED, batch_id, describe)


@transaction.atomic
def webhook_ping(*, webhook: Webhook) -> WebhookDelivery:
    """Send `webhook` a `ping` (whatever its events), to try the receiver and its signature check."""
    if not webhook.active:
        raise ValidationError({"active": "The webhook is switched off; switch it on to ping it."})
    data = {"webhook": {"id": webhook.pk, "url": webhook.url, "events": webhook.events}}
    delivery = WebhookDelivery.objects.create(webhook=webhook, event=WebhookDelivery.PING,
                                              payload=_envelope(WebhookDelivery.PING, data))
    _enqueue([delivery])
    return delivery


@transaction.atomic
def webhook_redeliver(*, delivery: WebhookDelivery) -> WebhookDelivery:
    """Send a recorded delivery's payload again, as a new delivery (the old one stays as it was)."""
    webhook = delivery.webhook
    if not webhook.active:
        raise ValidationError({"active": "The webhook is switched off; switch it on to redeliver."})
    again = WebhookDelivery.objects.create(webhook=webhook, event=delivery.event, payload=delivery.payload)
    _enqueue([again])
    return again


# ------------------------------------------------------------------------------ sending


def body_of(payload: dict) -> bytes:
    """The bytes POSTed for `payload` (and signed): compact JSON, keys sorted, UTF-8."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode("utf-8")


def signature_of(secret: str, body: bytes) -> str:
    """The ``X-Mathset-Signature`` of `body`: ``sha256=`` and the hex HMAC-SHA256 keyed with `secret`."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def _retry_delay(attempts: int) -> int:
    """Seconds before try `attempts` + 1: the base delay, doubled per try made, at most an hour."""
    return min(3600, settings.MATHSET_WEBHOOK_BACKOFF_S * 2 ** max(attempts - 1, 0))


@dataclass(frozen=True)
class AttemptOutcome:
    """What one try did: `retry_in` seconds when it should be tried again, else None."""

    delivery: WebhookDelivery | None
    retry_in: int | None = None


def _fail(delivery: WebhookDelivery, error: str) -> AttemptOutcome:
    delivery.status, delivery.error = WebhookDelivery.Status.FAILED, error[:MAX_ERROR_LENGTH]
    delivery.save(update_fields=["status", "error", "attempts", "last_attempt_at", "response_code"])
    return AttemptOutcome(delivery)


@transaction.atomic
def webhook_delivery_attempt(*, delivery_id: int) -> AttemptOutcome:
    """Try to POST one pending delivery. Idempotent: a delivery no longer pending (delivered,
    failed for good, deleted) is left alone, and one another worker is sending right now is
    skipped (its row is locked), so a duplicate message never sends it twice.

    Before sending, the webhook must still be on, its owner still allowed webhooks and still able
    to see the object the delivery is about (pings excepted); otherwise the delivery fails unsent.

    The row stays locked while the POST runs (at most `MATHSET_WEBHOOK_TIMEOUT_S` in all, see
    :class:`pipeline.endpoints.Deadline`): the outcome is recorded by the same transaction that claimed it. The
    receiver's body is never kept, only its status code, and errors name the host, never a
    password (URLs cannot hold one)."""
    delivery = (WebhookDelivery.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("webhook__owner").filter(pk=delivery_id).first())
    if delivery is None or delivery.status != WebhookDelivery.Status.PENDING:
        return AttemptOutcome(delivery)
    webhook = delivery.webhook
    delivery.attempts += 1
    delivery.last_attempt_at = timezone.now()
    delivery.response_code = None
    if not webhook.active:
        return _fail(delivery, "The webhook was switched off before this was sent.")
    if not may_own_webhooks(webhook.owner):
        return _fail(delivery, "The webhook's owner may no longer receive events.")
    # Sight is checked again now, through the selectors the event was emitted with: hours may have
    # passed since (retries, the stale sweep, a redelivery) and the owner lost sight of the object.
    unseen = _unseen_reason(delivery)
    if unseen is not None:
        return _fail(delivery, unseen)
    body = body_of(delivery.payload)
    headers = {"Content-Type": "application/json", "User-Agent": "Mathset-Webhook/1",
               "X-Mathset-Event": delivery.event, "X-Mathset-Delivery": str(delivery.pk),
               "X-Mathset-Signature": signature_of(webhook.secret, body)}
    try:
        # one try in all, however slowly the receiver drips its answer (see endpoints.Deadline)
        deadline = endpoints.Deadline(settings.MATHSET_WEBHOOK_TIMEOUT_S, setting="MATHSET_WEBHOOK_TIMEOUT_S")
        response = endpoints.post(webhook.url, data=body, headers=headers, timeout=deadline,
                                  hosts_setting=HOSTS_SETTING, what="webhook", stream=True)
    except endpoints.EndpointRefused as exc:  # the host now points where no webhook may go: final
        return _fail(delivery, f"Not sent: {exc}")
    except requests.RequestException as exc:  # down, refused, timed out, past the deadline: try again later
        error, code = endpoints.redacted(str(exc)), None
    else:
        # The receiver's body is never read (stream=True): only its status counts, and a body of
        # any size or pace must neither hold this worker and the row lock nor fill its memory.
        response.close()
        code = response.status_code
        if 200 <= code < 300:
            delivery.status, delivery.response_code, delivery.error = WebhookDelivery.Status.DELIVERED, code, ""
            delivery.delivered_at = timezone.now()
            delivery.save(update_fields=["status", "response_code", "error", "attempts", "last_attempt_at",
                                         "delivered_at"])
            return AttemptOutcome(delivery)
        delivery.response_code = code
        if code < 500:
            reason = "a redirect, not followed: give the receiver's own URL" if 300 <= code < 400 else "not retried"
            return _fail(delivery, f"HTTP {code} ({reason}).")
        error = f"HTTP {code}."
    if delivery.attempts >= settings.MATHSET_WEBHOOK_MAX_ATTEMPTS:
        return _fail(delivery, f"{error} Gave up after {delivery.attempts} tries."[:MAX_ERROR_LENGTH])
    delivery.error = error[:MAX_ERROR_LENGTH]
    delivery.save(update_fields=["error", "attempts", "last_attempt_at", "response_code"])
    return AttemptOutcome(delivery, retry_in=_retry_delay(delivery.attempts))


# Longer than the longest wait between two tries (_retry_delay's cap), so a delivery waiting for its
# next try is not sent again beside it.
STALE_PENDING_SECONDS = 3600 + 15 * 60


def webhook_deliveries_resend_stale(*, stale_after_seconds: int = STALE_PENDING_SECONDS) -> list[int]:
    """Queue again the pending deliveries nobody has tried for `stale_after_seconds` (Celery beat):
    their message was lost (a broker down when the change committed, or restarted since). Sending
    stays idempotent, so one that was merely slow and arrives as well is sent once."""
    cutoff = timezone.now() - timedelta(seconds=stale_after_seconds)
    ids = list(WebhookDelivery.objects.filter(
        Q(last_attempt_at__lt=cutoff) | Q(last_attempt_at__isnull=True, created_at__lt=cutoff),
        status=WebhookDelivery.Status.PENDING).order_by("id").values_list("id", flat=True)[:1000])
    from .tasks import webhook_deliver

    for delivery_id in ids:
        webhook_deliver.delay(delivery_id)
    return ids
