"""Admin for labeling."""
from django.contrib import admin

from .models import Vendor, VendorMembership


class MembershipInline(admin.TabularInline):
    model = VendorMembership
    extra = 0
    raw_id_fields = ["user"]


@admin.register(Vendor)
class VendorAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "contact_email", "active"]
    search_fields = ["name"]
    inlines = [MembershipInline]
