"""The curator's QA statistics page in a real browser: its server-drawn charts fit their cards."""
from __future__ import annotations

import pytest

from pipeline.stats import spec_stats_compute
from tests.browser_fixtures import save_screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def test_qa_charts_stay_inside_their_cards_and_the_page_does_not_scroll_sideways(browser_page, qa_world):
    # The charts are 560px-wide SVGs; in the page's narrow right-hand column (throughput and cost,
    # pre-label changes) they ran out of their cards and made the whole page scroll sideways at 1366px.
    world = qa_world
    spec_stats_compute(spec=world.spec)
    page = browser_page(world.curator)
    page.goto(f"/specs/{world.spec.pk}/qa/")
    page.wait_for_selector("#qa-throughput svg.chart")
    save_screenshot(page, "spec-qa")
    layout = page.evaluate("""() => ({
        scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth,
        charts: [...document.querySelectorAll('svg.chart')].map(svg => {
            const card = svg.closest('.card').getBoundingClientRect(), box = svg.getBoundingClientRect();
            return {card: svg.closest('.card').id, right: box.right, cardRight: card.right, width: box.width};
        }),
    })""")
    assert len(layout["charts"]) >= 10
    assert layout["scrollWidth"] <= layout["innerWidth"], layout
    for chart in layout["charts"]:
        assert chart["width"] > 0 and chart["right"] <= chart["cardRight"], chart
    assert not page.errors, page.errors
