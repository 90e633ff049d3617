"""Work guides, questions and answers, and vendor contracts (see issue 7).

A spec has one guide; the guide has numbered versions. A version is written as a
draft and, once published, never changes: annotators acknowledge a specific
version, so the text they agreed to must stay what it was.
"""
from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models


class Guide(models.Model):
    """The work guide of one dataset spec (its versions carry the text)."""

    spec = models.OneToOneField("curation.DatasetSpec", on_delete=models.CASCADE, related_name="guide")
    title = models.CharField(max_length=200)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["spec_id"]

    def __str__(self) -> str:
        return self.title


class GuideVersion(models.Model):
    """One numbered text of a guide: Markdown body, change notes, FAQ and examples.

    `body_html` is rendered and sanitised when the draft is saved, so pages never
    render Markdown per request and never show unsanitised text.
    """

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        PUBLISHED = "published", "Published"

    guide = models.ForeignKey(Guide, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT)
    body_md = models.TextField(blank=True)
    body_html = models.TextField(blank=True, editable=False)
    change_notes = models.TextField(blank=True)
    published_at = models.DateTimeField(null=True, blank=True)
    published_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["guide_id", "-number"]
        constraints = [models.UniqueConstraint(fields=["guide", "number"], name="uniq_guide_version_number")]
        indexes = [models.Index(fields=["guide", "status", "-published_at"])]

    def __str__(self) -> str:
        return f"{self.guide} v{self.number}"

    @property
    def is_published(self) -> bool:
        return self.status == self.Status.PUBLISHED


class GuideExample(models.Model):
    """A good or bad example image of a version, with the regions drawn on it.

    `regions` is a list of quads, each four [x, y] points in image pixels,
    from the formula's top-left as read, clockwise, like the regions annotators draw.
    """

    class Kind(models.TextChoices):
        GOOD = "good", "Good example"
        BAD = "bad", "Bad example"

    version = models.ForeignKey(GuideVersion, on_delete=models.CASCADE, related_name="examples")
    image = models.ForeignKey("curation.Image", on_delete=models.PROTECT, related_name="guide_examples")
    kind = models.CharField(max_length=4, choices=Kind.choices)
    caption = models.TextField(blank=True)
    regions = models.JSONField(default=list, blank=True)
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["version_id", "position", "id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.pk} of {self.version}"


class FaqEntry(models.Model):
    """A question and answer in the FAQ section of a guide version.

    Entries are copied into every new version, so a published version keeps the
    FAQ it was published with even when later versions change it.
    """

    version = models.ForeignKey(GuideVersion, on_delete=models.CASCADE, related_name="faq")
    question_text = models.TextField()
    answer_md = models.TextField()
    answer_html = models.TextField(editable=False)
    source_question = models.ForeignKey("Question", null=True, blank=True, on_delete=models.SET_NULL,
                                        related_name="faq_entries")
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["version_id", "position", "id"]
        verbose_name = "FAQ entry"
        verbose_name_plural = "FAQ entries"

    def __str__(self) -> str:
        return self.question_text[:60]


class GuideAcknowledgement(models.Model):
    """`user` has read and accepted guide `version` (once per user and version)."""

    version = models.ForeignKey(GuideVersion, on_delete=models.CASCADE, related_name="acknowledgements")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="guide_acknowledgements")
    acknowledged_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-acknowledged_at"]
        constraints = [models.UniqueConstraint(fields=["version", "user"], name="uniq_ack_per_user_version")]

    def __str__(self) -> str:
        return f"{self.user} read {self.version}"


class Question(models.Model):
    """A vendor member's question about a spec or a guide version.

    It may point at an image and a region (four [x, y] points) so the curator
    sees exactly what is meant. `task_ref` is the id of a labeling task; it is a
    plain integer until labeling.Task lands on main, when it can become
    `task = models.ForeignKey("labeling.Task", null=True, on_delete=models.SET_NULL)`
    with a data migration copying task_ref into task_id.
    """

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        ANSWERED = "answered", "Answered"
        CLOSED = "closed", "Closed"

    spec = models.ForeignKey("curation.DatasetSpec", on_delete=models.CASCADE, related_name="questions")
    guide_version = models.ForeignKey(GuideVersion, null=True, blank=True, on_delete=models.SET_NULL,
                                      related_name="questions")
    vendor = models.ForeignKey("labeling.Vendor", on_delete=models.CASCADE, related_name="questions")
    asked_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="guide_questions")
    title = models.CharField(max_length=200)
    body = models.TextField()
    body_html = models.TextField(editable=False, blank=True)
    image = models.ForeignKey("curation.Image", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    region = models.JSONField(null=True, blank=True, help_text="Four [x, y] points in image pixels")
    task_ref = models.PositiveBigIntegerField(null=True, blank=True, help_text="labeling task id, if any")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.OPEN)
    promoted_to_faq = models.BooleanField(default=False)
    faq_question = models.TextField(blank=True, help_text="Wording of the question in the FAQ")
    faq_answer = models.TextField(blank=True, help_text="Wording of the answer in the FAQ (Markdown)")
    promoted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["vendor", "status"]), models.Index(fields=["spec", "status"])]

    def __str__(self) -> str:
        return self.title


class Answer(models.Model):
    """A curator's answer (or a follow-up) to a question."""

    question = models.ForeignKey(Question, on_delete=models.CASCADE, related_name="answers")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    body = models.TextField()
    body_html = models.TextField(editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"answer {self.pk} to {self.question_id}"


class Notification(models.Model):
    """Something a user should see: shown in the app and, when wanted, mailed.

    `emailed_at` makes the mail task idempotent: a retried task sends nothing twice.
    """

    class Kind(models.TextChoices):
        QUESTION_ASKED = "question_asked", "New question"
        QUESTION_ANSWERED = "question_answered", "Question answered"
        QUESTION_CLOSED = "question_closed", "Question closed"
        GUIDE_PUBLISHED = "guide_published", "New guide version"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    message = models.CharField(max_length=300)
    url = models.CharField(max_length=300, blank=True)
    question = models.ForeignKey(Question, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    read_at = models.DateTimeField(null=True, blank=True)
    email_wanted = models.BooleanField(default=True)
    emailed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        # The notifications page and the API list a user's own by (created_at, id) newest first
        # (the page by keyset: common/page_cursor.py).
        indexes = [models.Index(fields=["user", "read_at"]),
                   models.Index(fields=["user", "created_at", "id"], name="guides_notification_page")]

    def __str__(self) -> str:
        return self.message


class Contract(models.Model):
    """What a vendor is paid per accepted task of a spec, how many, by when.

    Prices are per task kind: regions only, LaTeX only, or both ("full").
    """

    class TaskKind(models.TextChoices):
        REGIONS = "regions", "Regions only"
        LATEX = "latex", "LaTeX only"
        FULL = "full", "Regions and LaTeX"

    vendor = models.ForeignKey("labeling.Vendor", on_delete=models.PROTECT, related_name="contracts")
    spec = models.ForeignKey("curation.DatasetSpec", on_delete=models.PROTECT, related_name="contracts")
    reference = models.CharField(max_length=120, blank=True)
    currency = models.CharField(max_length=3, default="USD", help_text="ISO 4217 code")
    price_regions = models.DecimalField(max_digits=10, decimal_places=4, validators=[MinValueValidator(Decimal(0))])
    price_latex = models.DecimalField(max_digits=10, decimal_places=4, validators=[MinValueValidator(Decimal(0))])
    price_full = models.DecimalField(max_digits=10, decimal_places=4, validators=[MinValueValidator(Decimal(0))])
    agreed_quantity = models.PositiveIntegerField()
    starts_on = models.DateField()
    deadline = models.DateField()
    notes = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["vendor_id", "spec_id"]
        constraints = [models.UniqueConstraint(fields=["vendor", "spec"], name="uniq_contract_vendor_spec")]

    def __str__(self) -> str:
        return f"{self.vendor} / {self.spec}"

    def price_for(self, kind: str) -> Decimal:
        """Unit price of one accepted task of `kind`."""
        return {"regions": self.price_regions, "latex": self.price_latex, "full": self.price_full}[kind]
