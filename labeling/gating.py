"""Hooks that may keep an annotator from taking work from a batch.

An annotator must acknowledge the current published version of a batch's work
guide before the queue gives them a task from it; a new version asks again.
`labeling.services.task_claim_next` calls `open_batches` once per claim (one query
for all of the vendor's active batches), and `tasks/next/` reports the messages of
the blocked ones. `guide_acknowledgement_missing` answers the same for one batch; the
hand-in services call it too, since a lease (or a draft, or rework) taken before a new
version was published must not carry work past that version unread.
"""
from __future__ import annotations

from django.contrib.auth.models import User

from common import rawsql

from .models import Batch, Vendor


def _hold(*, guide_id: int, number: int, spec_name: str, batch_name: str,
          handing_in: bool = False) -> tuple[str, str]:
    """Why a batch is held back, for a person, and the page that lifts it: (reason, url)."""
    from django.urls import reverse

    doing = "handing in work from" if handing_in else "taking tasks from"
    return (f"Read and acknowledge version {number} of the work guide for {spec_name} "
            f"before {doing} batch {batch_name}", reverse("guides:detail", kwargs={"pk": guide_id}))


def _message(**hold) -> str:
    reason, url = _hold(**hold)
    return f"{reason}: {url}"


def guide_acknowledgement_hold(*, annotator: User, batch: Batch, handing_in: bool = False) -> tuple[str, str] | None:
    """None when `annotator` may take tasks from `batch` (with `handing_in`: hand work of it
    in); otherwise why not, for a person, and the guide page that lifts it: (reason, url).
    One query, as the hand-in hot path can afford (the same SQL as `open_batches`)."""
    from guides.models import GuideVersion

    rows = rawsql.fetch(_batch_gate_sql(), [annotator.pk, GuideVersion.Status.PUBLISHED, batch.pk])
    if not rows:
        return None
    _, batch_name, spec_name, guide_id, number, acknowledged = rows[0]
    if guide_id is None or acknowledged:
        return None
    return _hold(guide_id=guide_id, number=number, spec_name=spec_name, batch_name=batch_name,
                 handing_in=handing_in)


def guide_acknowledgement_missing(*, annotator: User, batch: Batch, handing_in: bool = False) -> str | None:
    """`guide_acknowledgement_hold` as the sentence `tasks/next/` reports, link included."""
    hold = guide_acknowledgement_hold(annotator=annotator, batch=batch, handing_in=handing_in)
    return None if hold is None else f"{hold[0]}: {hold[1]}"


_SQL: dict[str, str] = {}


def _gate_sql() -> str:
    """Per batch `b`: its name, its spec's name, the current guide version's guide and number
    (NULL without a published guide) and whether the user (the first parameter) acknowledged
    it; the second parameter is the published status. Followed by a WHERE on `b`."""
    from curation.models import DatasetSpec
    from guides.models import Guide, GuideAcknowledgement, GuideVersion

    qn, t = rawsql.qn, rawsql.table
    # The current version is the one guides.selectors.spec_current_guide_version
    # picks: the highest-numbered published version of the spec's guide.
    return (
        f"SELECT b.{qn('id')}, b.{qn('name')}, s.{qn('name')}, gv.{qn('guide_id')} AS gate_guide, gv.{qn('number')}, "
        f"EXISTS (SELECT 1 FROM {t(GuideAcknowledgement)} a WHERE a.{qn('version_id')} = gv.{qn('id')} "
        f"AND a.{qn('user_id')} = %s) AS gate_acknowledged "
        f"FROM {t(Batch)} b INNER JOIN {t(DatasetSpec)} s ON s.{qn('id')} = b.{qn('spec_id')} "
        f"LEFT JOIN {t(GuideVersion)} gv ON gv.{qn('id')} = (SELECT v.{qn('id')} FROM {t(GuideVersion)} v "
        f"INNER JOIN {t(Guide)} g ON g.{qn('id')} = v.{qn('guide_id')} WHERE g.{qn('spec_id')} = b.{qn('spec_id')} "
        f"AND v.{qn('status')} = %s ORDER BY v.{qn('number')} DESC LIMIT 1) "
    )


def _open_batches_sql() -> str:
    from django.db import connection

    sql = _SQL.get(connection.vendor)
    if sql is None:
        qn = rawsql.qn
        sql = _gate_sql() + f"WHERE b.{qn('vendor_id')} = %s AND b.{qn('status')} = %s ORDER BY b.{qn('id')}"
        _SQL[connection.vendor] = sql
    return sql


def _batch_gate_sql() -> str:
    """`_gate_sql`'s row for one batch (the third parameter)."""
    from django.db import connection

    key = f"{connection.vendor}:batch"
    sql = _SQL.get(key)
    if sql is None:
        sql = _gate_sql() + f"WHERE b.{rawsql.qn('id')} = %s"
        _SQL[key] = sql
    return sql


def acknowledgement_missing_sql() -> str:
    """A condition for another statement's WHERE, true exactly when `guide_acknowledgement_missing`
    answers a message: parameters the user, the published status and the batch. It lets a hot
    path hold the gate without a statement of its own (`labeling.services.annotation_create`)."""
    return (f"EXISTS (SELECT 1 FROM ({_batch_gate_sql()}) gate "
            f"WHERE gate.gate_guide IS NOT NULL AND NOT gate.gate_acknowledged)")


def open_batches(*, annotator: User, vendor: Vendor, as_holds: bool = False) -> tuple[list[int], dict[int, str]]:
    """The ids of `vendor`'s active batches `annotator` may take tasks from (by id),
    and for each other active batch why not, for a person (with `as_holds`, as (reason, url)
    pairs instead of one sentence). One query."""
    from guides.models import GuideVersion

    ids, blocked = [], {}
    rows = rawsql.fetch(_open_batches_sql(), [annotator.pk, GuideVersion.Status.PUBLISHED, vendor.pk,
                                              Batch.Status.ACTIVE])
    for batch_id, batch_name, spec_name, guide_id, number, acknowledged in rows:
        if guide_id is not None and not acknowledged:
            blocked[batch_id] = (_hold if as_holds else _message)(guide_id=guide_id, number=number,
                                                                  spec_name=spec_name, batch_name=batch_name)
        else:
            ids.append(batch_id)
    return ids, blocked
