"""FilterSets shared by the labeling API and pages.

Foreign keys are plain number filters: a model-choice filter would answer 400 for
an id that does not exist and 200 for another vendor's, telling them it exists.
"""
import django_filters
from django.db.models import Exists, OuterRef

from common.filters import IdFilter

from .models import Annotation, Batch, Prediction, Review, Task


class BatchFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(field_name="name", lookup_expr="icontains", label="Name contains")
    spec = IdFilter(field_name="spec_id", label="Spec id")
    vendor = IdFilter(field_name="vendor_id", label="Vendor id")

    class Meta:
        model = Batch
        fields = ["status", "kind"]


class TaskFilter(django_filters.FilterSet):
    batch = IdFilter(field_name="batch_id", label="Batch id")
    image = IdFilter(field_name="image_id", label="Image id")
    spec = IdFilter(field_name="batch__spec_id", label="Spec id")
    vendor = IdFilter(field_name="batch__vendor_id", label="Vendor id")
    # A column of the task itself: no join, so no duplicates to remove. django-filter's default
    # (distinct=True) made the page a SELECT DISTINCT over every column, its JSON included, and
    # the count a COUNT over that: at 100,000 tasks an external sort on disk per request.
    status = django_filters.MultipleChoiceFilter(choices=Task.Status.choices, distinct=False)
    category = django_filters.CharFilter(method="filter_category", label="Image category slug")
    min_priority = django_filters.NumberFilter(field_name="priority", lookup_expr="gte")
    max_confidence = django_filters.NumberFilter(field_name="model_confidence", lookup_expr="lte",
                                                 label="Model confidence at most")

    class Meta:
        model = Task
        fields = ["status"]

    def filter_category(self, queryset, name, value):
        """Tasks whose image is in a category of that slug: a semi-join (EXISTS), so no DISTINCT."""
        from curation.models import Image

        links = Image.categories.through.objects.filter(image_id=OuterRef("image_id"), category__slug=value)
        return queryset.filter(Exists(links))


class AnnotationFilter(django_filters.FilterSet):
    task = IdFilter(field_name="task_id", label="Task id")
    batch = IdFilter(field_name="task__batch_id", label="Batch id")
    annotator = IdFilter(field_name="annotator_id", label="Annotator (user id)")
    status = django_filters.MultipleChoiceFilter(choices=Annotation.Status.choices, distinct=False)  # own column

    class Meta:
        model = Annotation
        fields = ["status"]


class ReviewFilter(django_filters.FilterSet):
    annotation = IdFilter(field_name="annotation_id", label="Annotation id")
    reviewer = IdFilter(field_name="reviewer_id", label="Reviewer (user id)")

    class Meta:
        model = Review
        fields = ["decision"]


class PredictionFilter(django_filters.FilterSet):
    image = IdFilter(field_name="image_id", label="Image id")
    model_name = django_filters.CharFilter()
    model_version = django_filters.CharFilter()

    class Meta:
        model = Prediction
        fields = ["model_name", "model_version"]
