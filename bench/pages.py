"""Benchmark: the browser pages and the list/detail API endpoints at production size, on PostgreSQL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mathset_bench_pages python bench/pages.py \
        [--images 100000] [--repeat 5] [--reuse] [--only SUBSTRING] [--out results.json]

It creates the database named in DATABASE_URL (dropped first; the name must start with
``mathset_bench``), migrates it and seeds it in batches (``bulk_create``, a few service calls for
the rows services shape: specs, vendors, guides, contracts, progress and QA reports). For
``--images 100000``: 2 specs with 4 categories each, 4 sources, 5 vendors (40 annotators, 5
reviewers, 5 managers), 300 batches holding one task per image, 60% of the tasks annotated
(25% accepted, 5% rejected, 35% submitted, 5% drafts; 1 or 2 versions with 2 quadrilaterals each),
one review per accepted or rejected annotation (20,000), pre-labels of a quarter of the images,
300 questions with answers and notifications, 4 snapshots (the largest half the images) with
exports, 3 evaluation runs with samples, pre-labeling jobs, and the stored progress and QA
reports. Everything else scales with ``--images``. Image files are not written: no page timed
here opens one.

Then it times, in-process with Django's test ``Client`` logged in as each role (curator, vendor
manager, annotator, reviewer, model team), every main page and every list API endpoint at its
default page size, a deep offset (``?offset=`` 90% down the list), the same page by keyset
(``?cursor=`` made from the row before it: no OFFSET, no COUNT) and common filters: `--repeat`
runs each (after one warm-up), p50 / p95 milliseconds and the number of SQL queries of one
request. Prints a table; ``--out`` writes the rows and the machine facts as JSON. ``--reuse``
times an already seeded database; ``--only`` times only the rows whose name contains it.

SQLite is refused: the figures are meant for PostgreSQL, whose planner and COUNT(*) costs are
what production sees.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._benchutil import db_engine_description, fresh_database, machine_facts  # noqa: E402

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/mathset_bench_pages"
PASSWORD = "bench-pass-1234"
VENDORS = 5
ANNOTATORS_PER_VENDOR = 8
CHUNK = 5000


def _scale(n_images: int, full: int) -> int:
    """`full` (its size at 100,000 images) scaled to `n_images`, at least 1."""
    return max(1, round(full * n_images / 100_000))


# ------------------------------------------------------------------------------------- seeding


def _bulk(model, rows, label: str, counts: dict):
    out = []
    for i in range(0, len(rows), CHUNK):
        out.extend(model.objects.bulk_create(rows[i:i + CHUNK]))
    counts[label] = counts.get(label, 0) + len(rows)
    return out


def seed(n_images: int) -> dict:
    """Seed the database; return the ids and usernames the timing needs, and the row counts."""
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import Group, User
    from django.db import connection, transaction
    from django.utils import timezone

    from common import latex, roles
    from common.services import user_create
    from curation.models import (
        Category,
        Export,
        Image,
        ImportJob,
        Licence,
        Snapshot,
        SnapshotItem,
    )
    from curation.services import source_create, spec_create, spec_progress_refresh
    from guides import services as guide_services
    from guides.models import Answer, GuideAcknowledgement, Notification, Question
    from labeling.models import (
        Annotation,
        AnnotationVersion,
        Batch,
        Claim,
        Prediction,
        Region,
        Review,
        Task,
        VendorMembership,
    )
    from labeling.services import vendor_create
    from pipeline.models import EvaluationRun, EvaluationSample, ModelVersion, PrelabelItem, PrelabelJob
    from pipeline.stats import spec_stats_compute

    counts: dict[str, int] = {}
    now = timezone.now()
    t0 = time.perf_counter()

    def step(msg):
        print(f"  {time.perf_counter() - t0:6.1f} s  {msg}", flush=True)

    with transaction.atomic():
        curator = user_create(username="bench-curator", password=PASSWORD, role=roles.CURATOR)
        user_create(username="bench-modelteam", password=PASSWORD, role=roles.MODEL_TEAM)
        specs = [
            spec_create(name="Bench school photos", requirement="Read photographed school-math formulas into LaTeX",
                        intended_use="commercial", answer_formats=["quad", "latex"], status="active",
                        default_quota=n_images // 8, created_by=curator,
                        requirements=[{"metric": "exact_match", "threshold": 0.8}]),
            spec_create(name="Bench research pages", requirement="Read printed formula pages", intended_use="research",
                        answer_formats=["quad", "mask", "latex"], status="active", default_quota=n_images // 10,
                        created_by=curator),
        ]
        Category.objects.filter(spec__in=specs, slug="whiteout").delete()  # 4 kinds per spec, 8 in all
        cats = {s.id: list(Category.objects.filter(spec=s).order_by("position")) for s in specs}
        sources = [source_create(name=f"Bench source {code}", kind=kind, licence=Licence.objects.get(code=code),
                                 copyright_holder="Mathset bench", created_by=curator)
                   for code, kind in (("cc-by-4.0", "public_dataset"), ("cc0-1.0", "in_house"),
                                      ("cc-by-nc-4.0", "web"), ("cc-by-sa-4.0", "purchased"))]
        vendors = [vendor_create(name=f"Bench vendor {k}") for k in range(1, VENDORS + 1)]
        hashed = make_password(PASSWORD)
        groups = {g.name: g for g in Group.objects.filter(name__in=roles.ROLES)}
        people: dict[int, dict[str, list]] = {}
        for k, vendor in enumerate(vendors, 1):
            wanted = ([(f"bench-v{k}-manager", roles.VENDOR_MANAGER), (f"bench-v{k}-reviewer", roles.REVIEWER)]
                      + [(f"bench-v{k}-annotator-{j}", roles.ANNOTATOR) for j in range(ANNOTATORS_PER_VENDOR)])
            users = User.objects.bulk_create([User(username=u, password=hashed) for u, _ in wanted])
            User.groups.through.objects.bulk_create([User.groups.through(user_id=u.id, group_id=groups[r].id)
                                                     for u, (_, r) in zip(users, wanted, strict=True)])
            VendorMembership.objects.bulk_create([VendorMembership(vendor=vendor, user=u) for u in users])
            people[vendor.id] = {"manager": users[0], "reviewer": users[1], "annotators": users[2:]}
        for spec in specs:
            for vendor in vendors:
                guide_services.contract_create(vendor=vendor, spec=spec, price_regions=Decimal("0.05"),
                                               price_latex=Decimal("0.08"), price_full=Decimal("0.12"),
                                               agreed_quantity=n_images // 5, deadline=dt.date(2027, 6, 30),
                                               created_by=curator)
        guides = []
        for spec in specs:
            guide = guide_services.guide_create(spec=spec, title=f"{spec.name} guide", created_by=curator,
                                                body_md="# Regions\n\nDraw one quad per formula, from its top-left.")
            version = guide.versions.get()
            guide_services.guide_version_publish(version=version, by=curator)
            guides.append(version)
        all_vendor_people = [u for p in people.values() for u in [p["manager"], p["reviewer"], *p["annotators"]]]
        _bulk(GuideAcknowledgement, [GuideAcknowledgement(version=v, user=u) for v in guides
                                     for u in all_vendor_people], "guide acknowledgements", counts)
        step("people, specs, sources, contracts, guides")

        # Images: 60% in the first spec, 40% in the second; one to three categories each.
        n_a = n_images * 6 // 10
        images = []
        for i in range(n_images):
            spec = specs[0] if i < n_a else specs[1]
            images.append(Image(
                spec=spec, source=sources[i % len(sources)], file=f"bench/{i % 1000:03d}/{i}.jpg",
                thumbnail=f"bench/{i % 1000:03d}/{i}.thumb.jpg", original_filename=f"IMG_{i:06d}.jpg",
                sha256=f"{i:064x}", phash=f"{(i * 2654435761) % (1 << 64):016x}", width=1600 + i % 400,
                height=1200 + i % 300, format="JPEG", file_size=180_000 + i % 50_000,
                capture_session=f"session-{i // 40}", truth_latex="x^{2}+1" if i % 100 == 50 else "",
                meta={"exif_orientation": 1}, uploaded_by=curator))
        images = _bulk(Image, images, "images", counts)
        through = Image.categories.through
        links = []
        for i, im in enumerate(images):
            spec_cats = cats[im.spec_id]
            links.append(through(image_id=im.id, category_id=spec_cats[i % len(spec_cats)].id))
            if i % 3 == 0:
                links.append(through(image_id=im.id, category_id=spec_cats[(i + 1) % len(spec_cats)].id))
        _bulk(through, links, "image categories", counts)
        step("images")

        # Batches: 300 (scaled), 60% of them on the first spec; each takes a consecutive run of its spec's
        # images. Per 100 tasks: 15 accepted, 5 rejected, 35 submitted, 5 drafts (in progress),
        # 20 pre-labeled, 20 new; 1 in 100 gold.
        n_batches = _scale(n_images, 300)
        spec_images = [images[:n_a], images[n_a:]]
        spec_batches = [max(1, n_batches * 6 // 10), max(1, n_batches - n_batches * 6 // 10)]
        batches, tasks = [], []
        for spec, ims, nb in zip(specs, spec_images, spec_batches, strict=True):
            per_batch = -(-len(ims) // nb)
            rows = []
            for b in range(nb):
                vendor = vendors[(len(batches) + b) % VENDORS]
                k = len(batches) + b
                status = "closed" if k % 10 == 0 else "paused" if k % 10 == 1 else "active"
                rows.append(Batch(name=f"Bench batch {k + 1:03d}", spec=spec, vendor=vendor, kind="full",
                                  unit_price=Decimal("0.12"), agreed_quantity=per_batch, overlap=1,
                                  deadline=dt.date(2026, 12, 1) + dt.timedelta(days=k % 90), status=status,
                                  filters={"categories": [], "only_unlabeled": True}, created_by=curator))
            rows = _bulk(Batch, rows, "batches", counts)
            batches += rows
            for j, im in enumerate(ims):
                i = len(tasks)
                r = i % 100
                status = ("accepted" if r < 15 else "rejected" if r < 20 else "submitted" if r < 55
                          else "in_progress" if r < 60 else "prelabeled" if r < 80 else "new")
                gold = r == 50
                tasks.append(Task(batch=rows[j // per_batch], image=im, status=status, overlap=1,
                                  slots_taken=1 if r < 60 else 0, is_gold=gold,
                                  gold_answer={"latex": "x^{2}+1", "regions": []} if gold else None,
                                  model_confidence=(i % 97) / 100 if 55 <= r < 80 else None))
        tasks = _bulk(Task, tasks, "tasks", counts)
        step("batches, tasks")

        predictions = _bulk(Prediction, [
            Prediction(image_id=t.image_id, model_name="bench-det", model_version="1",
                       regions=[{"kind": "quad", "latex": "x^{2}", "points": [[10, 10], [90, 10], [90, 40], [10, 40]],
                                 "confidence": t.model_confidence}], confidence=t.model_confidence)
            for t in tasks if t.model_confidence is not None], "predictions", counts)
        prediction_of = {p.image_id: p.id for p in predictions}

        batch_vendor = {b.id: b.vendor_id for b in batches}
        annotated = [(i, t) for i, t in enumerate(tasks) if i % 100 < 60]
        status_of = {"accepted": "accepted", "rejected": "rejected", "submitted": "submitted", "in_progress": "draft"}
        anns = []
        for i, t in annotated:
            who = people[batch_vendor[t.batch_id]]["annotators"][i % ANNOTATORS_PER_VENDOR]
            st = status_of[t.status]
            anns.append(Annotation(task=t, annotator=who, status=st, version=2 if i % 100 < 5 else 1,
                                   submitted_at=None if st == "draft" else now))
        anns = _bulk(Annotation, anns, "annotations", counts)
        _bulk(Claim, [Claim(task_id=a.task_id, annotator_id=a.annotator_id, state="annotated", claimed_at=now,
                            expires_at=now) for a in anns], "claims", counts)
        image_of_task = {t.id: t.image_id for t in tasks}
        versions = []
        for a in anns:
            for number in range(1, a.version + 1):
                versions.append(AnnotationVersion(annotation=a, number=number, author_id=a.annotator_id,
                                                  time_spent_seconds=20 + a.id % 90,
                                                  started_from_id=prediction_of.get(image_of_task[a.task_id])))
        versions = _bulk(AnnotationVersion, versions, "annotation versions", counts)
        current = {v.annotation_id: v for v in versions}  # the last one wins: the highest number
        for a in anns:
            a.current = current[a.id]
        for i in range(0, len(anns), CHUNK):
            Annotation.objects.bulk_update(anns[i:i + CHUNK], ["current"])
        norm = {s: latex.normalize(s) for s in ("x^{2}+1", r"\frac{a}{b}", "y_{1}")}
        regions = []
        for v in versions:
            for k, text in enumerate(("x^{2}+1", r"\frac{a}{b}")):
                x = 10 + 300 * k + v.id % 5
                regions.append(Region(version=v, index=k, kind="quad",
                                      points=[[x, 10], [x + 50, 10], [x + 50, 40], [x, 40]],
                                      latex=text, latex_normalized=norm[text], categories=[]))
        _bulk(Region, regions, "regions", counts)
        reviews = [a for a in anns if a.status in ("accepted", "rejected")]
        task_batch = {t.id: t.batch_id for t in tasks}
        _bulk(Review, [Review(annotation=a, version=current[a.id],
                              reviewer=people[batch_vendor[task_batch[a.task_id]]]["reviewer"],
                              decision="accept" if a.status == "accepted" else "reject",
                              reasons=[] if a.status == "accepted" else ["latex_error"],
                              comment="" if a.status == "accepted" else "Check the fraction.")
                       for a in reviews], "reviews", counts)
        step("annotations, versions, regions, reviews")

        # Questions (a few hundred), two thirds answered, with their notifications.
        n_questions = _scale(n_images, 300)
        qs = []
        for q in range(n_questions):
            vendor = vendors[q % VENDORS]
            asker = people[vendor.id]["annotators"][q % ANNOTATORS_PER_VENDOR]
            image = images[(q * 331) % n_images]
            spec = specs[0] if image.spec_id == specs[0].id else specs[1]
            qs.append(Question(spec=spec, guide_version=guides[specs.index(spec)], vendor=vendor, asked_by=asker,
                               title=f"Is the exponent part of formula {q}?", body="Should the region include it?",
                               body_html="<p>Should the region include it?</p>", image=image,
                               status="answered" if q % 3 else "open"))
        qs = _bulk(Question, qs, "questions", counts)
        _bulk(Answer, [Answer(question=q, author=curator, body="Yes, include it.", body_html="<p>Yes, include it.</p>")
                       for q in qs if q.status == "answered"], "answers", counts)
        _bulk(Notification, [Notification(user=curator, kind="question_asked", message=f"New question: {q.title}",
                                          url=f"/questions/{q.id}/", question=q) for q in qs]
              + [Notification(user_id=q.asked_by_id, kind="question_answered", message=f"Answered: {q.title}",
                              url=f"/questions/{q.id}/", question=q) for q in qs if q.status == "answered"],
              "notifications", counts)

        # Import jobs and models.
        _bulk(ImportJob, [ImportJob(spec=specs[j % 2], source=sources[j % 4], archive=f"imports/bench-{j}.zip",
                                    status="done", total=1000, imported=990, duplicates=10, created_by=curator,
                                    finished_at=now) for j in range(8)], "import jobs", counts)
        detector = ModelVersion.objects.create(kind="detector", name="bench-detector", version="1", source="builtin",
                                               is_active=True, created_by=curator)
        recognizer = ModelVersion.objects.create(kind="recognizer", name="bench-recognizer", version="1",
                                                 source="builtin", is_active=True, created_by=curator)
        jobs = _bulk(PrelabelJob, [PrelabelJob(spec=specs[j % 2], status="done", detector_version=detector,
                                               recognizer_version=recognizer, total=_scale(n_images, 5000),
                                               created_by=curator, started_at=now, finished_at=now)
                                   for j in range(4)], "prelabel jobs", counts)
        _bulk(PrelabelItem, [PrelabelItem(job=job, image=im, status="done" if k % 50 else "failed",
                                          error="" if k % 50 else "decode error", attempts=1, finished_at=now)
                             for job in jobs
                             for k, im in enumerate(x for x in images if x.spec_id == job.spec_id)
                             if k < job.total], "prelabel items", counts)
        step("questions, import jobs, models, pre-labeling jobs")

        # Snapshots: the largest holds half the images (frozen long ago: items need not match today's
        # accepted work, which the pages never compare), with its exports and evaluation runs.
        lic = {s.id: s.licence for s in sources}
        current_of_image = {image_of_task[a.task_id]: a for a in anns}

        def snapshot(spec, name, size):
            chosen = [im for im in images if im.spec_id == spec.id][:size]
            splits = {"train": 0, "validation": 0, "test": 0}
            snap = Snapshot.objects.create(spec=spec, name=name, created_by=curator, ratios={"train": 0.8,
                                           "validation": 0.1, "test": 0.1}, seed=0, content_hash="0" * 64,
                                           status="ready", started_at=now, finished_at=now,
                                           categories=[{"slug": c.slug, "name": c.name} for c in cats[spec.id]],
                                           intended_use=spec.intended_use)
            items = []
            for k, im in enumerate(chosen):
                split = "train" if k % 10 < 8 else "validation" if k % 10 == 8 else "test"
                splits[split] += 1
                ann = current_of_image.get(im.id)
                licence = lic[im.source_id]
                items.append(SnapshotItem(
                    snapshot=snap, image=im, annotation=ann, annotation_version=ann.version if ann else 1,
                    split=split, file=im.file, sha256=im.sha256, width=im.width, height=im.height,
                    capture_session=im.capture_session, categories=[cats[spec.id][k % 4].slug],
                    regions=[{"kind": "quad", "points": [[10, 10], [60, 10], [60, 40], [10, 40]], "latex": "x^{2}+1",
                              "categories": [], "illegible": False, "cut_off": False}],
                    licence={"code": licence.code, "name": licence.name, "url": licence.url,
                             "allows_commercial": licence.allows_commercial,
                             "allows_derivatives": licence.allows_derivatives, "share_alike": licence.share_alike,
                             "requires_attribution": licence.requires_attribution},
                    source={"name": f"Bench source {licence.code}", "copyright_holder": "Mathset bench",
                            "attribution": "", "url": ""}))
            items = _bulk(SnapshotItem, items, "snapshot items", counts)
            commercial = sum(1 for it in items if it.licence["allows_commercial"])
            snap.item_count, snap.split_counts, snap.commercial_items = len(items), splits, commercial
            snap.category_counts = {c.slug: {"train": splits["train"] // 4, "validation": splits["validation"] // 4,
                                             "test": splits["test"] // 4} for c in cats[spec.id]}
            snap.licence_counts = {lic_.code: {"name": lic_.name, "allows_commercial": lic_.allows_commercial,
                                               "allows_derivatives": lic_.allows_derivatives,
                                               "images": len(items) // 4} for lic_ in lic.values()}
            snap.save()
            _bulk(Export, [Export(snapshot=snap, format=fmt, status="done", file=f"exports/{snap.id}-{fmt}.zip",
                                  size=len(items) * 900, images=commercial, regions=commercial,
                                  excluded_images=len(items) - commercial, created_by=curator, finished_at=now)
                           for fmt in ("coco", "jsonl", "im2latex")], "exports", counts)
            return snap, items

        big, big_items = snapshot(specs[0], "Bench release 1", n_images // 2)
        snapshot(specs[0], "Bench release 0", n_images // 20)
        snapshot(specs[1], "Bench pages 1", n_images // 10)
        Snapshot.objects.create(spec=specs[1], name="Bench pages 2 (failed)", created_by=curator, ratios={},
                                content_hash="", status="failed", error="No accepted annotations.")
        counts["snapshots"] = 4
        test_items = [it for it in big_items if it.split == "test"]
        runs = _bulk(EvaluationRun, [EvaluationRun(snapshot=big, detector_version=detector,
                                                   recognizer_version=recognizer, status="done",
                                                   total=len(test_items), processed=len(test_items),
                                                   metrics={"overall": {"exact_match": 0.71, "detection_f1": 0.93},
                                                            "by_category": {}},
                                                   verdicts=[{"metric": "exact_match", "label": "LaTeX exact match",
                                                              "threshold": 0.8, "value": 0.71, "met": False,
                                                              "lower_is_better": False}],
                                                   passed=False, latency_p50_ms=80.0, latency_p95_ms=190.0, qps=12.0,
                                                   inference_seconds=len(test_items) / 12, device="cpu (2 threads)",
                                                   created_by=curator, started_at=now, finished_at=now)
                                     for _ in range(3)], "evaluation runs", counts)
        _bulk(EvaluationSample, [EvaluationSample(run=run, item=it, region_index=k, categories=it.categories,
                                                  points=[[10, 10], [60, 10], [60, 40], [10, 40]],
                                                  truth_latex="x ^ { 2 } + 1",
                                                  predicted_latex="x ^ { 2 } + 1" if (it.id + k) % 4 else "x ^ 2",
                                                  edits=0 if (it.id + k) % 4 else 4,
                                                  edit_distance=0.0 if (it.id + k) % 4 else 0.4,
                                                  exact=bool((it.id + k) % 4), iou=0.8, confidence=0.9,
                                                  image_predicted=2, image_matched=2, latency_ms=80.0)
                                 for run in runs for it in test_items for k in range(2)],
              "evaluation samples", counts)
        step("snapshots, exports, evaluation runs")
        for table in ("curation_image", "labeling_task"):
            with connection.cursor() as cur:
                cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
    with connection.cursor() as cur:
        cur.execute("VACUUM ANALYZE")  # fresh tables: real planner statistics, as autovacuum would give
    for spec in specs:
        spec_progress_refresh(spec=spec)
        spec_stats_compute(spec=spec)
    step("VACUUM ANALYZE, progress and QA reports")
    return counts


# -------------------------------------------------------------------------------------- timing


def _deep_cursor(role: str, name: str, deep: int) -> str:
    """The `cursor` of the page the deep offset row asks for: `deep` rows down the list as `role`
    sees it (90% down where that list is shorter), as the endpoint's selector scopes and orders it."""
    from django.contrib.auth.models import User

    from common.pagination import cursor_after, keyset_order
    from curation.selectors import images_visible_to
    from labeling.selectors import annotations_visible_to, tasks_visible_to

    selector = {"images": images_visible_to, "tasks": tasks_visible_to, "annotations": annotations_visible_to}[name]
    visible = selector(User.objects.get(username=role))
    depth = max(1, min(deep, visible.count() * 9 // 10))
    return cursor_after(visible, keyset_order(visible)[depth - 1])


def targets() -> list[tuple[str, str, str]]:
    """(role, name, url) of everything timed, from the seeded rows."""
    from django.contrib.auth.models import User

    from curation.models import Category, DatasetSpec, Image, Snapshot, Source
    from guides.models import Guide, Question
    from labeling.models import Annotation, Batch, Vendor
    from pipeline.models import EvaluationRun

    spec = DatasetSpec.objects.get(name="Bench school photos")
    cat = Category.objects.filter(spec=spec).order_by("position").first()
    source = Source.objects.order_by("id").first()
    batch = Batch.objects.filter(spec=spec, status="active").order_by("id").first()
    vendor = batch.vendor
    manager = f"bench-v{vendor.name.rsplit(' ', 1)[1]}-manager"
    annotator_user = User.objects.get(username=manager.replace("manager", "annotator-0"))
    reviewer = manager.replace("manager", "reviewer")
    image = Image.objects.filter(spec=spec).order_by("id")[1000]
    snapshot = Snapshot.objects.order_by("-item_count").first()
    run = EvaluationRun.objects.order_by("id").first()
    question = Question.objects.filter(vendor=vendor).order_by("id").first()
    guide = Guide.objects.get(spec=spec)
    ann = Annotation.objects.filter(task__batch=batch).order_by("id").first()
    submitted = Annotation.objects.filter(task__batch__vendor=vendor, status="submitted").order_by("id").first()
    n_images = Image.objects.count()
    deep = (n_images * 9 // 10 // 50) * 50  # 90,000 at 100,000 images
    C, M, A, R, T = "bench-curator", manager, annotator_user.username, reviewer, "bench-modelteam"
    rows = [
        # pages
        (C, "page specs", "/specs/"),
        (C, "page spec detail", f"/specs/{spec.id}/"),
        (C, "page batches", "/batches/"),
        (M, "page batches (vendor)", "/batches/"),
        (C, "page batch edit", f"/batches/{batch.id}/edit/"),
        (C, "page batch new matches", f"/batches/new/matches/?spec={spec.id}&categories={cat.slug}"),
        (C, "page images", "/images/"),
        (C, "page images spec+category", f"/images/?spec={spec.id}&category={cat.id}"),
        (C, "page images licence", "/images/?licence=cc-by-4.0"),
        (C, "page images deep offset", f"/images/?offset={deep}"),
        (C, "page image detail", f"/images/{image.id}/"),
        (T, "page images (model team)", "/images/"),
        (A, "page my work", "/work/"),
        (R, "page review queue", "/review/"),
        (R, "page review annotation", f"/review/{submitted.id}/"),
        (C, "page questions", "/questions/"),
        (M, "page questions (vendor)", "/questions/"),
        (C, "page question detail", f"/questions/{question.id}/"),
        (C, "page contracts", "/contracts/"),
        (C, "page cost report", "/contracts/report/"),
        (C, "page cost report CSV", "/contracts/report/?download=csv"),
        (M, "page cost report (vendor)", "/contracts/report/"),
        (C, "page snapshots", "/snapshots/"),
        (C, "page snapshot detail", f"/snapshots/{snapshot.id}/"),
        (T, "page evaluations", "/evaluations/"),
        (T, "page evaluation detail", f"/evaluations/{run.id}/"),
        (T, "page evaluation samples", f"/evaluations/{run.id}/samples/"),
        (C, "page spec QA", f"/specs/{spec.id}/qa/"),
        (C, "page people", "/people/"),
        (C, "page vendors", "/people/vendors/"),
        (C, "page pipeline jobs", "/pipeline/jobs/"),
        (C, "page guides", "/guides/"),
        (C, "page guide detail", f"/guides/{guide.id}/"),
        (C, "page sources", "/sources/"),
        (C, "page imports", "/imports/"),
        (T, "page model team home", "/model-team/"),
        (C, "page notifications", "/notifications/"),
    ]
    api = [
        (C, "users"), (C, "vendors"), (C, "batches"), (M, "batches"), (C, "tasks"), (A, "tasks"), (C, "annotations"),
        (A, "annotations"), (R, "annotations/review-queue"), (C, "reviews"), (R, "reviews"), (C, "predictions"),
        (C, "licences"), (C, "sources"), (C, "specs"), (M, "specs"), (C, "categories"), (C, "images"), (T, "images"),
        (A, "images"), (C, "import-jobs"), (C, "snapshots"), (T, "exports"), (C, "guides"), (A, "guide-versions"),
        (C, "guide-examples"), (C, "guide-acknowledgements"), (C, "faq"), (C, "questions"), (M, "questions"),
        (C, "notifications"), (C, "contracts"), (C, "cost-report"), (C, "cost-report/csv"), (T, "model-versions"),
        (C, "prelabel-jobs"), (T, "model-predictions"), (T, "evaluations"), (C, "qa-reports"),
    ]
    for role, name in api:
        rows.append((role, f"api {name}", f"/api/v1/{name}/"))
    for role, name in [(C, "tasks"), (C, "images"), (C, "annotations"), (C, "regions"), (T, "images"),
                       (A, "tasks")]:
        if name != "regions":
            rows.append((role, f"api {name} deep offset", f"/api/v1/{name}/?offset={deep}"))
            rows.append((role, f"api {name} deep cursor", f"/api/v1/{name}/?cursor={_deep_cursor(role, name, deep)}"))
    rows += [
        (C, "api tasks status+spec", f"/api/v1/tasks/?status=submitted&spec={spec.id}"),
        (C, "api tasks batch", f"/api/v1/tasks/?batch={batch.id}"),
        (C, "api tasks category", f"/api/v1/tasks/?category={cat.slug}"),
        (C, "api images spec+category", f"/api/v1/images/?spec={spec.id}&category={cat.slug}"),
        (C, "api images source", f"/api/v1/images/?source={source.id}"),
        (C, "api annotations status", "/api/v1/annotations/?status=submitted"),
        (C, "api annotations batch", f"/api/v1/annotations/?batch={batch.id}"),
        (C, "api reviews decision", "/api/v1/reviews/?decision=reject"),
        (C, "api batches spec+vendor", f"/api/v1/batches/?spec={spec.id}&vendor={vendor.id}"),
        (T, "api snapshot items", f"/api/v1/snapshots/{snapshot.id}/items/"),
        (T, "api snapshot items deep", f"/api/v1/snapshots/{snapshot.id}/items/?offset={snapshot.item_count * 9 // 10}"),
        (T, "api evaluation samples", f"/api/v1/evaluations/{run.id}/samples/"),
        (C, "api spec progress", f"/api/v1/specs/{spec.id}/progress/"),
        (C, "api batch detail", f"/api/v1/batches/{batch.id}/"),
        (C, "api spec detail", f"/api/v1/specs/{spec.id}/"),
        (C, "api image detail", f"/api/v1/images/{image.id}/"),
        (A, "api annotation detail", f"/api/v1/annotations/{ann.id}/") if ann.annotator_id == annotator_user.id
        else (C, "api annotation detail", f"/api/v1/annotations/{ann.id}/"),
        (C, "api snapshot detail", f"/api/v1/snapshots/{snapshot.id}/"),
        (T, "api evaluation detail", f"/api/v1/evaluations/{run.id}/"),
        (C, "api vendor members", f"/api/v1/vendors/{vendor.id}/members/"),
        (C, "api qa latest", f"/api/v1/qa-reports/latest/?spec={spec.id}"),
    ]
    _ = Vendor  # (imported for readers of this list: vendors are named in the usernames)
    return rows


def measure(rows, repeat: int) -> list[dict]:
    from django.contrib.auth.models import User
    from django.db import connection, reset_queries
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    clients: dict[str, Client] = {}
    results = []
    for role, name, url in rows:
        if role not in clients:
            c = Client()
            c.force_login(User.objects.get(username=role))
            clients[role] = c
        client = clients[role]
        with CaptureQueriesContext(connection) as ctx:  # the warm-up run counts the queries
            r = client.get(url)
        queries = len(ctx.captured_queries)
        slowest_sql = max((float(q["time"]) for q in ctx.captured_queries), default=0.0) * 1000
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            r2 = client.get(url)
            if hasattr(r2, "streaming_content"):
                b"".join(r2.streaming_content)
            times.append((time.perf_counter() - t0) * 1000)
        reset_queries()
        times.sort()
        p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
        row = {"role": role.removeprefix("bench-"), "name": name, "url": url, "status": r.status_code,
               "p50_ms": round(statistics.median(times), 1), "p95_ms": round(p95, 1), "queries": queries,
               "slowest_query_ms": round(slowest_sql, 1)}
        results.append(row)
        flag = " SLOW" if row["p50_ms"] > 300 else ""
        print(f"{row['name'][:40]:40} {row['role'][:16]:16} {row['status']:>4} {row['p50_ms']:9.1f} {row['p95_ms']:9.1f} "
              f"{row['queries']:5} {row['slowest_query_ms']:9.1f}{flag}", flush=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--reuse", action="store_true", help="time an already seeded database")
    parser.add_argument("--only", default="", help="time only the rows whose name contains this")
    parser.add_argument("--out", default="", help="write the results as JSON here")
    args = parser.parse_args()

    url = os.environ.get("DATABASE_URL") or DEFAULT_URL
    if not url.startswith(("postgres://", "postgresql://")):
        raise SystemExit("bench/pages.py measures PostgreSQL (SQLite's planner and COUNT(*) are not production's): "
                         "set DATABASE_URL=postgres://postgres@127.0.0.1:5432/mathset_bench_pages")
    if not args.reuse:
        fresh_database(url, ROOT / "var")
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("DEBUG", "0")  # as served: no debug toolbar of queries kept per request
    os.environ.setdefault("SECRET_KEY", "bench-only-" + "x" * 40)
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    settings.ALLOWED_HOSTS = ["testserver", *settings.ALLOWED_HOSTS]
    counts = {}
    if not args.reuse:
        t0 = time.perf_counter()
        call_command("migrate", verbosity=0)
        print(f"migrated in {time.perf_counter() - t0:.1f} s; seeding {args.images:,} images ...", flush=True)
        t0 = time.perf_counter()
        counts = seed(args.images)
        print(f"seeded in {time.perf_counter() - t0:.1f} s: "
              + ", ".join(f"{v:,} {k}" for k, v in counts.items()), flush=True)
    rows = [r for r in targets() if args.only in r[1]]
    load_before = os.getloadavg()
    print(f"{'request':40} {'as':16} {'HTTP':>4} {'p50 ms':>9} {'p95 ms':>9} {'SQL':>5} {'max SQL':>9}")
    results = measure(rows, args.repeat)
    facts = machine_facts(db_engine_description())
    print(facts)
    print(f"load average before timing {load_before[0]:.2f}; {args.repeat} timed runs per row after one warm-up "
          f"(whose queries are counted); 'max SQL' is its slowest query in ms")
    slow = [r for r in results if r["p50_ms"] > 300 or r["status"] != 200]
    print(f"{len(slow)} of {len(results)} rows over 300 ms p50 or not HTTP 200: "
          + ", ".join(f"{r['name']} ({r['p50_ms']:.0f} ms, {r['status']})" for r in slow))
    if args.out:
        Path(args.out).write_text(json.dumps({"machine": facts, "images": args.images, "repeat": args.repeat,
                                              "seeded": counts, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
