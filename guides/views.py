"""Pages of guides, questions, notifications and contracts.

Same rules as the API: reads through selectors (a foreign object is a 404),
writes through services, whose ValidationErrors land on the form field they name.
"""
from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from common import roles
from common.downloads import csv_response
from common.fields import parse_row_id, unstorable_char
from common.page_cursor import keyset_page_context, limit_param, newest_first_page, page_url
from curation.selectors import images_visible_to

from . import costs, rendering, selectors, services
from .forms import (
    AnswerForm,
    ContractForm,
    ExampleForm,
    GuideCreateForm,
    GuideVersionForm,
    PromoteForm,
    QuestionForm,
)


def _curator_only(request) -> None:
    if not roles.is_curator(request.user):
        raise PermissionDenied("Only curators can do this.")


def _errors_to_form(form, exc: ValidationError) -> None:
    """Put a service's ValidationError on the field it names (or the whole form)."""
    if hasattr(exc, "error_dict"):
        for field, errors in exc.error_dict.items():
            form.add_error(field if field in form.fields else None, [m for e in errors for m in e.messages])
    else:
        form.add_error(None, exc.messages)


# ----------------------------------------------------------------- guides


@login_required
def guide_list(request):
    guides = selectors.guides_with_ack_state(request.user).order_by("spec__name")
    return render(request, "guides/guide_list.html", {"guides": guides})


@login_required
def guide_create(request):
    _curator_only(request)
    form = GuideCreateForm(request.POST or None, specs=selectors.guide_specs_visible_to(request.user)
                           .filter(guide__isnull=True))
    if request.method == "POST" and form.is_valid():
        try:
            guide = services.guide_create(spec=form.cleaned_data["spec"], title=form.cleaned_data["title"],
                                          created_by=request.user, body_md=form.cleaned_data["body_md"],
                                          change_notes="First version")
            version = guide.versions.get()
        except ValidationError as exc:
            _errors_to_form(form, exc)
        else:
            return redirect("guides:version-edit", pk=version.pk)
    return render(request, "guides/guide_form.html", {"form": form})


@login_required
def guide_for_spec(request, spec_id: int):
    """The guide of a spec (the labeling page links here), or 404 when it has none."""
    guide = get_object_or_404(selectors.guides_visible_to(request.user), spec_id=spec_id)
    return redirect("guides:detail", pk=guide.pk)


@login_required
def guide_detail(request, pk: int):
    guide = get_object_or_404(selectors.guides_visible_to(request.user), pk=pk)
    versions = selectors.guide_versions_visible_to(request.user).filter(guide=guide).order_by("-number")
    wanted = parse_row_id(request.GET.get("version"))
    version = (get_object_or_404(versions, pk=wanted) if wanted is not None
               else selectors.guide_current_version(guide=guide))
    if version is None and roles.is_curator(request.user):
        version = versions.first()
    must_ack = selectors.guide_acknowledgement_required(user=request.user, spec=guide.spec)
    if roles.is_curator(request.user):
        must_ack = None  # curators write guides; they take no tasks
    ctx = {
        "guide": guide, "version": version, "versions": versions, "must_ack": must_ack,
        "examples": version.examples.select_related("image") if version else [],
        "faq": version.faq.all() if version else [],
        "acknowledged": bool(version and version.acknowledgements.filter(user=request.user).exists()),
        "draft": selectors.guide_draft_version(guide=guide) if roles.is_curator(request.user) else None,
    }
    return render(request, "guides/guide_detail.html", ctx)


@login_required
@require_POST
def version_acknowledge(request, pk: int):
    version = get_object_or_404(selectors.guide_versions_visible_to(request.user), pk=pk)
    try:
        services.guide_acknowledge(version=version, user=request.user)
        messages.success(request, f"You acknowledged version {version.number} of {version.guide.title}.")
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    # `next` comes from the form: only a path on this site, never another host or scheme.
    target = request.POST.get("next") or ""
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                           require_https=request.is_secure()):
        target = f"/guides/{version.guide_id}/"
    return redirect(target)


@login_required
@require_POST
def version_create(request, pk: int):
    _curator_only(request)
    guide = get_object_or_404(selectors.guides_visible_to(request.user), pk=pk)
    try:
        version = services.guide_version_create(guide=guide, created_by=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("guides:detail", pk=guide.pk)
    return redirect("guides:version-edit", pk=version.pk)


@login_required
def version_edit(request, pk: int):
    _curator_only(request)
    version = get_object_or_404(selectors.guide_versions_visible_to(request.user), pk=pk)
    if version.is_published:
        messages.error(request, f"Version {version.number} is published and cannot change; create a new version.")
        return redirect(f"/guides/{version.guide_id}/?version={version.pk}")
    form = GuideVersionForm(request.POST or None, initial={"body_md": version.body_md,
                                                           "change_notes": version.change_notes})
    if request.method == "POST" and "save" in request.POST and form.is_valid():
        try:
            services.guide_version_update(version=version, **form.cleaned_data)
        except ValidationError as exc:
            _errors_to_form(form, exc)
        else:
            messages.success(request, "Draft saved.")
            return redirect("guides:version-edit", pk=version.pk)
    return _version_edit_page(request, version, form=form)


# The example picker of the guide editor: images of the spec, newest first, a page at a time
# (`?cursor=`, `?limit=`), narrowed by file name (`?q=`); any of them may be picked by its id.
PICKER_PAGE_SIZE = 40
MAX_PICKER_PAGE_SIZE = 200


def _example_images(user, version):
    """The images `user` may pick as examples of `version`: those of its spec they may see."""
    return images_visible_to(user).filter(spec_id=version.guide.spec_id)


def _example_picker(request, version) -> dict:
    """The picker's page of images (with its links, back to the edit page whatever URL the page
    answers), or its `cursor_error`."""
    images = _example_images(request.user, version).select_related(None).prefetch_related(None).only(
        "id", "width", "height", "original_filename", "taken_down_at")
    q = request.GET.get("q", "").strip()[:200]
    if q and unstorable_char(q) is None:
        images = images.filter(original_filename__icontains=q)
    elif q:
        images = images.none()
    limit = limit_param(request, default=PICKER_PAGE_SIZE, maximum=MAX_PICKER_PAGE_SIZE)
    edit_path = reverse("guides:version-edit", args=[version.pk])
    page = keyset_page_context(request, images.order_by("-id"), limit=limit, base_path=edit_path)
    # "Use" fills the image id in and stays on this page of the picker
    here = page_url(request, base_path=edit_path, image=None)
    return {"picker": page, "picker_q": q, "picker_limit": limit, "picker_page_sizes": (20, 40, 100, 200),
            "picker_use_url": here + ("&" if "?" in here else "?") + "image="}


def _version_edit_page(request, version, *, form=None, example_form=None, status: int = 200):
    """The draft's edit page; a bound form (with its errors) keeps what the curator typed. A
    picker link that cannot be read is a 400 with the way back to the picker's first page."""
    if form is None:
        form = GuideVersionForm(initial={"body_md": version.body_md, "change_notes": version.change_notes})
    if example_form is None:
        # the picker's "Use" links fill the image id in (`?image=`)
        picked = parse_row_id(request.GET.get("image", ""))
        example_form = ExampleForm(prefix="ex", initial={"image": picked} if picked is not None else None)
    picker = _example_picker(request, version)
    ctx = {"version": version, "form": form, "example_form": example_form,
           "examples": version.examples.select_related("image"), "faq": version.faq.all(), **picker}
    if picker["picker"]["cursor_error"] and status == 200:
        status = 400
    return render(request, "guides/version_edit.html", ctx, status=status)


@login_required
@require_POST
def version_example_add(request, pk: int):
    _curator_only(request)
    version = get_object_or_404(selectors.guide_versions_visible_to(request.user), pk=pk)
    if version.is_published:
        messages.error(request, f"Version {version.number} is published and cannot change; create a new version.")
        return redirect(f"/guides/{version.guide_id}/?version={version.pk}")
    form = ExampleForm(request.POST, prefix="ex")
    if form.is_valid():
        # any image of the spec the curator may see, however old (the picker pages through them)
        image = _example_images(request.user, version).filter(pk=form.cleaned_data["image"]).first()
        try:
            if image is None:
                raise ValidationError({"image": "No such image in this spec."})
            services.guide_example_add(version=version, image=image, kind=form.cleaned_data["kind"],
                                       caption=form.cleaned_data["caption"], regions=form.cleaned_data["regions"] or [])
        except ValidationError as exc:
            _errors_to_form(form, exc)
        else:
            messages.success(request, "Example added.")
            return redirect("guides:version-edit", pk=version.pk)
    # The edit page again with the example form as typed and its errors beside the fields,
    # instead of a redirect that emptied it.
    return _version_edit_page(request, version, example_form=form, status=400)


@login_required
@require_POST
def version_publish(request, pk: int):
    _curator_only(request)
    version = get_object_or_404(selectors.guide_versions_visible_to(request.user), pk=pk)
    try:
        services.guide_version_publish(version=version, by=request.user)
        messages.success(request, f"Version {version.number} is published.")
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("guides:version-edit", pk=version.pk)
    return redirect("guides:detail", pk=version.guide_id)


@login_required
def guide_diff(request, pk: int):
    guide = get_object_or_404(selectors.guides_visible_to(request.user), pk=pk)
    versions = selectors.guide_versions_visible_to(request.user).filter(guide=guide).order_by("-number")
    a, b = parse_row_id(request.GET.get("a", "")), parse_row_id(request.GET.get("b", ""))
    old = versions.filter(pk=a).first() if a is not None else None
    new = versions.filter(pk=b).first() if b is not None else None
    if old is None or new is None:
        listed = list(versions[:2])
        if len(listed) < 2:
            raise Http404("This guide has only one version.")
        new, old = listed
    old, new = sorted([old, new], key=lambda v: v.number)
    table = rendering.diff_html(old.body_md, new.body_md, old_label=f"version {old.number}",
                                new_label=f"version {new.number}")
    return render(request, "guides/diff.html", {"guide": guide, "old": old, "new": new, "table": table,
                                                "versions": versions})


@login_required
def version_readers(request, pk: int):
    version = get_object_or_404(selectors.guide_versions_visible_to(request.user), pk=pk)
    if not (roles.is_curator(request.user) or roles.has_role(request.user, roles.VENDOR_MANAGER)):
        raise PermissionDenied("Only curators and vendor managers see who has read a guide.")
    rows = selectors.version_readers(user=request.user, version=version)
    return render(request, "guides/readers.html", {"version": version, "rows": rows,
                                                   "read": sum(1 for r in rows if r["acknowledged_at"])})


# ---------------------------------------------------------- questions & answers


QUESTIONS_PER_PAGE = 50


@login_required
def question_list(request):
    from .filters import QuestionFilter

    qs = selectors.questions_visible_to(request.user)
    filterset = QuestionFilter(request.GET or None, queryset=qs, request=request)
    # Every question, a page at a time (it used to stop silently at the newest 200).
    page = Paginator(filterset.qs, QUESTIONS_PER_PAGE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, "guides/question_list.html", {"filter": filterset, "questions": page.object_list,
                                                         "page": page, "query": query.urlencode()})


@login_required
def question_create(request):
    specs = selectors.guide_specs_visible_to(request.user)
    initial = {k: request.GET.get(k) for k in ("spec", "guide_version", "image") if request.GET.get(k)}
    task = request.GET.get("task", "")  # the labeling page's "Ask a question" names the task on screen
    if task.isdigit():
        initial["task_ref"] = task
    form = QuestionForm(request.POST or None, specs=specs, initial=initial)
    image = None
    image_id = request.POST.get("image") or request.GET.get("image")
    spec_id = request.POST.get("spec") or request.GET.get("spec")
    example = None
    if image_id and image_id.isdigit() and spec_id and spec_id.isdigit():
        spec = specs.filter(pk=spec_id).first()
        if spec is not None:
            image = selectors.question_images_for(user=request.user, spec=spec).filter(pk=image_id).first()
            example = selectors.guide_examples_visible_to(request.user).filter(image_id=image_id).first()
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            if data["image"] and image is None:
                raise ValidationError({"image": "You cannot point at that image."})
            version = None
            if data["guide_version"]:
                version = selectors.guide_versions_visible_to(request.user).filter(pk=data["guide_version"]).first()
                if version is None:
                    raise ValidationError({"guide_version": "No such guide version."})
            question = services.question_ask(asked_by=request.user, spec=data["spec"], title=data["title"],
                                             body=data["body"], guide_version=version, image=image,
                                             region=data["region"], task_ref=data["task_ref"])
        except ValidationError as exc:
            _errors_to_form(form, exc)
        else:
            messages.success(request, "Your question was sent to the curators.")
            return redirect("guides:question", pk=question.pk)
    # The picture to point at a region on: a guide example's, or the image of the task the
    # labeling page asked from (one of the asker's own tasks: question_images_for).
    picture = None
    if example is not None:
        picture = {"url": f"/api/v1/guide-examples/{example.pk}/image/", "width": example.image.width,
                   "height": example.image.height}
    elif image is not None:
        picture = {"url": f"/api/v1/images/{image.pk}/file/", "width": image.width, "height": image.height}
    return render(request, "guides/question_form.html", {"form": form, "image": image, "picture": picture})


@login_required
def question_detail(request, pk: int):
    question = get_object_or_404(selectors.questions_visible_to(request.user), pk=pk)
    answer_form, promote_form = AnswerForm(prefix="a"), PromoteForm(prefix="p", initial={
        "faq_question": question.faq_question or question.title,
        "faq_answer": question.faq_answer or (question.answers.all()[0].body if question.answers.all() else "")})
    if request.method == "POST":
        op = request.POST.get("op")
        try:
            if op == "answer":
                _curator_only(request)
                answer_form = AnswerForm(request.POST, prefix="a")
                if answer_form.is_valid():
                    services.question_answer(question=question, author=request.user, **answer_form.cleaned_data)
                    return redirect("guides:question", pk=pk)
            elif op == "promote":
                _curator_only(request)
                promote_form = PromoteForm(request.POST, prefix="p")
                if promote_form.is_valid():
                    services.question_promote_to_faq(question=question, by=request.user, **promote_form.cleaned_data)
                    messages.success(request, "The answer will be in the FAQ of the next guide version.")
                    return redirect("guides:question", pk=pk)
            elif op == "demote":
                _curator_only(request)
                services.question_demote_from_faq(question=question, by=request.user)
                messages.success(request, "The answer is out of the FAQ from the next guide version on.")
                return redirect("guides:question", pk=pk)
            elif op == "close":
                services.question_close(question=question, by=request.user)
                return redirect("guides:question", pk=pk)
            elif op == "reopen":
                services.question_reopen(question=question, by=request.user)
                return redirect("guides:question", pk=pk)
        except ValidationError as exc:
            if op in ("answer", "promote"):
                _errors_to_form(answer_form if op == "answer" else promote_form, exc)
            else:
                # Close, reopen, demote have no form of their own (and vendors see no promote
                # form): say why on the page instead of failing silently.
                messages.error(request, " ".join(exc.messages))
    else:
        # Reading the question reads its notifications (the mail links here directly).
        services.notifications_mark_read_for_question(user=request.user, question=question)
    return render(request, "guides/question_detail.html", {
        "question": question, "answer_form": answer_form, "promote_form": promote_form,
        "is_curator": roles.is_curator(request.user)})


# ------------------------------------------------------------- notifications


@login_required
def notification_list(request):
    """The user's own notifications, newest first, a page at a time (`?cursor=`, `?limit=`);
    a POST marks them all read."""
    if request.method == "POST":
        services.notifications_mark_all_read(user=request.user)
        return redirect("guides:notifications")
    mine = selectors.notifications_of(request.user)
    page, status = newest_first_page(request, mine)
    return render(request, "guides/notifications.html", {**page, "notifications": page["rows"]}, status=status)


@login_required
def notification_open(request, pk: int):
    notification = get_object_or_404(selectors.notifications_of(request.user), pk=pk)
    services.notification_mark_read(notification=notification)
    return redirect(notification.url or "guides:notifications")


# ------------------------------------------------------------------ contracts


@login_required
def contract_list(request):
    if not (roles.is_curator(request.user) or roles.has_role(request.user, roles.VENDOR_MANAGER)):
        raise PermissionDenied("Only curators and vendor managers see contracts.")
    form = ContractForm(request.POST or None, initial={"starts_on": timezone.localdate()}) \
        if roles.is_curator(request.user) else None
    if request.method == "POST" and form is not None and form.is_valid():
        try:
            services.contract_create(created_by=request.user, **form.cleaned_data)
        except ValidationError as exc:
            _errors_to_form(form, exc)
        else:
            messages.success(request, "Contract saved.")
            return redirect("guides:contracts")
    return render(request, "guides/contracts.html",
                  {"contracts": selectors.contracts_visible_to(request.user), "form": form})


def _report_args(request) -> dict:
    args = {}
    for key in ("vendor", "spec"):
        value = request.GET.get(key, "")
        if value.isdigit():
            args[f"{key}_id"] = int(value)
    return args


@login_required
def cost_report(request):
    if not (roles.is_curator(request.user) or roles.has_role(request.user, roles.VENDOR_MANAGER)):
        raise PermissionDenied("Only curators and vendor managers see costs.")
    report, contracts, available = selectors.cost_report_for(user=request.user, **_report_args(request))
    vendor_names, spec_names = selectors.cost_report_names(report, contracts)
    if request.GET.get("download") == "csv":
        # UTF-8 with a BOM: Excel on a Korean Windows reads a CSV without one as CP949.
        return csv_response(costs.cost_report_csv(report, vendor_names=vendor_names, spec_names=spec_names),
                            "mathset-costs.csv")
    return render(request, "guides/cost_report.html", {
        "report": report, "contracts": contracts, "available": available, "vendor_names": vendor_names,
        "spec_names": spec_names, "query": request.GET.urlencode()})

