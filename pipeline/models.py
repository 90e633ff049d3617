"""Formula models, model registry and pre-labeling jobs (see issue 5).

How an image/task becomes "pre-labeled": a :class:`Prediction` row for the image with the
job's model versions is written by ``services.prelabel_image``; it holds the regions (4 points,
optional RLE mask, LaTeX, confidences). The labeling app can treat a task as pre-labeled when
``Prediction.objects.filter(image=task.image, detector_version=<active>)`` exists, or wire a
hook: :data:`pipeline.services.PRELABELED_HOOKS` callables are invoked with (image_id,
prediction) after each prediction commits (e.g. to move a Task to ``prelabeled`` and to set
its priority from ``Prediction.min_confidence`` so low-confidence tasks come first).
"""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class ModelVersion(models.Model):
    """One version of a formula model that workers can run.

    ``source`` says where the model lives: ``builtin`` (the weights committed in
    ``pipeline/weights/<kind>``), ``upload`` (a file in storage: TorchScript or a state dict,
    with ``config``; a detector may bring its corner refiner and orienter in ``side_files``), or ``http`` (an external predict endpoint, like a Label Studio ML backend,
    that takes image URLs and returns regions and LaTeX). At most one version per kind is active.
    """

    class Kind(models.TextChoices):
        DETECTOR = "detector", "Detector"
        RECOGNIZER = "recognizer", "Recognizer"
        PIPELINE = "pipeline", "Full pipeline (external)"

    class Source(models.TextChoices):
        BUILTIN = "builtin", "Committed weights"
        UPLOAD = "upload", "Uploaded file"
        HTTP = "http", "External HTTP endpoint"

    class Format(models.TextChoices):
        STATE_DICT = "state_dict", "Weights (state dict) + config"
        TORCHSCRIPT = "torchscript", "TorchScript"
        NONE = "", "None"

    kind = models.CharField(max_length=12, choices=Kind.choices)
    name = models.CharField(max_length=80)
    version = models.CharField(max_length=40)
    source = models.CharField(max_length=8, choices=Source.choices)
    format = models.CharField(max_length=12, choices=Format.choices, blank=True)
    weights = models.CharField(max_length=255, blank=True, help_text="Storage name of the uploaded file")
    weights_sha256 = models.CharField(max_length=64, blank=True)
    side_files = models.JSONField(
        default=dict, blank=True,
        help_text="A detector's side models in storage, by file name: refiner.pt (corner refiner), "
                  "orienter.pt (which way up); their settings are under 'refiner'/'orienter' in config")
    endpoint_url = models.URLField(blank=True)
    config = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    training_licences = models.ManyToManyField("curation.Licence", blank=True, related_name="+")
    notes = models.TextField(blank=True)
    is_active = models.BooleanField(default=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["kind", "-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "name", "version"], name="pipeline_modelversion_unique"),
            models.UniqueConstraint(fields=["kind"], condition=Q(is_active=True), name="pipeline_one_active_per_kind"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.name}@{self.version}"

    @property
    def allows_commercial(self) -> bool:
        """False when any training-data licence forbids commercial use (the weights inherit it)."""
        return all(lic.allows_commercial for lic in self.training_licences.all())


class PrelabelJob(models.Model):
    """Pre-label a spec's images or a chosen set of images with the active model versions.

    Progress lives in :class:`PrelabelItem` rows (one per image), so concurrent workers never
    lose an update and re-runs are idempotent; ``done``/``failed`` counts are aggregated.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        CANCELLED = "cancelled", "Cancelled"

    spec = models.ForeignKey("curation.DatasetSpec", null=True, blank=True, on_delete=models.CASCADE,
                             related_name="prelabel_jobs")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    force = models.BooleanField(default=False, help_text="Re-predict images that already have a prediction")
    chunk_size = models.PositiveIntegerField(default=16)
    detector_version = models.ForeignKey(ModelVersion, null=True, on_delete=models.PROTECT, related_name="+")
    recognizer_version = models.ForeignKey(ModelVersion, null=True, on_delete=models.PROTECT, related_name="+")
    total = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        # The jobs page walks (created_at, id) newest first by keyset (common/page_cursor.py).
        indexes = [models.Index(fields=["created_at", "id"], name="pipeline_prelabeljob_page")]

    def __str__(self) -> str:
        return f"prelabel job {self.pk} ({self.status})"


class PrelabelItem(models.Model):
    """One image of a job: pending, done, skipped (already predicted) or failed with its error."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DONE = "done", "Done"
        SKIPPED = "skipped", "Skipped (already predicted)"
        FAILED = "failed", "Failed"

    job = models.ForeignKey(PrelabelJob, on_delete=models.CASCADE, related_name="items")
    image = models.ForeignKey("curation.Image", on_delete=models.CASCADE, related_name="+")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["job", "image"], name="pipeline_item_once_per_job")]
        indexes = [models.Index(fields=["job", "status"])]

    def __str__(self) -> str:
        return f"{self.job_id}/{self.image_id}: {self.status}"


class Prediction(models.Model):
    """A model's reading of one image: regions (4 points, optional RLE mask, LaTeX, confidences).

    Unique per (image, detector version, recognizer version): re-running a job never duplicates.
    ``task_id`` is free for the labeling app to link the task that was pre-labeled from it.
    """

    image = models.ForeignKey("curation.Image", on_delete=models.CASCADE, related_name="model_predictions")
    job = models.ForeignKey(PrelabelJob, null=True, blank=True, on_delete=models.SET_NULL, related_name="predictions")
    task_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    detector_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    recognizer_version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.PROTECT,
                                           related_name="+")
    regions = models.JSONField(default=list, help_text='[{"points": [[x,y]x4], "score", "latex", '
                                                       '"latex_confidence", "token_confidences", "mask_rle"?}]')
    min_confidence = models.FloatField(default=0.0, help_text="Lowest region confidence: low first in batches")
    seconds = models.FloatField(default=0.0)
    # the same weights read differently with a beam or test-time views (MATHSET_RECOGNIZER_VIEWS):
    # what a worker used is kept so a model team can tell two runs of one version apart
    reading = models.JSONField(default=dict, blank=True,
                               help_text='How the regions were read, e.g. {"beam_width": 1, "views": ["wide", '
                                         '"trim"], "refine_corners": true, "orient": true, "encoder": "float32"}; '
                                         '{} for an external model')
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["image", "detector_version", "recognizer_version"],
                                               name="pipeline_prediction_once_per_versions")]

    def __str__(self) -> str:
        return f"prediction {self.pk} of image {self.image_id}"


class EvaluationRun(models.Model):
    """An offline evaluation of a detector and/or recognizer version on a snapshot's test split.

    Detection is scored against the snapshot's frozen regions (precision, recall, F1 at IoU
    0.5, mean IoU of matches); recognition runs on each *truth* region's rectified crop, so
    its score does not depend on the detector. An external full-pipeline (HTTP) version is
    given as ``detector_version`` (no recognizer) and scored end to end: its regions for
    detection, the LaTeX of the region matched to each truth region for recognition (see
    ``pipeline/evaluation.py``). ``metrics`` holds ``{"overall": {...},
    "by_category": {slug: {...}}}``; ``verdicts`` one row per requirement of the spec (and
    its QPS and time-per-image targets) with the measured value and whether it is met.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    snapshot = models.ForeignKey("curation.Snapshot", on_delete=models.PROTECT, related_name="evaluations")
    detector_version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.PROTECT,
                                         related_name="+")
    recognizer_version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.PROTECT,
                                           related_name="+")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    batch_size = models.PositiveSmallIntegerField(default=8, help_text="Images per inference batch")
    total = models.PositiveIntegerField(default=0, help_text="Test-split images to evaluate")
    processed = models.PositiveIntegerField(default=0)
    metrics = models.JSONField(null=True, blank=True, help_text='{"overall": {...}, "by_category": {...}} when done')
    verdicts = models.JSONField(default=list, blank=True,
                                help_text='[{"metric", "label", "threshold", "value", "met", "lower_is_better"}]')
    passed = models.BooleanField(null=True, blank=True, help_text="Every verdict met (None: not finished or "
                                                                  "something could not be measured)")
    latency_p50_ms = models.FloatField(null=True, blank=True)
    latency_p95_ms = models.FloatField(null=True, blank=True)
    qps = models.FloatField(null=True, blank=True, help_text="Images per second over the whole run")
    inference_seconds = models.FloatField(null=True, blank=True)
    device = models.CharField(max_length=60, blank=True, help_text="Where the models ran (cpu/cuda, threads)")
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0, help_text="Times a worker claimed the run")
    heartbeat_at = models.DateTimeField(null=True, blank=True, help_text="Last batch stored by the worker")

    class Meta:
        ordering = ["-created_at", "-id"]
        # The evaluations page (and the API's list by snapshot) walks a snapshot's runs by
        # (created_at, id) newest first, by keyset (common/page_cursor.py).
        indexes = [models.Index(fields=["snapshot", "status"]),
                   models.Index(fields=["snapshot", "created_at", "id"], name="pipeline_evalrun_page")]

    def __str__(self) -> str:
        return f"evaluation {self.pk} of snapshot {self.snapshot_id} ({self.status})"


class EvaluationSample(models.Model):
    """One truth region of a test image, as a run saw it: the recognizer's reading of its
    crop and the detection matched to it.

    An image without regions gets one row with ``region_index`` None, so its false
    positives and latency are kept. ``latency_ms`` is the image's (see the runner).
    """

    run = models.ForeignKey(EvaluationRun, on_delete=models.CASCADE, related_name="samples")
    item = models.ForeignKey("curation.SnapshotItem", on_delete=models.CASCADE, related_name="+")
    region_index = models.PositiveSmallIntegerField(null=True, blank=True)
    categories = models.JSONField(default=list, blank=True)
    points = models.JSONField(null=True, blank=True, help_text="The truth quad (4 points)")
    truth_latex = models.TextField(blank=True, help_text="Normalised truth tokens")
    predicted_latex = models.TextField(blank=True, help_text="Normalised predicted tokens")
    edits = models.PositiveIntegerField(null=True, blank=True)
    edit_distance = models.FloatField(null=True, blank=True, help_text="Normalised token edit distance")
    exact = models.BooleanField(null=True, blank=True)
    iou = models.FloatField(null=True, blank=True, help_text="IoU of the matched detection (None: missed)")
    confidence = models.FloatField(null=True, blank=True,
                                   help_text="The model's probability that its reading is exact (None: not given)")
    image_predicted = models.PositiveSmallIntegerField(default=0, help_text="Regions the detector found in the image")
    image_matched = models.PositiveSmallIntegerField(default=0)
    latency_ms = models.FloatField(default=0.0)

    class Meta:
        ordering = ["run_id", "item_id", "region_index"]
        constraints = [models.UniqueConstraint(fields=["run", "item", "region_index"],
                                               name="pipeline_evalsample_once")]
        indexes = [models.Index(fields=["run", "edit_distance"])]

    def __str__(self) -> str:
        return f"run {self.run_id} item {self.item_id}#{self.region_index}"


class QAReport(models.Model):
    """QA statistics of one spec at one moment, computed by a Celery worker (``pipeline/stats.py``).

    ``payload`` holds the sections ``agreement``, ``gold``, ``reviews``, ``prelabel`` and
    ``throughput`` (see :func:`pipeline.stats.spec_stats_compute`); reports are kept as a short
    history per spec, the newest is the one shown.
    """

    spec = models.ForeignKey("curation.DatasetSpec", on_delete=models.CASCADE, related_name="qa_reports")
    computed_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField(default=0)
    payload = models.JSONField(default=dict)

    class Meta:
        ordering = ["-computed_at", "-id"]
        indexes = [models.Index(fields=["spec", "-computed_at"], name="pipeline_qareport_latest")]

    def __str__(self) -> str:
        return f"QA report of spec {self.spec_id} at {self.computed_at:%Y-%m-%d %H:%M}"


class Webhook(models.Model):
    """A URL of a curator's or model team's that Mathset POSTs to when something they may see
    happens (a snapshot or export is ready or failed, an evaluation or pre-labeling job finished,
    a batch closed), so their tooling is told instead of polling (``pipeline/webhooks.py``).

    Each POST is signed with ``secret`` (``X-Mathset-Signature: sha256=<HMAC of the body>``). An
    HMAC needs the secret itself, so it is stored, unlike an API key's digest; it is shown once,
    when the webhook is made (or its secret rotated), and never answered again: the API and the
    admin show only ``secret_prefix``. The URL passes the outbound-address guard
    (``pipeline/endpoints.py``) when it is saved and again before every delivery.
    """

    class Event(models.TextChoices):
        SNAPSHOT_READY = "snapshot.ready", "A snapshot was built"
        SNAPSHOT_FAILED = "snapshot.failed", "A snapshot's build failed"
        EXPORT_READY = "export.ready", "An export zip was built"
        EXPORT_FAILED = "export.failed", "An export failed"
        EVALUATION_FINISHED = "evaluation.finished", "An evaluation finished (done, failed or cancelled)"
        PRELABEL_JOB_FINISHED = "prelabel_job.finished", "A pre-labeling job finished (done or cancelled)"
        BATCH_CLOSED = "batch.closed", "A batch was closed"

    SECRET_PREFIX = "whsec_"  # lets secret scanners and people recognise a Mathset webhook secret

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhooks")
    url = models.CharField(max_length=2000, help_text="Where the events are POSTed (http or https)")
    events = models.JSONField(default=list, help_text="The event names (Webhook.Event) it is sent")
    secret = models.CharField(max_length=80, help_text="The HMAC key of the signatures; never shown after creation")
    secret_prefix = models.CharField(max_length=16, help_text="The secret's first characters, to recognise it by")
    active = models.BooleanField(default=True, help_text="Switched off, it is sent nothing")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"webhook {self.pk} of {self.owner_id} → {self.url}"


class WebhookDelivery(models.Model):
    """One event sent (or to be sent) to one webhook: the JSON body as it is POSTed, whether it
    arrived, how many tries it took and what the last try got back (the status code, or the
    connection's error; never the receiver's body). Delivered ones are never sent again; a
    redelivery is a new row with the same payload."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    PING = "ping"  # sent by the ping action only; nobody subscribes to it

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=40)
    payload = models.JSONField(default=dict, help_text="The JSON body POSTed")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    response_code = models.PositiveSmallIntegerField(null=True, blank=True, help_text="HTTP status of the last try")
    error = models.TextField(blank=True, help_text="Why the last try did not arrive")
    created_at = models.DateTimeField(auto_now_add=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["webhook", "-created_at"], name="pipeline_delivery_recent"),
                   # The sweep reads the pending ones in id order: a few rows of a table that only grows.
                   models.Index(fields=["id"], condition=models.Q(status="pending"), name="pipeline_delivery_pending")]
        verbose_name_plural = "webhook deliveries"

    def __str__(self) -> str:
        return f"delivery {self.pk} of {self.event} to webhook {self.webhook_id} ({self.status})"
