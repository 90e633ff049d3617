"""The one LaTeX tokenizer and normaliser, shared by the models, QA and evaluation.

Raw formula LaTeX comes in many spellings of the same picture (arXiv sources with ``\\over``,
``{\\rm x}`` and ``\\label``; CROHME truths in ``$...$``; annotators' own habits). Comparing
strings, training a recogniser or computing agreement only makes sense on one canonical
spelling, so every part of the platform goes through :func:`normalize`.

Public API
----------
``tokenize(src) -> list[str]``
    Lexical tokens, im2latex style: a command (``\\frac``, ``\\alpha``, ``\\hspace*``), an
    escaped symbol (``\\{``, ``\\,``, ``\\\\``, ``\\ ``) or a single character. Whitespace
    separates tokens and is dropped; ``%`` comments are dropped. The text is read in Unicode
    NFC first, so Hangul typed or pasted decomposed (macOS jamo: ``\\text{넓이}`` as 6 jamo)
    is the same syllable tokens (``넓`` ``이``) as composed. Nothing else changes.
``normalize(src, *, strip_braces=True, keep_spacing=False) -> str``
    Canonical space-separated tokens. The rules, applied in this order:

    1. ``$`` and ``$$`` delimiters are stripped (``\\$`` stays, it is a dollar sign).
    2. ``\\label{..}``, ``\\tag{..}``, ``\\nonumber``, ``\\notag`` are dropped with their argument.
    3. ``\\sp`` becomes ``^`` and ``\\sb`` becomes ``_``.
    4. Pure layout commands are dropped: ``\\displaystyle \\textstyle \\scriptstyle
       \\scriptscriptstyle \\limits \\nolimits \\relax \\protect`` and the size switches
       ``\\tiny .. \\Huge``; ``\\mathop`` is dropped (its argument stays).
    5. Spacing (``\\, \\: \\; \\> \\! \\ `` ``~ \\quad \\qquad \\enspace \\thinspace \\hfill``,
       ``\\hspace{..} \\vspace{..} \\phantom{..}``, ``\\kern``/``\\hskip`` and their dimension,
       ``\\smallskip``...) is dropped: it is invisible in a photo and annotators cannot
       reproduce it. With ``keep_spacing=True`` the commands are kept, with ``\\ `` spelled ``~``
       (a token must not contain a space).
    6. Synonyms get one spelling (see ``SYNONYMS``: ``\\le``→``\\leq``, ``\\to``→``\\rightarrow``,
       ``\\lbrace``→``\\{``, ``\\vert``→``|``, ``\\dots``→``\\ldots``, ``\\textrm``/``\\mbox``/
       ``\\text``/``\\hbox``→``\\mathrm``, ``\\textbf``→``\\mathbf``, ``\\bm``→``\\boldsymbol``,
       CROHME's ``\\lt``/``\\gt``→``<``/``>``...).
    7. ``A \\over B`` (and ``\\choose``) inside a group becomes ``\\frac{A}{B}``
       (``\\binom{A}{B}``); everything before the primitive in the group is the numerator,
       everything after it the denominator, as TeX does.
    8. Old font switches apply to the rest of their group: ``{\\rm x y}`` → ``\\mathrm{x y}``,
       ``a {\\cal L}`` → ``a \\mathcal{L}`` (``\\rm \\cal \\bf \\it \\sf \\tt \\mit \\sl \\em
       \\boldmath``, see ``FONT_SWITCHES``). ``\\Bbb``/``\\bold`` become ``\\mathbb``/``\\mathbf``.
    9. Arguments are always braced: ``\\frac12`` → ``\\frac { 1 } { 2 }``, ``x^2`` →
       ``x ^ { 2 }``, ``\\sqrt[3]x`` → ``\\sqrt [ 3 ] { x }``; ``{{a}}`` as an argument is
       ``{ a }``. ``\\left``/``\\right``/``\\big``.. are kept with their delimiter token.
    10. With ``strip_braces=True`` (default) a group that is *not* an argument loses its
        braces when that cannot change the picture: always when it holds a single token or
        a single command with its arguments, and also when it is not followed by ``^``/``_``
        (``{ab}^2`` keeps its braces, ``{}^{*}`` as a prescript base too). Groups right after
        an unknown command keep their braces (we do not know whether they are its arguments).
        ``\\begin{array}{cc}`` keeps its column spec.

    ``normalize(normalize(s)) == normalize(s)`` for every input (tested on real data).
``check(src) -> list[str]``
    Human-readable problems for annotators (empty when fine): unbalanced braces, ``\\begin``/
    ``\\end`` mismatch, ``\\left``/``\\right`` count mismatch, ``^``/``_`` without argument,
    a stray ``$`` in the middle, unknown commands (against ``KNOWN_COMMANDS``).
``character_problems(src) -> list[str]``
    Characters no LaTeX may hold (C0 controls but tab/LF/CR, lone surrogates, Unicode
    non-characters), as sentences; empty when fine. Checked before anything is tokenized.
``check_and_normalize(src) -> (problems, normalized)``
    Both from one tokenization (what a submit needs per region); ``normalized`` only when there
    is no problem, and a formula nested too deeply for the normaliser is a problem, not a crash.
``token_edit_distance(a, b) -> float``
    Levenshtein distance on normalised token sequences divided by the longer length (0 equal,
    1 nothing in common). ``token_edits(a, b)`` gives the raw edit count.
``exact_match(a, b) -> bool``
    Equality after normalisation.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from rapidfuzz.distance import Levenshtein

_TOKEN_RE = re.compile(
    r"%[^\n]*"                    # comment, dropped
    r"|\\[hv]space\*"              # the starred spacing commands
    r"|\\[a-zA-Z]+"                # command
    r"|\\[^a-zA-Z]"               # escaped symbol: \{ \, \\ \  \$ ...
    r"|\\$"                       # a lone trailing backslash
    r"|\s+"                       # whitespace, dropped
    r"|.",
    re.S,
)

FONT_SWITCHES = {
    r"\rm": r"\mathrm", r"\cal": r"\mathcal", r"\bf": r"\mathbf", r"\it": r"\mathit",
    r"\sf": r"\mathsf", r"\tt": r"\mathtt", r"\mit": r"\mathit", r"\sl": r"\mathit",
    r"\em": r"\mathit", r"\boldmath": r"\boldsymbol",
}

SYNONYMS = {
    r"\le": r"\leq", r"\ge": r"\geq", r"\ne": r"\neq", r"\to": r"\rightarrow",
    r"\gets": r"\leftarrow", r"\lbrace": r"\{", r"\rbrace": r"\}", r"\lbrack": "[",
    r"\rbrack": "]", r"\vert": "|", r"\|": r"\Vert", r"\dots": r"\ldots", r"\dotsc": r"\ldots",
    r"\textrm": r"\mathrm", r"\mbox": r"\mathrm", r"\text": r"\mathrm", r"\hbox": r"\mathrm",
    r"\textbf": r"\mathbf", r"\textit": r"\mathit", r"\textsf": r"\mathsf", r"\texttt": r"\mathtt",
    r"\bm": r"\boldsymbol", r"\Bbb": r"\mathbb", r"\bold": r"\mathbf", r"\dfrac": r"\frac",
    r"\tfrac": r"\frac", r"\land": r"\wedge", r"\lor": r"\vee", r"\lnot": r"\neg",
    r"\owns": r"\ni", r"\bigtriangleup": r"\triangle", r"\dag": r"\dagger", r"\ddag": r"\ddagger",
    r"\sp": "^", r"\sb": "_", r"\lt": "<", r"\gt": ">",
}

# Dropped with their argument.
DROP_WITH_ARG = {r"\label", r"\tag", r"\hspace", r"\hspace*", r"\vspace", r"\vspace*", r"\phantom",
                 r"\hphantom", r"\vphantom"}
# Dropped alone (rule 2, 4). \mathop keeps its argument, which then stands as a group.
DROP = {r"\nonumber", r"\notag", r"\displaystyle", r"\textstyle", r"\scriptstyle", r"\scriptscriptstyle",
        r"\limits", r"\nolimits", r"\relax", r"\protect", r"\tiny", r"\scriptsize", r"\footnotesize",
        r"\small", r"\normalsize", r"\large", r"\Large", r"\LARGE", r"\huge", r"\Huge", r"\mathop",
        r"\smallskip", r"\medskip", r"\bigskip", r"\noindent", r"\strut", r"\mathstrut", "$"}
SPACING = {r"\,", r"\:", r"\;", r"\>", r"\!", "\\ ", "~", r"\quad", r"\qquad", r"\enspace", r"\thinspace",
           r"\negthinspace", r"\medspace", r"\thickspace", r"\hfill", r"\hfil", r"\space", r"\enskip"}
# Followed by a TeX dimension (``3mm``, ``-2pt``), dropped together with it.
DIMENSION_SPACING = {r"\kern", r"\mkern", r"\hskip", r"\mskip", r"\vskip"}

ARG_COUNTS: dict[str, int] = {
    r"\frac": 2, r"\binom": 2, r"\stackrel": 2, r"\overset": 2, r"\underset": 2, r"\genfrac": 6,
    r"\sqrt": 1, r"\begin": 1, r"\end": 1, r"\operatorname": 1, r"\fbox": 1, r"\boxed": 1,
    r"\mathrm": 1, r"\mathbf": 1, r"\mathit": 1, r"\mathcal": 1, r"\mathsf": 1, r"\mathtt": 1,
    r"\mathbb": 1, r"\mathfrak": 1, r"\mathscr": 1, r"\boldsymbol": 1, r"\pmb": 1, r"\mathnormal": 1,
    r"\hat": 1, r"\bar": 1, r"\tilde": 1, r"\vec": 1, r"\dot": 1, r"\ddot": 1, r"\dddot": 1,
    r"\widetilde": 1, r"\widehat": 1, r"\overline": 1, r"\underline": 1, r"\overbrace": 1,
    r"\underbrace": 1, r"\check": 1, r"\breve": 1, r"\acute": 1, r"\grave": 1, r"\mathring": 1,
    r"\overrightarrow": 1, r"\overleftarrow": 1, r"\overleftrightarrow": 1, r"\cancel": 1,
    r"\substack": 1, r"\vbox": 1, r"\b": 1, r"\c": 1, r"\d": 1, r"\rule": 2, r"\pmatrix": 1,
    r"\matrix": 1, r"\cases": 1, r"\xrightarrow": 1, r"\xleftarrow": 1, r"\color": 1,
}
DELIMITER_PREFIXES = {r"\left", r"\right", r"\big", r"\Big", r"\bigg", r"\Bigg", r"\bigl", r"\bigr",
                      r"\Bigl", r"\Bigr", r"\biggl", r"\biggr", r"\Biggl", r"\Biggr", r"\bigm", r"\Bigm",
                      r"\biggm", r"\Biggm", r"\middle"}
# Environments whose \begin takes a column specification as a second argument.
COLUMN_SPEC_ENVS = {"array", "tabular", "subarray"}

_SYMBOLS = r"""
alpha beta gamma delta epsilon varepsilon zeta eta theta vartheta iota kappa varkappa lambda mu nu xi
omicron pi varpi rho varrho sigma varsigma tau upsilon phi varphi chi psi omega Gamma Delta Theta Lambda
Xi Pi Sigma Upsilon Phi Psi Omega digamma
sum prod coprod int iint iiint oint bigcup bigcap bigoplus bigotimes bigodot biguplus bigsqcup bigvee
bigwedge lim limsup liminf sup inf max min arg det dim exp gcd hom ker lg ln log Pr deg sin cos tan cot
sec csc sinh cosh tanh coth arcsin arccos arctan
pm mp times div cdot ast star circ bullet oplus ominus otimes oslash odot dagger ddagger amalg cap cup
uplus sqcap sqcup vee wedge setminus wr diamond bigtriangleup bigtriangledown triangleleft triangleright
lhd rhd unlhd unrhd bigcirc
leq geq neq equiv sim simeq approx cong propto models prec succ preceq succeq ll gg subset supset
subseteq supseteq sqsubseteq sqsupseteq in ni notin vdash dashv mid parallel perp smile frown asymp
doteq bowtie nleq ngeq lesssim gtrsim leqslant geqslant triangleq
leftarrow rightarrow Leftarrow Rightarrow leftrightarrow Leftrightarrow longleftarrow longrightarrow
Longleftarrow Longrightarrow longleftrightarrow Longleftrightarrow mapsto longmapsto hookleftarrow
hookrightarrow leftharpoonup leftharpoondown rightharpoonup rightharpoondown rightleftharpoons uparrow
downarrow updownarrow Uparrow Downarrow Updownarrow nearrow searrow swarrow nwarrow iff implies
ldots cdots vdots ddots aleph hbar imath jmath ell wp Re Im partial infty prime emptyset varnothing
nabla surd top bot angle triangle forall exists neg flat natural sharp backslash clubsuit diamondsuit
heartsuit spadesuit langle rangle lfloor rfloor lceil rceil Vert not colon therefore because
S P L O l o ss i j ae AE oe OE aa AA
atop over choose cr hline vline newline
"""
KNOWN_COMMANDS: frozenset[str] = frozenset(
    {"\\" + name for name in _SYMBOLS.split()}
    | set(ARG_COUNTS) | DELIMITER_PREFIXES | set(FONT_SWITCHES) | set(SYNONYMS) | DROP_WITH_ARG
    | DROP | SPACING | DIMENSION_SPACING
    | {r"\{", r"\}", r"\\", r"\#", r"\&", r"\%", r"\_", r"\$", r"\|", "\\/", r"\'", r"\"", r"\^", r"\~",
       r"\.", r"\=", r"\`", r"\-", r"\over", r"\choose", r"\atop", r"\slash", r"\sqrt",
       r"\mathbin", r"\mathrel", r"\mathord", r"\mathpunct", r"\mathopen", r"\mathclose"}
)

_DIMENSION_RE = re.compile(r"^-?[\d.]+(pt|mm|cm|em|ex|mu|in|bp|pc|sp)$")
_SCRIPTS = {"^", "_"}
_REWRITE_PRIMITIVES = {r"\over": r"\frac", r"\choose": r"\binom"}


# Unicode's non-characters: U+FDD0..U+FDEF and the last two code points of every plane (U+FFFE, U+FFFF,
# U+1FFFE, ... U+10FFFF). Never text; XML 1.0 cannot hold U+FFFE and U+FFFF at all (a CVAT export
# would refuse the formula) and marks the others as characters to avoid.
_NONCHARACTER = re.compile("[\ufdd0-\ufdef" + "".join(chr(p << 16 | 0xFFFE) + chr(p << 16 | 0xFFFF)
                                                    for p in range(17)) + "]")


def noncharacter(src: str) -> str | None:
    """The first Unicode non-character of `src`, or None."""
    found = _NONCHARACTER.search(src)
    return found.group() if found else None


# Never LaTeX: the C0 controls but tab, LF and CR (U+0000 among them, which PostgreSQL cannot store), and
# lone surrogates (from a JSON "\ud800" escape), which no database stores as text.
_CONTROL_OR_SURROGATE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")


def character_problems(src: str) -> list[str]:
    """Why `src` cannot be a formula's LaTeX, character by character (empty when it can): it holds
    a C0 control other than tab, LF and CR, a lone surrogate, or a Unicode non-character.

    The one character check of every stored LaTeX: annotators', reviewers' and imported regions'
    (with the grammar, `labeling.services._latex_checked`) and images' truths, which keep their
    data set's own spelling and so are checked for characters only."""
    found = _CONTROL_OR_SURROGATE.search(src)
    if found is not None:
        return [f"The LaTeX holds the control or surrogate character U+{ord(found.group()):04X}."]
    # Those are all the characters XML 1.0 cannot hold but U+FFFE and U+FFFF: refused here with the
    # other non-characters, not first by the CVAT export of an accepted answer.
    bad = noncharacter(src)
    if bad is not None:
        return [f"The LaTeX holds U+{ord(bad):04X}, a Unicode non-character (not text; XML, and so a CVAT "
                "export, cannot hold it): remove it."]
    return []


def tokenize(src: str) -> list[str]:
    """Split raw LaTeX into im2latex-style tokens (no other change; see module doc)."""
    out = []
    # NFC: decomposed Hangul (a Mac's jamo) would be other tokens than the composed syllables.
    for m in _TOKEN_RE.finditer(unicodedata.normalize("NFC", src or "")):
        tok = m.group(0)
        if tok[0] == "%" or tok.isspace():
            continue
        if len(tok) == 2 and tok[0] == "\\" and tok[1].isspace():
            # A backslash before a line break or tab is TeX's control space, as "\ " is; kept
            # as written it put a line break inside one token (and inside formulas.lst lines).
            tok = "\\ "
        out.append(tok)
    return out


@dataclass
class _Group:
    """A brace group ``{ ... }`` in the parse tree."""

    items: list = field(default_factory=list)


def _parse(tokens: list[str]) -> list:
    """Tokens to a tree of groups; unbalanced braces are closed/ignored leniently."""
    root: list = []
    stack = [root]
    for tok in tokens:
        if tok == "{":
            g = _Group()
            stack[-1].append(g)
            stack.append(g.items)
        elif tok == "}":
            if len(stack) > 1:
                stack.pop()
        else:
            stack[-1].append(tok)
    return root


def _drop_dimension(tokens: list[str], i: int) -> int:
    """Index after a TeX dimension starting at ``tokens[i]`` (digits, '.', '-', then a unit)."""
    j, text = i, ""
    while j < len(tokens) and len(tokens[j]) == 1 and (tokens[j].isdigit() or tokens[j] in ".-"):
        text += tokens[j]
        j += 1
    for k in range(j, min(j + 2, len(tokens)) + 1):
        if _DIMENSION_RE.match(text + "".join(tokens[j:k])) and k > j:
            return k
    return j if text else i


def _rewrite_tokens(tokens: list[str], keep_spacing: bool) -> list[str]:
    """Token-level rules 1, 3, 5, 6 (argument-dropping rules need the tree)."""
    out: list[str] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        i += 1
        tok = SYNONYMS.get(tok, tok)
        if tok in DIMENSION_SPACING:
            i = _drop_dimension(tokens, i)
            if keep_spacing:
                out.append(r"\,")
            continue
        if tok in SPACING:
            if keep_spacing:
                out.append("~" if tok == "\\ " else tok)
            continue
        if tok in DROP:
            continue
        out.append(tok)
    return out


def _split_primitive(items: list) -> list:
    """Rule 7: ``A \\over B`` at this level → ``\\frac {A} {B}``."""
    for idx, it in enumerate(items):
        if isinstance(it, str) and it in _REWRITE_PRIMITIVES:
            left, right = items[:idx], _split_primitive(items[idx + 1:])
            return [_REWRITE_PRIMITIVES[it], _Group(left), _Group(right)]
    return items


def _apply_font_switch(items: list) -> list:
    """Rule 8: a font switch wraps the rest of its group in the matching ``\\math..`` command."""
    for idx, it in enumerate(items):
        if isinstance(it, str) and it in FONT_SWITCHES:
            rest = _apply_font_switch(items[idx + 1:])
            return items[:idx] + [FONT_SWITCHES[it], _Group(rest)]
    return items


def _transform(items: list, keep_spacing: bool) -> list:
    """Apply the tree rules (2, 7, 8) to one group, then to its children."""
    cleaned: list = []
    i = 0
    while i < len(items):
        it = items[i]
        if isinstance(it, str) and it in DROP_WITH_ARG:
            i += 2  # the command and its argument
            if keep_spacing and it.startswith((r"\hspace", r"\vspace")):
                cleaned.append(r"\,")
            continue
        cleaned.append(it)
        i += 1
    items = _apply_font_switch(_split_primitive(cleaned))
    for it in items:
        if isinstance(it, _Group):
            it.items = _transform(it.items, keep_spacing)
    return items


def _is_command(tok) -> bool:
    return isinstance(tok, str) and len(tok) > 1 and tok[0] == "\\" and tok[1].isalpha()


def _arg_count(tok: str, items: list, i: int) -> int:
    if tok == r"\begin" and i + 1 < len(items):
        env = items[i + 1]
        name = "".join(env.items) if isinstance(env, _Group) and all(isinstance(x, str) for x in env.items) else ""
        return 2 if name in COLUMN_SPEC_ENVS else 1
    return ARG_COUNTS.get(tok, 0)


def _take_atom(items: list, i: int, strip: bool) -> tuple[list[str], int]:
    """Serialise the item at ``i`` as one argument's content; return (tokens, next index)."""
    if i >= len(items):
        return [], i
    it = items[i]
    if isinstance(it, _Group):
        inner = it.items
        # {{a}} as an argument is {a}
        while len(inner) == 1 and isinstance(inner[0], _Group):
            inner = inner[0].items
        return _serialize(inner, strip), i + 1
    return _serialize_one(items, i, strip)


def _serialize_one(items: list, i: int, strip: bool) -> tuple[list[str], int]:
    """Serialise the item at ``i`` with whatever arguments it takes."""
    it = items[i]
    if isinstance(it, _Group):
        return ["{", *_serialize(it.items, strip), "}"], i + 1
    if it in DELIMITER_PREFIXES:
        nxt = items[i + 1] if i + 1 < len(items) else None
        if isinstance(nxt, str):
            return [it, nxt], i + 2
        return [it], i + 1
    if it in _SCRIPTS:
        arg, j = _take_atom(items, i + 1, strip)
        return [it, "{", *arg, "}"], j
    out = [it]
    j = i + 1
    n = _arg_count(it, items, i) if _is_command(it) else 0
    if it == r"\sqrt" and j < len(items) and items[j] == "[":
        # the optional root index, up to the matching "]"
        end = j + 1
        while end < len(items) and items[end] != "]":
            end += 1
        out.extend(["[", *_serialize(items[j + 1:end], strip), "]"])
        j = end + 1
    for _ in range(n):
        arg, j = _take_atom(items, j, strip)
        out.extend(["{", *arg, "}"])
    return out, j


def _serialize(items: list, strip: bool) -> list[str]:
    """Rules 9 and 10: canonical argument braces and removal of redundant groups."""
    out: list[str] = []
    i = 0
    prev = None
    while i < len(items):
        it = items[i]
        if isinstance(it, _Group) and strip:
            follows_unknown = _is_command(prev) and prev not in KNOWN_COMMANDS
            nxt = items[i + 1] if i + 1 < len(items) else None
            before_script = isinstance(nxt, str) and nxt in _SCRIPTS
            inner = _atoms(it.items, strip)
            dangling = any(len(a) == 1 and (a[0] in _SCRIPTS or a[0] in DELIMITER_PREFIXES or
                                            (_is_command(a[0]) and ARG_COUNTS.get(a[0], 0) > 0)) for a in inner)
            if not follows_unknown and not dangling and (len(inner) == 1 or not before_script):
                # The group's content is re-serialised as if it stood here unbraced.
                out.extend(_serialize(it.items, strip))
                prev = it.items[-1] if it.items else prev
                i += 1
                continue
        toks, i = _serialize_one(items, i, strip)
        out.extend(toks)
        prev = it
    return out


def _atoms(items: list, strip: bool) -> list[list[str]]:
    """The group's content as a list of atoms (a token or a command with its arguments)."""
    atoms = []
    i = 0
    while i < len(items):
        toks, i = _serialize_one(items, i, strip)
        atoms.append(toks)
    return atoms


def normalize_tokens(src: str, *, strip_braces: bool = True, keep_spacing: bool = False) -> list[str]:
    """:func:`normalize` as a token list."""
    return _normalize(tokenize(src), strip_braces, keep_spacing)


def _normalize(tokens: list[str], strip_braces: bool = True, keep_spacing: bool = False) -> list[str]:
    tokens = _rewrite_tokens(tokens, keep_spacing)
    tree = _transform(_parse(tokens), keep_spacing)
    return _serialize(tree, strip_braces)


def normalize(src: str, *, strip_braces: bool = True, keep_spacing: bool = False) -> str:
    """Canonical space-separated LaTeX tokens (rules in the module docstring)."""
    return " ".join(normalize_tokens(src, strip_braces=strip_braces, keep_spacing=keep_spacing))


def check_and_normalize(src: str, *, known: frozenset[str] | set[str] = KNOWN_COMMANDS) -> tuple[list[str], str]:
    """``(check(src), normalize(src))`` from one tokenization, for callers that need
    both (every region of a submit). The normalised form is only computed, and is
    "" otherwise, when there is no problem. A formula nested deeper than the
    normaliser can follow (hundreds of levels, never a real formula) is a problem
    too, not a crash."""
    tokens = tokenize(src)
    problems = _check_tokens(tokens, known)
    if problems:
        return problems, ""
    try:
        return [], " ".join(_normalize(tokens))
    except RecursionError:
        return [NESTED_TOO_DEEPLY], ""


NESTED_TOO_DEEPLY = "the formula is nested too deeply"


def check(src: str, *, known: frozenset[str] | set[str] = KNOWN_COMMANDS) -> list[str]:
    """Problems an annotator should fix in ``src`` (empty list when it looks fine)."""
    return _check_tokens(tokenize(src), known)


def _check_tokens(tokens: list[str], known: frozenset[str] | set[str]) -> list[str]:
    problems: list[str] = []
    if not tokens:
        return ["the formula is empty"]
    depth = 0
    for tok in tokens:
        if tok == "{":
            depth += 1
        elif tok == "}":
            depth -= 1
            if depth < 0:
                problems.append("a closing brace '}' has no matching '{'")
                depth = 0
    if depth > 0:
        problems.append(f"{depth} opening brace(s) '{{' are never closed")
    envs: list[str] = []
    lefts = rights = 0
    for i, tok in enumerate(tokens):
        if tok in (r"\begin", r"\end"):
            name = _env_name(tokens, i + 1)
            if tok == r"\begin":
                envs.append(name)
            elif not envs:
                problems.append(f"\\end{{{name}}} has no matching \\begin")
            elif envs[-1] != name:
                problems.append(f"\\begin{{{envs[-1]}}} is closed by \\end{{{name}}}")
                envs.pop()
            else:
                envs.pop()
        elif tok == r"\left":
            lefts += 1
        elif tok == r"\right":
            rights += 1
        elif tok in _SCRIPTS and (i + 1 == len(tokens) or tokens[i + 1] in ("}", "^", "_", "&", r"\\")):
            problems.append(f"'{tok}' has nothing to attach (missing superscript/subscript)")
    for name in envs:
        problems.append(f"\\begin{{{name}}} is never closed with \\end{{{name}}}")
    if lefts != rights:
        problems.append(f"\\left appears {lefts} time(s) but \\right {rights} time(s)")
    start, end = 0, len(tokens)
    while start < end and tokens[start] == "$":
        start += 1
    while end > start and tokens[end - 1] == "$":
        end -= 1
    if "$" in tokens[start:end]:
        problems.append("a '$' in the middle of the formula (math delimiters belong only at the ends)")
    unknown = sorted({t for t in tokens if _is_command(t) and t not in known})
    if unknown:
        problems.append("unknown command(s): " + ", ".join(unknown))
    return problems


def _env_name(tokens: list[str], i: int) -> str:
    if i < len(tokens) and tokens[i] == "{":
        j = i + 1
        name = []
        while j < len(tokens) and tokens[j] != "}":
            name.append(tokens[j])
            j += 1
        return "".join(name)
    return "?"


def token_edits(a: str, b: str) -> int:
    """Levenshtein distance between the normalised token sequences of ``a`` and ``b``."""
    return Levenshtein.distance(normalize_tokens(a), normalize_tokens(b))


def token_edit_distance(a: str, b: str) -> float:
    """Token edit distance divided by the longer sequence's length (0 = identical, 1 = disjoint)."""
    ta, tb = normalize_tokens(a), normalize_tokens(b)
    longest = max(len(ta), len(tb))
    return Levenshtein.distance(ta, tb) / longest if longest else 0.0


def exact_match(a: str, b: str) -> bool:
    """True when ``a`` and ``b`` normalise to the same tokens."""
    return normalize_tokens(a) == normalize_tokens(b)
