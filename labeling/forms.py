"""Forms of the curator's batch pages. They check the shape of the input; the rules (a
contract's price, categories of the spec, images matching the filter, an agreed quantity
within the task count) live in `services.batch_create` and `services.batch_update`, whose
errors the views put back beside the field they name."""
from __future__ import annotations

from django import forms

from .models import Batch
from .services import MAX_BATCH_TASKS, MAX_REASON_LENGTH

DATE_WIDGET = forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")
CURRENCY_WIDGET = forms.TextInput(attrs={"maxlength": 3, "size": 4, "autocapitalize": "characters"})
# What a new batch may start as: a draft is no state the pages offer, and a closed batch takes no work.
START_STATUSES = [(Batch.Status.ACTIVE, "Active"), (Batch.Status.PAUSED, "Paused")]
EDIT_STATUSES = [(s, Batch.Status(s).label) for s in (Batch.Status.ACTIVE, Batch.Status.PAUSED, Batch.Status.CLOSED)]


class BatchCreateForm(forms.Form):
    """A new batch: who labels which images of which spec, at what price, by when."""

    spec = forms.ModelChoiceField(queryset=None, empty_label="Choose a spec…")
    vendor = forms.ModelChoiceField(queryset=None, empty_label="Choose a vendor…")
    name = forms.CharField(max_length=200, required=False, help_text="Left empty: “<spec> for <vendor>”.")
    kind = forms.ChoiceField(choices=Batch.Kind.choices, initial=Batch.Kind.FULL,
                             help_text="What the vendor delivers per image.")
    quantity = forms.IntegerField(min_value=1, max_value=MAX_BATCH_TASKS,
                                  help_text="Tasks (images) wanted; fewer when fewer images match the filter.")
    overlap = forms.IntegerField(min_value=1, max_value=10, initial=1,
                                 help_text="Independent annotations wanted per image.")
    unit_price = forms.DecimalField(max_digits=10, decimal_places=4, min_value=0, required=False,
                                    help_text="Per accepted task. Leave empty where the vendor has a contract "
                                              "for the spec: its price for the kind applies.")
    # No max_length: the service's "Use a three-letter ISO 4217 code" says more than a length would.
    currency = forms.CharField(required=False, widget=CURRENCY_WIDGET,
                               help_text="ISO 4217 code; the contract's where there is one, else USD.")
    deadline = forms.DateField(required=False, widget=DATE_WIDGET)
    # Choices: the categories of the chosen spec (set by the view); the script shows those of
    # the spec chosen in the browser.
    categories = forms.MultipleChoiceField(required=False, widget=forms.CheckboxSelectMultiple,
                                           help_text="Only images of any of these kinds; none ticked: every image.")
    source = forms.ModelChoiceField(queryset=None, required=False, empty_label="Any source")
    only_unlabeled = forms.BooleanField(required=False, initial=True, label="Only images in no batch yet")
    lowest_confidence_first = forms.BooleanField(required=False, initial=True,
                                                 label="Lowest model confidence first")
    status = forms.ChoiceField(choices=START_STATUSES, initial=Batch.Status.ACTIVE,
                               help_text="A paused batch hands out no task until it is set active.")

    def __init__(self, *args, specs, vendors, sources, category_choices, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["spec"].queryset = specs
        self.fields["vendor"].queryset = vendors
        self.fields["source"].queryset = sources
        self.fields["categories"].choices = category_choices

    def clean_currency(self) -> str | None:
        return self.cleaned_data["currency"] or None


class BatchEditForm(forms.Form):
    """What `services.batch_update` changes. Under a contract the price fields are shown
    disabled: the contract prices the batch."""

    name = forms.CharField(max_length=200)
    status = forms.ChoiceField(choices=EDIT_STATUSES, help_text=(
        "Paused: no new task is handed out, open work is still finished and reviewed. Closed: its work is over, "
        "nothing more is saved, handed in or reviewed in it."))
    deadline = forms.DateField(required=False, widget=DATE_WIDGET)
    unit_price = forms.DecimalField(max_digits=10, decimal_places=4, min_value=0, help_text="Per accepted task.")
    currency = forms.CharField(widget=CURRENCY_WIDGET, help_text="ISO 4217 code, e.g. USD.")
    agreed_quantity = forms.IntegerField(min_value=1)
    # Not required here: only reopening needs one, and the service, which knows the stored
    # status, is what refuses a reopening without it (its error shows beside this field).
    reason = forms.CharField(required=False, max_length=MAX_REASON_LENGTH, widget=forms.Textarea(attrs={"rows": 2}),
                             help_text="Why you change the batch: kept in its history. Required to reopen a closed "
                                       "batch.")

    def __init__(self, *args, batch: Batch, task_count: int, contract=None, **kwargs):
        super().__init__(*args, **kwargs)
        if batch.status not in dict(EDIT_STATUSES):  # a draft made through the API stays choosable
            self.fields["status"].choices = [(batch.status, batch.get_status_display()), *EDIT_STATUSES]
        status_help = self.fields["status"].help_text + " Reopening a closed batch needs a reason (below)."
        if batch.status == Batch.Status.CLOSED:
            status_help = "This batch is closed. " + status_help
        self.fields["status"].help_text = status_help
        self.fields["agreed_quantity"].help_text = (f"What the vendor delivers: at most the batch's {task_count} "
                                                    f"task{'' if task_count == 1 else 's'}.")
        if contract is not None:
            for name in ("unit_price", "currency"):
                self.fields[name].disabled = True
                self.fields[name].required = False
            self.fields["unit_price"].help_text = (
                f"Priced by the contract with {contract.vendor.name} for {contract.spec.name}: "
                f"{contract.price_for(batch.kind)} {contract.currency} per {batch.get_kind_display().lower()} "
                "task. Change the contract to change it.")
