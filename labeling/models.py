"""Labeling: outsourcing vendors and their people; batches, tasks, annotations and
reviews build on these."""
from __future__ import annotations

from django.conf import settings
from django.db import models


class Vendor(models.Model):
    """An outsourcing company. Its members see only their own vendor's work."""

    name = models.CharField(max_length=200, unique=True)
    slug = models.SlugField(max_length=80, unique=True)
    contact_email = models.EmailField(blank=True)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class VendorMembership(models.Model):
    """Ties a vendor manager, annotator or reviewer to exactly one vendor."""

    vendor = models.ForeignKey(Vendor, on_delete=models.CASCADE, related_name="memberships")
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="vendor_membership")
    joined_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["vendor_id", "user_id"]

    def __str__(self) -> str:
        return f"{self.user} @ {self.vendor}"


class Batch(models.Model):
    """Tasks of one spec given to one vendor, at a unit price, by a deadline.

    The task kind says what the vendor delivers per image: regions only, LaTeX only
    (regions come from pre-labels) or both. Only active batches feed the work queue.
    """

    class Kind(models.TextChoices):
        REGIONS = "regions", "Regions only"
        LATEX = "latex", "LaTeX only"
        FULL = "full", "Regions and LaTeX"

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        ACTIVE = "active", "Active"
        PAUSED = "paused", "Paused"
        CLOSED = "closed", "Closed"

    # What `services.batch_update` changes, and so what a batch's history (`BatchEvent`) records;
    # of those, the price fields are shown only to the people who see prices.
    EDITABLE = ("name", "status", "deadline", "unit_price", "currency", "agreed_quantity")
    PRICE_FIELDS = ("unit_price", "currency")

    name = models.CharField(max_length=200)
    spec = models.ForeignKey("curation.DatasetSpec", on_delete=models.PROTECT, related_name="batches")
    vendor = models.ForeignKey(Vendor, on_delete=models.PROTECT, related_name="batches")
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.FULL)
    unit_price = models.DecimalField(max_digits=10, decimal_places=4)
    currency = models.CharField(max_length=3, default="USD", help_text="ISO 4217 code")
    agreed_quantity = models.PositiveIntegerField()
    overlap = models.PositiveSmallIntegerField(default=1, help_text="Independent annotations wanted per task")
    deadline = models.DateField(null=True, blank=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.ACTIVE)
    filters = models.JSONField(default=dict, blank=True, help_text="The filter the tasks were chosen by")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "batches"
        indexes = [models.Index(fields=["vendor", "status"])]

    def __str__(self) -> str:
        return self.name


class BatchEvent(models.Model):
    """One recorded change to a batch: its making, one `services.batch_update` call that
    changed something, or a contract's prices reaching it (`services.batches_contract_price`).
    `changes` holds {field: [old, new]} for each changed field of `services.BATCH_EDITABLE` as
    JSON values (prices and dates as text; old is null on "created"). `by` is null for changes
    no user made (commands, data imports).

    Written only by the services, never edited: it is the record of who reopened a closed
    batch, and of who changed what a vendor is paid and by when.
    """

    class Kind(models.TextChoices):
        CREATED = "created", "Created"
        CHANGED = "changed", "Changed"
        REOPENED = "reopened", "Reopened"

    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="events")
    # PROTECT: people are deactivated, never deleted; the record must keep naming them.
    by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                           related_name="+")
    at = models.DateTimeField(auto_now_add=True)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    changes = models.JSONField(default=dict, blank=True, help_text="{field: [old, new]} of each changed field")
    reason = models.TextField(blank=True)

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["batch", "at", "id"], name="batchevent_batch_at")]

    def __str__(self) -> str:
        return f"{self.kind} {self.batch_id} at {self.at:%Y-%m-%d %H:%M}"


class Task(models.Model):
    """One image of a spec to be labeled in a batch, `overlap` times independently.

    Gold tasks carry a curator's known answer (`gold_answer`), never shown to vendor
    users, against which annotators' accuracy is measured. `priority` (higher first)
    and `model_confidence` (lower first) order the work queue.
    """

    class Status(models.TextChoices):
        NEW = "new", "New"
        PRELABELED = "prelabeled", "Pre-labeled"
        IN_PROGRESS = "in_progress", "In progress"
        SUBMITTED = "submitted", "Submitted"
        ACCEPTED = "accepted", "Accepted"
        REJECTED = "rejected", "Rejected (rework)"

    # Statuses in which the queue may still hand out a free slot.
    CLAIMABLE = (Status.NEW, Status.PRELABELED, Status.IN_PROGRESS, Status.REJECTED)

    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="tasks")
    image = models.ForeignKey("curation.Image", on_delete=models.CASCADE, related_name="tasks")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.NEW)
    overlap = models.PositiveSmallIntegerField(default=1)
    # Live leases plus annotations: taken with a conditional UPDATE (< overlap).
    slots_taken = models.PositiveSmallIntegerField(default=0)
    is_gold = models.BooleanField(default=False)
    gold_answer = models.JSONField(null=True, blank=True,
                                   help_text='Known answer: {"latex": ..., "regions": [...]} (hidden from vendors)')
    priority = models.IntegerField(default=0)
    model_confidence = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["batch", "image"], name="uniq_task_image_per_batch")]
        indexes = [
            # The work queue walks open tasks in queue order and stops at the first it
            # may take, instead of sorting every open task on each claim.
            models.Index(models.F("priority").desc(), models.F("model_confidence").asc(),  # PostgreSQL: ASC is NULLS LAST
                         models.F("id").asc(), name="task_queue_order_idx",
                         condition=models.Q(status__in=["new", "prelabeled", "in_progress", "rejected"])),
            models.Index(fields=["batch", "status"], name="task_batch_status_idx"),
        ]

    def __str__(self) -> str:
        return f"task {self.pk} ({self.image_id})"


class Claim(models.Model):
    """An annotator's slot on a task: a lease until `expires_at`, permanent once annotated.

    A task has at most `overlap` live or annotated claims, and an annotator holds at
    most one claim per task (a unique constraint), so nobody labels a task twice.
    """

    class State(models.TextChoices):
        LIVE = "live", "Leased"
        ANNOTATED = "annotated", "Annotated"
        RELEASED = "released", "Released"
        # Given up with the annotator's unfinished annotation when they were switched off: no
        # slot, and unlike a released lease never offered to them again (they hold an annotation).
        WITHDRAWN = "withdrawn", "Withdrawn (annotator left)"

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="claims")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="claims")
    state = models.CharField(max_length=10, choices=State.choices, default=State.LIVE)
    claimed_at = models.DateTimeField()
    expires_at = models.DateTimeField()

    class Meta:
        ordering = ["-claimed_at"]
        constraints = [models.UniqueConstraint(fields=["task", "annotator"], name="uniq_claim_per_annotator")]
        indexes = [models.Index(fields=["task", "state", "expires_at"]),
                   models.Index(fields=["annotator", "state", "expires_at"])]

    def __str__(self) -> str:
        return f"{self.annotator_id} on {self.task_id} ({self.state})"


class Prediction(models.Model):
    """A model's pre-label of an image, in the annotation region format.

    Imported in bulk by model teams (`predictions/bulk/`). The model is named by a
    free `model_name` + `model_version` string until the pipeline's model registry
    exists. `regions` is a list of region dicts (see services.regions_validate), each
    may carry its own `confidence`; `confidence` is the image-level score that orders
    the work queue (lowest first).
    """

    image = models.ForeignKey("curation.Image", on_delete=models.CASCADE, related_name="predictions")
    model_name = models.CharField(max_length=120)
    model_version = models.CharField(max_length=60)
    regions = models.JSONField(default=list)
    confidence = models.FloatField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["image", "model_name", "model_version"],
                                               name="uniq_prediction_per_model")]

    def __str__(self) -> str:
        return f"{self.model_name}@{self.model_version} on {self.image_id}"


class Annotation(models.Model):
    """One annotator's answer for one task. Every save is a new AnnotationVersion;
    `version` is the current number, used for optimistic concurrency."""

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        SUBMITTED = "submitted", "Submitted"
        ACCEPTED = "accepted", "Accepted"
        REJECTED = "rejected", "Rejected (rework)"
        # A draft or rework its annotator left unfinished when switched off: kept with its
        # versions and reviews, no longer editable, and its slot back in the pool.
        WITHDRAWN = "withdrawn", "Withdrawn (annotator left)"

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="annotations")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="annotations")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT)
    version = models.PositiveIntegerField(default=1)
    current = models.ForeignKey("AnnotationVersion", null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    # Which reviewer the review queue showed a submitted annotation to, until when: reviewers
    # working side by side are shown different work (`services.review_open_next`).
    review_holder = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                      related_name="+")
    review_held_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-updated_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["task", "annotator"], name="uniq_annotation_per_annotator")]
        # The second serves the list's own order: a page of the annotations API (by offset or by
        # cursor) reads its rows off the index instead of sorting every annotation first.
        indexes = [models.Index(fields=["status", "updated_at"]),
                   models.Index(fields=["-updated_at", "-id"], name="annotation_recent_first")]

    def __str__(self) -> str:
        return f"annotation {self.pk} v{self.version}"


class AnnotationVersion(models.Model):
    """One saved state of an annotation: who saved it, after how long, from which
    pre-label; its regions hang off it and are never changed afterwards."""

    annotation = models.ForeignKey(Annotation, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    time_spent_seconds = models.FloatField(default=0)
    started_from = models.ForeignKey(Prediction, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["annotation_id", "number"]
        constraints = [models.UniqueConstraint(fields=["annotation", "number"], name="uniq_version_number")]

    def __str__(self) -> str:
        return f"annotation {self.annotation_id} v{self.number}"


class Region(models.Model):
    """One formula in an annotation version: a quadrilateral (4 points, image pixels,
    from the formula's top-left as read, clockwise on screen) or a pixel mask (COCO RLE), with its LaTeX."""

    class Kind(models.TextChoices):
        QUAD = "quad", "Quadrilateral"
        MASK = "mask", "Pixel mask"

    version = models.ForeignKey(AnnotationVersion, on_delete=models.CASCADE, related_name="regions")
    index = models.PositiveIntegerField()
    kind = models.CharField(max_length=4, choices=Kind.choices)
    points = models.JSONField(null=True, blank=True)
    mask_rle = models.JSONField(null=True, blank=True)
    latex = models.TextField(blank=True)
    latex_normalized = models.TextField(blank=True, help_text="Space-separated normalised tokens")
    illegible = models.BooleanField(default=False)
    cut_off = models.BooleanField(default=False)
    categories = models.JSONField(default=list, blank=True, help_text="Category slugs of the spec")

    class Meta:
        ordering = ["version_id", "index"]

    def __str__(self) -> str:
        return f"{self.kind} {self.index} of {self.version}"


class Review(models.Model):
    """A reviewer's decision on one submitted annotation version.

    `version` is the version decided on: what the annotator handed in. An acceptance may carry
    `corrections`: the reviewer fixed some regions while accepting (`services.review_create`),
    which stored the fixed answer as a new version authored by the reviewer, now the
    annotation's current one, and so what exports deliver. Keyed by region index (as text, JSON
    keys are), an entry is either

    - ``[annotator's LaTeX, reviewer's LaTeX]``: only the text changed (the first form, kept as
      it was so that every reader of it goes on working: QA counts non-empty records), or
    - ``{"points": [annotator's points, reviewer's points], "latex": [old, new]}``: the reviewer
      moved the region's four corners, "latex" present only when the text changed too.

    Read it through `latex_corrections` and `geometry_corrections` (`split_corrections` for a
    record read without its model). Flags and categories are never corrected this way. The
    task is accepted (and paid) as with a plain acceptance.
    """

    class Decision(models.TextChoices):
        ACCEPT = "accept", "Accept"
        REJECT = "reject", "Reject"

    class Reason(models.TextChoices):
        WRONG_REGION = "wrong_region", "Wrong region"
        MISSING_FORMULA = "missing_formula", "Missing formula"
        LATEX_ERROR = "latex_error", "LaTeX error"
        GUIDE_VIOLATION = "guide_violation", "Guide violation"
        OTHER = "other", "Other"

    annotation = models.ForeignKey(Annotation, on_delete=models.CASCADE, related_name="reviews")
    version = models.ForeignKey(AnnotationVersion, on_delete=models.CASCADE, related_name="reviews")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="reviews")
    decision = models.CharField(max_length=6, choices=Decision.choices)
    reasons = models.JSONField(default=list, blank=True)
    comment = models.TextField(blank=True)
    corrections = models.JSONField(
        default=dict, blank=True,
        help_text='{region index: [old LaTeX, new LaTeX]}, or {region index: {"points": [old, new], "latex": '
                  '[old, new]}} where the reviewer moved the corners, fixed by the reviewer on acceptance')
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.decision} of {self.annotation_id}"

    @staticmethod
    def split_corrections(record: object) -> tuple[dict[str, list], dict[str, list]]:
        """``({index: [old LaTeX, new LaTeX]}, {index: [old points, new points]})`` of a stored
        `corrections` record: the text changes in the first form, the moved corners apart."""
        latex: dict[str, list] = {}
        points: dict[str, list] = {}
        if not isinstance(record, dict):
            return latex, points
        for key, entry in record.items():
            if isinstance(entry, dict):
                if "latex" in entry:
                    latex[key] = entry["latex"]
                if "points" in entry:
                    points[key] = entry["points"]
            else:
                latex[key] = entry
        return latex, points

    @property
    def latex_corrections(self) -> dict[str, list]:
        """{region index: [annotator's LaTeX, reviewer's LaTeX]} of the regions whose text was fixed."""
        return self.split_corrections(self.corrections)[0]

    @property
    def geometry_corrections(self) -> dict[str, list]:
        """{region index: [annotator's points, reviewer's points]} of the regions whose corners moved."""
        return self.split_corrections(self.corrections)[1]
