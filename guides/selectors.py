"""Reads for guides, questions, notifications and contracts, always from the user.

Curators see everything, drafts included. Vendor users see the published guides
of the specs their vendor works on (a contract, or batches once labeling widens
curation's spec filter), their own vendor's questions and contracts, and never
another vendor's: a foreign object is simply absent from their querysets (404).
"""
from __future__ import annotations

from django.contrib.auth.models import User
from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet, Subquery

from common import roles
from curation.models import DatasetSpec, Image
from curation.selectors import images_visible_to, specs_visible_to
from labeling.models import Vendor
from labeling.selectors import batches_visible_to, vendor_of

from .models import (
    Answer,
    Contract,
    FaqEntry,
    Guide,
    GuideAcknowledgement,
    GuideExample,
    GuideVersion,
    Notification,
    Question,
)


def _vendor_spec_filter(user: User) -> Q | None:
    """Specs a vendor user may read guides of, or None when the user has no vendor."""
    vendor = vendor_of(user)
    if vendor is None:
        return None
    return Q(contracts__vendor=vendor) | Q(pk__in=specs_visible_to(user).values("pk"))


def guide_specs_visible_to(user: User) -> QuerySet[DatasetSpec]:
    """Specs whose guide, FAQ and questions `user` may work with."""
    if roles.can_read_all_data(user) or roles.is_curator(user):
        return DatasetSpec.objects.all()
    spec_filter = _vendor_spec_filter(user)
    if spec_filter is None:
        return DatasetSpec.objects.none()
    return DatasetSpec.objects.filter(spec_filter).distinct()


def guides_visible_to(user: User) -> QuerySet[Guide]:
    """Guides of the specs `user` may see."""
    qs = Guide.objects.select_related("spec")
    if roles.is_curator(user) or roles.can_read_all_data(user):
        return qs
    return qs.filter(spec__in=guide_specs_visible_to(user).values("pk"))


def guide_versions_visible_to(user: User) -> QuerySet[GuideVersion]:
    """All versions for curators; published versions of visible guides for everyone else."""
    qs = GuideVersion.objects.select_related("guide__spec", "published_by", "created_by")
    if roles.is_curator(user):
        return qs
    return qs.filter(status=GuideVersion.Status.PUBLISHED, guide__in=guides_visible_to(user).values("pk"))


def guide_examples_visible_to(user: User) -> QuerySet[GuideExample]:
    """Examples of the versions `user` may see."""
    return GuideExample.objects.select_related("image", "version__guide").filter(
        version__in=guide_versions_visible_to(user).values("pk")
    )


def faq_entries_visible_to(user: User) -> QuerySet[FaqEntry]:
    """FAQ entries of the versions `user` may see (published ones for vendors)."""
    return FaqEntry.objects.select_related("version__guide__spec").filter(
        version__in=guide_versions_visible_to(user).values("pk")
    )


def guide_current_version(*, guide: Guide) -> GuideVersion | None:
    """The latest published version of `guide`, or None while nothing is published."""
    return (
        guide.versions.filter(status=GuideVersion.Status.PUBLISHED)
        .select_related("guide__spec")
        .order_by("-number")
        .first()
    )


def guide_draft_version(*, guide: Guide) -> GuideVersion | None:
    """The draft being written for `guide`, if any (there is at most one)."""
    return guide.versions.filter(status=GuideVersion.Status.DRAFT).first()


def spec_current_guide_version(*, spec: DatasetSpec) -> GuideVersion | None:
    """The latest published guide version of `spec`, or None."""
    return (
        GuideVersion.objects.filter(guide__spec=spec, status=GuideVersion.Status.PUBLISHED)
        .select_related("guide__spec")
        .order_by("-number")
        .first()
    )


def guide_acknowledgement_required(*, user: User, spec: DatasetSpec) -> GuideVersion | None:
    """The guide version `user` must acknowledge before taking a task of `spec`, or None.

    The work queue calls this before handing out a task: it returns the current
    published version when `user` has not acknowledged it (a new version asks
    again), and None when there is no published guide or it is acknowledged.
    """
    current = spec_current_guide_version(spec=spec)
    if current is None:
        return None
    if GuideAcknowledgement.objects.filter(version=current, user=user).exists():
        return None
    return current


def acknowledgements_visible_to(user: User) -> QuerySet[GuideAcknowledgement]:
    """Curators: all; vendor managers: their vendor's people; others: their own."""
    qs = GuideAcknowledgement.objects.select_related("user", "version__guide__spec")
    if roles.is_curator(user):
        return qs
    vendor = vendor_of(user)
    if vendor is not None and roles.has_role(user, roles.VENDOR_MANAGER):
        return qs.filter(user__vendor_membership__vendor=vendor)
    return qs.filter(user=user)


def vendors_working_on(*, spec_id: int) -> QuerySet[Vendor]:
    """Vendors whose people read the guide of spec `spec_id`: those with a contract for it
    and those with a batch of it (whose annotators the work queue holds back until they
    acknowledge its current version), as `guide_specs_visible_to` lets them read it."""
    return Vendor.objects.filter(Q(contracts__spec_id=spec_id) | Q(batches__spec_id=spec_id)).distinct()


def version_readers(*, user: User, version: GuideVersion) -> list[dict]:
    """Who has read `version`: every vendor member working on the spec, with the time
    they acknowledged it (None when not yet) and the latest version they did read.

    Curators see everyone; vendor managers their own vendor's people; others nobody.
    """
    if roles.is_curator(user):
        vendors = Vendor.objects.filter(
            Q(pk__in=vendors_working_on(spec_id=version.guide.spec_id).values("pk"))
            | Q(memberships__user__guide_acknowledgements__version__guide=version.guide)
        ).distinct()
    elif roles.has_role(user, roles.VENDOR_MANAGER) and vendor_of(user) is not None:
        vendors = Vendor.objects.filter(pk=vendor_of(user).pk)
    else:
        return []
    members = (
        User.objects.filter(vendor_membership__vendor__in=vendors, is_active=True)
        .select_related("vendor_membership__vendor")
        .prefetch_related(
            Prefetch(
                "guide_acknowledgements",
                queryset=GuideAcknowledgement.objects.filter(version__guide_id=version.guide_id)
                .select_related("version").order_by("-version__number"),
                to_attr="acks_of_guide",
            )
        )
        .order_by("vendor_membership__vendor__name", "username")
    )
    rows = []
    for member in members:
        acks = member.acks_of_guide
        this = next((a for a in acks if a.version_id == version.id), None)
        rows.append({
            "user": member,
            "vendor": member.vendor_membership.vendor,
            "acknowledged_at": this.acknowledged_at if this else None,
            "latest_read_version": acks[0].version.number if acks else None,
        })
    return rows


def questions_visible_to(user: User) -> QuerySet[Question]:
    """Curators: every question; vendor users: their own vendor's; others: none."""
    qs = Question.objects.select_related("spec", "vendor", "asked_by", "guide_version", "image").prefetch_related(
        Prefetch("answers", queryset=Answer.objects.select_related("author"))
    )
    if roles.is_curator(user):
        return qs
    vendor = vendor_of(user)
    if vendor is None:
        return qs.none()
    return qs.filter(vendor=vendor)


def question_images_for(*, user: User, spec: DatasetSpec) -> QuerySet[Image]:
    """Images of `spec` a question by `user` may point at: those they can see
    anyway (their tasks' images) and the examples of the guide versions they can read."""
    example_ids = guide_examples_visible_to(user).filter(version__guide__spec=spec).values("image_id")
    base = Image.objects.filter(spec=spec)
    if roles.is_curator(user) or roles.can_read_all_data(user):
        return base
    return base.filter(Q(pk__in=images_visible_to(user).values("pk")) | Q(pk__in=example_ids))


def notifications_of(user: User) -> QuerySet[Notification]:
    """A user's own notifications, newest first."""
    return Notification.objects.filter(user=user)


def notifications_unread_count(*, user: User) -> int:
    return Notification.objects.filter(user=user, read_at__isnull=True).count()


def contracts_visible_to(user: User) -> QuerySet[Contract]:
    """Curators: all contracts; a vendor manager: their vendor's; everyone else: none."""
    qs = Contract.objects.select_related("vendor", "spec")
    if roles.is_curator(user):
        return qs
    vendor = vendor_of(user)
    if vendor is not None and roles.has_role(user, roles.VENDOR_MANAGER):
        return qs.filter(vendor=vendor)
    return qs.none()


def guides_with_ack_state(user: User) -> QuerySet[Guide]:
    """Visible guides annotated with whether `user` acknowledged the current version."""
    current = GuideVersion.objects.filter(guide=OuterRef("pk"), status=GuideVersion.Status.PUBLISHED).order_by("-number")
    return guides_visible_to(user).annotate(
        has_published=Exists(current),
        current_number=Subquery(current.values("number")[:1]),
    ).annotate(
        # OuterRef here is the guide row (with its annotation), not a nested subquery's row.
        acknowledged_current=Exists(GuideAcknowledgement.objects.filter(
            user=user, version__guide=OuterRef("pk"), version__number=OuterRef("current_number"))),
    ).prefetch_related(Prefetch("versions", queryset=GuideVersion.objects.order_by("-number")))


def cost_report_for(*, user: User, vendor_id: int | None = None, spec_id: int | None = None, today=None):
    """The cost report over the contracts and batches `user` may see (curators: all; a
    vendor manager: their own vendor's). Work under a contract is priced by it; a batch
    given without a contract is priced by its own unit price. Returns (report,
    contracts, rows_available)."""
    from django.utils import timezone

    from . import costs

    contracts = list(contracts_visible_to(user).order_by("vendor__name", "spec__name"))
    if vendor_id is not None:
        contracts = [c for c in contracts if c.vendor_id == vendor_id]
    if spec_id is not None:
        contracts = [c for c in contracts if c.spec_id == spec_id]
    pairs = {(c.vendor_id, c.spec_id) for c in contracts}
    if roles.is_curator(user) or roles.has_role(user, roles.VENDOR_MANAGER):
        batches = batches_visible_to(user)
        if vendor_id is not None:
            batches = batches.filter(vendor_id=vendor_id)
        if spec_id is not None:
            batches = batches.filter(spec_id=spec_id)
        pairs |= set(batches.values_list("vendor_id", "spec_id").distinct().order_by())
    vendor_ids = sorted({v for v, _ in pairs})
    spec_ids = sorted({sp for _, sp in pairs})
    loaded = costs.load_task_rows(vendor_ids=vendor_ids, spec_ids=spec_ids) if pairs else ([], [])
    available = loaded is not None
    rows, batch_infos = loaded if loaded is not None else ([], [])
    # Rows of a vendor/spec pair the user may not see never leak into the report.
    rows = [r for r in rows if (r.vendor_id, r.spec_id) in pairs]
    batch_infos = [b for b in batch_infos if (b.vendor_id, b.spec_id) in pairs]
    report = costs.cost_report(rows=rows, contracts=[costs.Terms.from_contract(c) for c in contracts],
                               batches=batch_infos, today=today or timezone.localdate())
    return report, contracts, available


def cost_report_names(report, contracts) -> tuple[dict[int, str], dict[int, str]]:
    """Vendor and spec names for the report's lines (batches given without a contract too)."""
    vendor_names = {c.vendor_id: c.vendor.name for c in contracts}
    spec_names = {c.spec_id: c.spec.name for c in contracts}
    lines = [*report.batches, *report.months, *report.pace_warnings]
    missing_vendors = {x.vendor_id for x in lines} - vendor_names.keys()
    missing_specs = {x.spec_id for x in lines} - spec_names.keys()
    if missing_vendors:
        vendor_names.update(Vendor.objects.filter(pk__in=missing_vendors).values_list("id", "name"))
    if missing_specs:
        spec_names.update(DatasetSpec.objects.filter(pk__in=missing_specs).values_list("id", "name"))
    return vendor_names, spec_names
