"""Curator pages: specs with quota progress, sources and licences, the image
browser, the upload page and import jobs, and the signed file URL external models fetch.
Reads go through the selectors, writes through the services; a service's ValidationError is
shown beside its field."""
from __future__ import annotations

import re

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce
from django.http import Http404, HttpResponseForbidden
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_safe

from common import roles
from common.fields import parse_row_id
from common.http_files import stored_file_response
from common.page_cursor import BadCursor, cursor_before, keyset_page, newest_first_page, page_url
from common.pages import add_service_errors, curator_required, role_required
from common.pagination import cursor_after

from . import forms as f
from . import selectors, services, signed_urls, takedowns
from .filters import ImageFilter
from .models import Category, DatasetSpec, Image, ImportJob, SnapshotItem
from .progress import progress_charts, spec_progress

readers_required = role_required(roles.CURATOR, roles.MODEL_TEAM)

PAGE_SIZE = 48
MAX_PAGE_SIZE = 200
# The image browser links its first pages by offset (bookmarkable, "49–96 of 312"); a page whose
# offset would reach this many rows is linked by cursor instead, so no page link makes the database
# read and drop OFFSET rows (common.page_cursor). A hand-typed `offset` is still obeyed.
OFFSET_LINKS_BELOW = 1000


def _count_subquery(qs: QuerySet, value=None) -> Subquery:
    value = value if value is not None else Count("id")
    return Coalesce(Subquery(qs.order_by().values("spec").annotate(v=value).values("v")[:1],
                             output_field=IntegerField()), 0)


def annotate_spec_counts(specs: QuerySet[DatasetSpec]) -> QuerySet[DatasetSpec]:
    """Categories, total quota and images per spec as SQL subqueries (no row loops,
    and no join fan-out between categories and images)."""
    cats = Category.objects.filter(spec=OuterRef("pk"))
    return specs.annotate(
        categories_count=_count_subquery(cats),
        quota_total=_count_subquery(cats, Sum("target_quota")),
        images_count=_count_subquery(Image.objects.filter(spec=OuterRef("pk"))),
    )


# ------------------------------------------------------------------ specs


@readers_required
def spec_list(request):
    """The curator's dashboard: every spec with its status, use and progress."""
    specs = annotate_spec_counts(selectors.specs_visible_to(request.user)).order_by("status", "-created_at")
    status = request.GET.get("status", "")
    if status in DatasetSpec.Status.values:
        specs = specs.filter(status=status)
    return render(request, "curation/spec_list.html", {
        "specs": specs, "status": status, "statuses": DatasetSpec.Status.choices,
    })


@readers_required
def spec_detail(request, pk: int):
    """One spec: quota progress per kind, model requirements, formats, sources used."""
    spec = get_object_or_404(annotate_spec_counts(selectors.specs_visible_to(request.user)), pk=pk)
    sources = (selectors.sources_visible_to(request.user).filter(images__spec=spec)
               .annotate(images_in_spec=Count("images")).order_by("name"))
    jobs = selectors.import_jobs_visible_to(request.user).filter(spec=spec)[:5]
    formats = dict(f.ANSWER_FORMAT_CHOICES)
    progress = spec_progress(request.user, spec)
    # The bars beside each category show the same counts as the charts: the stored report's (the
    # user's vendor's slice for vendor users), not a second count over every image and task.
    counts = {c["category"]: c for c in progress["by_category"]}
    categories = list(selectors.categories_visible_to(request.user).filter(spec=spec).order_by("position", "id"))
    for c in categories:
        row = counts.get(c.slug, {})
        c.collected, c.labeled, c.accepted = (row.get(m, 0) for m in selectors.PROGRESS_FIELDS)
        c.progress_as_of = progress["computed_at"]
    return render(request, "curation/spec_detail.html", {
        "spec": spec, "categories": categories, "requirements": spec.requirements.all(),
        "answer_formats": [formats.get(a, a) for a in spec.answer_formats], "sources": sources, "jobs": jobs,
        "progress_charts": progress_charts(progress), "progress_computed_at": progress["computed_at"],
    })


class _Rollback(Exception):
    """Undo every service call of a page submit when one of them refused."""


_ITEM = re.compile(r"^Item (\d+): ")


def _requirement_rows(formset) -> list[tuple[int, dict]]:
    return [(i, {"metric": row.cleaned_data["metric"], "threshold": row.cleaned_data["threshold"]})
            for i, row in enumerate(formset.forms) if row.cleaned_data.get("metric")]


def _put_requirement_errors(formset, rows, exc: ValidationError) -> ValidationError | None:
    """Attach "Item n: ..." errors of the service to the row they concern; return the rest."""
    if not hasattr(exc, "error_dict") or "requirements" not in exc.error_dict:
        return exc
    for message in (m for e in exc.error_dict.pop("requirements") for m in e.messages):
        match = _ITEM.match(message)
        if match and int(match.group(1)) < len(rows):
            formset.forms[rows[int(match.group(1))][0]].add_error("metric", message[match.end():])
        else:
            formset.forms[0].add_error(None, message)
    return exc if exc.error_dict else None


def _spec_forms(request, spec: DatasetSpec | None):
    data = request.POST if request.method == "POST" else None
    if spec is None:
        form = f.SpecCreateForm(data, initial={"status": DatasetSpec.Status.DRAFT, "answer_formats": ["quad", "latex"]})
        rows = []
    else:
        form = f.SpecForm(data, initial={name: getattr(spec, name) for name in services.SPEC_FIELDS})
        rows = selectors.with_quota_progress(
            request.user, selectors.categories_visible_to(request.user).filter(spec=spec).order_by("position", "id"))
    reqs = f.RequirementFormSet(data, prefix="req", initial=[
        {"metric": r.metric, "threshold": r.threshold} for r in (spec.requirements.all() if spec else [])
    ])
    cats = f.CategoryRowFormSet(data, prefix="cat", initial=[
        {"id": c.id, "name": c.name, "target_quota": c.target_quota, "description": c.description} for c in rows
    ])
    new = f.NewCategoryFormSet(data, prefix="new")
    # The template shows slug and progress beside each editable row.
    for row_form, category in zip(cats.forms, rows, strict=False):
        row_form.category = category
    return form, reqs, cats, new


def _save_spec(request, spec, form, reqs, cats, new) -> DatasetSpec | None:
    """Run the services of one spec form submit in one transaction; None if one refused."""
    data = dict(form.cleaned_data)
    requirement_rows = _requirement_rows(reqs)
    requirements = [r for _, r in requirement_rows]
    try:
        with transaction.atomic():
            try:
                if spec is None:
                    spec = services.spec_create(created_by=request.user, requirements=requirements, **data)
                else:
                    spec = services.spec_update(spec=spec, requirements=requirements, **data)
            except ValidationError as exc:
                rest = _put_requirement_errors(reqs, requirement_rows, exc)
                if rest is not None:
                    add_service_errors(form, rest)
                raise _Rollback from None
            failed = False
            own = {c.id: c for c in spec.categories.all()}
            for row in cats.forms:
                category = own.get(row.cleaned_data["id"])
                if category is None:
                    row.add_error(None, "This category is not part of the spec.")
                    failed = True
                    continue
                if row.cleaned_data.get("remove"):
                    try:
                        services.category_delete(category=category)
                    except ValidationError as exc:
                        add_service_errors(row, exc, aliases={"category": "remove"})
                        failed = True
                    continue
                try:
                    services.category_update(category=category, name=row.cleaned_data["name"],
                                             description=row.cleaned_data["description"],
                                             target_quota=row.cleaned_data["target_quota"])
                except ValidationError as exc:
                    add_service_errors(row, exc)
                    failed = True
            for row in new.forms:
                if not row.cleaned_data.get("name") and not row.cleaned_data.get("slug"):
                    continue
                try:
                    services.category_create(spec=spec, name=row.cleaned_data.get("name") or "",
                                             slug=row.cleaned_data.get("slug") or "",
                                             description=row.cleaned_data.get("description") or "",
                                             target_quota=row.cleaned_data.get("target_quota") or 0)
                except ValidationError as exc:
                    add_service_errors(row, exc)
                    failed = True
            if failed:
                raise _Rollback
    except _Rollback:
        return None
    return spec


def _spec_edit(request, spec: DatasetSpec | None):
    form, reqs, cats, new = _spec_forms(request, spec)
    status = 200
    if request.method == "POST":
        valid = all([form.is_valid(), reqs.is_valid(), cats.is_valid(), new.is_valid()])
        if valid:
            saved = _save_spec(request, spec, form, reqs, cats, new)
            if saved is not None:
                messages.success(request, f"Spec {saved.name} saved.")
                return redirect("curation:spec-detail", pk=saved.pk)
        status = 400
    return render(request, "curation/spec_form.html", {
        "spec": spec, "form": form, "reqs": reqs, "cats": cats, "new": new,
    }, status=status)


@curator_required
def spec_create(request):
    return _spec_edit(request, None)


@curator_required
def spec_update(request, pk: int):
    spec = get_object_or_404(selectors.specs_visible_to(request.user), pk=pk)
    return _spec_edit(request, spec)


# ---------------------------------------------------------------- sources


@curator_required
def source_list(request):
    sources = (selectors.sources_visible_to(request.user)
               .annotate(images_count=Count("images")).order_by("name"))
    return render(request, "curation/source_list.html", {"sources": sources})


def _source_edit(request, source=None):
    licences = selectors.licences_visible_to(request.user)
    initial = {}
    if source is not None:
        initial = {name: getattr(source, name) for name in services.SOURCE_FIELDS}
    form = f.SourceForm(request.POST or None, initial=initial, licences=licences)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                if source is None:
                    source = services.source_create(created_by=request.user, **form.cleaned_data)
                else:
                    source = services.source_update(source=source, **form.cleaned_data)
            except ValidationError as exc:
                add_service_errors(form, exc)
            else:
                messages.success(request, f"Source {source.name} saved.")
                return redirect("curation:source-list")
        status = 400
    return render(request, "curation/source_form.html", {"form": form, "source": source, "licences": licences},
                  status=status)


@curator_required
def source_create(request):
    return _source_edit(request)


@curator_required
def source_update(request, pk: int):
    source = get_object_or_404(selectors.sources_visible_to(request.user), pk=pk)
    return _source_edit(request, source)


@curator_required
def licence_list(request):
    licences = selectors.licences_visible_to(request.user).annotate(sources_count=Count("sources"))
    return render(request, "curation/licence_list.html", {"licences": licences})


# ----------------------------------------------------------------- images


def _int_param(request, name: str, default: int, lo: int, hi: int) -> int:
    try:
        value = int(request.GET.get(name, default))
    except (TypeError, ValueError):
        return default
    return max(lo, min(hi, value))


@readers_required
def image_list(request):
    """Thumbnail grid filtered with the API's ImageFilter, newest first.

    The first pages go by limit/offset ("49–96 of 312", bookmarks keep working); past
    OFFSET_LINKS_BELOW rows the Next and Previous links carry a `cursor` (a WHERE on the id, the
    API's keyset paging), so a deep page costs what the first one does. `offset` is still
    accepted at any depth; a `cursor`, when given, wins over it.
    """
    filterset = ImageFilter(request.GET or None, queryset=selectors.images_visible_to(request.user), request=request)
    # A filter that cannot be read is said above the grid, and nothing is listed: django-filter
    # would drop it and list every image, as if it had been applied (the API answers 400).
    qs = (filterset.qs if not filterset.is_bound or filterset.is_valid() else filterset.queryset.none()).order_by("-id")
    limit = _int_param(request, "limit", PAGE_SIZE, 1, MAX_PAGE_SIZE)
    offset = _int_param(request, "offset", 0, 0, 10**9)
    count = qs.count()
    cursor = request.GET.get("cursor") or None
    cursor_error = ""
    page = None
    if cursor:
        try:
            page = keyset_page(qs, cursor=cursor, limit=limit)
        except BadCursor as exc:
            cursor_error = exc.message
    if cursor_error:
        images = []
    elif page is not None:
        images = page.rows
        if page.is_first:  # walked back to the top: shown (and linked) as the first offset page
            page, offset = None, 0
    else:
        if count and offset >= count:
            # past the end (a bookmarked page of a list that has since shrunk): its last page, not an
            # empty grid headed "1000001–1000000 of 5"
            offset = (count - 1) // limit * limit
        images = list(qs[offset:offset + limit])

    specs = list(selectors.specs_visible_to(request.user).order_by("name").only("id", "name"))
    spec_id = filterset.form.cleaned_data.get("spec") if filterset.is_bound and filterset.is_valid() else None
    categories = Category.objects.filter(spec__in=selectors.specs_visible_to(request.user).values("id"))
    # The filter takes a category's slug or id; the menu offers ids once a spec is chosen and slugs
    # before. The option to mark as chosen is the one that means the category filtered on, whichever
    # way the address names it (the spec page links by id; a slug stays put when a spec is chosen).
    wanted = request.GET.get("category", "")
    if spec_id:
        spec_categories = list(categories.filter(spec_id=spec_id).order_by("position", "id"))
        category_options = [(str(c.id), c.name) for c in spec_categories]
        chosen_category = next((str(c.id) for c in spec_categories if wanted in (str(c.id), c.slug)), "")
    else:
        category_options = list(categories.order_by("slug").values_list("slug", "name").distinct())
        wanted_id = parse_row_id(wanted)
        chosen_category = (categories.filter(pk=wanted_id).values_list("slug", flat=True).first() or ""
                           if wanted_id is not None else wanted)
    sources = list(selectors.sources_visible_to(request.user).order_by("name").values("id", "name"))
    licences = list(selectors.licences_visible_to(request.user).filter(sources__isnull=False).distinct()
                    .order_by("code").values_list("code", "name"))

    def offset_url(new_offset: int) -> str:
        return page_url(request, offset=new_offset, limit=limit, cursor=None)

    def cursor_url(token: str) -> str:
        return page_url(request, cursor=token, limit=limit, offset=None)

    if page is not None:  # a cursor page: where it lies in the list is not known, nor needed
        prev_url = cursor_url(page.previous_cursor) if page.previous_cursor else offset_url(0)
        next_url = cursor_url(page.next_cursor) if page.next_cursor else ""
    else:
        prev_url = offset_url(max(0, offset - limit)) if offset > 0 else ""
        next_url = ""
        if images and offset + limit < count:
            next_url = (offset_url(offset + limit) if offset + limit < OFFSET_LINKS_BELOW
                        else cursor_url(cursor_after(qs, images[-1])))
        if images and offset - limit >= OFFSET_LINKS_BELOW:  # the page before is deep too
            prev_url = cursor_url(cursor_before(qs, images[0]))

    return render(request, "curation/image_list.html", {
        "images": images, "count": count, "limit": limit, "offset": offset, "cursor_page": page is not None,
        "first": offset + 1 if images and page is None else 0, "last": offset + len(images),
        "prev_url": prev_url, "next_url": next_url,
        "cursor_error": cursor_error, "first_url": page_url(request, cursor=None, offset=None),
        "filterset": filterset, "params": request.GET, "specs": specs, "category_options": category_options,
        "chosen_category": chosen_category,
        "sources": sources, "licences": licences,
    }, status=400 if cursor_error else 200)


@readers_required
def image_detail(request, pk: int):
    """One image: the picture, metadata, provenance and licence, kinds, look-alikes."""
    image = get_object_or_404(selectors.images_visible_to(request.user), pk=pk)
    categories = list(selectors.categories_visible_to(request.user).filter(spec_id=image.spec_id)
                      .order_by("position", "id"))
    if request.method == "POST":
        if not roles.is_curator(request.user):
            raise PermissionDenied("Only curators change images.")
        chosen = request.POST.getlist("categories")
        try:
            services.image_update(image=image, categories=chosen)
        except ValidationError as exc:
            messages.error(request, "; ".join(exc.messages))
        else:
            messages.success(request, "Categories saved.")
            return redirect("curation:image-detail", pk=image.pk)
    current = {c.id for c in image.categories.all()}
    near = selectors.images_near_duplicates(user=request.user, image=image)
    return render(request, "curation/image_detail.html", {
        "image": image, "categories": categories, "current": current, "near": near,
        "show_truth": roles.is_curator(request.user),
        "takedown_form": f.TakedownForm() if roles.is_curator(request.user) and not image.taken_down_at else None,
        "gone": takedowns.gone_message(image) if image.taken_down_at else "",
    })


@curator_required
def image_takedown(request, pk: int):
    """Take an image down (copyright takedown or personal-data erasure): the form, then the service."""
    image = get_object_or_404(selectors.images_visible_to(request.user), pk=pk)
    form = f.TakedownForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            services.image_takedown(image=image, kind=form.cleaned_data["kind"], reason=form.cleaned_data["reason"],
                                    requested_by=form.cleaned_data["requested_by"], actor=request.user)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, "The image was taken down: its files are erased, its snapshot items amended "
                                      "and export zips holding it withdrawn.")
            return redirect("curation:takedown-list")
    status = 400 if request.method == "POST" else 200
    return render(request, "curation/takedown_form.html", {"image": image, "form": form}, status=status)


def _newest_first_page(request, rows: QuerySet, template: str, context: dict):
    """Render a newest-first list a page at a time (`?cursor=`, `?limit=`), with its count."""
    page, status = newest_first_page(request, rows)
    return render(request, template, {**context, **page}, status=status)


@curator_required
def takedown_list(request):
    """Every takedown recorded, newest first (curators), a page at a time."""
    rows = selectors.takedowns_visible_to(request.user).select_related("spec", "source")
    return _newest_first_page(request, rows, "curation/takedown_list.html", {})


# ------------------------------------------------------- upload, imports


@curator_required
def upload(request):
    """Many files at once through the bulk API (JavaScript), or a zip as an import job."""
    specs = list(selectors.specs_visible_to(request.user).exclude(status=DatasetSpec.Status.CLOSED).order_by("name"))
    cats: dict[str, list[dict]] = {str(s.id): [] for s in specs}
    for c in Category.objects.filter(spec__in=[s.id for s in specs]).order_by("position", "id"):
        cats[str(c.spec_id)].append({"id": c.id, "slug": c.slug, "name": c.name})
    sources = list(selectors.sources_visible_to(request.user).order_by("name"))
    spec_info = {str(s.id): {"commercial": s.is_commercial, "name": s.name} for s in specs}
    source_info = {str(s.id): {"commercial": s.licence.allows_commercial, "licence": s.licence.name} for s in sources}
    initial_spec = request.GET.get("spec", "")
    return render(request, "curation/upload.html", {
        "specs": specs, "sources": sources, "initial_spec": initial_spec,
        "upload_config": {
            "categories": cats, "specs": spec_info, "sources": source_info,
            "bulkUrl": reverse("image-bulk"), "importUrl": reverse("import-job-list"),
            "imageUrl": reverse("curation:image-detail", args=[0]).replace("/0/", "/{id}/"),
            "chunkSize": min(20, settings.MATHSET_BULK_MAX_FILES),
            "maxBytes": settings.MATHSET_MAX_UPLOAD_BYTES,
            "chunkBytes": settings.MATHSET_BULK_MAX_BYTES,
            "maxArchiveBytes": settings.MATHSET_MAX_ARCHIVE_BYTES,
        },
        "jobs": selectors.import_jobs_visible_to(request.user)[:10],
    })


@curator_required
def import_job_list(request):
    """Every import job, newest first, a page at a time; by spec and status on request."""
    jobs = selectors.import_jobs_visible_to(request.user)
    spec = parse_row_id(request.GET.get("spec", ""))
    if spec is not None:
        jobs = jobs.filter(spec_id=spec)
    status = request.GET.get("status", "")
    if status in ImportJob.Status.values:
        jobs = jobs.filter(status=status)
    return _newest_first_page(request, jobs, "curation/import_job_list.html", {
        "statuses": ImportJob.Status.choices, "status": status, "spec_id": spec})




@require_safe  # GET and HEAD
def signed_file(request, token: str):
    """An image file for an external model, opened by a signed URL alone (no login).

    See :mod:`curation.signed_urls`: 403 for an expired, tampered or foreign token, 404 when
    the token is good but its image, snapshot item or stored file is gone, 410 when the image
    was taken down (:func:`curation.services.image_takedown`).
    """
    try:
        target = signed_urls.read_token(token)
    except signed_urls.InvalidSignedUrl as exc:
        return HttpResponseForbidden(f"Invalid signed URL ({exc.reason}).", content_type="text/plain")
    if target.kind == signed_urls.IMAGE:
        image = Image.objects.filter(pk=target.pk).first()
        name, digest = (image.file, image.sha256) if image else (None, None)
    else:
        item = SnapshotItem.objects.select_related("image").filter(pk=target.pk).first()
        image, name, digest = (item.image, item.file, item.sha256) if item else (None, None, None)
    if image is not None and image.taken_down_at is not None:
        return takedowns.gone_response(image)  # 410: erased on request, whatever the token says
    if not name:
        raise Http404("No such file.")
    # Whoever holds the URL may read the file until it expires; no shared cache should keep it longer.
    # Ranges and validators as every file endpoint (common.http_files): an external model may resume.
    return stored_file_response(name, request=request, cache_control="private, no-store", etag=f"{digest}.file",
                                last_modified=image.created_at if image else None)
