"""Template helpers of guides: KaTeX assets when vendored, the unread badge."""
from django import template
from django.templatetags.static import static
from django.utils.html import format_html

register = template.Library()

KATEX_JS = "vendor/katex/katex.min.js"
KATEX_CSS = "vendor/katex/katex.min.css"

# Renders every <span class="math" data-latex=...> produced by guides.rendering: a static file,
# since the Content-Security-Policy refuses inline scripts.
KATEX_RENDER_JS = "js/guides/math.js"


@register.simple_tag
def katex_assets():
    """KaTeX's CSS, script (vendored under static/vendor/katex) and the script that renders the math."""
    css = format_html('<link rel="stylesheet" href="{}">', static(KATEX_CSS))
    return format_html('{}<script src="{}"></script><script src="{}"></script>', css, static(KATEX_JS),
                       static(KATEX_RENDER_JS))


@register.simple_tag(takes_context=True)
def unread_notifications(context) -> int:
    """Unread notifications of the signed-in user (0 when signed out)."""
    request = context.get("request")
    user = getattr(request, "user", None)
    if not getattr(user, "is_authenticated", False):
        return 0
    from guides.selectors import notifications_unread_count

    return notifications_unread_count(user=user)
