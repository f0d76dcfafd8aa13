"""What an agent sees of a page: where it is, what can be acted on, what text is shown.

Interactive elements get stable handles (a ``data-sojourn-id`` attribute set
by the observer script, kept across observations), so a planner can say
"fill e7" and the next observation still calls that field e7. Names follow
the accessible-name rules closely enough for grounding: aria-label,
aria-labelledby, <label>, placeholder, title, alt, then visible text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page

# Runs in the page (our own script, not user input).
_OBSERVER = r"""
() => {
  const visible = (el) => {
    const r = el.getBoundingClientRect();
    const s = getComputedStyle(el);
    return r.width > 0 && r.height > 0 && s.visibility !== 'hidden' && s.display !== 'none';
  };
  const clean = (t) => (t || '').replace(/\s+/g, ' ').trim();
  const labelOf = (el) => {
    if (el.getAttribute('aria-label')) return el.getAttribute('aria-label');
    const by = el.getAttribute('aria-labelledby');
    if (by) return by.split(/\s+/).map(id => document.getElementById(id)?.innerText || '').join(' ');
    if (el.id) { const l = document.querySelector(`label[for="${CSS.escape(el.id)}"]`); if (l) return l.innerText; }
    const wrap = el.closest('label'); if (wrap) return wrap.innerText;
    return '';
  };
  const roleOf = (el) => {
    const r = el.getAttribute('role'); if (r) return r;
    const t = el.tagName.toLowerCase(), type = (el.getAttribute('type') || '').toLowerCase();
    if (t === 'a') return 'link';
    if (t === 'button' || (t === 'input' && ['submit', 'button', 'reset', 'image'].includes(type))) return 'button';
    if (t === 'select') return 'combobox';
    if (t === 'textarea') return 'textbox';
    if (t === 'input') return {checkbox: 'checkbox', radio: 'radio', search: 'searchbox', date: 'date', number: 'spinbutton'}[type] || 'textbox';
    if (t === 'summary') return 'button';
    return 'generic';
  };
  window.__sojournNext = window.__sojournNext || 1;
  const elements = [];
  const selector = 'a[href], button, input:not([type=hidden]), select, textarea, summary, [role=button], [role=link], [role=checkbox], [role=radio], [role=searchbox], [role=combobox], [role=tab], [role=menuitem], [role=option], [contenteditable=true]';
  for (const el of document.querySelectorAll(selector)) {
    if (!visible(el) || el.disabled) continue;
    if (!el.dataset.sojournId) el.dataset.sojournId = 'e' + (window.__sojournNext++);
    const role = roleOf(el);
    const label = clean(labelOf(el));
    const text = clean(el.innerText || el.value || el.getAttribute('alt') || '');
    elements.push({
      handle: el.dataset.sojournId,
      role,
      tag: el.tagName.toLowerCase(),
      type: (el.getAttribute('type') || '').toLowerCase(),
      name: clean(label || (['textbox', 'searchbox', 'date', 'spinbutton', 'combobox'].includes(role) ? '' : text) || el.getAttribute('placeholder') || el.getAttribute('title') || el.getAttribute('name') || el.id || '').slice(0, 120),
      label: label.slice(0, 120),
      placeholder: clean(el.getAttribute('placeholder')).slice(0, 120),
      attr_name: el.getAttribute('name') || '',
      id: el.id || '',
      text: text.slice(0, 120),
      value: ('value' in el && el.tagName !== 'BUTTON') ? String(el.value).slice(0, 200) : '',
      checked: !!el.checked,
      options: el.tagName === 'SELECT' ? Array.from(el.options).map(o => clean(o.text)).slice(0, 100) : [],
      zone: el.closest('nav, header, footer, [role=navigation], [role=banner]') ? 'nav' : 'main',
    });
    if (elements.length >= 300) break;
  }
  const texts = [];
  const walker = document.createTreeWalker(document.body || document.documentElement, NodeFilter.SHOW_TEXT);
  const seen = new Set();
  while (walker.nextNode() && texts.length < 600) {
    const node = walker.currentNode, el = node.parentElement;
    const t = clean(node.textContent);
    if (!t || !el || seen.has(el) || ['SCRIPT', 'STYLE', 'NOSCRIPT'].includes(el.tagName) || !visible(el)) continue;
    seen.add(el);
    const box = el.closest('tr, li, article, [class*=result], [class*=card], [class*=item], [class*=product], section') || el.parentElement;
    const hintEl = el.closest('[id], [class]');
    const hint = hintEl ? clean((hintEl.id || '') + ' ' + (typeof hintEl.className === 'string' ? hintEl.className : '')) : '';
    texts.push({text: clean(el.innerText || t).slice(0, 300), tag: el.tagName.toLowerCase(), context: clean(box ? box.innerText : '').slice(0, 300), hint: hint.slice(0, 100)});
  }
  const h1 = document.querySelector('h1');
  return {url: location.href, title: document.title, heading: h1 ? clean(h1.innerText) : '', elements, texts};
}
"""


@dataclass
class Element:
    handle: str
    role: str
    tag: str
    name: str
    label: str = ""
    placeholder: str = ""
    attr_name: str = ""
    id: str = ""
    text: str = ""
    value: str = ""
    type: str = ""
    checked: bool = False
    options: list[str] = field(default_factory=list)
    zone: str = "main"  # "nav" inside nav/header/footer

    @property
    def fillable(self) -> bool:
        return self.role in ("textbox", "searchbox", "date", "spinbutton", "combobox") and self.tag != "select" or self.tag == "textarea"

    def names(self) -> list[str]:
        """Everything a person might call this element."""
        return [n for n in (self.name, self.label, self.placeholder, self.attr_name, self.id, self.text) if n]

    def brief(self) -> dict[str, Any]:
        out: dict[str, Any] = {"handle": self.handle, "role": self.role, "name": self.name}
        if self.placeholder:
            out["placeholder"] = self.placeholder
        if self.value:
            out["value"] = self.value
        if self.options:
            out["options"] = self.options[:20]
        return out


@dataclass
class TextBlock:
    text: str
    tag: str
    context: str
    hint: str = ""  # id and class of the element or its nearest ancestor that has one


@dataclass
class Observation:
    url: str
    title: str
    heading: str
    elements: list[Element]
    texts: list[TextBlock]

    def element(self, handle: str) -> Element | None:
        return next((e for e in self.elements if e.handle == handle), None)

    def brief(self, max_elements: int = 80, max_texts: int = 60) -> dict[str, Any]:
        """A compact form for a model's context window."""
        return {
            "url": self.url,
            "title": self.title,
            "elements": [e.brief() for e in self.elements[:max_elements]],
            "text": [t.text for t in self.texts[:max_texts]],
        }


async def observe(page: Page, attempts: int = 3) -> Observation:
    for attempt in range(attempts):
        try:
            raw = await page.evaluate(_OBSERVER)
            break
        except PlaywrightError:  # "Execution context was destroyed": the page navigated under us
            if attempt == attempts - 1:
                raise
            try:
                await page.wait_for_load_state(timeout=10_000)
            except PlaywrightError:
                pass
    return Observation(
        url=raw["url"],
        title=raw["title"],
        heading=raw["heading"],
        elements=[Element(**e) for e in raw["elements"]],
        texts=[TextBlock(**t) for t in raw["texts"]],
    )
