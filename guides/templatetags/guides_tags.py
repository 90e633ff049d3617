"""Template helpers of guides: KaTeX assets when vendored, the unread badge."""
from django import template
from django.templatetags.static import static
from django.utils.html import format_html
from django.utils.safestring import mark_safe

register = template.Library()

KATEX_JS = "vendor/katex/katex.min.js"
KATEX_CSS = "vendor/katex/katex.min.css"

# Renders every <span class="math" data-latex=...> produced by guides.rendering.
_RENDER = """<script>
document.querySelectorAll("span.math[data-latex]").forEach(function (el) {
  try { katex.render(el.dataset.latex, el, {displayMode: el.dataset.display === "true", throwOnError: false}); }
  catch (e) { el.title = String(e); }
});
</script>"""


@register.simple_tag
def katex_assets():
    """KaTeX's CSS, script (vendored under static/vendor/katex) and the render call."""
    css = format_html('<link rel="stylesheet" href="{}">', static(KATEX_CSS))
    return format_html('{}<script src="{}"></script>{}', css, static(KATEX_JS), mark_safe(_RENDER))  # noqa: S308


@register.simple_tag(takes_context=True)
def unread_notifications(context) -> int:
    """Unread notifications of the signed-in user (0 when signed out)."""
    request = context.get("request")
    user = getattr(request, "user", None)
    if not getattr(user, "is_authenticated", False):
        return 0
    from guides.selectors import notifications_unread_count

    return notifications_unread_count(user=user)
