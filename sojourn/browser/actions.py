"""Safe actions: Playwright-style action strings parsed into an allow-list.

Tourist clients send actions as JavaScript (``page.click('#b')``) that Tourist
runs in a vm2 sandbox. Sojourn never evaluates an action on the host. Each
string (JavaScript camelCase or Python snake_case) or JSON object is parsed
by a small recursive-descent parser that knows only:

* a chain rooted at ``page`` or ``context``: member names and calls;
* arguments that are literals (strings, numbers, booleans, null, arrays,
  objects with literal values) or Python keyword arguments with literals;
* dialog handlers of the forms ``d => d.accept('x')`` / ``lambda d: d.dismiss()``;
* page-side JavaScript for ``evaluate``/``waitForFunction``/``addInitScript``,
  kept as text and handed to the browser, which runs it in the page.

The chain is then checked against an allow-list of methods with the option
names each may take (none of them a host path). Anything else raises
:class:`ActionError`, which says which action and why. The result is an
:class:`Action`: a method name from the allow-list plus literal arguments,
which :mod:`sojourn.browser.runner` dispatches through a fixed table.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

Target = Literal["page", "context", "keyboard", "mouse", "locator", "dialog"]
Phase = Literal["before", "after"]

MAX_ACTION_LENGTH = 10_000
MAX_NESTING = 20


class ActionError(ValueError):
    """An action that is not allowed or cannot be parsed."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        shown = source if len(source) <= 120 else source[:117] + "..."
        super().__init__(f"action `{shown}` is not allowed: {reason}")


# --------------------------------------------------------------------------- names

_CAMEL_RE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def snake(name: str) -> str:
    """``waitForSelector`` → ``wait_for_selector``; ``setExtraHTTPHeaders`` → ``set_extra_http_headers``."""
    return _CAMEL_RE.sub("_", name).lower()


def _snake_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {snake(k): v for k, v in value.items()}
    return value


# --------------------------------------------------------------------------- allow-list

# Option names that Playwright accepts for each kind of call and that touch
# nothing on the host. ``path`` (screenshot/pdf/storage state files),
# ``set_input_files`` and anything that reads or writes host files are absent.
_WAIT = {"timeout", "no_wait_after", "strict", "force", "trial"}
_CLICK = _WAIT | {"button", "click_count", "delay", "modifiers", "position"}
_TYPE = {"delay", "timeout", "no_wait_after", "strict"}
_SELECT = {"timeout", "no_wait_after", "strict", "force"}
_NAV = {"timeout", "wait_until"}


@dataclass(frozen=True)
class _Sig:
    min_args: int
    max_args: int
    options: frozenset[str] = frozenset()
    phase: Phase = "after"
    page_js: bool = False  # first argument is JavaScript for the page


def _sig(mn: int, mx: int, opts: set[str] | frozenset[str] = frozenset(), *, phase: Phase = "after", page_js: bool = False) -> _Sig:
    return _Sig(mn, mx, frozenset(opts), phase, page_js)


PAGE_METHODS: dict[str, _Sig] = {
    "goto": _sig(1, 1, _NAV | {"referer"}),
    "click": _sig(1, 1, _CLICK),
    "dblclick": _sig(1, 1, _CLICK - {"click_count"}),
    "fill": _sig(2, 2, _WAIT - {"trial"}),
    "type": _sig(2, 2, _TYPE),
    "press": _sig(2, 2, _TYPE),
    "check": _sig(1, 1, _WAIT | {"position"}),
    "uncheck": _sig(1, 1, _WAIT | {"position"}),
    "hover": _sig(1, 1, _WAIT | {"position", "modifiers"}),
    "focus": _sig(1, 1, {"timeout", "strict"}),
    "select_option": _sig(2, 2, _SELECT),
    "wait_for_selector": _sig(1, 1, {"state", "timeout", "strict"}),
    "wait_for_timeout": _sig(1, 1),
    "wait_for_load_state": _sig(0, 1, {"timeout"}),
    "wait_for_url": _sig(1, 1, _NAV),
    "wait_for_function": _sig(1, 2, {"timeout", "polling"}, page_js=True),
    "evaluate": _sig(1, 2, page_js=True),
    "reload": _sig(0, 0, _NAV),
    "go_back": _sig(0, 0, _NAV),
    "go_forward": _sig(0, 0, _NAV),
    "set_viewport_size": _sig(1, 1),
    "emulate_media": _sig(0, 0, {"media", "color_scheme", "reduced_motion", "forced_colors"}),
    "bring_to_front": _sig(0, 0),
    "screenshot": _sig(0, 0, {"full_page", "omit_background", "timeout", "animations", "caret", "scale"}),
    "set_extra_http_headers": _sig(1, 1, phase="before"),
    "set_default_timeout": _sig(1, 1, phase="before"),
    "set_default_navigation_timeout": _sig(1, 1, phase="before"),
    "add_init_script": _sig(1, 1, phase="before", page_js=True),
}

CONTEXT_METHODS: dict[str, _Sig] = {
    "set_extra_http_headers": _sig(1, 1, phase="before"),
    "set_default_timeout": _sig(1, 1, phase="before"),
    "set_default_navigation_timeout": _sig(1, 1, phase="before"),
    "add_cookies": _sig(1, 1, phase="before"),
    "clear_cookies": _sig(0, 0, {"name", "domain", "path"}, phase="before"),
    "grant_permissions": _sig(1, 1, {"origin"}, phase="before"),
    "set_geolocation": _sig(1, 1, phase="before"),
    "set_offline": _sig(1, 1, phase="before"),
}

KEYBOARD_METHODS: dict[str, _Sig] = {
    "press": _sig(1, 1, {"delay"}),
    "type": _sig(1, 1, {"delay"}),
    "down": _sig(1, 1),
    "up": _sig(1, 1),
    "insert_text": _sig(1, 1),
}

MOUSE_METHODS: dict[str, _Sig] = {
    "click": _sig(2, 2, {"button", "click_count", "delay"}),
    "dblclick": _sig(2, 2, {"button", "delay"}),
    "move": _sig(2, 2, {"steps"}),
    "down": _sig(0, 0, {"button", "click_count"}),
    "up": _sig(0, 0, {"button", "click_count"}),
    "wheel": _sig(2, 2),
}

# Calls that narrow a locator; JavaScript's first()/last() are properties in Python.
LOCATOR_BUILDERS: dict[str, _Sig] = {
    "locator": _sig(1, 1, {"has_text", "has_not_text"}),
    "get_by_role": _sig(1, 1, {"name", "exact", "checked", "disabled", "expanded", "include_hidden", "level", "pressed", "selected"}),
    "get_by_text": _sig(1, 1, {"exact"}),
    "get_by_label": _sig(1, 1, {"exact"}),
    "get_by_placeholder": _sig(1, 1, {"exact"}),
    "get_by_alt_text": _sig(1, 1, {"exact"}),
    "get_by_title": _sig(1, 1, {"exact"}),
    "get_by_test_id": _sig(1, 1),
    "frame_locator": _sig(1, 1),
    "filter": _sig(0, 0, {"has_text", "has_not_text", "visible"}),
    "nth": _sig(1, 1),
    "first": _sig(0, 0),
    "last": _sig(0, 0),
}

LOCATOR_METHODS: dict[str, _Sig] = {
    "click": _sig(0, 0, _CLICK),
    "dblclick": _sig(0, 0, _CLICK - {"click_count"}),
    "fill": _sig(1, 1, _WAIT - {"trial"}),
    "type": _sig(1, 1, _TYPE),
    "press_sequentially": _sig(1, 1, _TYPE),
    "press": _sig(1, 1, _TYPE),
    "check": _sig(0, 0, _WAIT | {"position"}),
    "uncheck": _sig(0, 0, _WAIT | {"position"}),
    "set_checked": _sig(1, 1, _WAIT | {"position"}),
    "hover": _sig(0, 0, _WAIT | {"position", "modifiers"}),
    "focus": _sig(0, 0, {"timeout"}),
    "blur": _sig(0, 0, {"timeout"}),
    "clear": _sig(0, 0, {"timeout", "force", "no_wait_after"}),
    "select_option": _sig(1, 1, _SELECT),
    "select_text": _sig(0, 0, {"timeout", "force"}),
    "wait_for": _sig(0, 0, {"state", "timeout"}),
    "scroll_into_view_if_needed": _sig(0, 0, {"timeout"}),
    "dispatch_event": _sig(1, 1, {"timeout"}),
}

DIALOG_EVENTS = {"dialog"}


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class LocatorStep:
    method: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Action:
    """One allow-listed call with literal arguments.

    ``target`` says what it is called on; for ``locator`` actions,
    ``locator`` is the chain of narrowing calls. ``dialog`` actions set how
    the job answers ``alert``/``confirm``/``prompt`` (``method`` is
    ``accept`` or ``dismiss``; ``once`` is in ``kwargs``).
    """

    target: Target
    method: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    locator: tuple[LocatorStep, ...] = ()
    source: str = ""

    @property
    def phase(self) -> Phase:
        """Handlers, headers and timeouts apply before the step navigates."""
        if self.target == "dialog" or self.target == "context":
            return "before"
        if self.target == "page":
            return PAGE_METHODS[self.method].phase
        return "after"

    def describe(self) -> str:
        return self.source or f"{self.target}.{self.method}"


# --------------------------------------------------------------------------- parser

_IDENT_START = re.compile(r"[A-Za-z_$]")
_IDENT = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")
_NUMBER = re.compile(r"(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)")

_LITERAL_WORDS = {
    "true": True, "True": True,
    "false": False, "False": False,
    "null": None, "None": None, "undefined": None,
}

# Words that never belong in an action; named in the error to help the caller.
_FORBIDDEN_WORDS = {
    "require", "process", "constructor", "prototype", "__proto__", "import", "eval", "Function",
    "globalThis", "window", "global", "this", "new", "while", "for", "do", "if", "return",
    "var", "let", "const", "function", "class", "delete", "yield", "exec", "__import__",
    "open", "os", "sys", "subprocess", "getattr", "setattr", "__class__", "__globals__",
}


@dataclass
class _Call:
    args: list[Any]
    kwargs: dict[str, Any]


@dataclass
class _Handler:
    """A parsed dialog handler: ``d => d.accept('x')``."""

    method: str
    args: tuple[Any, ...]


@dataclass
class _PageJs:
    """JavaScript to run in the page, kept as source text."""

    source: str


class _Parser:
    def __init__(self, source: str) -> None:
        self.src = source
        self.pos = 0
        self.depth = 0

    # -- low level
    def fail(self, reason: str) -> ActionError:
        return ActionError(self.src, reason)

    def skip_ws(self) -> None:
        while self.pos < len(self.src):
            c = self.src[self.pos]
            if c in " \t\r\n":
                self.pos += 1
            elif self.src.startswith("//", self.pos) or self.src.startswith("/*", self.pos):
                raise self.fail("comments are not allowed")
            else:
                return

    def peek(self) -> str:
        self.skip_ws()
        return self.src[self.pos] if self.pos < len(self.src) else ""

    def at(self, text: str) -> bool:
        self.skip_ws()
        return self.src.startswith(text, self.pos)

    def expect(self, text: str, what: str | None = None) -> None:
        if not self.at(text):
            found = self.src[self.pos : self.pos + 12] or "end of action"
            raise self.fail(f"expected {what or repr(text)} at position {self.pos}, found {found!r}")
        self.pos += len(text)

    def ident(self) -> str:
        self.skip_ws()
        m = _IDENT.match(self.src, self.pos)
        if not m:
            found = self.src[self.pos : self.pos + 12] or "end of action"
            raise self.fail(f"expected a name at position {self.pos}, found {found!r}")
        self.pos = m.end()
        word = m.group(0)
        if word in _FORBIDDEN_WORDS:
            raise self.fail(f"`{word}` is not allowed in an action")
        return word

    def peek_word(self) -> str | None:
        self.skip_ws()
        m = _IDENT.match(self.src, self.pos)
        return m.group(0) if m else None

    # -- grammar
    def parse(self) -> tuple[str, list[str | _Call]]:
        if len(self.src) > MAX_ACTION_LENGTH:
            raise self.fail(f"longer than {MAX_ACTION_LENGTH} characters")
        if self.peek_word() == "await":
            self.pos += len("await")
        root = self.ident()
        if root not in ("page", "context"):
            raise self.fail(f"actions start with `page` or `context`, not `{root}`")
        chain: list[str | _Call] = []
        while True:
            c = self.peek()
            if c == ".":
                self.pos += 1
                chain.append(self.ident())
            elif c == "(":
                chain.append(self.call(chain))
            elif c == "[":
                raise self.fail("computed member access (`[...]`) is not allowed")
            else:
                break
        if self.peek() == ";":
            self.pos += 1
        self.skip_ws()
        if self.pos != len(self.src):
            rest = self.src[self.pos : self.pos + 20]
            raise self.fail(f"unexpected {rest!r} after the call; one call per action")
        return root, chain

    def call(self, chain: list[str | _Call]) -> _Call:
        method = snake(chain[-1]) if chain and isinstance(chain[-1], str) else ""
        self.expect("(")
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        first = True
        while not self.at(")"):
            if not first:
                self.expect(",", "',' or ')'")
                if self.at(")"):
                    break
            index = len(args)
            # Python keyword argument: name=literal
            word = self.peek_word()
            if word and word not in _LITERAL_WORDS and word not in ("lambda", "async"):
                save = self.pos
                self.pos += len(word)
                if self.peek() == "=" and not self.at("=>") and not self.at("=="):
                    self.pos += 1
                    kwargs[snake(word)] = self.literal()
                    first = False
                    continue
                self.pos = save
            if kwargs:
                raise self.fail("positional argument after keyword argument")
            if method in ("on", "once") and index == 1 and args and args[0] not in DIALOG_EVENTS:
                raise self.fail(f"only 'dialog' handlers are allowed, not {args[0]!r}")
            args.append(self.argument(method, index))
            first = False
        self.expect(")")
        return _Call(args, kwargs)

    def argument(self, method: str, index: int) -> Any:
        page_js = method in ("evaluate", "wait_for_function", "add_init_script") and index == 0
        if page_js and self.peek() not in ("'", '"'):
            return _PageJs(self.raw_js())
        if method in ("on", "once") and index == 1:
            return self.handler()
        return self.literal()

    def literal(self) -> Any:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise self.fail("arguments nested too deeply")
        try:
            c = self.peek()
            if c in ("'", '"'):
                return self.string()
            if c == "`":
                raise self.fail("template literals are not allowed; use a quoted string")
            if c == "{":
                return self.obj()
            if c == "[":
                return self.array()
            if self.at("..."):
                raise self.fail("spread syntax is not allowed")
            if c == "-" or c == "+" or c.isdigit() or c == ".":
                return self.number()
            if c == "/":
                raise self.fail("regular expressions are not allowed; use a string")
            if c == "(":
                raise self.fail("functions are only allowed as dialog handlers and page scripts")
            if c and _IDENT_START.match(c):
                word = self.peek_word() or ""
                if word in _LITERAL_WORDS:
                    self.pos += len(word)
                    return _LITERAL_WORDS[word]
                if word in _FORBIDDEN_WORDS:
                    raise self.fail(f"`{word}` is not allowed in an action")
                after = self.src[self.pos + len(word) :].lstrip()
                if word in ("lambda", "async") or after.startswith("=>"):
                    raise self.fail("functions are only allowed as dialog handlers and page scripts")
                raise self.fail(f"`{word}` is not a literal; arguments must be strings, numbers, booleans, arrays or objects")
            if not c:
                raise self.fail("unexpected end of action")
            raise self.fail(f"unexpected {c!r} at position {self.pos}")
        finally:
            self.depth -= 1

    def string(self) -> str:
        self.skip_ws()
        quote = self.src[self.pos]
        self.pos += 1
        out: list[str] = []
        escapes = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "v": "\v", "0": "\0"}
        while True:
            if self.pos >= len(self.src):
                raise self.fail("unterminated string")
            c = self.src[self.pos]
            if c == quote:
                self.pos += 1
                return "".join(out)
            if c == "\n":
                raise self.fail("unterminated string")
            if c == "\\":
                self.pos += 1
                if self.pos >= len(self.src):
                    raise self.fail("unterminated string")
                e = self.src[self.pos]
                if e == "u":
                    hexpart = self.src[self.pos + 1 : self.pos + 5]
                    if not re.fullmatch(r"[0-9a-fA-F]{4}", hexpart):
                        raise self.fail("bad \\u escape")
                    out.append(chr(int(hexpart, 16)))
                    self.pos += 5
                    continue
                if e == "x":
                    hexpart = self.src[self.pos + 1 : self.pos + 3]
                    if not re.fullmatch(r"[0-9a-fA-F]{2}", hexpart):
                        raise self.fail("bad \\x escape")
                    out.append(chr(int(hexpart, 16)))
                    self.pos += 3
                    continue
                out.append(escapes.get(e, e))
                self.pos += 1
                continue
            out.append(c)
            self.pos += 1

    def number(self) -> int | float:
        self.skip_ws()
        sign = 1
        if self.src[self.pos] in "+-":
            sign = -1 if self.src[self.pos] == "-" else 1
            self.pos += 1
        m = _NUMBER.match(self.src, self.pos)
        if not m:
            raise self.fail(f"expected a number at position {self.pos}")
        self.pos = m.end()
        text = m.group(0)
        if text.lower().startswith("0x"):
            value: int | float = int(text, 16)
        elif re.fullmatch(r"\d+", text):
            value = int(text)
        else:
            value = float(text)
        if isinstance(value, float) and value != value:  # NaN cannot come from the regex, but be explicit
            raise self.fail("not a number")
        return sign * value

    def obj(self) -> dict[str, Any]:
        self.expect("{")
        out: dict[str, Any] = {}
        while not self.at("}"):
            c = self.peek()
            if c in ("'", '"'):
                key = self.string()
            elif c == "[":
                raise self.fail("computed object keys are not allowed")
            else:
                key = self.ident()
            if key in ("__proto__", "constructor", "prototype"):
                raise self.fail(f"`{key}` is not allowed as an object key")
            if self.peek() != ":":
                raise self.fail(f"expected ':' after object key {key!r}; shorthand properties are not literals")
            self.pos += 1
            out[key] = self.literal()
            if self.peek() == ",":
                self.pos += 1
            elif not self.at("}"):
                raise self.fail(f"expected ',' or '}}' at position {self.pos}")
        self.expect("}")
        return out

    def array(self) -> list[Any]:
        self.expect("[")
        out: list[Any] = []
        while not self.at("]"):
            if self.at("..."):
                raise self.fail("spread syntax is not allowed")
            out.append(self.literal())
            if self.peek() == ",":
                self.pos += 1
            elif not self.at("]"):
                raise self.fail(f"expected ',' or ']' at position {self.pos}")
        self.expect("]")
        return out

    def handler(self) -> _Handler:
        """``d => d.accept()``, ``async (d) => { await d.dismiss(); }``, ``lambda d: d.accept('x')``."""
        if self.peek_word() == "lambda":
            self.pos += len("lambda")
            param = self.ident()
            self.expect(":")
            return self.handler_body(param, braces=False)
        if self.peek_word() == "async":
            self.pos += len("async")
        if self.peek() == "(":
            self.pos += 1
            param = self.ident()
            self.expect(")")
        else:
            param = self.ident()
        self.expect("=>", "'=>' (a dialog handler such as `d => d.accept()`)")
        braces = self.peek() == "{"
        if braces:
            self.pos += 1
        h = self.handler_body(param, braces=braces)
        if braces:
            if self.peek() == ";":
                self.pos += 1
            self.expect("}")
        return h

    def handler_body(self, param: str, *, braces: bool) -> _Handler:
        if self.peek_word() == "await":
            self.pos += len("await")
        obj = self.ident()
        if obj != param:
            raise self.fail(f"a dialog handler may only call `{param}.accept()` or `{param}.dismiss()`")
        self.expect(".")
        method = self.ident()
        if method not in ("accept", "dismiss"):
            raise self.fail(f"a dialog handler may only call accept() or dismiss(), not {method}()")
        call = self.call([method])
        if call.kwargs:
            call.args.extend(call.kwargs.values())
        if method == "dismiss" and call.args:
            raise self.fail("dismiss() takes no arguments")
        if len(call.args) > 1 or (call.args and not isinstance(call.args[0], str)):
            raise self.fail("accept() takes at most one string (the prompt text)")
        return _Handler(method, tuple(call.args))

    def raw_js(self) -> str:
        """Capture page-side JavaScript up to the ',' or ')' that ends the argument."""
        self.skip_ws()
        start = self.pos
        depth = 0
        src = self.src
        i = self.pos
        while i < len(src):
            c = src[i]
            if c in "'\"`":
                i = _skip_js_string(src, i, self)
                continue
            if src.startswith("//", i):
                nl = src.find("\n", i)
                i = len(src) if nl < 0 else nl
                continue
            if src.startswith("/*", i):
                end = src.find("*/", i + 2)
                if end < 0:
                    raise self.fail("unterminated comment in page script")
                i = end + 2
                continue
            if c in "([{":
                depth += 1
            elif c in ")]}":
                if depth == 0:
                    break
                depth -= 1
            elif c == "," and depth == 0:
                break
            i += 1
        text = src[start:i].strip()
        if not text:
            raise self.fail("expected a page script")
        if not re.match(r"^(async\s+)?(function\b|\(|[A-Za-z_$][\w$]*\s*=>)", text):
            raise self.fail("a page script must be a quoted string or a function expression")
        self.pos = i
        return text


def _skip_js_string(src: str, i: int, parser: _Parser) -> int:
    quote = src[i]
    i += 1
    while i < len(src):
        c = src[i]
        if c == "\\":
            i += 2
            continue
        if c == quote:
            return i + 1
        i += 1
    raise parser.fail("unterminated string in page script")


# --------------------------------------------------------------------------- semantics


def _check_args(source: str, where: str, sig: _Sig, call: _Call) -> tuple[tuple[Any, ...], dict[str, Any]]:
    args = list(call.args)
    kwargs = {snake(k): v for k, v in call.kwargs.items()}
    # A trailing object literal is Playwright's options argument.
    if len(args) > sig.min_args and isinstance(args[-1], dict) and (sig.options or len(args) > sig.max_args):
        opts = args.pop()
        for k, v in opts.items():
            kwargs[snake(k)] = v
    if not (sig.min_args <= len(args) <= sig.max_args):
        want = str(sig.min_args) if sig.min_args == sig.max_args else f"{sig.min_args} to {sig.max_args}"
        raise ActionError(source, f"{where}() takes {want} argument(s), got {len(args)}")
    unknown = sorted(set(kwargs) - sig.options)
    if unknown:
        allowed = ", ".join(sorted(sig.options)) or "none"
        raise ActionError(source, f"{where}() option(s) {', '.join(unknown)} not allowed (allowed: {allowed})")
    for a in args:
        if isinstance(a, (_Handler,)):
            raise ActionError(source, f"{where}() does not take a function")
        if isinstance(a, _PageJs) and not sig.page_js:
            raise ActionError(source, f"{where}() does not take a function")
    args = [a.source if isinstance(a, _PageJs) else a for a in args]
    return tuple(args), kwargs


def _members(source: str, chain: list[str | _Call]) -> list[tuple[str, _Call | None]]:
    """Pair each member name with the call that follows it (None for a property)."""
    out: list[tuple[str, _Call | None]] = []
    i = 0
    while i < len(chain):
        item = chain[i]
        if isinstance(item, _Call):
            raise ActionError(source, "a call must follow a method name")
        nxt = chain[i + 1] if i + 1 < len(chain) else None
        if isinstance(nxt, _Call):
            out.append((snake(item), nxt))
            i += 2
        else:
            out.append((snake(item), None))
            i += 1
    return out


def _build(source: str, root: str, chain: list[str | _Call]) -> Action:
    members = _members(source, chain)
    if not members:
        raise ActionError(source, f"`{root}` alone does nothing; call a method on it")
    last_name, last_call = members[-1]
    if last_call is None:
        raise ActionError(source, f"`{last_name}` must be called")

    if root == "context":
        if len(members) != 1 or last_name not in CONTEXT_METHODS:
            raise ActionError(source, f"context.{last_name}() is not an allowed action (allowed: {', '.join(sorted(CONTEXT_METHODS))})")
        args, kwargs = _check_args(source, f"context.{last_name}", CONTEXT_METHODS[last_name], last_call)
        return Action("context", last_name, args, kwargs, source=source)

    first_name, first_call = members[0]
    if first_name in ("keyboard", "mouse") and first_call is None:
        table = KEYBOARD_METHODS if first_name == "keyboard" else MOUSE_METHODS
        if len(members) != 2 or last_name not in table:
            raise ActionError(source, f"page.{first_name}.{last_name}() is not an allowed action (allowed: {', '.join(sorted(table))})")
        args, kwargs = _check_args(source, f"page.{first_name}.{last_name}", table[last_name], last_call)
        return Action(first_name, last_name, args, kwargs, source=source)  # type: ignore[arg-type]

    if len(members) == 1:
        if last_name in ("on", "once"):
            return _dialog_action(source, last_name, last_call)
        if last_name not in PAGE_METHODS:
            raise ActionError(source, f"page.{last_name}() is not an allowed action")
        args, kwargs = _check_args(source, f"page.{last_name}", PAGE_METHODS[last_name], last_call)
        if last_name == "goto":
            _check_goto_url(source, args[0])
        return Action("page", last_name, args, kwargs, source=source)

    # A locator chain: builders, then one action at the end.
    steps: list[LocatorStep] = []
    for name, call in members[:-1]:
        if name not in LOCATOR_BUILDERS:
            raise ActionError(source, f"`{name}` is not an allowed locator (allowed: {', '.join(sorted(LOCATOR_BUILDERS))})")
        if call is None and name not in ("first", "last"):
            raise ActionError(source, f"`{name}` must be called")
        args, kwargs = _check_args(source, name, LOCATOR_BUILDERS[name], call or _Call([], {}))
        if name == "nth" and not isinstance(args[0], int):
            raise ActionError(source, "nth() takes a whole number")
        steps.append(LocatorStep(name, args, kwargs))
    if steps[0].method in ("filter", "nth", "first", "last"):
        raise ActionError(source, f"a locator chain starts with locator() or getBy...(), not {steps[0].method}()")
    if last_name not in LOCATOR_METHODS:
        raise ActionError(source, f"locator.{last_name}() is not an allowed action (allowed: {', '.join(sorted(LOCATOR_METHODS))})")
    args, kwargs = _check_args(source, last_name, LOCATOR_METHODS[last_name], last_call)
    return Action("locator", last_name, args, kwargs, locator=tuple(steps), source=source)


def _dialog_action(source: str, name: str, call: _Call) -> Action:
    if len(call.args) != 2 or call.kwargs:
        raise ActionError(source, f"page.{name}() takes an event name and a handler")
    event, handler = call.args
    if event not in DIALOG_EVENTS:
        raise ActionError(source, f"only 'dialog' handlers are allowed, not {event!r}")
    if not isinstance(handler, _Handler):
        raise ActionError(source, "the handler must be a function such as `d => d.accept()`")
    return Action("dialog", handler.method, handler.args, {"once": name == "once"}, source=source)


def _check_goto_url(source: str, url: Any) -> None:
    if not isinstance(url, str) or not re.match(r"^https?://", url, re.I):
        raise ActionError(source, "goto() takes an http(s) URL")


def parse_action(action: str | dict[str, Any]) -> Action:
    """Parse one action string or JSON object; raise :class:`ActionError` if it is not allowed."""
    if isinstance(action, dict):
        return _parse_structured(action)
    if not isinstance(action, str):
        raise ActionError(repr(action)[:120], "an action is a string or a JSON object")
    source = action.strip()
    if not source:
        raise ActionError(action, "empty action")
    if source.startswith("{"):
        # A structured action sent as a JSON string (form posts, shell scripts).
        try:
            obj = json.loads(source)
        except ValueError:
            raise ActionError(source, "starts with '{' but is not a JSON object") from None
        if not isinstance(obj, dict):
            raise ActionError(source, "not a JSON object")
        return _parse_structured(obj)
    root, chain = _Parser(source).parse()
    return _build(source, root, chain)


# --------------------------------------------------------------------------- structured (JSON) actions


def _parse_structured(action: dict[str, Any]) -> Action:
    """``{"click": "#b"}``, ``{"fill": ["#q", "text"]}``, ``{"keyboard.press": "Enter"}``,
    ``{"dialog": "accept"}`` / ``{"dialog": {"accept": "prompt text"}}``, ``{"click": ["#b", {"timeout": 500}]}``."""
    try:
        source = json.dumps(action, sort_keys=True)
    except (TypeError, ValueError):
        raise ActionError(repr(action)[:120], "not JSON") from None
    if len(source) > MAX_ACTION_LENGTH:
        raise ActionError(source, f"longer than {MAX_ACTION_LENGTH} characters")
    if len(action) != 1:
        raise ActionError(source, "a structured action has exactly one key, the method name")
    (key, value), = action.items()
    if not isinstance(key, str):
        raise ActionError(source, "the method name must be a string")
    if key in ("dialog", "on_dialog", "onDialog"):
        return _structured_dialog(source, value)
    parts = key.split(".")
    root = "page"
    if parts[0] in ("page", "context"):
        root = parts.pop(0)
    if not parts or not all(_IDENT.fullmatch(p) for p in parts):
        raise ActionError(source, f"{key!r} is not a method name")
    for p in parts:
        if p in _FORBIDDEN_WORDS:
            raise ActionError(source, f"`{p}` is not allowed in an action")
    args = value if isinstance(value, list) else ([] if value is None else [value])
    _check_json_literals(source, args)
    chain: list[str | _Call] = [*parts[:-1], parts[-1], _Call(list(args), {})]
    return _build(source, root, chain)


def _structured_dialog(source: str, value: Any) -> Action:
    once = False
    if isinstance(value, dict):
        once = bool(value.get("once", False))
        extra = set(value) - {"accept", "dismiss", "once", "text", "action"}
        if extra:
            raise ActionError(source, f"unknown dialog option(s): {', '.join(sorted(extra))}")
        if "action" in value:
            method = value["action"]
        else:
            method = "accept" if "accept" in value else "dismiss"
        text = value.get("text", value.get("accept") if isinstance(value.get("accept"), str) else None)
    else:
        method, text = value, None
    if method not in ("accept", "dismiss"):
        raise ActionError(source, "dialog takes 'accept' or 'dismiss'")
    if text is not None and not isinstance(text, str):
        raise ActionError(source, "the prompt text must be a string")
    args: tuple[Any, ...] = (text,) if (method == "accept" and text is not None) else ()
    return Action("dialog", method, args, {"once": once}, source=source)


def _check_json_literals(source: str, value: Any, depth: int = 0) -> None:
    if depth > MAX_NESTING:
        raise ActionError(source, "arguments nested too deeply")
    if isinstance(value, dict):
        for k, v in value.items():
            if k in ("__proto__", "constructor", "prototype"):
                raise ActionError(source, f"`{k}` is not allowed as an object key")
            _check_json_literals(source, v, depth + 1)
    elif isinstance(value, list):
        for v in value:
            _check_json_literals(source, v, depth + 1)
    elif not (value is None or isinstance(value, (str, int, float, bool))):
        raise ActionError(source, "arguments must be JSON literals")
