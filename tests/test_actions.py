"""The safe action parser: what Tourist clients send works; nothing else gets through."""

from __future__ import annotations

import builtins

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sojourn.browser import actions as A
from sojourn.browser.actions import Action, ActionError, parse_action


@pytest.mark.parametrize(
    "source, target, method",
    [
        # Tourist's documented examples and forms (reference/tourist.md)
        ("page.click('#my-button-1')", "page", "click"),
        ("await page.click('#b');", "page", "click"),
        ("page.locator('#b').click()", "locator", "click"),
        ("page.fill('#q', 'x')", "page", "fill"),
        ("page.type('#q', 'x', {delay: 10})", "page", "type"),
        ("page.keyboard.press('Enter')", "keyboard", "press"),
        ("page.waitForSelector('#x')", "page", "wait_for_selector"),
        ("page.waitForTimeout(500)", "page", "wait_for_timeout"),
        ("page.waitForLoadState()", "page", "wait_for_load_state"),
        ("page.waitForLoadState('networkidle')", "page", "wait_for_load_state"),
        ("page.selectOption('#s', 'v')", "page", "select_option"),
        ("page.selectOption('#s', ['a', 'b'])", "page", "select_option"),
        ("page.check('#c')", "page", "check"),
        ("page.hover('#h')", "page", "hover"),
        ("page.evaluate('document.title')", "page", "evaluate"),
        ("page.evaluate(() => document.title)", "page", "evaluate"),
        ("page.evaluate(async () => { await fetch('/x'); return 1 })", "page", "evaluate"),
        ("page.evaluate((a) => a * 2, 21)", "page", "evaluate"),
        ("page.setExtraHTTPHeaders({'X-A': 'b'})", "page", "set_extra_http_headers"),
        ("context.setExtraHTTPHeaders({\"X-A\": \"b\"})", "context", "set_extra_http_headers"),
        ("page.on('dialog', d => d.accept())", "dialog", "accept"),
        ("page.on('dialog', (dialog) => dialog.dismiss())", "dialog", "dismiss"),
        ("page.once('dialog', async d => await d.accept('x'))", "dialog", "accept"),
        ("page.getByRole('button', { name: 'Submit' }).click()", "locator", "click"),
        ("page.getByText('Hi').first().click()", "locator", "click"),
        ("page.getByLabel('Email').fill('a@b.c')", "locator", "fill"),
        ("page.locator('li').nth(2).click()", "locator", "click"),
        ("page.frameLocator('#f').locator('#b').click()", "locator", "click"),
        # Python spelling
        ("page.click(\"#b\")", "page", "click"),
        ("await page.get_by_role('button', name='Go', exact=True).click()", "locator", "click"),
        ("page.get_by_text('Hi').first.click()", "locator", "click"),
        ("page.wait_for_timeout(100)", "page", "wait_for_timeout"),
        ("page.keyboard.press('Control+A')", "keyboard", "press"),
        ("page.on('dialog', lambda d: d.accept('x'))", "dialog", "accept"),
        ("context.set_extra_http_headers({'X-A': 'b'})", "context", "set_extra_http_headers"),
        # JSON
        ('{"click": "#b"}', "page", "click"),
        ('{"keyboard.press": "Enter"}', "keyboard", "press"),
    ],
)
def test_accepted_forms(source: str, target: str, method: str) -> None:
    action = parse_action(source)
    assert (action.target, action.method) == (target, method)


def test_arguments_are_literals() -> None:
    a = parse_action("page.click('#b', {timeout: 500, position: {x: 1, y: -2.5}, modifiers: ['Shift']})")
    assert a.args == ("#b",)
    assert a.kwargs == {"timeout": 500, "position": {"x": 1, "y": -2.5}, "modifiers": ["Shift"]}
    a = parse_action("page.fill('#q', 'it\\'s \\u00e9 \"q\"')")
    assert a.args == ("#q", "it's é \"q\"")
    a = parse_action("page.getByRole('button', {name: 'Go', exact: true}).click()")
    assert a.locator[0].kwargs == {"name": "Go", "exact": True}


def test_phases_follow_tourist() -> None:
    before = ["page.on('dialog', d => d.accept())", "page.setExtraHTTPHeaders({'a': 'b'})", "page.setDefaultTimeout(1000)",
              "context.setExtraHTTPHeaders({'a': 'b'})"]
    after = ["page.click('#a')", "page.waitForTimeout(1)", "page.keyboard.press('a')", "page.locator('a').click()"]
    assert all(parse_action(a).phase == "before" for a in before)
    assert all(parse_action(a).phase == "after" for a in after)


@pytest.mark.parametrize(
    "source, reason",
    [
        ("require('child_process').exec('id')", "require"),
        ("process.exit(1)", "process"),
        ("page.constructor.constructor('return process')()", "constructor"),
        ("page.click.constructor('x')", "constructor"),
        ("page['click']('#a')", "computed member access"),
        ("page.click(`#${x}`)", "template literals"),
        ("page.click('#a'); require('fs')", "one call per action"),
        ("page.click('#a') || process.exit()", "one call per action"),
        ("x = page.click('#a')", "start with `page` or `context`"),
        ("page.click(x)", "not a literal"),
        ("page.click('#a' + x)", "expected ',' or ')'"),
        ("for (;;) {}", "`for` is not allowed"),
        ("while(true) page.click('a')", "`while` is not allowed"),
        ("page.evaluate(1 + 1)", "page script"),
        ("page.click(() => 1)", "functions are only allowed"),
        ("page.on('console', m => m.text())", "only 'dialog' handlers"),
        ("page.on('dialog', d => require('fs'))", "require"),
        ("page.on('dialog', d => process.exit())", "process"),
        ("page.on('dialog', d => other.accept())", "may only call"),
        ("page.on('dialog', d => d.constructor())", "constructor"),
        ("page.screenshot({path: '/etc/cron.d/x'})", "path not allowed"),
        ("page.pdf({path: '/tmp/x'})", "not an allowed action"),
        ("page.setInputFiles('#f', '/etc/passwd')", "not an allowed action"),
        ("context.storageState({path: '/tmp/x'})", "not an allowed action"),
        ("context.newPage()", "not an allowed action"),
        ("page.context().browser().close()", "not an allowed locator"),
        ("page.exposeFunction('x', () => 1)", "functions are only allowed"),
        ("page.exposeFunction('x')", "not an allowed action"),
        ("page.route('**', r => r.abort())", "functions are only allowed"),
        ("page.goto('file:///etc/passwd')", "http(s) URL"),
        ("page.goto('javascript:alert(1)')", "http(s) URL"),
        ("page.click({__proto__: {x: 1}})", "__proto__"),
        ("page.click('#a') // comment", "comments"),
        ("page.click(/re/)", "regular expressions"),
        ("page.click(...['#a'])", "spread syntax"),
        ("page.click(new String('a'))", "`new` is not allowed"),
        ("import('fs')", "import"),
        ("__import__('os').system('id')", "__import__"),
        ("page.click('#a', {timeout: 1}, 3)", "takes 1 argument"),
        ("page.click('#a', {bogus: 1})", "bogus not allowed"),
        ("page", "alone does nothing"),
        ("page.keyboard", "must be called"),
        ("", "empty"),
        ('{"click": "#a", "fill": ["#b", "c"]}', "exactly one key"),
        ('{"require": "fs"}', "require"),
        ('{"screenshot": [{"path": "/x"}]}', "path not allowed"),
        ("'" + "a" * 20000 + "'", "longer than"),
    ],
)
def test_rejected_with_a_reason(source: str, reason: str) -> None:
    with pytest.raises(ActionError) as info:
        parse_action(source)
    assert reason in str(info.value)
    assert "is not allowed" in str(info.value)


def test_rejects_structured_non_literals() -> None:
    with pytest.raises(ActionError):
        parse_action({"click": object()})  # type: ignore[dict-item]
    with pytest.raises(ActionError):
        parse_action(42)  # type: ignore[arg-type]


def test_names_the_offending_action_in_the_message() -> None:
    with pytest.raises(ActionError) as info:
        parse_action("page.click('#ok').then(x => require('fs'))")
    assert "page.click('#ok').then" in str(info.value)


def test_dispatch_tables_only_hold_allow_listed_names() -> None:
    from sojourn.browser import session

    assert set(session._PAGE) <= set(A.PAGE_METHODS)
    assert set(session._CONTEXT) == set(A.CONTEXT_METHODS)
    assert set(session._LOCATOR) == set(A.LOCATOR_METHODS)
    for name in A.PAGE_METHODS:
        for opts in A.PAGE_METHODS[name].options:
            assert "path" not in opts


# ------------------------------------------------------------------ property-based

_TOKENS = [
    "page", "context", ".", "(", ")", "'#a'", '"x"', "`t`", "{", "}", "[", "]", ",", ":", ";", "=>", "=", "+",
    "click", "evaluate", "on", "'dialog'", "d", "accept", "dismiss", "require", "process", "constructor",
    "__proto__", "eval", "Function", "this", "new", "await", "async", "lambda", "1", "-2.5", "true", "null",
    "getByRole", "locator", "keyboard", "press", "goto", "'http://x/'", "'file:///etc/passwd'", "screenshot",
    "path", " ", "\n", "/", "//", "*", "\\", "...", "import", "exec", "os", "system", "__import__", "globalThis",
]


def _assert_safe(action: Action) -> None:
    """A parsed action only holds allow-listed names and literal values."""
    tables = {
        "page": A.PAGE_METHODS, "context": A.CONTEXT_METHODS, "keyboard": A.KEYBOARD_METHODS,
        "mouse": A.MOUSE_METHODS, "locator": A.LOCATOR_METHODS,
    }
    if action.target == "dialog":
        assert action.method in ("accept", "dismiss")
    else:
        assert action.method in tables[action.target]
    for step in action.locator:
        assert step.method in A.LOCATOR_BUILDERS

    def literal(v: object) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                assert isinstance(k, str)
                literal(x)
        elif isinstance(v, (list, tuple)):
            for x in v:
                literal(x)
        else:
            assert v is None or isinstance(v, (str, int, float, bool)), repr(v)

    literal(action.args)
    literal(action.kwargs)


class _Tripwire:
    """Fails the test if the parser ever reaches for eval/exec/compile/__import__."""

    def __enter__(self):
        self.saved = {n: getattr(builtins, n) for n in ("eval", "exec", "compile")}

        def boom(*a, **k):
            raise AssertionError("the parser executed code")

        for n in self.saved:
            setattr(builtins, n, boom)

    def __exit__(self, *exc):
        for n, f in self.saved.items():
            setattr(builtins, n, f)


def _parse_or_reject(source: object) -> None:
    """Either a safe Action or an ActionError; nothing executed, nothing else raised."""
    with _Tripwire():
        try:
            action = parse_action(source)  # type: ignore[arg-type]
        except ActionError:
            return
    _assert_safe(action)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_TOKENS), min_size=1, max_size=25).map("".join))
def test_token_soup_never_executes_or_crashes(source: str) -> None:
    _parse_or_reject(source)


@settings(max_examples=1500, deadline=None)
@given(st.text(max_size=200))
def test_any_text_is_an_action_or_a_validation_error(source: str) -> None:
    _parse_or_reject(source)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=10,
)


@settings(max_examples=800, deadline=None)
@given(st.dictionaries(st.sampled_from(["click", "fill", "goto", "evaluate", "dialog", "keyboard.press", "require", "page.pdf", "x"]), _json, min_size=1, max_size=2))
def test_any_json_object_is_an_action_or_a_validation_error(obj: dict) -> None:
    _parse_or_reject(obj)
