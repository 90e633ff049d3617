"""Small template helpers."""
from django import template

register = template.Library()


@register.filter
def get_item(mapping, key):
    return mapping.get(key, "") if mapping else ""


@register.filter
def percent(value, total):
    try:
        return min(100, round(100 * float(value) / float(total))) if total else 0
    except (TypeError, ValueError):
        return 0
