"""JobSpec validation: strict, bounded by settings, every error names its field."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from sojourn import settings as settings_mod
from sojourn.spec import JobSpec, spec_errors


def errors(data: dict) -> dict[str, str]:
    with pytest.raises(ValidationError) as info:
        JobSpec.model_validate(data)
    return {e["field"]: e["message"] for e in spec_errors(info.value)}


def test_minimal_spec_and_defaults() -> None:
    spec = JobSpec.model_validate({"steps": [{"url": "http://example.test/"}]})
    assert spec.browser == "chromium" and spec.priority == "normal"
    assert spec.viewport.width == 1280 and spec.capture.any is False
    assert spec.steps[0].wait_until == "load"


def test_round_trips_through_json() -> None:
    spec = JobSpec.model_validate(
        {
            "browser": "CHROMIUM",
            "steps": [{"url": "https://a.test/x", "actions": ["page.click('#b')", {"fill": ["#q", "x"]}], "name": "Open"}],
            "cookies": [{"name": "a", "value": "b", "sameSite": "Lax"}],
            "capture": {"screenshot": {"fullPage": False}, "pdf": {"format": "Letter", "margin": {"top": 10}}},
            "extract": {"t": "h1", "links": {"selector": "a", "attribute": "href", "all": True}},
            "cacheTtl": 30,
            "runAt": "2030-01-01T00:00:00Z",
            "labels": {"team": "qa"},
        }
    )
    again = JobSpec.model_validate_json(spec.model_dump_json())
    assert again == spec
    assert again.fingerprint() == spec.fingerprint()
    assert JobSpec.model_json_schema()["title"] == "JobSpec"


def test_fingerprint_ignores_scheduling_but_not_content() -> None:
    base = {"steps": [{"url": "http://a.test/"}]}
    a = JobSpec.model_validate(base)
    assert a.fingerprint() == JobSpec.model_validate({**base, "priority": "high", "labels": {"x": "y"}}).fingerprint()
    assert a.fingerprint() != JobSpec.model_validate({**base, "capture": ["pdf"]}).fingerprint()


@pytest.mark.parametrize(
    "data, field, text",
    [
        ({"steps": [{"url": "file:///etc/passwd"}]}, "steps.0.url", "http:// or https://"),
        ({"steps": [{"url": "javascript:alert(1)"}]}, "steps.0.url", "http:// or https://"),
        ({"steps": [{"url": "http://a.test/", "actions": ["page.click('#a')", "require('fs')"]}]}, "steps.0.actions.1", "require"),
        ({"steps": [{"url": "http://a.test/"}], "bogus": 1}, "bogus", "Extra inputs"),
        ({"steps": [{"url": "http://a.test/", "waitUntil": "never"}]}, "steps.0.waitUntil", "load"),
        ({"steps": []}, "steps", "at least one step"),
        ({"steps": [{"url": "http://a.test/"}], "browser": "netscape"}, "browser", "chromium"),
        ({"steps": [{"url": "http://a.test/"}], "timeout": 100000}, "timeout", "at most 900"),
        ({"steps": [{"url": "http://a.test/"}], "capture": {"pdf": {"scale": 5}}}, "capture.pdf.scale", "less than or equal to 2"),
        ({"steps": [{"url": "http://a.test/"}], "capture": {"pdf": {"delay": 20000}}}, "capture.pdf.delay", "10000"),
        ({"steps": [{"url": "http://a.test/"}], "capture": {"pdf": {"format": "B5"}}}, "capture.pdf.format", "A4"),
        ({"steps": [{"url": "http://a.test/"}], "cookies": [{"name": "a", "value": "b", "sameSite": "None"}]}, "cookies.0", "secure"),
        ({"steps": [{"url": "http://a.test/"}], "viewport": {"width": 10}}, "viewport.width", "greater than or equal to 100"),
    ],
)
def test_errors_name_the_field(data: dict, field: str, text: str) -> None:
    found = errors(data)
    assert field in found, found
    assert text in found[field]


def test_union_errors_are_not_doubled() -> None:
    found = errors({"steps": [{"url": "http://a.test/"}], "capture": {"pdf": {"scale": 5}}})
    assert list(found) == ["capture.pdf.scale"]


def test_bounds_follow_settings(monkeypatch) -> None:
    step = {"url": "http://a.test/"}
    old = settings_mod.get_settings()
    try:
        settings_mod.configure(home=old.home, max_steps=2, max_actions_per_step=1)
        assert "steps" in errors({"steps": [step] * 3})
        assert "steps.0.actions" in errors({"steps": [{**step, "actions": ["page.click('a')"] * 2}]})
        JobSpec.model_validate({"steps": [step] * 2})
    finally:
        settings_mod._current = old
