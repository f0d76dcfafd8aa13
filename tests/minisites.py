"""Small sites for plain-English (agent) jobs: a flight search, a shop, a two-page sign-up form, an account form.

Served by tests/site.py under /flights, /shop, /signup and /account. Results are
computed from the query, so a test can tell that the agent filled what it
was told to fill.
"""

from __future__ import annotations

import html
from typing import Callable

e = html.escape


def _page(title: str, body: str) -> bytes:
    nav = "<header><nav><a href='/shop'>Home</a> <a href='/shop/help'>Help</a> <a href='/shop/cart'>Cart</a></nav></header>"
    return f"<!doctype html><html><head><meta charset=utf-8><title>{title}</title></head><body>{nav}<main>{body}</main></body></html>".encode()


def flights(q: dict[str, str]) -> bytes:
    return _page("Fly Cheap – flight search", """
<h1>Find a flight</h1>
<form action="/flights/results" method="get">
  <label for="from">From</label> <input id="from" name="from" placeholder="City or airport">
  <label for="to">To</label> <input id="to" name="to" placeholder="City or airport">
  <label for="date">Departure date</label> <input id="date" name="date" type="date">
  <button type="submit">Search flights</button>
</form>""")


def flight_results(q: dict[str, str]) -> bytes:
    origin, dest, day = q.get("from", ""), q.get("to", ""), q.get("date", "")
    if not (origin and dest and day):
        return _page("Fly Cheap – missing details", "<h1>Please fill From, To and the date</h1>")
    seed = sum(map(ord, origin + dest))
    fares = [("KL1234", "07:10", 129 + seed % 7), ("HV5678", "12:45", 89 + seed % 5), ("VY9012", "18:30", 104 + seed % 3)]
    rows = "".join(f"<tr><td>{code}</td><td>{time}</td><td class=price>€{price}</td></tr>" for code, time, price in fares)
    return _page(f"Flights {origin} – {dest}", f"""
<h1>Flights from {e(origin)} to {e(dest)} on {e(day)}</h1>
<p id=count>{len(fares)} results</p>
<table id=results><thead><tr><th>Flight</th><th>Departs</th><th>Price</th></tr></thead><tbody>{rows}</tbody></table>""")


PRODUCTS = {
    "aurora-desk-lamp": ("Aurora desk lamp", "€49.00"),
    "brass-lamp": ("Brass lamp", "€79.50"),
    "paper-lamp": ("Paper lamp", "€19.99"),
    "oak-chair": ("Oak chair", "€120.00"),
    "desk-chair": ("Desk chair", "€89.00"),
    # Searching "mug" lists these in this order: first, cheapest, highest and last are four different prices.
    "stone-mug": ("Stone mug", "€12.50"),
    "glass-mug": ("Glass mug", "€6.00"),
    "travel-mug": ("Travel mug", "€24.00"),
    "enamel-mug": ("Enamel mug", "€9.75"),
}


def shop(q: dict[str, str]) -> bytes:
    return _page("Shop", """
<h1>Welcome to the shop</h1>
<form action="/shop/search"><input type="search" name="q" placeholder="Search products" aria-label="Search products"> <button>Search</button></form>""")


def shop_search(q: dict[str, str]) -> bytes:
    term = q.get("q", "").lower()
    words = [w for w in term.split() if w]
    hits = [(slug, name, price) for slug, (name, price) in PRODUCTS.items() if all(w in name.lower() for w in words)]
    items = "".join(f"<li class=product><a href='/shop/product/{slug}'>{name}</a> <span class=price>{price}</span></li>" for slug, name, price in hits)
    return _page(f"Results for {term}", f"<h1>Results</h1><p>{len(hits)} products for “{e(term)}”</p><ul id=results>{items}</ul>")


def shop_product(slug: str) -> bytes:
    name, price = PRODUCTS.get(slug, ("Unknown", "€0.00"))
    return _page(f"{name} – Shop", f"<h1>{name}</h1><p class=price>{price}</p><button id=add>Add to cart</button>")


def signup(q: dict[str, str]) -> bytes:
    return _page("Sign up – step 1 of 2", """
<h1>Create your account</h1>
<form action="/signup/2">
  <label for=name>Full name</label> <input id=name name=name>
  <input name=email type=email placeholder="Email address">
  <label for=country>Country</label>
  <select id=country name=country><option>Choose…</option><option>Canada</option><option>Germany</option><option>Netherlands</option></select>
  <label><input type=checkbox name=agree> I agree to the terms</label>
  <button>Next</button>
</form>""")


def signup_2(q: dict[str, str]) -> bytes:
    if q.get("agree") != "on":
        return _page("Sign up – terms", "<h1>You must agree to the terms</h1>")
    hidden = "".join(f"<input type=hidden name={k} value='{e(v)}'>" for k, v in q.items())
    return _page("Sign up – step 2 of 2", f"""
<h1>Choose a plan</h1>
<form action="/signup/done">{hidden}
  <label><input type=radio name=plan value=Basic> Basic</label>
  <label><input type=radio name=plan value=Pro> Pro</label>
  <button>Finish</button>
</form>""")


def signup_done(q: dict[str, str]) -> bytes:
    return _page("Sign up – done", f"""
<h1>All set</h1>
<p id=confirmation>Thank you, {e(q.get('name', ''))}! Your {e(q.get('plan', 'no'))} plan is confirmed for {e(q.get('email', ''))} in {e(q.get('country', ''))}.</p>""")


def account(q: dict[str, str]) -> bytes:
    """Both boxes are ticked by default: a browser leaves an unticked one out of the query."""
    return _page("Create an account", """
<h1>Create your account</h1>
<form action="/account/done">
  <label for=account-email>Email</label> <input id=account-email name=email type=email>
  <label><input type=checkbox name=newsletter checked> Email me the weekly newsletter</label>
  <label><input type=checkbox name=remember checked> Keep me signed in</label>
  <button>Create account</button>
</form>""")


def account_done(q: dict[str, str]) -> bytes:
    yes = lambda box: "yes" if q.get(box) == "on" else "no"  # noqa: E731
    return _page("Account created", f"""
<h1>Welcome</h1>
<p id=confirmation>Account created for {e(q.get('email', ''))}. Newsletter: {yes('newsletter')}. Stay signed in: {yes('remember')}.</p>""")


ROUTES: dict[str, Callable[[dict[str, str]], bytes]] = {
    "/flights": flights,
    "/flights/results": flight_results,
    "/shop": shop,
    "/shop/search": shop_search,
    "/signup": signup,
    "/signup/2": signup_2,
    "/signup/done": signup_done,
    "/account": account,
    "/account/done": account_done,
}


def route(path: str, query: dict[str, str]) -> bytes | None:
    if path in ROUTES:
        return ROUTES[path](query)
    if path.startswith("/shop/product/"):
        return shop_product(path.rsplit("/", 1)[1])
    return None
