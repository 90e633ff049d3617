"""What each vendor is owed: accepted tasks times the contract's unit price.

`cost_report()` is a pure function over plain rows, so its arithmetic is tested on
fixtures with known answers without any labeling tables. Where the rows come from
is a separate, swappable adapter:

* `labeling_task_rows()` reads labeling's Batch and Task tables (grouped in SQL,
  one row per batch, kind, status and month). It returns nothing until
  labeling.Task exists, and the pages say so.
* `settings.MATHSET_COST_ROWS_PROVIDER` (dotted path, optional) replaces it; its
  callable takes `vendor_ids` and `spec_ids` (None = all) and returns
  `(rows, batches)` as lists of `TaskRow` and `BatchInfo`.

Rules: only accepted tasks are paid; rejected work is counted and shown but not
paid; anything else is pending, except on an image taken down since
(`curation.services.image_takedown`): work handed in but not reviewed can never be reviewed
now, so it is counted apart ("taken_down") for the curator to settle with the vendor, neither
paid nor pending; work not handed in was withdrawn and leaves the report. Amounts are summed per currency, never across.
A task is priced by its vendor's contract for the spec (per task kind), else by its
batch's own unit price; a batch with neither is "unpriced". Contracts copy their
prices into the batches they cover (`guides.services`), so the batches page and this
report agree.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings
from django.utils.module_loading import import_string

ACCEPTED = "accepted"
REJECTED = "rejected"
SUBMITTED = "submitted"
# Not task statuses: the adapter's names for open tasks on an image taken down since.
TAKEN_DOWN = "taken_down"  # handed in, never to be reviewed
WITHDRAWN = "withdrawn"  # not handed in: nothing to pay, nothing pending
KINDS = ("regions", "latex", "full")


@dataclass(frozen=True)
class TaskRow:
    """`count` tasks of one batch in one status; `accepted_on` is any day of the month they were accepted."""

    vendor_id: int
    spec_id: int
    kind: str
    status: str
    batch_id: int
    accepted_on: dt.date | None = None
    count: int = 1


@dataclass(frozen=True)
class BatchInfo:
    """What the pace check needs of a batch: its target, start and deadline."""

    batch_id: int
    name: str
    vendor_id: int
    spec_id: int
    target: int
    started_on: dt.date
    deadline: dt.date | None = None
    # The batch's own price, which prices its work where no contract covers it.
    unit_price: Decimal | None = None
    currency: str | None = None


@dataclass(frozen=True)
class Terms:
    """The prices and deadline of one contract."""

    vendor_id: int
    spec_id: int
    currency: str
    prices: dict[str, Decimal]
    deadline: dt.date | None = None

    @classmethod
    def from_contract(cls, contract) -> Terms:
        return cls(vendor_id=contract.vendor_id, spec_id=contract.spec_id, currency=contract.currency,
                   prices={k: contract.price_for(k) for k in KINDS}, deadline=contract.deadline)


@dataclass
class BatchLine:
    batch_id: int
    name: str
    vendor_id: int
    spec_id: int
    currency: str | None
    accepted: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    rejected: int = 0
    pending: int = 0
    taken_down: int = 0  # tasks whose image was taken down before their work was reviewed
    amount: Decimal = Decimal("0")
    unpriced: int = 0  # accepted tasks with no contract to price them

    @property
    def accepted_total(self) -> int:
        return sum(self.accepted.values())


@dataclass
class MonthLine:
    month: str  # YYYY-MM
    vendor_id: int
    spec_id: int
    kind: str
    currency: str | None
    accepted: int = 0
    unit_price: Decimal | None = None
    amount: Decimal = Decimal("0")


@dataclass
class PaceWarning:
    batch_id: int
    name: str
    vendor_id: int
    spec_id: int
    done: int
    target: int
    expected_by_today: int
    deadline: dt.date
    days_left: int
    needed_per_day: float
    actual_per_day: float
    overdue: bool


@dataclass
class CostReport:
    batches: list[BatchLine]
    months: list[MonthLine]
    totals: dict[str, Decimal]
    rejected_total: int
    unpriced_total: int
    pace_warnings: list[PaceWarning]
    taken_down_total: int = 0


def _pace(info: BatchInfo, done: int, deadline: dt.date | None, today: dt.date, tolerance: float) -> PaceWarning | None:
    """A warning when the accepted count lags the straight line from start to deadline."""
    if deadline is None or info.target <= 0 or done >= info.target:
        return None
    total_days = max(1, (deadline - info.started_on).days)
    elapsed = min(max(0, (today - info.started_on).days), total_days)
    expected = info.target * elapsed / total_days
    overdue = today > deadline
    if not overdue and done >= expected * (1 - tolerance):
        return None
    days_left = (deadline - today).days
    return PaceWarning(
        batch_id=info.batch_id, name=info.name, vendor_id=info.vendor_id, spec_id=info.spec_id, done=done,
        target=info.target, expected_by_today=round(expected), deadline=deadline, days_left=days_left,
        needed_per_day=round((info.target - done) / max(1, days_left), 2),
        actual_per_day=round(done / max(1, elapsed), 2), overdue=overdue,
    )


def cost_report(
    *,
    rows: Iterable[TaskRow],
    contracts: Iterable[Terms],
    batches: Iterable[BatchInfo] = (),
    today: dt.date,
    pace_tolerance: float = 0.1,
) -> CostReport:
    """Price accepted tasks per batch and per month, total them per currency, and
    warn about batches behind the pace their deadline needs (batch deadline, else
    the contract's). Pure: no database, no clock."""
    terms = {(t.vendor_id, t.spec_id): t for t in contracts}
    infos = {b.batch_id: b for b in batches}
    lines: dict[int, BatchLine] = {}
    months: dict[tuple, MonthLine] = {}
    totals: dict[str, Decimal] = defaultdict(Decimal)
    rejected_total = unpriced_total = taken_down_total = 0

    for row in rows:
        if row.kind not in KINDS:
            raise ValueError(f"unknown task kind {row.kind!r}")
        contract = terms.get((row.vendor_id, row.spec_id))
        info = infos.get(row.batch_id)
        if contract is not None:
            currency, unit_price = contract.currency, contract.prices[row.kind]
        elif info is not None and info.unit_price is not None and info.currency:
            currency, unit_price = info.currency, info.unit_price
        else:
            currency = unit_price = None
        line = lines.get(row.batch_id)
        if line is None:
            line = lines[row.batch_id] = BatchLine(
                batch_id=row.batch_id, name=info.name if info else f"batch {row.batch_id}", vendor_id=row.vendor_id,
                spec_id=row.spec_id, currency=currency)
        if row.status == REJECTED:
            line.rejected += row.count
            rejected_total += row.count
            continue
        if row.status == TAKEN_DOWN:
            line.taken_down += row.count
            taken_down_total += row.count
            continue
        if row.status == WITHDRAWN:
            continue
        if row.status != ACCEPTED:
            line.pending += row.count
            continue
        line.accepted[row.kind] += row.count
        month = row.accepted_on.strftime("%Y-%m") if row.accepted_on else "unknown"
        # Batches priced on their own may differ in price: one month line per price.
        key = (month, row.vendor_id, row.spec_id, row.kind, currency, unit_price)
        mline = months.get(key)
        if mline is None:
            mline = months[key] = MonthLine(month=month, vendor_id=row.vendor_id, spec_id=row.spec_id, kind=row.kind,
                                            currency=currency, unit_price=unit_price)
        mline.accepted += row.count
        if unit_price is None:
            line.unpriced += row.count
            unpriced_total += row.count
            continue
        amount = unit_price * row.count
        line.amount += amount
        mline.amount += amount
        totals[currency] += amount

    warnings = []
    for batch_id, info in infos.items():
        line = lines.get(batch_id)
        done = line.accepted_total if line else 0
        contract = terms.get((info.vendor_id, info.spec_id))
        warning = _pace(info, done, info.deadline or (contract.deadline if contract else None), today, pace_tolerance)
        if warning:
            warnings.append(warning)

    return CostReport(
        batches=sorted(lines.values(), key=lambda b: (b.vendor_id, b.spec_id, b.batch_id)),
        months=sorted(months.values(), key=lambda m: (m.month, m.vendor_id, m.spec_id, m.kind, m.currency or "",
                                                      m.unit_price or 0)),
        totals=dict(sorted(totals.items())),
        rejected_total=rejected_total,
        unpriced_total=unpriced_total,
        pace_warnings=sorted(warnings, key=lambda w: (w.deadline, w.batch_id)),
        taken_down_total=taken_down_total,
    )


# A text cell starting with one of these is run as a formula by Excel, LibreOffice and
# Google Sheets (OWASP "CSV injection"); vendor, spec and batch names are typed by people.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value):
    """`value` as a spreadsheet shows it, never runs it: text starting like a formula
    gets a leading apostrophe; numbers (Decimal, int) are left as they are."""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


class _SafeWriter:
    """csv.writer whose every text cell goes through `csv_safe`."""

    def __init__(self, out):
        self._writer = csv.writer(out)

    def writerow(self, row):
        self._writer.writerow([csv_safe(v) for v in row])


def cost_report_csv(report: CostReport, *, vendor_names: dict[int, str], spec_names: dict[int, str]) -> str:
    """The report as CSV: one line per batch, per month and kind, and per currency total.
    Names that would start a spreadsheet formula are escaped (`csv_safe`). The
    taken-down column comes last so that sheets reading the earlier columns by position
    keep working."""
    out = io.StringIO()
    writer = _SafeWriter(out)
    writer.writerow(["section", "period_or_batch", "vendor", "spec", "kind", "accepted", "rejected", "pending",
                     "unit_price", "currency", "amount", "taken_down"])
    for b in report.batches:
        for kind in KINDS:
            if b.accepted[kind]:
                writer.writerow(["batch", b.name, vendor_names.get(b.vendor_id, b.vendor_id),
                                 spec_names.get(b.spec_id, b.spec_id), kind, b.accepted[kind], "", "", "",
                                 b.currency or "", "", ""])
        writer.writerow(["batch_total", b.name, vendor_names.get(b.vendor_id, b.vendor_id),
                         spec_names.get(b.spec_id, b.spec_id), "", b.accepted_total, b.rejected, b.pending, "",
                         b.currency or "", b.amount if b.currency else "unpriced", b.taken_down])
    for m in report.months:
        writer.writerow(["month", m.month, vendor_names.get(m.vendor_id, m.vendor_id),
                         spec_names.get(m.spec_id, m.spec_id), m.kind, m.accepted, "", "",
                         m.unit_price if m.unit_price is not None else "", m.currency or "",
                         m.amount if m.currency else "unpriced", ""])
    for currency, amount in report.totals.items():
        writer.writerow(["total", "", "", "", "", "", report.rejected_total, "", "", currency, amount,
                         report.taken_down_total])
    return out.getvalue()


# ----------------------------------------------------------------- adapters


def labeling_task_rows(*, vendor_ids=None, spec_ids=None) -> tuple[list[TaskRow], list[BatchInfo]] | None:
    """Rows from labeling's Batch and Task tables, or None while they do not exist.

    Assumes labeling.Batch(vendor, spec, kind in regions/latex/full, agreed_quantity,
    deadline, created_at, name) and labeling.Task(batch, status, and `accepted_at`
    when labeling records it). Without `accepted_at` an accepted task is paid in the
    month of its last accepting review: its `updated_at` also moves on later edits
    (made gold, say), which would move work already paid into another month; it is
    only the fallback for an accepted task without such a review. Months and the
    batch's start day are in the configured time zone (TIME_ZONE).
    """
    try:
        from labeling.models import Batch, Task
    except ImportError:
        return None
    from django.db.models import Case, CharField, Count, DateTimeField, F, OuterRef, Q, Subquery, Value, When
    from django.db.models.functions import Coalesce, TruncMonth
    from django.utils import timezone

    tasks = Task.objects.all()
    batches = Batch.objects.all()
    if vendor_ids is not None:
        tasks, batches = tasks.filter(batch__vendor_id__in=vendor_ids), batches.filter(vendor_id__in=vendor_ids)
    if spec_ids is not None:
        tasks, batches = tasks.filter(batch__spec_id__in=spec_ids), batches.filter(spec_id__in=spec_ids)
    if any(f.name == "accepted_at" for f in Task._meta.get_fields()):
        stamp = F("accepted_at")
    else:
        from labeling.models import Review

        last_accept = (Review.objects.filter(annotation__task=OuterRef("pk"), decision=Review.Decision.ACCEPT)
                       .order_by("-created_at").values("created_at")[:1])
        stamp = Coalesce(Subquery(last_accept), F("updated_at"), output_field=DateTimeField())
    # Only accepted tasks have a pay month; the others stay one row per batch and status.
    paid_on = Case(When(status=ACCEPTED, then=stamp), default=None, output_field=DateTimeField())
    # Reviewed work keeps its verdict after a takedown; the rest can never be reviewed now.
    gone = Q(image__taken_down_at__isnull=False)
    pay_status = Case(When(gone & Q(status=SUBMITTED), then=Value(TAKEN_DOWN)),
                      When(gone & ~Q(status__in=(ACCEPTED, REJECTED)), then=Value(WITHDRAWN)),
                      default=F("status"), output_field=CharField())
    grouped = (tasks.annotate(month=TruncMonth(paid_on, output_field=DateTimeField()), pay_status=pay_status)
               .values("batch_id", "batch__vendor_id", "batch__spec_id", "batch__kind", "pay_status", "month")
               .annotate(n=Count("id")).order_by())
    rows = [TaskRow(vendor_id=g["batch__vendor_id"], spec_id=g["batch__spec_id"], kind=g["batch__kind"],
                    status=g["pay_status"], batch_id=g["batch_id"], count=g["n"],
                    accepted_on=(g["month"].date() if g["month"] and g["pay_status"] == ACCEPTED else None))
            for g in grouped]
    infos = [BatchInfo(batch_id=b.id, name=b.name, vendor_id=b.vendor_id, spec_id=b.spec_id, target=b.agreed_quantity,
                       started_on=timezone.localdate(b.created_at), deadline=b.deadline, unit_price=b.unit_price,
                       currency=b.currency)
             for b in batches.only("id", "name", "vendor_id", "spec_id", "agreed_quantity", "created_at", "deadline",
                                   "unit_price", "currency")]
    return rows, infos


def load_task_rows(*, vendor_ids=None, spec_ids=None) -> tuple[list[TaskRow], list[BatchInfo]] | None:
    """Rows from the configured provider (MATHSET_COST_ROWS_PROVIDER), else from labeling."""
    path = getattr(settings, "MATHSET_COST_ROWS_PROVIDER", "")
    provider = import_string(path) if path else labeling_task_rows
    return provider(vendor_ids=vendor_ids, spec_ids=spec_ids)
