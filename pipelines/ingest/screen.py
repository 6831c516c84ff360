"""What every text cell and header goes through before it is checked: Unicode normalised, and screened for personal
data that has no place in a free-text column.

- **Normalised** (``normalised`` in Python, ``normalised_sql`` in SQL, the same rules): Unicode NFKC (a non-breaking
  or other unusual space becomes a space, full-width letters plain ones), zero-width, format and control characters
  removed (a tab or line break inside a cell becomes a space), then trimmed. So ``ZWSPCODE`` and ``ZWSPCODE\\u200b`` are
  one programme, and a header ``caseload\\u00a0`` is the column ``caseload``.
- **Screened** (``personal_sql``, ``looks_personal``): an e-mail address, a Dutch citizen service number (BSN: nine
  digits that pass the elfproef), a phone number or an IBAN in a column that is no client id. Such a file is
  quarantined; the reason names line and column and the kind of data, never the value.
"""

from __future__ import annotations

import re
import unicodedata
import weakref

import duckdb

# --- normalising -----------------------------------------------------------------------------

_BREAKS = "\t\n\r\v\f\x85\u2028\u2029"


def normalised(text: str) -> str:
    """NFKC, without zero-width, format and control characters (breaks become spaces), trimmed."""
    text = unicodedata.normalize("NFKC", text)
    if not text.isprintable():
        text = "".join(
            " " if ch in _BREAKS else ch for ch in text if ch in _BREAKS or unicodedata.category(ch) not in ("Cc", "Cf")
        )
    return text.strip()


NFKC_FUNCTION = "care_outcomes_nfkc"
_registered: weakref.WeakSet = weakref.WeakSet()  # connections known to reach the function (asked once each)


def register(con: duckdb.DuckDBPyConnection) -> None:
    """Give the connection's database the NFKC function ``normalised_sql`` calls (once per database: its cursors and
    connections share it); asked once per connection, not for every file."""
    if con in _registered:
        return
    _registered.add(con)
    try:
        con.execute(f"select {NFKC_FUNCTION}('a')").fetchall()
        return
    except duckdb.Error:
        pass
    con.create_function(
        NFKC_FUNCTION, lambda text: unicodedata.normalize("NFKC", text), ["VARCHAR"], "VARCHAR", side_effects=False
    )


def normalised_sql(text: str) -> str:
    """SQL: ``normalised`` of a cell. A cell of printable ASCII only is trimmed and nothing else (most cells: no
    function call); NUL stays, it marks a faulty Excel cell (workbook.CELL_FAULT)."""
    breaks = r"[\t\n\r\x{0b}\x{0c}\x{85}\x{2028}\x{2029}]"
    invisible = r"[\x{01}-\x{1f}\x{7f}-\x{9f}\p{Cf}]"
    slow = (
        f"trim(regexp_replace({NFKC_FUNCTION}(regexp_replace({text}, '{breaks}', ' ', 'g')), '{invisible}', '', 'g'))"
    )
    return f"case when regexp_matches({text}, '[^ -~]') then {slow} else trim({text}) end"


# --- personal data in free text ----------------------------------------------------------------

_EMAIL = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
_IBAN = r"\b[A-Z]{2}[0-9]{2}( ?[A-Z0-9]){11,30}\b"
# after removing spaces, dots, dashes, slashes and brackets: a Dutch number (0 and nine digits) or an international
# one (+ or 00, a country code and at least eight more digits)
_PHONE = r"(^|[^0-9])(0[1-9][0-9]{8}|(\+|00)[1-9][0-9]{8,13})([^0-9]|$)"
_SEPARATORS = r"[ ./()-]"
KINDS = ("an e-mail address", "a citizen service number (BSN)", "a phone number", "an IBAN")


def _elfproef_sql(digits: str) -> str:
    weights = " + ".join(f"{9 - i} * (ascii({digits}[{i + 1}]) - 48)" for i in range(8))
    return f"(length({digits}) = 9 and {digits} <> '000000000' and ({weights} - (ascii({digits}[9]) - 48)) % 11 = 0)"


def personal_sql(text: str) -> str:
    """SQL: which kind of personal data the text holds (one of KINDS), else NULL. The cheap tests first: text without
    a digit or an @ is passed at once (most cells of most files), and the elfproef runs only on nine digits in a
    row."""
    packed = f"regexp_replace({text}, '{_SEPARATORS}', '', 'g')"
    bsn = f"list_bool_or(list_transform(regexp_extract_all({packed}, '[0-9]+'), d -> {_elfproef_sql('d')}))"
    return (
        f"case when not regexp_matches({text}, '[0-9@]') then null "
        f"when contains({text}, '@') and regexp_matches({text}, '{_EMAIL}') then '{KINDS[0]}' "
        f"when regexp_matches(upper({text}), '{_IBAN}') then '{KINDS[3]}' "
        f"when regexp_matches({packed}, '[0-9]{{9}}') and {bsn} then '{KINDS[1]}' "
        f"when regexp_matches({packed}, '{_PHONE}') then '{KINDS[2]}' end"
    )


def _elfproef(digits: str) -> bool:
    if len(digits) != 9 or digits == "0" * 9:
        return False
    return (sum((9 - i) * int(d) for i, d in enumerate(digits[:8])) - int(digits[8])) % 11 == 0


def looks_personal(text: str) -> str | None:
    """``personal_sql`` in Python (for header cells and other texts a message might quote)."""
    if not re.search(r"[0-9@]", text):
        return None
    packed = re.sub(_SEPARATORS, "", text)
    if re.search(_EMAIL, text):
        return KINDS[0]
    if re.search(_IBAN, text.upper()):
        return KINDS[3]
    if any(_elfproef(d) for d in re.findall(r"[0-9]+", packed)):
        return KINDS[1]
    if re.search(_PHONE, packed):
        return KINDS[2]
    return None
