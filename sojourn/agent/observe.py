"""What an agent sees of a page: where it is, what can be acted on, what text is shown.

Interactive elements get stable handles (a ``data-sojourn-id`` attribute set
by the observer script, kept across observations), so a planner can say
"fill e7" and the next observation still calls that field e7. Names follow
the accessible-name rules closely enough for grounding: aria-label,
aria-labelledby, <label>, placeholder, title, alt, then visible text; a
field with none of these is named by the text just before it (a caption, the
previous table cell), as a sighted person would. Sites' own conventions are
seen too: a ``<div onclick>`` or ``<a class="btn">`` is a button, a checkbox
hidden behind its styled label is that label. Text blocks carry what reading
needs: the column header of a table cell, the label a value stands under
(``<dt>``, ``<strong>Total:</strong>``), whether it is struck through (an old
price) and the whole small block around it (a price split over elements).
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
  const CONTROL = 'input:not([type=hidden]), select, textarea';
  const SKIP = 'del, s, strike, [aria-hidden=true], script, style, noscript';
  // innerText without struck-through old prices, aria-hidden copies or form controls
  const textOf = (el, drop = SKIP) => {
    if (!el.querySelector(drop)) return clean(el.innerText);
    const parts = [];
    const walk = (n) => {
      for (const c of n.childNodes) {
        if (c.nodeType === 3) parts.push(c.textContent);
        else if (c.nodeType === 1 && !c.matches(drop)) {
          const inline = getComputedStyle(c).display.startsWith('inline');
          if (!inline) parts.push(' ');
          walk(c);
          if (!inline) parts.push(' ');
        }
      }
    };
    walk(el);
    return clean(parts.join(''));
  };
  const labelText = (l) => textOf(l, SKIP + ', ' + CONTROL + ', option');
  // text that sits just before a control (a caption, the previous table cell), climbing while the container holds only it
  const nearby = (el) => {
    let node = el;
    for (let depth = 0; depth < 3 && node && node !== document.body; depth++) {
      for (let sib = node.previousSibling; sib; sib = sib.previousSibling) {
        if (sib.nodeType === 3) { const t = clean(sib.textContent); if (t) return t.length <= 60 ? t : ''; continue; }
        if (sib.nodeType !== 1 || ['SCRIPT', 'STYLE', 'BR'].includes(sib.tagName)) continue;
        if (sib.matches(CONTROL + ', button, h1, h2, h3, h4, h5, h6, legend') || sib.querySelector(CONTROL + ', button')) return '';
        if (sib.tagName === 'LABEL' && sib.htmlFor && sib.htmlFor !== el.id) return '';
        if (!visible(sib)) continue;
        const t = clean(sib.innerText); if (t) return t.length <= 60 ? t : '';
      }
      const parent = node.parentElement;
      if (!parent || parent === document.body || parent.tagName === 'FORM' || parent.tagName === 'FIELDSET' || parent.querySelectorAll(CONTROL).length > 1) return '';
      node = parent;
    }
    return '';
  };
  const labelOf = (el) => {
    if (el.getAttribute('aria-label')) return el.getAttribute('aria-label');
    const by = el.getAttribute('aria-labelledby');
    if (by) return by.split(/\s+/).map(id => { const l = document.getElementById(id); return l ? labelText(l) : ''; }).join(' ');
    if (el.labels && el.labels.length) return Array.from(el.labels).map(labelText).join(' ');
    if (el.id) { const l = document.querySelector(`label[for="${CSS.escape(el.id)}"]`); if (l) return labelText(l); }
    const wrap = el.closest('label'); if (wrap) return labelText(wrap);
    return el.matches(CONTROL) ? nearby(el) : '';
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
  const zoneOf = (el) => el.closest('nav, header, footer, [role=navigation], [role=banner], [role=contentinfo]') ? 'nav' : 'main';
  window.__sojournNext = window.__sojournNext || 1;
  const elements = [], emitted = new Set();
  const CORE = 'a[href], button, input:not([type=hidden]), select, textarea, summary, [role=button], [role=link], [role=checkbox], [role=radio], [role=switch], [role=searchbox], [role=combobox], [role=tab], [role=menuitem], [role=option], [contenteditable=true]';
  // what sites make clickable without saying so: <div onclick>, <span class="btn">, focusable widgets
  const EXTRA = '[onclick], [tabindex]:not([tabindex^="-"]), [class*=btn], [class*=button], [class*=Button]';
  const styledButton = (el) => /(^|[\s_-])(btn|button|cta)([\s_-]|$)/i.test(typeof el.className === 'string' ? el.className : '') || el.getAttribute('role') === 'button';
  for (const found of document.querySelectorAll(CORE + ', ' + EXTRA)) {
    let el = found, target = found;
    if (!found.matches(CORE)) {  // an extra: only a leaf, not a wrapper of real controls nor a part of one
      if (['HTML', 'BODY', 'LABEL', 'FORM', 'MAIN', 'SECTION', 'TABLE', 'TR', 'TD'].includes(found.tagName)) continue;
      if (found.querySelector(CORE + ', ' + EXTRA) || (found.parentElement && found.parentElement.closest(CORE + ', [onclick]'))) continue;
      if (!clean(found.innerText) && !found.getAttribute('aria-label') && !found.getAttribute('title')) continue;
    }
    if (el.disabled) continue;
    if (!visible(el)) {
      // a checkbox or radio hidden behind its styled label (toggle switches): the label stands for it
      const t = (el.getAttribute('type') || '').toLowerCase();
      const label = el.tagName === 'INPUT' && ['checkbox', 'radio'].includes(t) && el.labels ? Array.from(el.labels).find(visible) : null;
      if (!label) continue;
      target = label;
    }
    if (emitted.has(target)) continue;
    emitted.add(target);
    if (!target.dataset.sojournId) target.dataset.sojournId = 'e' + (window.__sojournNext++);
    let role = roleOf(el);
    if (role === 'generic' && !found.matches(CORE)) role = 'button';
    const label = clean(labelOf(el));
    const rawText = clean(textOf(target) || el.value || el.getAttribute('alt') || (target.querySelector('img[alt]') || {}).alt || '');
    const text = /[\p{L}\p{N}]/u.test(rawText) ? rawText : '';
    const title = clean(el.getAttribute('title') || target.getAttribute('title') || '');
    const field = ['textbox', 'searchbox', 'date', 'spinbutton', 'combobox'].includes(role);
    const fieldset = el.closest('fieldset'), legend = fieldset ? fieldset.querySelector('legend') : null;
    elements.push({
      handle: target.dataset.sojournId,
      role,
      tag: target === el ? el.tagName.toLowerCase() : target.tagName.toLowerCase(),
      type: (el.getAttribute('type') || '').toLowerCase(),
      name: clean(label || (field ? '' : text) || el.getAttribute('placeholder') || title || (field ? '' : rawText) || el.getAttribute('name') || el.id || '').slice(0, 120),
      label: label.slice(0, 120),
      placeholder: clean(el.getAttribute('placeholder')).slice(0, 120),
      attr_name: el.getAttribute('name') || '',
      id: el.id || '',
      text: text.slice(0, 120),
      value: ('value' in el && el.tagName !== 'BUTTON') ? String(el.value).slice(0, 200) : '',
      checked: !!el.checked || el.getAttribute('aria-checked') === 'true',
      options: el.tagName === 'SELECT' ? Array.from(el.options).map(o => clean(o.text)).slice(0, 100) : [],
      zone: zoneOf(target),
      title: title.slice(0, 120),
      styled: styledButton(target),
      group: legend ? clean(legend.innerText).slice(0, 120) : '',
    });
    if (elements.length >= 300) break;
  }
  // text: each element that holds text once, with what helps read it (its cell, column header, the label before it)
  const texts = [];
  const walker = document.createTreeWalker(document.body || document.documentElement, NodeFilter.SHOW_TEXT);
  const seen = new Set();
  const cells = new Map();
  const cellOf = (el) => {
    let node = el;
    while (node.parentElement && node !== document.body && !node.matches('td, th, dd, dt, li, p, h1, h2, h3, h4, h5, h6, label, button, a') &&
           getComputedStyle(node).display.startsWith('inline')) node = node.parentElement;
    return node;
  };
  const headerOf = (el) => {
    const cell = el.closest('td, th');
    if (!cell) return '';
    const table = cell.closest('table');
    const row = cell.parentElement;
    const first = table && table.rows[0];
    const head = table && (table.tHead ? table.tHead.rows[0] : first && Array.from(first.cells).every(c => c.tagName === 'TH') ? first : null);
    if (!head || head === row || !head.cells[cell.cellIndex]) return '';
    return clean(head.cells[cell.cellIndex].innerText);
  };
  const valueLabelOf = (el) => {
    const dd = el.closest('dd');
    if (dd) { let p = dd.previousElementSibling; while (p && p.tagName !== 'DT') p = p.previousElementSibling; return p ? clean(p.innerText) : ''; }
    const cell = el.closest('td');
    if (cell) {
      const first = cell.parentElement.cells[0];
      if (first && first !== cell && first.tagName === 'TH') return clean(first.innerText);
      const prev = cell.previousElementSibling;
      if (prev && /:\s*$/.test(prev.innerText)) return clean(prev.innerText);
      return '';
    }
    const prev = el.previousElementSibling;  // <span class=label>Shipping:</span> <span class=value>$25.00</span>
    if (prev && !prev.matches(CONTROL) && /:\s*$/.test(prev.innerText) && clean(prev.innerText).length <= 60) return clean(prev.innerText);
    const lead = el.firstElementChild;
    if (lead && el.firstChild === lead && ['STRONG', 'B', 'LABEL', 'SPAN', 'EM', 'TH', 'DT'].includes(lead.tagName)) {
      const t = clean(lead.innerText);
      if (/:$/.test(t) && t.length <= 60 && clean(el.innerText).length > t.length) return t;
    }
    return '';
  };
  while (walker.nextNode() && texts.length < 600) {
    const node = walker.currentNode, el = node.parentElement;
    const t = clean(node.textContent);
    if (!t || !el || seen.has(el) || ['SCRIPT', 'STYLE', 'NOSCRIPT'].includes(el.tagName) || el.closest('[aria-hidden=true]') || !visible(el)) continue;
    seen.add(el);
    const box = el.closest('tr, li, article, [class*=result], [class*=card], [class*=item], [class*=product], section') || el.parentElement;
    const hintEl = el.closest('[id], [class]');
    const hint = hintEl ? clean((hintEl.id || '') + ' ' + (typeof hintEl.className === 'string' ? hintEl.className : '')) : '';
    const cell = cellOf(el);
    if (!cells.has(cell)) cells.set(cell, cells.size);
    const cellText = textOf(cell);
    texts.push({
      text: (textOf(el) || t).slice(0, 300), tag: el.tagName.toLowerCase(), context: clean(box ? textOf(box) : '').slice(0, 300), hint: hint.slice(0, 100),
      zone: zoneOf(el), struck: !!el.closest('del, s, strike'), status: !!el.closest('[role=status], [role=alert], [aria-live], output'),
      label: valueLabelOf(el).slice(0, 100), header: headerOf(el).slice(0, 100), cell: cellText.length <= 80 ? cellText : '', cell_id: cells.get(cell),
    });
  }
  const h1 = document.querySelector('h1');
  return {url: location.href, title: document.title, heading: h1 ? clean(h1.innerText) : '', lang: document.documentElement.lang || '', elements, texts};
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
    title: str = ""
    styled: bool = False  # looks like a button (class btn/button/cta, role=button): a link or div a site uses as one
    group: str = ""  # the legend of its fieldset (radio groups, date parts)

    @property
    def fillable(self) -> bool:
        return self.role in ("textbox", "searchbox", "date", "spinbutton", "combobox") and self.tag != "select" or self.tag == "textarea"

    def names(self) -> list[str]:
        """Everything a person might call this element."""
        names = [n for n in (self.name, self.label, self.placeholder, self.title, self.attr_name, self.id, self.text) if n]
        if self.role == "radio" and self.group:  # "choose One way as trip type": the group's legend names the field
            names.append(self.group)
        return names

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
    zone: str = "main"  # "nav" inside nav/header/footer
    struck: bool = False  # inside <del>/<s>: an old price
    status: bool = False  # inside role=status/alert or a live region: a message the page shows
    label: str = ""  # the label this text is the value of (its <dt>, row header, "Label:" before it)
    header: str = ""  # its table column's header
    cell: str = ""  # the text of the smallest block around it (a price split over elements reads whole here)
    cell_id: int = -1


@dataclass
class Observation:
    url: str
    title: str
    heading: str
    elements: list[Element]
    texts: list[TextBlock]
    lang: str = ""

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
        lang=raw.get("lang", ""),
    )
