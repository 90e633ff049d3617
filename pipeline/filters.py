"""FilterSets of the pipeline API (shared with pages)."""
from __future__ import annotations

import django_filters

from common.filters import BooleanFilter, IdFilter

from .models import EvaluationRun, ModelVersion, Prediction, PrelabelJob, QAReport, Webhook, WebhookDelivery


class ModelVersionFilter(django_filters.FilterSet):
    is_active = BooleanFilter()

    class Meta:
        model = ModelVersion
        fields = ["kind", "source", "is_active", "name"]


class PrelabelJobFilter(django_filters.FilterSet):
    spec = IdFilter(field_name="spec_id")

    class Meta:
        model = PrelabelJob
        fields = ["status", "spec"]


class PredictionFilter(django_filters.FilterSet):
    image = IdFilter(field_name="image_id")
    job = IdFilter(field_name="job_id")
    spec = IdFilter(field_name="image__spec_id")
    max_confidence = django_filters.NumberFilter(field_name="min_confidence", lookup_expr="lte",
                                                 label="Lowest region confidence at most")

    class Meta:
        model = Prediction
        fields = ["image", "job", "detector_version", "recognizer_version"]


class EvaluationRunFilter(django_filters.FilterSet):
    snapshot = IdFilter(field_name="snapshot_id")
    spec = IdFilter(field_name="snapshot__spec_id")
    detector_version = IdFilter(field_name="detector_version_id")
    recognizer_version = IdFilter(field_name="recognizer_version_id")
    status = django_filters.ChoiceFilter(choices=EvaluationRun.Status.choices)

    class Meta:
        model = EvaluationRun
        fields = ["snapshot", "spec", "status", "detector_version", "recognizer_version"]


class QAReportFilter(django_filters.FilterSet):
    spec = IdFilter(field_name="spec_id")

    class Meta:
        model = QAReport
        fields = ["spec"]


class WebhookFilter(django_filters.FilterSet):
    active = BooleanFilter()
    event = django_filters.ChoiceFilter(choices=Webhook.Event.choices, method="filter_event",
                                        label="Only webhooks sent this event")

    class Meta:
        model = Webhook
        fields = ["active", "event"]

    def filter_event(self, queryset, name, value):
        return queryset.filter(events__has_item=value)


class WebhookDeliveryFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=WebhookDelivery.Status.choices)
    event = django_filters.ChoiceFilter(choices=[*Webhook.Event.choices, (WebhookDelivery.PING, "Ping")])

    class Meta:
        model = WebhookDelivery
        fields = ["status", "event"]
