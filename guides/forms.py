"""Forms of the guides pages: shapes only; services check meaning and name the field."""
from __future__ import annotations

import json

from django import forms

from curation.models import DatasetSpec
from labeling.models import Vendor

from .models import GuideExample


class GuideCreateForm(forms.Form):
    spec = forms.ModelChoiceField(queryset=DatasetSpec.objects.none())
    title = forms.CharField(max_length=200)
    body_md = forms.CharField(widget=forms.Textarea(attrs={"rows": 14}), required=False, label="Text (Markdown)")

    def __init__(self, *args, specs=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["spec"].queryset = specs if specs is not None else DatasetSpec.objects.none()


class GuideVersionForm(forms.Form):
    body_md = forms.CharField(widget=forms.Textarea(attrs={"rows": 22}), required=False, label="Text (Markdown)",
                              help_text="LaTeX between $...$ (inline) or $$...$$ (display).")
    change_notes = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)


class JSONListField(forms.CharField):
    def to_python(self, value):
        value = super().to_python(value)
        if not value:
            return None
        try:
            return json.loads(value)
        except ValueError:
            raise forms.ValidationError("Not valid JSON.") from None


class ExampleForm(forms.Form):
    image = forms.IntegerField(min_value=1, label="Image id")
    kind = forms.ChoiceField(choices=GuideExample.Kind.choices)
    caption = forms.CharField(required=False)
    regions = JSONListField(required=False, help_text='Quads: [[[x,y],[x,y],[x,y],[x,y]], ...]')


class QuestionForm(forms.Form):
    spec = forms.ModelChoiceField(queryset=DatasetSpec.objects.none())
    title = forms.CharField(max_length=200)
    body = forms.CharField(widget=forms.Textarea(attrs={"rows": 6}))
    guide_version = forms.IntegerField(required=False, widget=forms.HiddenInput)
    image = forms.IntegerField(required=False, widget=forms.HiddenInput)
    region = JSONListField(required=False, widget=forms.HiddenInput)
    task_ref = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)

    def __init__(self, *args, specs=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["spec"].queryset = specs if specs is not None else DatasetSpec.objects.none()


class AnswerForm(forms.Form):
    body = forms.CharField(widget=forms.Textarea(attrs={"rows": 5}), label="Answer (Markdown)")
    close = forms.BooleanField(required=False, label="Close the question")


class PromoteForm(forms.Form):
    faq_question = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False, label="FAQ question")
    faq_answer = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), required=False, label="FAQ answer")


class ContractForm(forms.Form):
    vendor = forms.ModelChoiceField(queryset=Vendor.objects.filter(active=True))
    spec = forms.ModelChoiceField(queryset=DatasetSpec.objects.all())
    reference = forms.CharField(required=False, max_length=120)
    currency = forms.CharField(max_length=3, initial="USD")
    price_regions = forms.DecimalField(max_digits=10, decimal_places=4, min_value=0)
    price_latex = forms.DecimalField(max_digits=10, decimal_places=4, min_value=0)
    price_full = forms.DecimalField(max_digits=10, decimal_places=4, min_value=0)
    agreed_quantity = forms.IntegerField(min_value=1)
    starts_on = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}))
    deadline = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}))
    notes = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)
