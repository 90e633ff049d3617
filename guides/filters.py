"""FilterSets shared by the guides API and pages."""
import django_filters

from common.filters import BooleanFilter, IdFilter

from .models import Contract, FaqEntry, GuideAcknowledgement, GuideExample, GuideVersion, Notification, Question


class GuideVersionFilter(django_filters.FilterSet):
    guide = IdFilter(field_name="guide_id")
    spec = IdFilter(field_name="guide__spec_id", label="Spec id")

    class Meta:
        model = GuideVersion
        fields = ["guide", "spec", "status"]


class GuideExampleFilter(django_filters.FilterSet):
    version = IdFilter(field_name="version_id")

    class Meta:
        model = GuideExample
        fields = ["version", "kind"]


class FaqFilter(django_filters.FilterSet):
    spec = IdFilter(field_name="version__guide__spec_id", label="Spec id")
    version = IdFilter(field_name="version_id")
    q = django_filters.CharFilter(method="filter_q", label="Text contains")

    class Meta:
        model = FaqEntry
        fields = ["spec", "version"]

    def filter_q(self, queryset, name, value):
        from django.db.models import Q

        return queryset.filter(Q(question_text__icontains=value) | Q(answer_md__icontains=value))


class AcknowledgementFilter(django_filters.FilterSet):
    version = IdFilter(field_name="version_id")
    guide = IdFilter(field_name="version__guide_id")
    user = IdFilter(field_name="user_id")

    class Meta:
        model = GuideAcknowledgement
        fields = ["version", "guide", "user"]


class QuestionFilter(django_filters.FilterSet):
    spec = IdFilter(field_name="spec_id")
    vendor = IdFilter(field_name="vendor_id")
    guide_version = IdFilter(field_name="guide_version_id")
    mine = BooleanFilter(method="filter_mine", label="Asked by me")
    promoted_to_faq = BooleanFilter()

    class Meta:
        model = Question
        fields = ["spec", "vendor", "status", "guide_version", "promoted_to_faq"]

    def filter_mine(self, queryset, name, value):
        user = getattr(self.request, "user", None)
        if value and user is not None:
            return queryset.filter(asked_by=user)
        return queryset


class NotificationFilter(django_filters.FilterSet):
    unread = BooleanFilter(field_name="read_at", lookup_expr="isnull", label="Unread only")

    class Meta:
        model = Notification
        fields = ["kind", "unread"]


class ContractFilter(django_filters.FilterSet):
    vendor = IdFilter(field_name="vendor_id")
    spec = IdFilter(field_name="spec_id")

    class Meta:
        model = Contract
        fields = ["vendor", "spec", "currency"]
