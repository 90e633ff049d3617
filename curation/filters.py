"""FilterSets shared by the curation API and pages."""
import django_filters

from common.fields import parse_row_id
from common.filters import BooleanFilter, IdFilter
from common.roles import is_curator

from .models import Category, DatasetSpec, Export, Image, Snapshot, Source


class SpecFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(field_name="name", lookup_expr="icontains", label="Name contains")

    class Meta:
        model = DatasetSpec
        fields = ["status", "intended_use", "serving_target"]


class SourceFilter(django_filters.FilterSet):
    licence = django_filters.CharFilter(field_name="licence__code", label="Licence code")
    commercial = BooleanFilter(field_name="licence__allows_commercial", label="Allows commercial use")

    class Meta:
        model = Source
        fields = ["kind", "licence"]


class CategoryFilter(django_filters.FilterSet):
    spec = IdFilter(field_name="spec_id")

    class Meta:
        model = Category
        fields = ["spec", "slug"]


class ImageFilter(django_filters.FilterSet):
    spec = IdFilter(field_name="spec_id", label="Spec id")
    category = django_filters.CharFilter(method="filter_category", label="Category slug or id")
    source = IdFilter(field_name="source_id", label="Source id")
    licence = django_filters.CharFilter(field_name="source__licence__code", label="Licence code")
    commercial = BooleanFilter(field_name="source__licence__allows_commercial", label="Licence allows commercial use")
    sha256 = django_filters.CharFilter()
    capture_session = django_filters.CharFilter()
    has_truth = BooleanFilter(method="filter_has_truth", label="Has a known (gold) answer")
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")

    class Meta:
        model = Image
        fields = ["spec", "source", "format"]

    def is_valid(self) -> bool:
        # Known answers make gold tasks, which only curators may tell apart (tasks hide `is_gold`,
        # images `truth_latex`): filtered on by anyone else, `has_truth` would list an annotator's
        # gold tasks. Refused by name (a 400), not ignored, so nobody takes the list for filtered.
        valid = super().is_valid()
        asked = self.form.data.get("has_truth", "") not in ("", None)
        user = getattr(self.request, "user", None)
        if asked and not (user is not None and is_curator(user)):
            if "has_truth" not in self.form.errors:
                self.form.add_error("has_truth", "Only curators filter images by their known answer.")
            return False
        return valid

    def filter_category(self, queryset, name, value):
        pk = parse_row_id(value)
        if pk is not None:
            return queryset.filter(categories__id=pk)
        if value.isdigit():  # a number no row id can be (too large, or not ASCII digits): no slug is one
            return queryset.none()
        return queryset.filter(categories__slug=value)

    def filter_has_truth(self, queryset, name, value):
        return queryset.exclude(truth_latex="") if value else queryset.filter(truth_latex="")


# Id filters, not choices among every row: a spec or snapshot the user may not see answers
# like one that does not exist (an empty list), instead of a 200-versus-400 that reveals it.
class SnapshotFilter(django_filters.FilterSet):
    spec = IdFilter(field_name="spec_id", label="Spec id")

    class Meta:
        model = Snapshot
        fields = ["spec", "status"]


class ExportFilter(django_filters.FilterSet):
    snapshot = IdFilter(field_name="snapshot_id", label="Snapshot id")

    class Meta:
        model = Export
        fields = ["snapshot", "format", "status"]
