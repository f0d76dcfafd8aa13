"""Reading values the way pages write them: prices, dates and date fields.

Prices come with a currency code or symbol on either side (``EUR 74``, ``74 EUR``,
``€74``, ``US$ 1,234.50``, ``9,800円``, ``R$ 899,90``, ``1 299 kr``) and with the
separators of the site's locale (``1.234,56``, ``1 234,56``, ``1,234.50``,
``1'234.50``). One rule reads all of them: the last separator followed by one or
two digits is the decimal mark, any separator followed by groups of exactly three
digits groups thousands (so ``1.299 €`` is one thousand two hundred ninety-nine,
and ``1,204`` too). Amounts a page shows that are not prices to pay ("Save €30",
"was €99", "free delivery over €500") are recognised by the word before them.

Dates are read from what people write ("July 6th", "6 July 2026", "Mon, 6 Jul
2026", "2026-07-06", "6.7.2026") and written in the format a text field asks for
with its placeholder ("dd/mm/yyyy", "MM/DD/YYYY", "JJ.MM.AAAA").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

# ---------------------------------------------------------------------- money

# ISO 4217 codes people meet on travel and shopping sites (a fixed list: "KL 1234" or "RJX 160" are not prices).
ISO_CODES = frozenset("""
AED ARS AUD BGN BHD BRL CAD CHF CLP CNY COP CZK DKK EGP EUR GBP HKD HUF IDR ILS INR ISK JPY KRW KWD MAD MXN MYR NOK NZD
PEN PHP PKR PLN QAR RON RSD RUB SAR SEK SGD THB TND TRY TWD UAH USD VND ZAR""".split())
_SYMBOLS = r"US\$|USD\$|A\$|AU\$|C\$|CA\$|NZ\$|HK\$|S\$|SG\$|MX\$|R\$|\$|€|£|¥|₹|₩|₽|₺|₪|₫|₱|฿|₴|₦|₡|₲|円|元|руб\.?|zł|Kč|kr\.?|Ft|lei|Fr\.|CHF"
_CODES = "|".join(sorted(ISO_CODES))
CURRENCY = rf"(?:{_SYMBOLS}|(?<![A-Za-z])(?:{_CODES})(?![A-Za-z]))"
_SEP = "[ \u00a0\u202f\u2009'’.,]"
NUMBER = rf"(?:\d{{1,3}}(?:{_SEP}\d{{3}})+(?:[.,]\d{{1,2}})?|\d+(?:[.,]\d{{1,2}})?)(?:[.,][-–])?"
_GAP = r"[ \u00a0\u202f\u2009]?"
MONEY = re.compile(rf"(?P<pre>{CURRENCY}){_GAP}(?P<n1>(?<![\d]){NUMBER})(?![\d])|(?<![\d.,])(?P<n2>{NUMBER})(?![\d]){_GAP}(?P<post>{CURRENCY})")
BARE_NUMBER = re.compile(rf"^\s*(?P<n>{NUMBER})\s*$")
# The word before an amount that says it is not the price to pay.
NOT_A_PRICE = re.compile(r"(?:\b(?:save|saving|you save|off|discount|over|above|under|up to|min(?:imum)?|max(?:imum)?|was|previously|before|rrp|"
                         r"instead of|deposit|fee|tax(?:es)?|from just)\b|-)\W*$", re.I)
OFF_AFTER = re.compile(r"^\W*(?:off|discount|cheaper|less)\b", re.I)
PRICE_WORDS = re.compile(r"\b(?:price|prices|fare|fares|total|cost|costs|amount|rate|rates|tariff|pris|preis|prix|precio|preço|prezzo|prijs|tarif|betrag|summe|gesamt)\b", re.I)


@dataclass(frozen=True)
class Money:
    text: str  # as the page writes it ("EUR 74", "1.234,56 €")
    amount: float
    currency: str  # the code or symbol as written; "" when the page gives none


def parse_amount(number: str) -> float | None:
    """'1.234,56' → 1234.56, '1,204' → 1204, '74,00' → 74.0, '1 299' → 1299, '74,-' → 74."""
    n = re.sub(r"[.,][-–]$", "", number.strip())
    n = re.sub(r"[ \u00a0\u202f\u2009'’]", ",", n)  # spaces and apostrophes only ever group thousands
    m = re.search(r"[.,](\d{1,2})$", n)
    whole, frac = (n[: m.start()], m.group(1)) if m else (n, "")
    whole = re.sub(r"[.,]", "", whole)
    if not whole.isdigit():
        return None
    return float(f"{whole}.{frac}" if frac else whole)


def find_money(text: str, currency: str = "") -> list[tuple[Money, int, int]]:
    """Every amount with a currency in ``text``: (money, start, end). Amounts a page marks as not
    the price to pay ("Save €30", "over €500", "was €99") are left out."""
    out = []
    for m in MONEY.finditer(text):
        number = m.group("n1") or m.group("n2")
        amount = parse_amount(number)
        if amount is None:
            continue
        if NOT_A_PRICE.search(text[: m.start()][-24:]) or OFF_AFTER.match(text[m.end():]):
            continue
        written = re.sub(r"\s+", " ", m.group(0)).strip()
        written = re.sub(r"^([A-Z]{3})(?=\d)", r"\1 ", written)  # "EUR74" (code and amount in two elements) → "EUR 74"
        written = re.sub(r"(?<=\d)([A-Z]{3})$", r" \1", written)
        out.append((Money(written, amount, (m.group("pre") or m.group("post") or currency).strip()), m.start(), m.end()))
    return out


def money(text: str) -> Money | None:
    found = find_money(text)
    return found[0][0] if found else None


def bare_money(text: str, header: str) -> Money | None:
    """A cell that holds only a number, in a column whose header says it is a price ("Fare (EUR)", "Total")."""
    m = BARE_NUMBER.match(text)
    if not m or not header:
        return None
    currency = re.search(CURRENCY, header)
    if not (currency or PRICE_WORDS.search(header)):
        return None
    amount = parse_amount(m.group("n"))
    return Money(m.group("n"), amount, currency.group(0) if currency else "") if amount is not None else None


def price_value(text: str) -> float | None:
    m = money(text)
    return m.amount if m else None


# ---------------------------------------------------------------------- dates

MONTHS = {m: i for i, m in enumerate(["january", "february", "march", "april", "may", "june", "july", "august", "september", "october", "november", "december"], 1)}
MONTHS.update({k[:3]: v for k, v in list(MONTHS.items())})
MONTHS.update({"sept": 9})
for _i, _names in enumerate([("januar", "janvier", "enero", "janeiro", "gennaio"), ("februar", "février", "fevrier", "febrero", "fevereiro", "febbraio"),
                             ("märz", "maerz", "mars", "marzo", "março"), ("avril", "abril", "aprile"), ("mai", "mayo", "maio", "maggio"),
                             ("juni", "juin", "junio", "junho", "giugno"), ("juli", "juillet", "julio", "julho", "luglio"),
                             ("août", "aout", "agosto"), ("septembre", "septiembre", "setembro", "settembre"),
                             ("oktober", "octobre", "octubre", "outubro", "ottobre"), ("novembre", "noviembre", "novembro"),
                             ("dezember", "décembre", "decembre", "diciembre", "dezembro", "dicembre")], 1):
    for _n in _names:
        MONTHS.setdefault(_n, _i)


def parse_date(text: str, today: date | None = None, day_first: bool = True) -> date | None:
    """"July 6th", "6 July 2026", "Mon, 6 Jul 2026", "2026-07-06", "06/07/2026", "6.7.2026".

    Numeric dates with slashes are read day first unless ``day_first`` is False (US
    pages); a part above 12 settles it either way. Without a year, the next such day.
    """
    today = today or date.today()
    t = text.lower().strip().rstrip(".")
    try:
        return date.fromisoformat(t)
    except ValueError:
        pass
    m = re.fullmatch(r"(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})", t)
    if m:
        return _date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    m = re.fullmatch(r"(\d{1,2})([/.\-])(\d{1,2})\2(\d{4}|\d{2})", t)
    if m:
        a, b, y = int(m.group(1)), int(m.group(3)), int(m.group(4))
        y = y + 2000 if y < 100 else y
        us = not day_first and m.group(2) == "/"
        if a > 12:
            us = False
        elif b > 12:
            us = True
        return _date(y, a, b) if us else _date(y, b, a)
    words = re.findall(r"[^\W\d_]+", t)
    month = next((MONTHS[w] for w in words if w in MONTHS), None)
    if month is None:
        return None
    rest = re.sub(r"\b\d{4}\b", " ", t)
    day = re.search(r"\b(\d{1,2})(?:st|nd|rd|th|\.)?(?!\d)", rest)
    year = re.search(r"\b(\d{4})\b", t)
    if day is None:
        return None
    y = int(year.group(1)) if year else today.year
    d = _date(y, month, int(day.group(1)))
    if d is not None and not year and d < today:
        d = _date(y + 1, month, int(day.group(1)))
    return d


def _date(y: int, m: int, d: int) -> date | None:
    try:
        return date(y, m, d)
    except ValueError:
        return None


_TOKEN = re.compile(r"(d{1,2}|j{1,2}|t{1,2}|m{1,4}|y{2,4}|a{2,4}|j{2})", re.I)


def date_format(hint: str) -> str | None:
    """The format a text field asks for in its placeholder or label: "dd/mm/yyyy" → "%d/%m/%Y".

    Knows d/j/t for day (English, French, German), m for month, y/a/j for year (aaaa, jjjj)."""
    h = hint.strip().lower()
    m = re.search(r"\b(dd?|jj?|tt?|mm?|yyyy|yy|aaaa|jjjj)([/.\-\s])(dd?|jj?|tt?|mm?)\2(yyyy|yy|aaaa|jjjj|dd?|jj?|tt?)\b", h)
    if m:
        parts, sep = [m.group(1), m.group(3), m.group(4)], m.group(2)
    else:
        m = re.search(r"\b(yyyy|aaaa|jjjj)([/.\-])(mm?)\2(dd?|jj?|tt?)\b", h)
        if not m:
            return None
        parts, sep = [m.group(1), m.group(3), m.group(4)], m.group(2)
    out = []
    for p in parts:
        if p in ("yyyy", "aaaa", "jjjj"):
            out.append("%Y")
        elif p == "yy":
            out.append("%y")
        elif p[0] == "m":
            out.append("%m")
        elif p[0] in "dtj":
            out.append("%d")
    if "%d" not in out or "%m" not in out or not ({"%Y", "%y"} & set(out)):
        return None
    return sep.join(out)


def format_date(d: date, fmt: str) -> str:
    return d.strftime(fmt)
