"""User strings (class, model and file names, paths, the command line, sample ids) made safe for
where they are written: one function per destination.

Control characters come first everywhere: an ESC in a class name would otherwise clear a terminal,
retitle its window or hide text, and lands raw in every document. They are replaced by a visible
``\\xNN`` (or ``\\uNNNN``) so that the reader still sees that the name holds something odd.

HTML has no function here: the report's template escapes every value (Jinja's autoescape) after
``printable`` has written out its control characters (the environment's ``finalize``).
"""

from __future__ import annotations

import html as _html
import re

from rich.markup import escape as _escape_rich_markup

# C0 controls except tab (and newline where it means a line break), DEL, C1 controls, and the
# bidirectional overrides and isolates that reorder what a reader sees.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_CONTROL_KEEPING_NEWLINES = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _visible(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text, *, newlines: bool = False) -> str:
    """``text`` with every control character written out as ``\\xNN`` (newlines kept if asked)."""
    pattern = _CONTROL_KEEPING_NEWLINES if newlines else _CONTROL
    return pattern.sub(_visible, str(text))


def rich(text) -> str:
    """For rich markup (``console.print`` of a string, table cells and titles): brackets that would
    open or close a style are escaped, control characters written out. A trailing backslash is
    doubled (rich's rule), so that it cannot escape a tag that follows."""
    return _escape_rich_markup(printable(text, newlines=True))


def mathtext(text) -> str:
    """For a matplotlib label, title or tick: every ``$`` escaped, so nothing is parsed as mathtext
    (matplotlib shows ``\\$`` as ``$`` and a backslash outside mathtext as itself)."""
    return printable(text).replace("$", r"\$")


# ``$`` opens inline math in GitHub's Markdown (and in pandoc's, and in most notebook renderers).
_MARKDOWN_SPECIAL = "\\|*_`[]#~!$"


def markdown(text) -> str:
    """Plain text inside Markdown, also in a table cell: no HTML, no table breaks, no emphasis,
    links, code or math."""
    text = _html.escape(printable(text), quote=False)
    return "".join("\\" + char if char in _MARKDOWN_SPECIAL else char for char in text)


def markdown_code(text) -> str:
    """A Markdown code span showing ``text`` literally: fenced by more backticks than the longest
    run inside, padded with a space when it starts or ends with a backtick or a space (CommonMark
    strips one space from each side of a span that is not all spaces)."""
    text = printable(text)
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    if text.strip(" ") and (text[:1] in ("`", " ") or text[-1:] in ("`", " ")):
        text = f" {text} "
    return f"{fence}{text}{fence}"


LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
}


def latex(text) -> str:
    """Text in a LaTeX document: every special character as its command."""
    return "".join(LATEX_SPECIAL.get(char, char) for char in printable(text))


# OWASP's CSV injection advice: a cell a spreadsheet would read as a formula starts with one of these.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def csv_cell(value):
    """A CSV cell a spreadsheet will not run: a string starting like a formula gets a leading
    single quote (plain numbers such as ``-3`` stay as they are); other values pass unchanged."""
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value
