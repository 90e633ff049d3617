"""Curation: what a dataset must contain (specs, categories, model requirements),
where its images come from (sources and their licences), and the images."""
from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models


class Licence(models.Model):
    """A licence from the catalogue, with the flags that decide what may be done.

    The catalogue is a data migration (Creative Commons, KOGL, MIT/Apache,
    not-protected works, contract, unknown); curators may add more.
    """

    class Family(models.TextChoices):
        CREATIVE_COMMONS = "cc", "Creative Commons"
        KOGL = "kogl", "Korea Open Government Licence"
        OPEN_SOURCE = "oss", "Open-source licence"
        PUBLIC_DOMAIN = "public", "Not protected by copyright"
        CONTRACT = "contract", "Proprietary contract"
        UNKNOWN = "unknown", "Unknown"

    code = models.CharField(
        max_length=40, unique=True, help_text="Stable identifier, e.g. cc-by-nc-sa-3.0",
        validators=[RegexValidator(r"^[a-z0-9][a-z0-9.-]*$", "Lower-case letters, digits, '.' and '-' only.")],
    )
    name = models.CharField(max_length=120)
    family = models.CharField(max_length=16, choices=Family.choices)
    version = models.CharField(max_length=10, blank=True)
    url = models.URLField(blank=True)
    allows_commercial = models.BooleanField()
    allows_derivatives = models.BooleanField()
    share_alike = models.BooleanField()
    requires_attribution = models.BooleanField()
    description = models.TextField(blank=True)

    class Meta:
        ordering = ["family", "code"]

    def __str__(self) -> str:
        return self.name


class Source(models.Model):
    """Where images came from, who holds their copyright, under which licence."""

    class Kind(models.TextChoices):
        IN_HOUSE = "in_house", "In-house capture"
        VENDOR = "vendor_collection", "Vendor collection"
        PUBLIC_DATASET = "public_dataset", "Public dataset"
        PURCHASED = "purchased", "Purchased"
        WEB = "web", "Web"

    name = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=24, choices=Kind.choices)
    licence = models.ForeignKey(Licence, on_delete=models.PROTECT, related_name="sources")
    copyright_holder = models.CharField(max_length=200)
    attribution = models.TextField(blank=True, help_text="Text that must travel with every export")
    url = models.URLField(blank=True)
    contract_reference = models.CharField(max_length=200, blank=True)
    acquired_on = models.DateField(null=True, blank=True)
    notes = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class DatasetSpec(models.Model):
    """A dataset designed from a service requirement: kinds, quotas, answer format
    and the requirements a model trained on it must meet."""

    class IntendedUse(models.TextChoices):
        COMMERCIAL = "commercial", "Commercial product"
        RESEARCH = "research", "Research only"

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        ACTIVE = "active", "Active"
        CLOSED = "closed", "Closed"

    class ServingTarget(models.TextChoices):
        MOBILE = "mobile", "Mobile device"
        CPU_SERVER = "cpu_server", "CPU server"
        GPU_SERVER = "gpu_server", "GPU server"
        CLOUD = "cloud", "Cloud API"

    ANSWER_FORMATS = ("quad", "mask", "latex")

    name = models.CharField(max_length=200, unique=True)
    slug = models.SlugField(max_length=80, unique=True)
    requirement = models.TextField(help_text="The service requirement, in words")
    intended_use = models.CharField(max_length=16, choices=IntendedUse.choices)
    answer_formats = models.JSONField(default=list, help_text='Subset of ["quad", "mask", "latex"]')
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.DRAFT)
    max_ms_per_image = models.PositiveIntegerField(null=True, blank=True)
    # Requests per second the model must serve: 0 would be no requirement (leave it empty instead),
    # and no formula reader is asked for a million.
    target_qps = models.FloatField(null=True, blank=True, validators=[MinValueValidator(0.01),
                                                                      MaxValueValidator(1_000_000)],
                                   help_text="Requests per second the served model must sustain (0.01 to 1,000,000)")
    serving_target = models.CharField(max_length=16, choices=ServingTarget.choices, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "dataset spec"

    def __str__(self) -> str:
        return self.name

    @property
    def is_commercial(self) -> bool:
        return self.intended_use == self.IntendedUse.COMMERCIAL


class ModelRequirement(models.Model):
    """One accuracy target a candidate model must meet, e.g. exact match >= 0.9."""

    class Metric(models.TextChoices):
        EXACT_MATCH = "exact_match", "LaTeX exact match"
        TOKEN_EDIT_DISTANCE = "token_edit_distance", "Normalised token edit distance"
        BLEU4 = "bleu4", "BLEU-4"
        DETECTION_F1 = "detection_f1", "Detection F1 at IoU 0.5"
        MEAN_IOU = "mean_iou", "Mean region IoU"

    # Lower is better only for the edit distance.
    LOWER_IS_BETTER = {Metric.TOKEN_EDIT_DISTANCE}

    spec = models.ForeignKey(DatasetSpec, on_delete=models.CASCADE, related_name="requirements")
    metric = models.CharField(max_length=24, choices=Metric.choices)
    threshold = models.FloatField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["spec", "metric"], name="uniq_requirement_metric")]
        ordering = ["metric"]

    def __str__(self) -> str:
        op = "<=" if self.metric in self.LOWER_IS_BETTER else ">="
        return f"{self.get_metric_display()} {op} {self.threshold}"

    def is_met_by(self, value: float) -> bool:
        if self.metric in self.LOWER_IS_BETTER:
            return value <= self.threshold
        return value >= self.threshold


class Category(models.Model):
    """A kind of image the spec wants (printed, handwritten, shadow, ...), with its quota."""

    DEFAULTS = [
        ("printed", "Printed", "Typeset formulas: textbooks, worksheets, exam papers"),
        ("handwritten", "Handwritten", "Formulas written by hand"),
        ("shadow", "Shadow", "Photos with a shadow falling across the formula"),
        ("highlighter", "Highlighter", "Formulas marked with a highlighter pen"),
        ("whiteout", "Whiteout", "Formulas with correction fluid or tape"),
    ]

    spec = models.ForeignKey(DatasetSpec, on_delete=models.CASCADE, related_name="categories")
    slug = models.SlugField(max_length=60)
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    target_quota = models.PositiveIntegerField(default=0)
    is_builtin = models.BooleanField(default=False)
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["spec", "slug"], name="uniq_category_slug_per_spec")]
        ordering = ["spec_id", "position", "id"]
        verbose_name_plural = "categories"

    def __str__(self) -> str:
        return f"{self.spec.slug}/{self.slug}"


class Image(models.Model):
    """One image of a spec, stored once per spec (sha256), with its provenance."""

    spec = models.ForeignKey(DatasetSpec, on_delete=models.CASCADE, related_name="images")
    source = models.ForeignKey(Source, on_delete=models.PROTECT, related_name="images")
    categories = models.ManyToManyField(Category, related_name="images", blank=True)
    file = models.CharField(max_length=255, help_text="Storage name of the (orientation-corrected) image")
    thumbnail = models.CharField(max_length=255)
    original_filename = models.CharField(max_length=255, blank=True)
    sha256 = models.CharField(max_length=64)
    phash = models.CharField(max_length=16, db_index=True, help_text="64-bit perceptual hash, hex")
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    format = models.CharField(max_length=10)
    file_size = models.PositiveIntegerField()
    capture_session = models.CharField(
        max_length=120, blank=True, help_text="Images of one session stay in one split"
    )
    truth_latex = models.TextField(blank=True, help_text="Known answer from an importer (becomes gold)")
    meta = models.JSONField(default=dict, blank=True)
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    # Set by `services.image_takedown`: the files are erased and the row stays as a tombstone
    # (paid annotations and frozen snapshot items still refer to it); nothing serves its pixels.
    taken_down_at = models.DateTimeField(null=True, blank=True,
                                         help_text="When the image was taken down (its files erased)")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["spec", "sha256"], name="uniq_image_per_spec")]
        indexes = [models.Index(fields=["spec", "source"]), models.Index(fields=["spec", "created_at"])]
        ordering = ["id"]

    def __str__(self) -> str:
        return self.original_filename or self.sha256[:12]

    # Files are served through the API, scoped by user, never as public media.
    @property
    def file_url(self) -> str:
        return f"/api/v1/images/{self.pk}/file/"

    @property
    def thumbnail_url(self) -> str:
        return f"/api/v1/images/{self.pk}/thumbnail/"


class ImportJob(models.Model):
    """A zip or folder of images ingested in the background by a Celery worker."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    spec = models.ForeignKey(DatasetSpec, on_delete=models.CASCADE, related_name="import_jobs")
    source = models.ForeignKey(Source, on_delete=models.PROTECT, related_name="+")
    categories = models.ManyToManyField(Category, blank=True, related_name="+")
    archive = models.CharField(max_length=255, help_text="Storage name of the uploaded zip")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.QUEUED)
    total = models.PositiveIntegerField(default=0)
    imported = models.PositiveIntegerField(default=0)
    duplicates = models.PositiveIntegerField(default=0)
    errors = models.JSONField(default=list, blank=True, help_text='[{"file": ..., "error": ...}]')
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    # When the current run claimed it (each run, a time-limit continuation too), and how many
    # times the sweep queued it again after its worker died: `snapshots.builds_sweep`.
    started_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        # the import job page reads a page newest first by (created_at, id): common.page_cursor
        indexes = [models.Index(fields=["created_at", "id"], name="curation_importjob_page")]


class ProgressReport(models.Model):
    """A spec's quota progress as every reader sees it (per category, split and vendor), computed
    by a Celery worker a little after the data changes (debounced) and read by pages and the API.

    Vendor users get their own vendor's slice of it. ``payload`` has the shape of
    :func:`curation.progress.spec_progress` (dates as ISO strings).
    """

    spec = models.OneToOneField(DatasetSpec, on_delete=models.CASCADE, primary_key=True,
                                related_name="progress_report")
    computed_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField(default=0)
    payload = models.JSONField()

    def __str__(self) -> str:
        return f"progress of {self.spec_id} at {self.computed_at:%Y-%m-%d %H:%M}"


class Snapshot(models.Model):
    """A frozen, reproducible dataset: (image, accepted annotation version, split) of a spec.

    Items hold copies of the accepted regions and of the provenance, so later edits of
    annotations, sources or licences never change a snapshot; ``content_hash`` is the
    SHA-256 over its canonical item list, so a rebuild can be checked byte for byte.

    A snapshot is requested (``queued``), frozen by a Celery worker (``building``) and then
    ``ready``, or ``failed`` with the reason in ``error``. Items exist only once it is ready.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        BUILDING = "building", "Building"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    spec = models.ForeignKey(DatasetSpec, on_delete=models.PROTECT, related_name="snapshots")
    name = models.CharField(max_length=200)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    ratios = models.JSONField(help_text='Split weights, e.g. {"train": 0.8, "validation": 0.1, "test": 0.1}')
    seed = models.IntegerField(default=0)
    content_hash = models.CharField(max_length=64)
    item_count = models.PositiveIntegerField(default=0)
    split_counts = models.JSONField(default=dict, blank=True)
    near_duplicate_pairs = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.QUEUED)
    error = models.TextField(blank=True)
    # Incremented by each build attempt; a build only records its result while its attempt is current.
    attempts = models.PositiveSmallIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Summaries stored at build time, so list pages never aggregate over items.
    category_counts = models.JSONField(default=dict, blank=True,
                                       help_text='Images per category and split: {"printed": {"train": 8, ...}}')
    licence_counts = models.JSONField(default=dict, blank=True,
                                      help_text='Per licence code: {"name": ..., "allows_commercial": bool, '
                                                '"allows_derivatives": bool, "images": n}')
    commercial_items = models.PositiveIntegerField(default=0, help_text="Items whose licence allows commercial use")
    # Items taken down after the freeze (an amendment: the content hash still covers them all).
    taken_down_items = models.PositiveIntegerField(default=0, help_text="Items taken down since the freeze")
    # The spec as it was at freeze time, for exports: its category list (a category renamed or
    # added later must not change a rebuilt export) and its intended use (exports apply the
    # stricter of this and the spec's current one).
    categories = models.JSONField(default=list, blank=True,
                                  help_text='The spec\'s categories at freeze time: [{"slug": ..., "name": ...}]')
    intended_use = models.CharField(max_length=16, blank=True, help_text="The spec's intended use at freeze time")

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["spec", "name"], name="uniq_snapshot_name_per_spec")]
        # The snapshot list (page and API) walks (created_at, id) newest first by keyset.
        indexes = [models.Index(fields=["created_at", "id"], name="curation_snapshot_page")]

    def __str__(self) -> str:
        return f"{self.spec.slug}/{self.name}"


class SnapshotItem(models.Model):
    """One image of a snapshot with frozen copies of its accepted regions and provenance."""

    snapshot = models.ForeignKey(Snapshot, on_delete=models.CASCADE, related_name="items")
    image = models.ForeignKey(Image, on_delete=models.PROTECT, related_name="+")
    # The id of the accepted annotation at freeze time, kept even if the annotation is deleted
    # later (no database constraint; nothing done on delete): the content hash covers it, so
    # nulling it would make an untouched snapshot fail its rebuild check. The number and the
    # copy below are what counts.
    annotation = models.ForeignKey("labeling.Annotation", null=True, blank=True, on_delete=models.DO_NOTHING,
                                   db_constraint=False, related_name="+")
    annotation_version = models.PositiveIntegerField()
    split = models.CharField(max_length=16)
    file = models.CharField(max_length=255)
    sha256 = models.CharField(max_length=64)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    capture_session = models.CharField(max_length=120, blank=True)
    categories = models.JSONField(default=list, help_text="Category slugs of the image")
    regions = models.JSONField(default=list, help_text="Accepted regions: points, mask_rle, latex, categories, flags")
    licence = models.JSONField(default=dict, help_text="Licence code, name, url and flags at freeze time")
    source = models.JSONField(default=dict, help_text="Source name, copyright holder, attribution, url")
    # An amendment, outside the content hash: the image was taken down after the freeze, so
    # exports built since leave the item out (and say so) and rebuild-check reports it.
    takedown = models.ForeignKey("Takedown", null=True, blank=True, on_delete=models.PROTECT, related_name="items")

    class Meta:
        ordering = ["snapshot_id", "image_id"]
        constraints = [models.UniqueConstraint(fields=["snapshot", "image"], name="uniq_snapshot_image")]
        indexes = [models.Index(fields=["snapshot", "split"])]

    def __str__(self) -> str:
        return f"{self.snapshot_id}:{self.image_id} ({self.split})"


class Export(models.Model):
    """A snapshot written in one format into a zip in storage by a Celery worker."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"
        # Its zip held an image taken down since: the file is deleted, downloads answer 410.
        WITHDRAWN = "withdrawn", "Withdrawn"

    class Format(models.TextChoices):
        COCO = "coco", "COCO"
        YOLO_OBB = "yolo-obb", "YOLO-OBB"
        IM2LATEX = "im2latex", "im2latex"
        JSONL = "jsonl", "JSONL"
        LABEL_STUDIO = "label-studio", "Label Studio JSON"
        ICDAR2015 = "icdar2015", "ICDAR-2015"
        CVAT = "cvat", "CVAT for images 1.1 XML"

    snapshot = models.ForeignKey(Snapshot, on_delete=models.CASCADE, related_name="exports")
    format = models.CharField(max_length=16, choices=Format.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    file = models.CharField(max_length=255, blank=True, help_text="Storage name of the zip")
    size = models.PositiveBigIntegerField(default=0)
    images = models.PositiveIntegerField(default=0)
    regions = models.PositiveIntegerField(default=0)
    excluded_images = models.PositiveIntegerField(default=0)
    licences = models.JSONField(default=dict, blank=True, help_text="Images per licence code in the export")
    excluded = models.JSONField(default=list, blank=True, help_text='[{"licence": ..., "reason": ..., "images": n}]')
    error = models.TextField(blank=True)
    withdrawn_at = models.DateTimeField(null=True, blank=True)
    withdrawn_reason = models.TextField(blank=True, help_text="Why the zip was withdrawn (a takedown)")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Incremented by each run; a run only records its result while its attempt is current.
    attempts = models.PositiveSmallIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.snapshot} {self.format} ({self.status})"


class Takedown(models.Model):
    """One image taken down: a copyright holder's takedown request or a personal-data erasure
    request (PIPA / GDPR), recorded by `services.image_takedown` or `services.source_takedown`.

    The image's files (original and thumbnail) are erased once the takedown commits; its row
    stays as a tombstone (``Image.taken_down_at``) because paid annotations and frozen snapshot
    items refer to it. ``image_ref`` keeps the id as a plain number should the row ever go.
    Snapshot items of the image point here (an amendment beside the content hash); export
    zips that held it are withdrawn. Never edited nor deleted: the admin shows it read-only.
    """

    class Kind(models.TextChoices):
        COPYRIGHT = "copyright", "Copyright takedown"
        PERSONAL_DATA = "personal_data", "Personal-data erasure"
        OTHER = "other", "Other"

    image = models.ForeignKey(Image, null=True, blank=True, on_delete=models.SET_NULL, related_name="takedowns")
    image_ref = models.PositiveIntegerField(help_text="The image's id (kept if the row ever goes)")
    spec = models.ForeignKey(DatasetSpec, null=True, on_delete=models.SET_NULL, related_name="+")
    source = models.ForeignKey(Source, null=True, on_delete=models.SET_NULL, related_name="+")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    reason = models.TextField(help_text="The request, in words")
    requested_by = models.CharField(max_length=200, help_text="Who asked: rights holder, data subject, authority")
    whole_source = models.BooleanField(default=False, help_text="Part of a takedown of the whole source")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    files_erased = models.JSONField(default=list, blank=True, help_text="Storage names of the files erased")
    snapshot_items = models.PositiveIntegerField(default=0, help_text="Snapshot items marked taken down")
    exports_withdrawn = models.PositiveIntegerField(default=0, help_text="Export zips withdrawn")
    tasks_removed = models.PositiveIntegerField(default=0, help_text="Open, unanswered tasks removed from the queue")
    annotations_withdrawn = models.PositiveIntegerField(default=0, help_text="Drafts and rework withdrawn")

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["image_ref"], name="uniq_takedown_per_image")]
        # the takedown page reads a page newest first by (created_at, id): common.page_cursor
        indexes = [models.Index(fields=["created_at", "id"], name="curation_takedown_page")]

    def __str__(self) -> str:
        return f"takedown of image {self.image_ref} ({self.kind})"
