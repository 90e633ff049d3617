"""Forms of the curator pages. They check the shape of the input; the rules
(licence vs intended use, unique slugs, answer formats) live in the services,
whose errors the views put back beside the field they name."""
from __future__ import annotations

from django import forms

from common.fields import MAX_INT

from .models import DatasetSpec, Export, ModelRequirement, Source, Takedown

ANSWER_FORMAT_CHOICES = [("quad", "Quadrilateral (4 points)"), ("mask", "Pixel mask"), ("latex", "LaTeX")]


class SpecForm(forms.Form):
    name = forms.CharField(max_length=200)
    slug = forms.SlugField(max_length=80, required=False, help_text="Left empty, it is made from the name.")
    requirement = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), label="Service requirement",
                                  help_text="What the service must do, in words.")
    intended_use = forms.ChoiceField(choices=DatasetSpec.IntendedUse.choices)
    # Not required here: the service says which formats exist when none is chosen.
    answer_formats = forms.MultipleChoiceField(choices=ANSWER_FORMAT_CHOICES, required=False,
                                               widget=forms.CheckboxSelectMultiple)
    status = forms.ChoiceField(choices=DatasetSpec.Status.choices)
    max_ms_per_image = forms.IntegerField(min_value=1, max_value=MAX_INT, required=False, label="Max ms per image")
    target_qps = forms.FloatField(min_value=0.01, max_value=1_000_000, required=False, label="Target QPS",
                                  help_text="Requests per second, 0.01 to 1,000,000; leave empty for none.")
    serving_target = forms.ChoiceField(choices=[("", "—")] + DatasetSpec.ServingTarget.choices, required=False)


class SpecCreateForm(SpecForm):
    default_quota = forms.IntegerField(min_value=0, max_value=MAX_INT, initial=100, label="Quota of each default kind",
                                       help_text="Printed, handwritten, shadow, highlighter and whiteout start with this quota.")


class RequirementForm(forms.Form):
    metric = forms.ChoiceField(choices=[("", "—")] + ModelRequirement.Metric.choices, required=False)
    threshold = forms.FloatField(required=False)

    def clean(self):
        data = super().clean()
        threshold = data.get("threshold")
        if data.get("metric") and threshold is None and "threshold" not in self.errors:
            self.add_error("threshold", "Give the threshold this metric must reach.")
        # Every metric is measured as a fraction (pipeline.evaluation): 95 would be a requirement
        # no model can meet, -3 one every model meets.
        elif data.get("metric") and threshold is not None and not 0 <= threshold <= 1:
            self.add_error("threshold", "Give the threshold as a fraction between 0 and 1 (0.9 for 90 %).")
        return data


class CategoryRowForm(forms.Form):
    id = forms.IntegerField(widget=forms.HiddenInput)
    name = forms.CharField(max_length=120)
    target_quota = forms.IntegerField(min_value=0, max_value=MAX_INT, label="Target")
    description = forms.CharField(required=False)
    # Offered on custom kinds only; the service refuses built-in ones and kinds images carry.
    remove = forms.BooleanField(required=False)


class NewCategoryForm(forms.Form):
    name = forms.CharField(max_length=120, required=False)
    slug = forms.SlugField(max_length=60, required=False)
    target_quota = forms.IntegerField(min_value=0, max_value=MAX_INT, required=False, label="Target")
    description = forms.CharField(required=False)

    def clean(self):
        data = super().clean()
        # A row with a quota or description but no name would otherwise be dropped without a word.
        named = data.get("name") or data.get("slug") or self.errors.keys() & {"name", "slug"}
        if not named and (data.get("target_quota") is not None or data.get("description")):
            self.add_error("name", "Give the new kind a name, or clear its row.")
        return data


RequirementFormSet = forms.formset_factory(RequirementForm, extra=2)
CategoryRowFormSet = forms.formset_factory(CategoryRowForm, extra=0)
NewCategoryFormSet = forms.formset_factory(NewCategoryForm, extra=2)


class SourceForm(forms.Form):
    name = forms.CharField(max_length=200)
    kind = forms.ChoiceField(choices=Source.Kind.choices)
    licence = forms.ModelChoiceField(queryset=None)
    copyright_holder = forms.CharField(max_length=200)
    attribution = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False,
                                  help_text="Left empty for a licence that requires attribution, a standard line is written.")
    url = forms.URLField(required=False, label="URL", assume_scheme="https")
    contract_reference = forms.CharField(max_length=200, required=False,
                                         help_text="Required for sources under a proprietary contract.")
    acquired_on = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    notes = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)

    def __init__(self, *args, licences, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["licence"].queryset = licences


class SnapshotForm(forms.Form):
    """A snapshot request: the service checks the name's uniqueness and the ratios' sum."""

    spec = forms.ModelChoiceField(queryset=DatasetSpec.objects.none())
    name = forms.CharField(max_length=200, help_text="Unique within the spec, e.g. v1 or 2026-11 release.")
    train = forms.FloatField(min_value=0, initial=0.8, label="Train share")
    validation = forms.FloatField(min_value=0, initial=0.1, label="Validation share")
    test = forms.FloatField(min_value=0, initial=0.1, label="Test share")
    seed = forms.IntegerField(initial=0, help_text="The same work, shares and seed give the same split.")

    def __init__(self, *args, specs=None, **kwargs):
        super().__init__(*args, **kwargs)
        if specs is not None:
            self.fields["spec"].queryset = specs


class ExportForm(forms.Form):
    """The format of a new export of a snapshot."""

    format = forms.ChoiceField(choices=Export.Format.choices)


class TakedownForm(forms.Form):
    """A takedown request (copyright or personal-data erasure); the service records and applies it."""

    kind = forms.ChoiceField(choices=Takedown.Kind.choices, label="Reason kind")
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=5000,
                             help_text="The request, in words (a reference to the letter or ticket).")
    requested_by = forms.CharField(max_length=200, help_text="Rights holder, data subject or authority.")
