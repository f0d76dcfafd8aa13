"""The built-in planner: plain-English instructions, clause by clause, grounded in the page.

"Go to https://fly.test, search for flights from Amsterdam to Palma on July 6th
and return the cheapest price" becomes the clauses *go to*, *search* (with
from/to/on parts) and *return*. Each clause turns into actions when its turn
comes, against the page as it is then: references such as "the search
button", "From" or "the cheapest price" are matched against the accessible
names, labels, placeholders and visible text of what is on the page, and the
likeliest element wins. No model, no network: it always works, for the
instructions it understands, and says which clause it did not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from difflib import SequenceMatcher
from typing import Any, Callable

from sojourn.agent.actions import KEYS, AgentAction
from sojourn.agent.observe import Element, Observation, TextBlock
from sojourn.agent.reading import MONTHS, PRICE_WORDS, Money, bare_money, date_format, find_money, format_date, parse_date, price_value
from sojourn.job_errors import ErrorCode, JobError

__all__ = ["BuiltinPlanner", "parse_instructions", "parse_date", "price_value", "similarity"]

FILLER = {"the", "a", "an", "button", "field", "box", "input", "link", "tab", "dropdown", "menu", "list", "checkbox", "option", "on", "please", "my"}
# Words of a price question that do not narrow which price ("the cheapest fare", "its price").
PRICE_GENERIC = {"price", "prices", "cost", "costs", "fare", "fares", "amount", "rate", "rates", "its", "their", "one", "value", "per", "of", "for", "in", "with", "how", "much", "is", "are", "what", "does", "do", "will", "would"}
ORDINALS = {"second": 1, "third": 2, "fourth": 3, "fifth": 4}
MESSAGE_WORDS = re.compile(r"\b(?:message|confirmation|notice|notification|alert|status|error|success|banner|feedback)\b", re.I)
MESSAGE_HINT = re.compile(r"alert|notice|message|flash|toast|success|confirm|status|info|error|feedback|notification|snackbar", re.I)


# ---------------------------------------------------------------------- clauses


@dataclass
class Clause:
    kind: str
    source: str
    args: dict[str, str]


def _unquote(s: str) -> str:
    s = s.strip().rstrip(".")
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "\"'“”‘’":
        return s[1:-1]
    return s.strip("\"'“”‘’")


_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("goto", re.compile(r"^(?:go to|open|visit|navigate to|browse to|load|start at|start on)\s+(?:the\s+)?(?:page\s+|site\s+|website\s+)?(?P<url>https?://\S+)$", re.I)),
    ("press", re.compile(r"^(?:press|hit)\s+(?:the\s+)?(?P<key>enter|return|tab|escape|esc|space|backspace|arrow ?down|arrow ?up|page ?down|page ?up)(?:\s+key)?$", re.I)),
    ("search", re.compile(r"^(?:search(?:\s+for)?|look\s+(?:up|for))\s+(?P<what>.+?)(?:\s+from\s+(?P<origin>.+?))?(?:\s+to\s+(?P<destination>.+?))?(?:\s+on\s+(?P<date>.+?))?$", re.I)),
    # "find (the cheapest) flights from A to B on D": a search when it names a kind of trip; "find the price" is a read
    ("search", re.compile(r"^(?:find|check)\s+(?:me\s+)?(?P<what>(?:(?:the\s+)?(?:cheapest|cheap|available|direct|next)\s+)?(?:flights?|trains?|bus(?:es)?|ferr(?:y|ies)|hotels?|rooms?|connections?|tickets?))"
                          r"(?:\s+from\s+(?P<origin>.+?))?(?:\s+to\s+(?P<destination>.+?))?(?:\s+on\s+(?P<date>.+?))?$", re.I)),
    ("fill", re.compile(r"^(?:type|enter|fill in|input|write|put)\s+(?P<value>.+?)\s+(?:into|in|as)\s+(?:the\s+)?(?P<field>.+?)$", re.I)),
    ("fill", re.compile(r"^fill(?:\s+in)?\s+(?:the\s+)?(?P<field>.+?)\s+(?:with|as)\s+(?P<value>.+)$", re.I)),
    ("fill", re.compile(r"^set\s+(?:the\s+)?(?P<field>.+?)\s+to\s+(?P<value>.+)$", re.I)),
    ("select", re.compile(r"^(?:select|pick)\s+(?P<option>.+?)\s+(?:in|from|for)\s+(?:the\s+)?(?P<field>.+?)$", re.I)),
    ("select", re.compile(r"^choose\s+(?P<option>.+?)\s+(?:as|for|in|from)\s+(?:the\s+)?(?P<field>.+?)$", re.I)),
    ("check", re.compile(r"^(?P<verb>check|tick|uncheck|untick)\s+(?:the\s+)?(?P<ref>.+?)$", re.I)),
    ("wait", re.compile(r"^wait(?:\s+for)?\s+(?P<seconds>\d+(?:\.\d+)?)\s*(?:s|secs?|seconds?)$", re.I)),
    ("wait", re.compile(r"^wait\s+(?:for|until)\s+(?:the\s+)?(?P<text>.+?)(?:\s+(?:appears|is shown|shows|to appear|loads))?$", re.I)),
    ("screenshot", re.compile(r"^(?:take|make|capture)\s+(?:a\s+)?screenshot(?:\s+of\s+(?P<what>.+))?$", re.I)),
    ("scroll", re.compile(r"^scroll\s+(?P<dir>down|up)(?:.*)$", re.I)),
    ("read", re.compile(r"^(?:return|extract|read|get|tell me|report|find out|find|give me|what is|what's|what are|show me)\s+(?:me\s+)?(?:the\s+)?(?P<what>.+)$", re.I)),
    ("read", re.compile(r"^(?P<what>how much\s+.+)$", re.I)),
    ("click", re.compile(r"^(?:click|press|tap|hit|follow|choose|select|open)(?:\s+on)?\s+(?:the\s+)?(?P<ref>.+?)$", re.I)),
]


def split_clauses(text: str) -> list[str]:
    """Split on commas, semicolons, "then" and "and"; quoted text and dates ("July 6th, 2025") stay whole."""
    quoted: list[str] = []

    def hide(m: re.Match[str]) -> str:
        quoted.append(m.group(0))
        return f"\x00{len(quoted) - 1}\x00"

    masked = re.sub(r"\"[^\"]*\"|'[^']*'|“[^”]*”", hide, text.strip().rstrip("."))
    parts = re.split(r"\s*[,;]\s*(?:and\s+then\s+|then\s+|and\s+|finally\s+)?|\.\s+(?=[A-Z])|\s+(?:and\s+)?then\s+|\s+and\s+(?=(?:go|open|visit|navigate|search|click|press|tap|type|enter|fill|set|select|choose|pick|check|tick|uncheck|untick|wait|take|scroll|return|extract|read|get|tell|report|find|give|show)\b)", masked, flags=re.I)
    merged: list[str] = []
    for part in (p.strip() for p in parts if p and p.strip()):
        if merged and re.match(r"^\d{4}\b", part):  # "July 6th, 2025": the year belongs to the date
            merged[-1] += ", " + part
        else:
            merged.append(part)
    return [re.sub(r"\x00(\d+)\x00", lambda m: quoted[int(m.group(1))], p) for p in merged]


def _match(source: str) -> Clause | None:
    body = re.sub(r"^(?:please|now|first|next|finally|also|and)\s+", "", source, flags=re.I).strip().rstrip("?!").strip()
    for kind, pattern in _PATTERNS:
        m = pattern.match(body)
        if m:
            return Clause(kind, source, {k: _unquote(v) for k, v in m.groupdict().items() if v})
    return None


_ON_PAGE = re.compile(r"^(?P<rest>.+?)\s+(?:on|at|from|in)\s+(?:the\s+(?:page|site|website)\s+)?(?P<url>https?://\S+?)[?!.]*$", re.I)
# A place said first ("On https://…, search …", "At https://… tell me …", "On the page https://…: …"): open it, then the rest.
_PAGE_FIRST = re.compile(r"^(?:on|at|from|in)\s+(?:the\s+(?:page|site|website)\s+)?(?P<url>https?://\S+?)[,;:.]?(?:\s+(?P<rest>.+))?$", re.I)


def parse_instructions(text: str) -> list[Clause]:
    clauses = []
    pending = split_clauses(text)
    while pending:
        source = pending.pop(0)
        page_first = _PAGE_FIRST.match(source.strip())
        if page_first:
            pending[:0] = [f"go to {page_first.group('url')}", *([page_first.group("rest")] if page_first.group("rest") else [])]
            continue
        clause = _match(source)
        on_page = _ON_PAGE.match(source)
        if on_page and (clause is None or clause.kind != "goto"):  # "what's the cheapest fare on https://…?": open it first
            pending[:0] = [f"go to {on_page.group('url')}", on_page.group("rest")]
            continue
        if clause is not None:
            clauses.append(clause)
            continue
        head, sep, tail = source.partition(" and ")
        if sep and _match(head) is not None:  # "go to X and make me a sandwich": the second half is the unclear one
            pending[:0] = [head, tail]
            continue
        raise JobError(ErrorCode.INVALID_INPUT, f"I did not understand the instruction {source!r}. I understand clauses such as "
                       "'go to <url>', 'search for <text>', 'click <name>', 'type <text> into <field>', 'select <option> in <field>', "
                       "'check <box>', 'press Enter', 'wait for <text>', 'take a screenshot', 'return the <what>'.")
    if not clauses:
        raise JobError(ErrorCode.INVALID_INPUT, "the instructions are empty")
    return clauses


# ---------------------------------------------------------------------- grounding


def _norm(s: str) -> str:
    s = re.sub(r"(?<=[a-z])-(?=[a-z])", "", s.lower())  # "E-mail" is "email", "Check-in" is "checkin"
    return " ".join(w for w in re.findall(r"[a-z0-9]+", s) if w not in FILLER)


def similarity(ref: str, name: str) -> float:
    a, b = _norm(ref), _norm(name)
    if not a or not b:
        return 0.0
    if a == b:
        return 1.0
    if re.search(rf"\b{re.escape(a)}\b", b) or re.search(rf"\b{re.escape(b)}\b", a):
        return 0.9 if len(b) <= 3 * len(a) else 0.75
    ta, tb = set(a.split()), set(b.split())
    overlap = len(ta & tb) / len(ta | tb)
    return max(overlap * 0.85, SequenceMatcher(None, a, b).ratio() * 0.8)


def ground(obs: Observation, ref: str, clause: Clause, accept: Callable[[Element], bool], what: str) -> Element:
    scored = []
    for el in obs.elements:
        if not accept(el):
            continue
        score = max((similarity(ref, n) for n in el.names()), default=0.0)
        if "button" in ref.lower() and el.role == "button" or "link" in ref.lower() and el.role == "link":
            score += 0.05
        scored.append((score, el))
    scored.sort(key=lambda s: -s[0])
    if not scored or scored[0][0] < 0.5:
        seen = ", ".join(repr(e.name) for _, e in scored[:12] if e.name) or "nothing suitable"
        raise JobError(ErrorCode.ACTION_FAILED, f"in {clause.source!r}: found no {what} like {ref!r} on {obs.url}; the page has {seen}")
    return scored[0][1]


def is_clickable(el: Element) -> bool:
    return el.role in ("button", "link", "tab", "menuitem", "option", "checkbox", "radio", "switch", "generic") or el.tag in ("summary",)


def is_date_field(el: Element) -> bool:
    return el.type == "date" or el.role == "date" or bool(date_format(el.placeholder) or date_format(el.label))


def is_fillable(el: Element) -> bool:
    return el.tag == "textarea" or (el.tag == "input" and el.role in ("textbox", "searchbox", "date", "spinbutton"))


# ---------------------------------------------------------------------- the planner


# English first, then the words of the commonest other site languages (German, French, Spanish, Italian, Portuguese, Dutch).
ORIGIN_NAMES = ["from", "origin", "departure", "leaving from", "depart from", "flying from", "von", "abfahrt", "départ", "origen", "desde", "partenza", "origem", "van", "vertrek"]
DESTINATION_NAMES = ["to", "destination", "arrival", "going to", "flying to", "nach", "ziel", "arrivée", "destino", "hacia", "arrivo", "naar", "bestemming"]
DATE_NAMES = ["date", "departure date", "depart", "departing", "outbound", "when", "on", "travel date", "datum", "fecha", "data", "hinfahrt", "aller"]
SEARCH_NAMES = ["search", "query", "q", "find", "keywords", "suche", "recherche", "buscar", "cerca", "zoeken"]
SUBMIT_NAMES = ["search", "find", "go", "submit", "search flights", "find flights", "show flights", "show results", "let's go",
                "suchen", "rechercher", "buscar", "cerca", "zoeken", "pesquisar"]


class BuiltinPlanner:
    name = "builtin"

    def __init__(self, goal: str, want: str = "text") -> None:
        self.goal = goal
        self.want = want
        self.clauses = parse_instructions(goal)
        self.queue: list[AgentAction] = []
        self.index = 0
        self.answer: str | None = None

    async def next_action(self, obs: Observation, history: list[dict[str, Any]]) -> AgentAction:
        while not self.queue:
            if self.index >= len(self.clauses):
                return AgentAction("finish", text=self.answer if self.answer is not None else self._default_answer(obs), label="Done")
            clause = self.clauses[self.index]
            self.index += 1
            self.queue = self._expand(clause, obs)
        return self.queue.pop(0)

    def _default_answer(self, obs: Observation) -> str:
        return obs.heading or obs.title

    # each clause → actions, against the page as it is now
    def _expand(self, c: Clause, obs: Observation) -> list[AgentAction]:  # noqa: C901 - one branch per clause kind
        a = c.args
        if c.kind == "goto":
            return [AgentAction("goto", url=a["url"], label=f"Opening {a['url']}", clause=c.source)]
        if c.kind == "press":
            key = KEYS.get(a["key"].lower().replace(" ", ""), "Enter") if a["key"].lower() != "return" else "Enter"
            return [AgentAction("press", key=key, label=f"Pressing {key}", clause=c.source)]
        if c.kind == "fill":
            el = ground(obs, a["field"], c, is_fillable, "field")
            return [AgentAction("fill", handle=el.handle, text=self._value_for(el, a["value"]), label=f"Filling {el.name or a['field']}", clause=c.source)]
        if c.kind == "select":
            el = self._ground_select(obs, a.get("field"), a["option"], c)
            if el.role == "radio" and el.attr_name:  # the field named a radio group: pick the option in it
                group = [e for e in obs.elements if e.role == "radio" and e.attr_name == el.attr_name]
                el = max(group, key=lambda e: max(similarity(a["option"], n) for n in e.names()))
            if el.tag == "select":
                option = max(el.options, key=lambda o: similarity(a["option"], o)) if el.options else a["option"]
                return [AgentAction("select", handle=el.handle, text=option, label=f"Choosing {option} in {el.name}", clause=c.source)]
            return [AgentAction("click", handle=el.handle, label=f"Choosing {el.name}", clause=c.source)]
        if c.kind == "check":
            el = ground(obs, a["ref"], c, lambda e: e.role in ("checkbox", "radio", "switch"), "checkbox")
            verb = "uncheck" if a["verb"].lower() in ("uncheck", "untick") else "check"
            return [AgentAction(verb, handle=el.handle, label=f"{verb.title()}ing {el.name}", clause=c.source)]
        if c.kind == "click":
            ordinal = re.fullmatch(r"(first|second|third|last)\s+(?:search\s+)?(result|link|item|product|option|entry|flight)s?", a["ref"].strip(), re.I)
            if ordinal:  # "the first result": among the links of the page's content, not its navigation
                links = [e for e in obs.elements if e.role == "link" and e.zone == "main"]
                if not links:
                    raise JobError(ErrorCode.ACTION_FAILED, f"in {c.source!r}: found no {ordinal.group(2)}s to click on {obs.url}")
                index = {"first": 0, "second": 1, "third": 2, "last": -1}[ordinal.group(1).lower()]
                if index >= len(links):
                    raise JobError(ErrorCode.ACTION_FAILED, f"in {c.source!r}: there are only {len(links)} {ordinal.group(2)}s on {obs.url}")
                el = links[index]
                return [AgentAction("click", handle=el.handle, label=f"Opening {el.name}", clause=c.source)]
            el = ground(obs, a["ref"], c, is_clickable, "button or link")
            return [AgentAction("click", handle=el.handle, label=f"Clicking {el.name or a['ref']}", clause=c.source)]
        if c.kind == "wait":
            if "seconds" in a:
                return [AgentAction("wait_for", seconds=float(a["seconds"]), label=f"Waiting {a['seconds']} s", clause=c.source)]
            return [AgentAction("wait_for", text=a["text"], label=f"Waiting for {a['text']}", clause=c.source)]
        if c.kind == "screenshot":
            return [AgentAction("screenshot", text=a.get("what") or obs.title, label=f"Screenshot of {a.get('what') or obs.title or 'the page'}", clause=c.source)]
        if c.kind == "scroll":
            return [AgentAction("scroll", text=a["dir"], label=f"Scrolling {a['dir']}", clause=c.source)]
        if c.kind == "search":
            return self._search(c, obs)
        if c.kind == "read":
            self.answer = self.read(obs, a["what"], c)
            return [AgentAction("read", text=self.answer, label=f"Reading {a['what']}", clause=c.source)]
        raise JobError(ErrorCode.INVALID_INPUT, f"I did not understand the instruction {c.source!r}")

    def _value_for(self, el: Element, value: str) -> str:
        """What to type: a date field gets the date in its own format (ISO for type=date, the
        placeholder's "dd/mm/yyyy" or "MM/DD/YYYY" for a text field); anything else as told."""
        if el.role == "date" or el.type == "date":
            d = parse_date(value, day_first=False)
            if d is None:
                raise JobError(ErrorCode.INVALID_INPUT, f"{value!r} is not a date I can read (try 'July 6th' or '2025-07-06')")
            return d.isoformat()
        fmt = date_format(el.placeholder) or date_format(el.label)
        if fmt:
            try:
                datetime.strptime(value.strip(), fmt)
                return value.strip()  # already written the way the field wants it
            except ValueError:
                pass
            d = parse_date(value, day_first=False)
            if d is not None:
                return format_date(d, fmt)
        return value

    def _ground_select(self, obs: Observation, field: str | None, option: str, c: Clause) -> Element:
        selects = [e for e in obs.elements if e.tag == "select"]
        if field:
            try:
                return ground(obs, field, c, lambda e: e.tag == "select" or e.role in ("combobox", "radio", "option", "tab"), "list")
            except JobError:
                pass
        holding = [e for e in selects if any(similarity(option, o) >= 0.9 for o in e.options)]
        if holding:
            return holding[0]
        return ground(obs, option, c, lambda e: e.role in ("radio", "option", "tab", "button", "link"), "option")

    def _search(self, c: Clause, obs: Observation) -> list[AgentAction]:
        a = c.args
        actions: list[AgentAction] = []
        if "origin" in a or "destination" in a:
            used: set[str] = set()
            for key, names, label in (("origin", ORIGIN_NAMES, "From"), ("destination", DESTINATION_NAMES, "To")):
                if key not in a:
                    continue
                el = self._best_of(obs, names, lambda e: is_fillable(e) and e.handle not in used and not is_date_field(e), c, label)
                assert el is not None
                used.add(el.handle)
                actions.append(AgentAction("fill", handle=el.handle, text=self._value_for(el, a[key]), label=f"Filling {el.name or label}", clause=c.source))
            if "date" in a:
                actions += self._fill_date(obs, a["date"], c, used)
        else:
            field = next((e for e in obs.elements if e.role == "searchbox"), None) or self._best_of(obs, SEARCH_NAMES, is_fillable, c, "search box", required=False)
            if field is None:
                fillable = [e for e in obs.elements if is_fillable(e)]
                if len(fillable) != 1:
                    raise JobError(ErrorCode.ACTION_FAILED, f"in {c.source!r}: found no search box on {obs.url}")
                field = fillable[0]
            actions.append(AgentAction("fill", handle=field.handle, text=a["what"], label=f"Searching for {a['what']}", clause=c.source))
        # the submit control: a button, or a link or div the site styles as one
        submit = self._best_of(obs, SUBMIT_NAMES, lambda e: e.role == "button" or e.styled and e.role == "link", c, "search button", required=False)
        if submit is not None:
            actions.append(AgentAction("click", handle=submit.handle, label=f"Clicking {submit.name}", clause=c.source))
        else:
            last_field = next(x.handle for x in reversed(actions) if x.verb == "fill" or x.verb == "select")
            actions.append(AgentAction("press", handle=last_field, key="Enter", label="Pressing Enter", clause=c.source))
        return actions

    def _fill_date(self, obs: Observation, value: str, c: Clause, used: set[str]) -> list[AgentAction]:
        """The date of a search: a date field (named like one, or asking for a date format), else Day/Month/Year selects."""
        candidates = [e for e in obs.elements if (is_fillable(e) or e.type == "date") and e.handle not in used]
        el = self._best_of(obs, DATE_NAMES, lambda e: e in candidates, c, "Date", required=False)
        if el is None:
            el = next((e for e in candidates if is_date_field(e)), None)
        if el is not None:
            return [AgentAction("fill", handle=el.handle, text=self._value_for(el, value), label=f"Filling {el.name or 'Date'}", clause=c.source)]
        parts = date_selects(obs)
        if parts is None:
            seen = ", ".join(repr(e.name) for e in candidates if e.name) or "nothing suitable"
            raise JobError(ErrorCode.ACTION_FAILED, f"in {c.source!r}: found no Date field on {obs.url}; the page has {seen}")
        d = parse_date(value, day_first=False)
        if d is None:
            raise JobError(ErrorCode.INVALID_INPUT, f"{value!r} is not a date I can read (try 'July 6th' or '2025-07-06')")
        actions = []
        for part, el in zip(("day", "month", "year"), parts):
            option = next((o for o in el.options if _option_is(o, part, d)), None)
            if option is None:
                raise JobError(ErrorCode.ACTION_FAILED, f"in {c.source!r}: the {part} list on {obs.url} has no {getattr(d, part)}")
            actions.append(AgentAction("select", handle=el.handle, text=option, label=f"Choosing {option} in {el.name or part.title()}", clause=c.source))
        return actions

    @staticmethod
    def _best_of(obs: Observation, names: list[str], accept: Callable[[Element], bool], c: Clause, what: str, required: bool = True) -> Element | None:
        best, best_score = None, 0.0
        for el in obs.elements:
            if not accept(el):
                continue
            score = max((similarity(n, name) for n in names for name in el.names()), default=0.0)
            if score > best_score:
                best, best_score = el, score
        if best is None or best_score < 0.6:
            if not required:
                return None
            seen = ", ".join(repr(e.name) for e in obs.elements if accept(e) and e.name) or "nothing suitable"
            raise JobError(ErrorCode.ACTION_FAILED, f"in {c.source!r}: found no {what} field on {obs.url}; the page has {seen}")
        return best

    # ------------------------------------------------------------------ reading
    def read(self, obs: Observation, what: str, c: Clause) -> str:
        w = what.lower().strip().rstrip("?!. ")
        how = re.match(r"^how much\s+(?:is|are|does|do|did|will|would|was|for)?\s*(?:the\s+|a\s+|an\s+)?(?P<item>.+?)(?:\s+costs?)?$", w)
        if how:  # "how much is the Blue kettle", "how much the Steel kettle costs"
            w = f"price of {how.group('item')}"
        pick = next((k for k in ("cheapest", "lowest", "highest", "most expensive", "first", "last", "latest", *ORDINALS) if re.search(rf"\b{k}\b", w)), None)
        subject = re.sub(r"\b(cheapest|lowest|highest|most expensive|first|last|latest|" + "|".join(ORDINALS) + r")\b", "", w).strip()
        subject = re.sub(r"\s+", " ", subject)
        if re.fullmatch(r"(page )?title", subject):
            return obs.title
        if re.fullmatch(r"(main )?heading|headline", subject):
            return obs.heading or obs.title
        m = re.match(r"^(?:text|content|contents|value|message) (?:of|in|from) (?:the )?(?P<ref>.+)$", subject)
        if not m and PRICE_WORDS.search(subject):
            found = self._read_price(obs, subject, pick)
            if found is not None:
                return found
            if re.search(r"\b(?:price|prices|cost|costs|fare|fares)\b", subject):
                of = re.search(r"\b(?:of|for)\s+(?:the\s+)?(?P<item>.+)$", subject)
                raise JobError(ErrorCode.ACTION_FAILED, f"in {c.source!r}: found no price on {obs.url}" + (f" for {of.group('item')!r}" if of else ""))
        ref = m.group("ref") if m else subject
        for el in obs.elements:
            if el.value and max((similarity(ref, n) for n in el.names()), default=0) >= 0.8:
                return el.value
        # a value under its label: <dt>Departure date</dt><dd>…</dd>, <strong>Order number:</strong> 100-4471
        labelled = [(similarity(ref, lv[0]), lv[1]) for lv in map(label_value, obs.texts) if lv is not None and lv[1]]
        if labelled:
            score, value = max(labelled, key=lambda s: s[0])
            if score >= 0.75:
                return value
        if MESSAGE_WORDS.search(ref) or re.fullmatch(r"(?:the )?(?:confirmation|result)", ref):
            message = self._read_message(obs, ref)
            if message is not None:
                return message
        scored = sorted(((max(similarity(ref, t.text), similarity(ref, t.context) * 0.9, similarity(ref, t.hint.replace("-", " ").replace("_", " ")) * 0.95), t)
                         for t in obs.texts), key=lambda s: -s[0])
        if not scored or scored[0][0] < 0.5:
            raise JobError(ErrorCode.ACTION_FAILED, f"in {c.source!r}: found nothing like {ref!r} to read on {obs.url}")
        best = scored[0][1]
        # "the confirmation message" matches its heading; answer the text around it
        return best.text

    @staticmethod
    def _read_message(obs: Observation, ref: str) -> str | None:
        """"the confirmation message", "the delivery message": what the page shows as a message (role=status/alert,
        a live region, a block classed alert/notice/message/…), the one whose own words fit best."""
        core = MESSAGE_WORDS.sub(" ", ref).strip()
        best, best_score = None, 0.0
        for t in obs.texts:
            if t.zone != "main":
                continue
            hint = t.hint.replace("-", " ").replace("_", " ")
            bonus = 0.6 if t.status else 0.5 if MESSAGE_HINT.search(t.hint) else 0.0
            fit = max(similarity(core, t.text), similarity(core, hint) * 0.95) if core else 0.0
            if bonus + fit > best_score:
                best, best_score = t, bonus + fit
        return best.text if best is not None and best_score >= 0.5 else None

    def _read_price(self, obs: Observation, subject: str, pick: str | None) -> str | None:
        hits = price_hits(obs)
        hits = [h for h in hits if h[1].zone == "main"] or hits  # not the banner's "Save €50"
        of = re.search(r"\b(?:of|for)\s+(?:the\s+|a\s+|an\s+)?(?P<item>.+)$", subject)
        if of:
            item = of.group("item")
            hits = [h for h in hits if similarity(item, h[1].context) >= 0.5 or _norm(item) in _norm(h[1].context)]
            subject = subject[: of.start()]
        # words that narrow which price: "the total" (a Total column or label), "price per night"
        words = [x for x in _norm(subject).split() if x not in PRICE_GENERIC]
        if words:
            has = lambda text: all(re.search(rf"\b{re.escape(x)}\b", _norm(text)) for x in words)  # noqa: E731
            hits = [h for h in hits if has(h[1].label + " " + h[1].header)] or [h for h in hits if has(h[1].context + " " + h[1].cell)] or hits
        if not hits:
            return None
        if pick in ("cheapest", "lowest"):
            chosen = min(hits, key=lambda h: h[0].amount)
        elif pick in ("highest", "most expensive"):
            chosen = max(hits, key=lambda h: h[0].amount)
        elif pick in ("last", "latest"):
            chosen = hits[-1]
        elif pick in ORDINALS:
            if ORDINALS[pick] >= len(hits):
                return None
            chosen = hits[ORDINALS[pick]]
        else:
            chosen = hits[0]
        return chosen[0].text


def price_hits(obs: Observation) -> list[tuple[Money, TextBlock]]:
    """Every price the page shows, in page order, once each: amounts with a currency (in the text, or in the small
    block around a piece of it: <span>EUR</span><span>74</span>), bare numbers in a Price/Fare/Total column;
    not struck-through old prices."""
    out: list[tuple[Money, TextBlock]] = []
    seen: set[tuple[int, str]] = set()
    for t in obs.texts:
        if t.struck:
            continue
        found = [m for m, _, _ in find_money(t.text)]
        if not found and t.cell and t.cell != t.text and len(t.text) <= 12:
            found = [m for m, _, _ in find_money(t.cell)]
        if not found:
            bare = bare_money(t.text, t.header)
            found = [bare] if bare else []
        for money in found:
            key = (t.cell_id, money.text)
            if key not in seen:
                seen.add(key)
                out.append((money, t))
    return out


def label_value(t: TextBlock) -> tuple[str, str] | None:
    """(label, value) when the block is a value under a label, or reads "Label: value"."""
    if t.label:
        value = t.text
        if value.lower().startswith(t.label.lower()):
            value = value[len(t.label):]
        return t.label.rstrip(" :"), value.strip(" :")
    m = re.match(r"^([^:]{1,40}):\s+(.{1,200})$", t.text)
    if m and not re.search(r"https?$", m.group(1)):
        return m.group(1), m.group(2)
    return None


def date_selects(obs: Observation) -> tuple[Element, Element, Element] | None:
    """A date picked in three lists: (day, month, year), told apart by what they offer."""
    day = month = year = None
    for el in obs.elements:
        if el.tag != "select":
            continue
        opts = [o.strip().lower() for o in el.options if o.strip() and not re.search(r"choose|select|pick|--|…", o, re.I)]
        if not opts:
            continue
        if year is None and all(re.fullmatch(r"(19|20)\d\d", o) for o in opts):
            year = el
        elif month is None and (sum(o in MONTHS or o[:3] in MONTHS for o in opts) >= 10
                                or similarity("month", el.name) >= 0.9 and all(o.isdigit() and 1 <= int(o) <= 12 for o in opts)):
            month = el
        elif day is None and all(o.isdigit() and 1 <= int(o) <= 31 for o in opts) and (len(opts) >= 28 or similarity("day", el.name) >= 0.9):
            day = el
    return (day, month, year) if day and month and year else None


def _option_is(option: str, part: str, d: Any) -> bool:
    o = option.strip().lower()
    if part == "day":
        return o.isdigit() and int(o) == d.day
    if part == "year":
        return o == str(d.year)
    return o.isdigit() and int(o) == d.month or MONTHS.get(o) == d.month or MONTHS.get(o[:3]) == d.month and len(o) >= 3
