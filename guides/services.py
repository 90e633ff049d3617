"""Write paths for guides, acknowledgements, questions, notifications and contracts.

Every change goes through one of these functions; API views, pages, admin actions
and tasks call them and never write the models themselves.
"""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from common import roles
from common.fields import is_row_id
from common.selectors import active_curators
from common.site import site_url
from common.unchangeable import CANNOT_CHANGE, drop_unchanged
from curation.models import DatasetSpec, Image
from labeling.models import Task, Vendor
from labeling.selectors import vendor_of
from labeling.services import batches_contract_price
from pipeline.refresh import spec_stats_refresh_soon

from . import imaging
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
from .rendering import render_markdown
from .selectors import vendors_working_on

MAX_BODY_CHARS = 200_000


def _require_draft(version: GuideVersion) -> None:
    if version.status != GuideVersion.Status.DRAFT:
        raise ValidationError({"status": f"Version {version.number} is published and can no longer be changed; "
                                         "create a new version instead."})


def _check_text(field: str, value: str, *, required: bool = False, limit: int = MAX_BODY_CHARS) -> str:
    value = (value or "").strip()
    if required and not value:
        raise ValidationError({field: "This field may not be blank."})
    if len(value) > limit:
        raise ValidationError({field: f"At most {limit} characters (got {len(value)})."})
    return value


# ----------------------------------------------------------------- guides


@transaction.atomic
def guide_create(*, spec: DatasetSpec, title: str, created_by: User | None = None, body_md: str = "",
                 change_notes: str = "") -> Guide:
    """Start the guide of `spec` (one per spec) with its first draft version (`body_md`).

    Guide and version are one write: a first version that is refused (e.g. a body over
    the length limit) leaves no guide without a version behind."""
    title = _check_text("title", title, required=True, limit=200)
    if Guide.objects.filter(spec=spec).exists():
        raise ValidationError({"spec": f"The spec {spec.name!r} already has a guide; add a version to it."})
    guide = Guide.objects.create(spec=spec, title=title, created_by=created_by)
    guide_version_create(guide=guide, created_by=created_by, body_md=body_md, change_notes=change_notes)
    return guide


def _faq_entries_for_new_version(guide: Guide, base: GuideVersion | None) -> list[tuple[str, str, Question | None]]:
    """The FAQ a new version starts with: the base version's entries (less the answers
    taken out of the FAQ since), then every promoted answer of the spec not in the base."""
    entries: list[tuple[str, str, Question | None]] = []
    seen: set[int] = set()
    if base is not None:
        for entry in base.faq.select_related("source_question"):
            source = entry.source_question
            if source is not None and not source.promoted_to_faq:
                continue  # taken out of the FAQ (question_demote_from_faq): not carried forward
            if source is not None:
                # A curator may have reworded a promoted answer since: the new version takes the new wording.
                entries.append((source.faq_question, source.faq_answer, source))
                seen.add(source.id)
            else:
                entries.append((entry.question_text, entry.answer_md, source))
    # Promoted answers not in the base: promoted since (or promoted again after a demotion).
    promoted = Question.objects.filter(spec_id=guide.spec_id, promoted_to_faq=True).order_by("promoted_at", "id")
    for question in promoted:
        if question.id not in seen:
            entries.append((question.faq_question, question.faq_answer, question))
    return entries


@transaction.atomic
def guide_version_create(
    *, guide: Guide, created_by: User | None = None, body_md: str | None = None, change_notes: str = ""
) -> GuideVersion:
    """Open the next draft version of `guide`.

    The draft starts from the latest version: its text (unless `body_md` is given),
    its examples and its FAQ, plus every answer promoted to the FAQ since. Only one
    draft may exist at a time, so two curators never write rival next versions.
    """
    guide = Guide.objects.select_for_update().get(pk=guide.pk)  # serialises version numbering
    if guide.versions.filter(status=GuideVersion.Status.DRAFT).exists():
        raise ValidationError({"guide": "This guide already has a draft version; edit or publish it first."})
    base = guide.versions.order_by("-number").first()
    body = _check_text("body_md", body_md if body_md is not None else (base.body_md if base else ""))
    version = GuideVersion.objects.create(
        guide=guide,
        number=(guide.versions.aggregate(n=Max("number"))["n"] or 0) + 1,
        body_md=body,
        body_html=render_markdown(body),
        change_notes=_check_text("change_notes", change_notes, limit=20_000),
        created_by=created_by,
    )
    FaqEntry.objects.bulk_create([
        FaqEntry(version=version, question_text=q, answer_md=a, answer_html=render_markdown(a),
                 source_question=src, position=n)
        for n, (q, a, src) in enumerate(_faq_entries_for_new_version(guide, base))
    ])
    if base is not None:
        GuideExample.objects.bulk_create([
            GuideExample(version=version, image_id=e.image_id, kind=e.kind, caption=e.caption, regions=e.regions,
                         position=e.position)
            for e in base.examples.all()
        ])
    return version


@transaction.atomic
def guide_version_update(*, version: GuideVersion, body_md: str | None = None,
                         change_notes: str | None = None) -> GuideVersion:
    """Change the text or change notes of a draft; published versions are immutable."""
    version = GuideVersion.objects.select_for_update().get(pk=version.pk)
    _require_draft(version)
    if body_md is not None:
        version.body_md = _check_text("body_md", body_md)
        version.body_html = render_markdown(version.body_md)
    if change_notes is not None:
        version.change_notes = _check_text("change_notes", change_notes, limit=20_000)
    version.save()
    return version


@transaction.atomic
def guide_version_publish(*, version: GuideVersion, by: User) -> GuideVersion:
    """Publish a draft: from now on it is the version annotators must acknowledge.

    Answers promoted while the draft was open join its FAQ now, so a promotion is
    never lost between creating and publishing a version. The vendor people working
    on the spec are notified in the app.
    """
    version = GuideVersion.objects.select_for_update().select_related("guide__spec").get(pk=version.pk)
    _require_draft(version)
    if not version.body_md.strip():
        raise ValidationError({"body_md": "A guide version needs a text before it is published."})
    have = set(version.faq.exclude(source_question=None).values_list("source_question_id", flat=True))
    position = version.faq.count()
    for question in Question.objects.filter(spec_id=version.guide.spec_id, promoted_to_faq=True).order_by("promoted_at"):
        if question.id not in have:
            FaqEntry.objects.create(version=version, question_text=question.faq_question,
                                    answer_md=question.faq_answer, answer_html=render_markdown(question.faq_answer),
                                    source_question=question, position=position)
            position += 1
    version.status = GuideVersion.Status.PUBLISHED
    version.published_at = timezone.now()
    version.published_by = by
    version.save()
    # Everyone the guide is for: vendors with a contract and vendors with a batch of the spec
    # (the work queue holds their batches back until they acknowledge this version).
    readers = User.objects.filter(
        vendor_membership__vendor__in=vendors_working_on(spec_id=version.guide.spec_id).values("pk"), is_active=True,
    ).distinct()
    notifications_create(
        users=readers, kind=Notification.Kind.GUIDE_PUBLISHED, email=False,
        message=f"Guide “{version.guide.title}” version {version.number} is published: please read and acknowledge it.",
        url=f"/guides/{version.guide_id}/",
    )
    return version


@transaction.atomic
def guide_example_add(*, version: GuideVersion, image: Image, kind: str, caption: str = "",
                      regions: list | None = None) -> GuideExample:
    """Attach a good or bad example image (with its regions) to a draft version."""
    version = GuideVersion.objects.select_related("guide").get(pk=version.pk)
    _require_draft(version)
    if kind not in GuideExample.Kind.values:
        raise ValidationError({"kind": f"Use one of {', '.join(GuideExample.Kind.values)}."})
    if image.spec_id != version.guide.spec_id:
        raise ValidationError({"image": "The image belongs to another spec."})
    # Re-read: the caller's copy may predate a takedown, and a taken-down image's files answer 410,
    # so the example would show annotators a broken picture.
    if Image.objects.filter(pk=image.pk, taken_down_at__isnull=False).exists():
        raise ValidationError({"image": "This image was taken down; pick another example."})
    # None is "no regions"; any other non-list ({} or 0 included) is refused by validate_quads.
    quads = imaging.validate_quads([] if regions is None else regions, width=image.width, height=image.height,
                                   field="regions")
    position = (version.examples.aggregate(p=Max("position"))["p"] or 0) + 1
    return GuideExample.objects.create(version=version, image=image, kind=kind,
                                       caption=_check_text("caption", caption, limit=2000),
                                       regions=quads, position=position)


@transaction.atomic
def guide_example_remove(*, example: GuideExample) -> None:
    """Take an example out of a draft version."""
    _require_draft(GuideVersion.objects.get(pk=example.version_id))
    example.delete()


@transaction.atomic
def guide_acknowledge(*, version: GuideVersion, user: User) -> GuideAcknowledgement:
    """Record that `user` has read `version`. Only the current published version can
    be acknowledged (reading an old one does not clear the gate); repeating is harmless."""
    version = GuideVersion.objects.get(pk=version.pk)  # the caller's copy may predate publishing
    if version.status != GuideVersion.Status.PUBLISHED:
        raise ValidationError({"version": "Only a published version can be acknowledged."})
    latest = (GuideVersion.objects.filter(guide_id=version.guide_id, status=GuideVersion.Status.PUBLISHED)
              .order_by("-number").values_list("number", flat=True).first())
    if latest != version.number:
        raise ValidationError({"version": f"Version {version.number} has been replaced by version {latest}; "
                                          "acknowledge the current one."})
    ack, _ = GuideAcknowledgement.objects.get_or_create(version=version, user=user)
    return ack


# ---------------------------------------------------------- questions & answers


@transaction.atomic
def question_ask(
    *,
    asked_by: User,
    spec: DatasetSpec,
    title: str,
    body: str,
    guide_version: GuideVersion | None = None,
    image: Image | None = None,
    region: list | None = None,
    task_ref: int | None = None,
) -> Question:
    """A vendor member asks the curators about `spec` (optionally a guide version,
    an image and a region of it). Curators are notified in the app and by email."""
    vendor = vendor_of(asked_by)
    if vendor is None:
        raise ValidationError({"asked_by": "Only members of a vendor ask questions; curators answer them."})
    title = _check_text("title", title, required=True, limit=200)
    body = _check_text("body", body, required=True, limit=20_000)
    if guide_version is not None and guide_version.guide.spec_id != spec.id:
        raise ValidationError({"guide_version": "That guide version belongs to another spec."})
    if task_ref is not None and not is_row_id(task_ref):
        raise ValidationError({"task_ref": "Give the id of a labeling task (a positive integer)."})
    # The task must be one of the asker's vendor in this spec: the curator reads the question
    # as being about that task, so another vendor's (or a made-up) id must not ride along.
    if task_ref is not None and not Task.objects.filter(pk=task_ref, batch__vendor=vendor,
                                                        batch__spec_id=spec.id).exists():
        raise ValidationError({"task_ref": f"Your vendor has no task {task_ref} in {spec.name}."})
    if region is not None and image is None:
        raise ValidationError({"region": "A region needs the image it is drawn on."})
    if image is not None and image.spec_id != spec.id:
        raise ValidationError({"image": "The image belongs to another spec."})
    quad = imaging.validate_quad(region, width=image.width, height=image.height) if region is not None else None
    question = Question.objects.create(
        spec=spec, guide_version=guide_version, vendor=vendor, asked_by=asked_by, title=title, body=body,
        body_html=render_markdown(body), image=image, region=quad, task_ref=task_ref,
    )
    curators = active_curators()
    notifications_create(
        users=curators, kind=Notification.Kind.QUESTION_ASKED, question=question,
        message=f"{vendor.name}: new question on {spec.name}: {title}", url=f"/questions/{question.id}/",
    )
    return question


@transaction.atomic
def question_answer(*, question: Question, author: User, body: str, close: bool = False) -> Answer:
    """A curator answers; the question becomes answered (or closed) and the asker is told."""
    if not roles.is_curator(author):
        raise ValidationError({"author": "Only curators answer questions."})
    body = _check_text("body", body, required=True, limit=20_000)
    question = Question.objects.select_for_update().get(pk=question.pk)
    if question.status == Question.Status.CLOSED:
        raise ValidationError({"status": "The question is closed; reopen it to answer."})
    answer = Answer.objects.create(question=question, author=author, body=body, body_html=render_markdown(body))
    question.status = Question.Status.CLOSED if close else Question.Status.ANSWERED
    question.save(update_fields=["status", "updated_at"])
    notifications_create(
        users=[question.asked_by], kind=Notification.Kind.QUESTION_ANSWERED, question=question,
        message=f"Your question “{question.title}” has an answer.", url=f"/questions/{question.id}/",
    )
    return answer


@transaction.atomic
def question_close(*, question: Question, by: User) -> Question:
    """Close a question: curators any, vendor members their own vendor's."""
    question = Question.objects.select_for_update().get(pk=question.pk)
    if question.status == Question.Status.CLOSED:
        return question
    question.status = Question.Status.CLOSED
    question.save(update_fields=["status", "updated_at"])
    if by.pk != question.asked_by_id:
        notifications_create(
            users=[question.asked_by], kind=Notification.Kind.QUESTION_CLOSED, question=question, email=False,
            message=f"Your question “{question.title}” was closed.", url=f"/questions/{question.id}/",
        )
    return question


@transaction.atomic
def question_reopen(*, question: Question, by: User) -> Question:
    """Reopen a closed question (a follow-up is needed)."""
    question = Question.objects.select_for_update().get(pk=question.pk)
    if question.status != Question.Status.CLOSED:
        raise ValidationError({"status": "Only a closed question can be reopened."})
    question.status = Question.Status.ANSWERED if question.answers.exists() else Question.Status.OPEN
    question.save(update_fields=["status", "updated_at"])
    return question


@transaction.atomic
def question_promote_to_faq(*, question: Question, by: User, faq_question: str = "",
                            faq_answer: str = "") -> Question:
    """Put an answered question into the FAQ of the spec's next guide version.

    The wording defaults to the question's title and body and the latest answer.
    It joins the open draft at once if there is one, otherwise the next version
    created; published versions are never changed.
    """
    if not roles.is_curator(by):
        raise ValidationError({"by": "Only curators edit the FAQ."})
    question = Question.objects.select_for_update().get(pk=question.pk)
    last = question.answers.order_by("-created_at", "-id").first()
    if last is None:
        raise ValidationError({"answer": "Answer the question before promoting it to the FAQ."})
    question.faq_question = _check_text("faq_question", faq_question or f"{question.title}\n\n{question.body}",
                                        limit=20_000)
    question.faq_answer = _check_text("faq_answer", faq_answer or last.body, required=True, limit=20_000)
    question.promoted_to_faq = True
    question.promoted_at = question.promoted_at or timezone.now()
    question.save()
    # Locked, and re-checked as a draft once a publish holding it commits: never an entry in a
    # version published meanwhile (guide_version_publish adds promoted answers itself).
    draft = (GuideVersion.objects.select_for_update(of=("self",))
             .filter(guide__spec_id=question.spec_id, status=GuideVersion.Status.DRAFT).first())
    if draft is not None:
        entry = draft.faq.filter(source_question=question).first()
        if entry is None:
            FaqEntry.objects.create(version=draft, question_text=question.faq_question, answer_md=question.faq_answer,
                                    answer_html=render_markdown(question.faq_answer), source_question=question,
                                    position=draft.faq.count())
        else:
            entry.question_text, entry.answer_md = question.faq_question, question.faq_answer
            entry.answer_html = render_markdown(question.faq_answer)
            entry.save()
    return question


@transaction.atomic
def question_demote_from_faq(*, question: Question, by: User) -> Question:
    """Take a promoted answer back out of the FAQ: out of the open draft at once and out of
    every version created from now on. Published versions keep the FAQ they were published
    with (they never change). Promoting it again brings it back."""
    if not roles.is_curator(by):
        raise ValidationError({"by": "Only curators edit the FAQ."})
    question = Question.objects.select_for_update().get(pk=question.pk)
    if not question.promoted_to_faq:
        raise ValidationError({"promoted_to_faq": "This question is not in the FAQ."})
    question.promoted_to_faq = False
    question.promoted_at = None
    question.save(update_fields=["promoted_to_faq", "promoted_at", "updated_at"])
    FaqEntry.objects.filter(version__guide__spec_id=question.spec_id, version__status=GuideVersion.Status.DRAFT,
                            source_question=question).delete()
    return question


# ------------------------------------------------------------- notifications


def notifications_create(*, users, kind: str, message: str, url: str = "", question: Question | None = None,
                         email: bool = True) -> list[Notification]:
    """Notify `users` in the app; when `email`, mail them once the transaction commits.

    A deactivated account is never mailed (its address may have been handed on); it
    still gets the in-app notification, to read should it be reactivated."""
    from .tasks import send_notification_email

    created = Notification.objects.bulk_create([
        Notification(user=u, kind=kind, message=message[:300], url=url, question=question,
                     email_wanted=email and bool(u.email) and u.is_active)
        for u in users
    ])
    # bulk_create returns primary keys on PostgreSQL and SQLite >= 3.35.
    # robust: a broker that is down must not turn the saved question or answer into a 500 (the
    # in-app notification stands; the failure is logged).
    for nid in [n.id for n in created if n.email_wanted]:
        transaction.on_commit(lambda nid=nid: send_notification_email.delay(nid), robust=True)
    return created


@transaction.atomic
def notification_email_send(*, notification: Notification) -> bool:
    """Mail one notification through Django's email backend, at most once.

    The account is re-checked here, not only when the notification was made: one
    deactivated while the task waited in the queue (or between retries) gets no mail."""
    notification = Notification.objects.select_for_update().select_related("user").get(pk=notification.pk)
    user = notification.user
    if notification.emailed_at is not None or not notification.email_wanted or not user.email or not user.is_active:
        return False
    body = notification.message + (f"\n\n{site_url()}{notification.url}" if notification.url else "")
    send_mail(subject=f"[Mathset] {notification.get_kind_display()}", message=body,
              from_email=None, recipient_list=[notification.user.email])
    notification.emailed_at = timezone.now()
    notification.save(update_fields=["emailed_at"])
    return True


@transaction.atomic
def notification_mark_read(*, notification: Notification) -> Notification:
    """Mark one notification read (idempotent)."""
    if notification.read_at is None:
        notification.read_at = timezone.now()
        notification.save(update_fields=["read_at"])
    return notification


@transaction.atomic
def notifications_mark_read_for_question(*, user: User, question: Question) -> int:
    """Mark `user`'s unread notifications about `question` read, as they open it.

    The mail links straight to the question (and people find it in the list too), not
    through /notifications/<id>/: without this the badge went on counting what was read."""
    return Notification.objects.filter(user=user, question=question, read_at__isnull=True).update(
        read_at=timezone.now())


@transaction.atomic
def notifications_mark_all_read(*, user: User) -> int:
    """Mark every unread notification of `user` read; returns how many changed."""
    return Notification.objects.filter(user=user, read_at__isnull=True).update(read_at=timezone.now())


# -------------------------------------------------------------------- contracts


def _check_contract(contract: Contract) -> None:
    if contract.currency != contract.currency.upper() or len(contract.currency) != 3 or not contract.currency.isalpha():
        raise ValidationError({"currency": "Use a three-letter ISO 4217 code, e.g. USD, EUR, KRW."})
    if contract.deadline < contract.starts_on:
        raise ValidationError({"deadline": "The deadline is before the start date."})
    if contract.agreed_quantity < 1:
        raise ValidationError({"agreed_quantity": "Agree on at least one task."})
    contract.full_clean(validate_unique=False, validate_constraints=False)


@transaction.atomic
def contract_create(
    *,
    vendor: Vendor,
    spec: DatasetSpec,
    price_regions: Decimal,
    price_latex: Decimal,
    price_full: Decimal,
    agreed_quantity: int,
    deadline: dt.date,
    starts_on: dt.date | None = None,
    currency: str = "USD",
    reference: str = "",
    notes: str = "",
    created_by: User | None = None,
) -> Contract:
    """Agree prices per task kind, a quantity and a deadline with `vendor` for `spec`.
    The vendor's batches of the spec take the contract's prices from then on."""
    if Contract.objects.filter(vendor=vendor, spec=spec).exists():
        raise ValidationError({"spec": f"{vendor.name} already has a contract for {spec.name}; change that one."})
    contract = Contract(
        vendor=vendor, spec=spec, price_regions=price_regions, price_latex=price_latex, price_full=price_full,
        agreed_quantity=agreed_quantity, deadline=deadline, starts_on=starts_on or timezone.localdate(),
        currency=(currency or "").strip(), reference=reference, notes=notes, created_by=created_by,
    )
    _check_contract(contract)
    contract.save()
    _contract_prices_to_batches(contract, by=created_by)
    return contract


def _contract_prices_to_batches(contract: Contract, *, by: User | None = None) -> None:
    """Give the vendor's batches of the spec the contract's price for their kind.

    The batches page, the batch API and the QA statistics price work by the batch; the
    cost report by the contract. Copying the terms into the batches keeps the two the
    same number (the report already re-prices past work when a contract changes). Each
    batch whose price this changes records it in its history, by `by`.
    """
    batches_contract_price(vendor_id=contract.vendor_id, spec_id=contract.spec_id,
                           prices={kind: contract.price_for(kind) for kind in Contract.TaskKind.values},
                           currency=contract.currency, by=by,
                           reason=f"The contract with {contract.vendor.name} for {contract.spec.name} sets the price.")
    spec_stats_refresh_soon(spec_id=contract.spec_id)  # cost per formula in the QA statistics


CONTRACT_CHANGEABLE = {"price_regions", "price_latex", "price_full", "agreed_quantity", "deadline", "starts_on",
                       "currency", "reference", "notes"}


@transaction.atomic
def contract_update(*, contract: Contract, by: User | None = None, **changes) -> Contract:
    """Change the terms of a contract (prices apply to the whole report, past work included,
    and to the vendor's batches of the spec).
    Its vendor and spec are fixed: sent unchanged they are no change, another value is refused.
    `by` is who changes it, as the batches' histories name them."""
    changes = drop_unchanged(contract, changes, ("vendor", "spec"))
    unknown = set(changes) - CONTRACT_CHANGEABLE
    if unknown:
        raise ValidationError({sorted(unknown)[0]: CANNOT_CHANGE})
    contract = Contract.objects.select_for_update().get(pk=contract.pk)
    for name, value in changes.items():
        setattr(contract, name, value)
    _check_contract(contract)
    contract.save()
    if changes.keys() & {"price_regions", "price_latex", "price_full", "currency"}:
        _contract_prices_to_batches(contract, by=by)
    return contract
