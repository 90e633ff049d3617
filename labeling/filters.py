"""FilterSets shared by the labeling API and pages."""
import django_filters

from .models import Annotation, Batch, Prediction, Review, Task


class BatchFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(field_name="name", lookup_expr="icontains", label="Name contains")

    class Meta:
        model = Batch
        fields = ["spec", "vendor", "status", "kind"]


class TaskFilter(django_filters.FilterSet):
    spec = django_filters.NumberFilter(field_name="batch__spec_id", label="Spec")
    vendor = django_filters.NumberFilter(field_name="batch__vendor_id", label="Vendor")
    status = django_filters.MultipleChoiceFilter(choices=Task.Status.choices)
    category = django_filters.CharFilter(field_name="image__categories__slug", label="Image category slug",
                                         distinct=True)
    min_priority = django_filters.NumberFilter(field_name="priority", lookup_expr="gte")
    max_confidence = django_filters.NumberFilter(field_name="model_confidence", lookup_expr="lte",
                                                 label="Model confidence at most")

    class Meta:
        model = Task
        fields = ["batch", "image", "status"]


class AnnotationFilter(django_filters.FilterSet):
    batch = django_filters.NumberFilter(field_name="task__batch_id", label="Batch")
    status = django_filters.MultipleChoiceFilter(choices=Annotation.Status.choices)

    class Meta:
        model = Annotation
        fields = ["task", "annotator", "status"]


class ReviewFilter(django_filters.FilterSet):
    class Meta:
        model = Review
        fields = ["annotation", "reviewer", "decision"]


class PredictionFilter(django_filters.FilterSet):
    class Meta:
        model = Prediction
        fields = ["image", "model_name", "model_version"]
