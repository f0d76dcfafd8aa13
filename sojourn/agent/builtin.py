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
from datetime import date
from difflib import SequenceMatcher
from typing import Any, Callable

from sojourn.agent.actions import KEYS, AgentAction
from sojourn.agent.observe import Element, Observation
from sojourn.errors import ErrorCode, JobError

FILLER = {"the", "a", "an", "button", "field", "box", "input", "link", "tab", "dropdown", "menu", "list", "checkbox", "option", "on", "please", "my"}
PRICE = re.compile(r"(?:[$€£¥]\s?\d[\d,]*(?:\.\d+)?|\d[\d,]*(?:\.\d+)?\s?(?:€|EUR|USD|GBP|\$|£))")
MONTHS = {m: i for i, m in enumerate(["january", "february", "march", "april", "may", "june", "july", "august", "september", "october", "november", "december"], 1)}
MONTHS.update({k[:3]: v for k, v in list(MONTHS.items())})


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
    ("search", re.compile(r"^search(?:\s+for)?\s+(?P<what>.+?)(?:\s+from\s+(?P<origin>.+?))?(?:\s+to\s+(?P<destination>.+?))?(?:\s+on\s+(?P<date>.+?))?$", re.I)),
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
    ("read", re.compile(r"^(?:return|extract|read|get|tell me|report|find out|give me|what is|what's|show me)\s+(?:me\s+)?(?:the\s+)?(?P<what>.+)$", re.I)),
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
    body = re.sub(r"^(?:please|now|first|next|finally|also|and)\s+", "", source, flags=re.I).strip()
    for kind, pattern in _PATTERNS:
        m = pattern.match(body)
        if m:
            return Clause(kind, source, {k: _unquote(v) for k, v in m.groupdict().items() if v})
    return None


def parse_instructions(text: str) -> list[Clause]:
    clauses = []
    pending = split_clauses(text)
    while pending:
        source = pending.pop(0)
        clause = _match(source)
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
    return " ".join(w for w in re.findall(r"[a-z0-9]+", s.lower()) if w not in FILLER)


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
    return el.role in ("button", "link", "tab", "menuitem", "option", "checkbox", "radio", "generic") or el.tag in ("summary",)


def is_fillable(el: Element) -> bool:
    return el.tag == "textarea" or (el.tag == "input" and el.role in ("textbox", "searchbox", "date", "spinbutton"))


# ---------------------------------------------------------------------- values


def parse_date(text: str, today: date | None = None) -> date | None:
    """"July 6th", "6 July 2025", "2025-07-06", "07/06/2025" (US order)."""
    today = today or date.today()
    t = text.lower().strip()
    try:
        return date.fromisoformat(t)
    except ValueError:
        pass
    m = re.match(r"^(\d{1,2})/(\d{1,2})/(\d{4})$", t)
    if m:
        return date(int(m.group(3)), int(m.group(1)), int(m.group(2)))
    month = next((MONTHS[w] for w in re.findall(r"[a-z]+", t) if w in MONTHS), None)
    day = re.search(r"\b(\d{1,2})(?:st|nd|rd|th)?\b", t)
    year = re.search(r"\b(\d{4})\b", t)
    if month is None or day is None:
        return None
    y = int(year.group(1)) if year else today.year
    d = date(y, month, int(day.group(1)))
    if not year and d < today:
        d = date(y + 1, month, int(day.group(1)))
    return d


def price_value(text: str) -> float | None:
    m = PRICE.search(text)
    if not m:
        return None
    digits = re.sub(r"[^\d.,]", "", m.group(0))
    if "," in digits and "." not in digits and re.search(r",\d{2}$", digits):
        digits = digits.replace(",", ".")
    try:
        return float(digits.replace(",", ""))
    except ValueError:
        return None


# ---------------------------------------------------------------------- the planner


ORIGIN_NAMES = ["from", "origin", "departure", "leaving from", "depart from", "flying from"]
DESTINATION_NAMES = ["to", "destination", "arrival", "going to", "flying to"]
DATE_NAMES = ["date", "departure date", "depart", "when", "on", "travel date"]
SEARCH_NAMES = ["search", "query", "q", "find", "keywords"]
SUBMIT_NAMES = ["search", "find", "go", "submit", "search flights", "find flights", "show flights"]


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
        if el.role == "date" or el.type == "date":
            d = parse_date(value)
            if d is None:
                raise JobError(ErrorCode.INVALID_INPUT, f"{value!r} is not a date I can read (try 'July 6th' or '2025-07-06')")
            return d.isoformat()
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
            for key, names, label in (("origin", ORIGIN_NAMES, "From"), ("destination", DESTINATION_NAMES, "To"), ("date", DATE_NAMES, "Date")):
                if key not in a:
                    continue
                el = self._best_of(obs, names, is_fillable if key != "date" else (lambda e: is_fillable(e) or e.type == "date"), c, label)
                actions.append(AgentAction("fill", handle=el.handle, text=self._value_for(el, a[key]), label=f"Filling {el.name or label}", clause=c.source))
        else:
            field = next((e for e in obs.elements if e.role == "searchbox"), None) or self._best_of(obs, SEARCH_NAMES, is_fillable, c, "search box", required=False)
            if field is None:
                fillable = [e for e in obs.elements if is_fillable(e)]
                if len(fillable) != 1:
                    raise JobError(ErrorCode.ACTION_FAILED, f"in {c.source!r}: found no search box on {obs.url}")
                field = fillable[0]
            actions.append(AgentAction("fill", handle=field.handle, text=a["what"], label=f"Searching for {a['what']}", clause=c.source))
        submit = self._best_of(obs, SUBMIT_NAMES, lambda e: e.role == "button", c, "search button", required=False)
        if submit is not None:
            actions.append(AgentAction("click", handle=submit.handle, label=f"Clicking {submit.name}", clause=c.source))
        else:
            actions.append(AgentAction("press", handle=actions[-1].handle, key="Enter", label="Pressing Enter", clause=c.source))
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
        w = what.lower().strip()
        pick = next((k for k in ("cheapest", "lowest", "highest", "most expensive", "first", "last", "latest") if k in w), None)
        subject = re.sub(r"\b(cheapest|lowest|highest|most expensive|first|last|latest)\b", "", w).strip()
        if re.fullmatch(r"(page )?title", subject):
            return obs.title
        if re.fullmatch(r"(main )?heading|headline", subject):
            return obs.heading or obs.title
        m = re.match(r"^(?:text|content|contents|value|message) (?:of|in|from) (?:the )?(?P<ref>.+)$", subject)
        if "price" in subject or "cost" in subject or "fare" in subject:
            of = re.search(r"\b(?:of|for)\s+(?:the\s+)?(?P<item>.+)$", subject)
            blocks = [t for t in obs.texts if price_value(t.text) is not None]
            if of:
                item = of.group("item")
                blocks = [t for t in blocks if similarity(item, t.context) >= 0.5 or _norm(item) in _norm(t.context)]
            if not blocks:
                raise JobError(ErrorCode.ACTION_FAILED, f"in {c.source!r}: found no price on {obs.url}" + (f" for {of.group('item')!r}" if of else ""))
            if pick in ("cheapest", "lowest"):
                chosen = min(blocks, key=lambda t: price_value(t.text) or 0)
            elif pick in ("highest", "most expensive"):
                chosen = max(blocks, key=lambda t: price_value(t.text) or 0)
            elif pick in ("last", "latest"):
                chosen = blocks[-1]
            else:
                chosen = blocks[0]
            match = PRICE.search(chosen.text)
            return match.group(0).strip() if match else chosen.text
        ref = m.group("ref") if m else subject
        scored = sorted(((max(similarity(ref, t.text), similarity(ref, t.context) * 0.9, similarity(ref, t.hint.replace("-", " ").replace("_", " ")) * 0.95), t)
                         for t in obs.texts), key=lambda s: -s[0])
        for el in obs.elements:
            if el.value and max((similarity(ref, n) for n in el.names()), default=0) >= 0.8:
                return el.value
        if not scored or scored[0][0] < 0.5:
            raise JobError(ErrorCode.ACTION_FAILED, f"in {c.source!r}: found nothing like {ref!r} to read on {obs.url}")
        best = scored[0][1]
        # "the confirmation message" matches its heading; answer the text around it
        return best.text
