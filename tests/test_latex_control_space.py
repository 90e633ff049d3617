"""A backslash before a line break or a tab is TeX's control space, like "\\ ": no token (and so
no normalised formula, no formulas.lst line) may carry a line break."""
import pytest

from common.latex import check_and_normalize, normalize, tokenize


@pytest.mark.parametrize("src", ["x \\\n+ 1", "x \\\t+ 1", "x \\\r\n+ 1", "x \\ + 1"])
def test_control_space_in_any_form_is_one_spacing_token(src):
    assert "\\ " in tokenize(src)
    assert not any(any(c in tok for c in "\n\r\t") for tok in tokenize(src))
    assert normalize(src) == "x + 1"


def test_a_checked_answer_has_no_line_break_in_its_normal_form():
    problems, normalized = check_and_normalize("a \\\nb")
    assert "\n" not in normalized and normalized == "a b", problems
