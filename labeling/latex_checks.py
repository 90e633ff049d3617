"""The LaTeX checks labeling needs, delegated to `common.latex`.

`common.latex` (tokenize / normalize / check) is the one place LaTeX is parsed.
It is imported lazily so that labeling keeps working on a branch where it has
not landed yet: then a minimal stand-in checks brace balance and \\begin/\\end
pairs only, and normalises by whitespace-splitting tokens. Remove the stand-in
once `common.latex` is on main everywhere.
"""
from __future__ import annotations

import re

# Longest LaTeX answer accepted for one region; a real formula is far shorter.
MAX_LATEX_LENGTH = 4000

_TOKEN = re.compile(r"\\[A-Za-z]+\*?|\\.|[{}]|[^\s\\{}]")


def _backend():
    try:
        from common import latex
    except ImportError:
        return None
    return latex


def _fallback_check(src: str) -> list[str]:
    problems: list[str] = []
    depth = 0
    envs: list[str] = []
    tokens = _TOKEN.findall(src)
    for i, tok in enumerate(tokens):
        if tok == "{":
            depth += 1
        elif tok == "}":
            depth -= 1
            if depth < 0:
                problems.append("Unbalanced braces: a '}' has no matching '{'.")
                depth = 0
        elif tok in ("\\begin", "\\end"):
            name = "".join(tokens[i + 2:tokens.index("}", i + 2)]) if tokens[i + 1:i + 2] == ["{"] and "}" in tokens[i + 2:] else ""
            if tok == "\\begin":
                envs.append(name)
            elif not envs or envs.pop() != name:
                problems.append(f"\\end{{{name}}} does not match an open \\begin.")
    if depth > 0:
        problems.append(f"Unbalanced braces: {depth} '{{' not closed.")
    problems.extend(f"\\begin{{{name}}} is never closed." for name in envs)
    return problems


def check(src: str) -> list[str]:
    """Human-readable problems of a LaTeX answer; empty when it is fine."""
    if len(src) > MAX_LATEX_LENGTH:
        return [f"The LaTeX is {len(src)} characters long; at most {MAX_LATEX_LENGTH} are allowed."]
    backend = _backend()
    return list(backend.check(src)) if backend else _fallback_check(src)


def normalize(src: str) -> str:
    """Space-separated normalised tokens, stored beside the raw text for comparison."""
    backend = _backend()
    return backend.normalize(src) if backend else " ".join(_TOKEN.findall(src))
