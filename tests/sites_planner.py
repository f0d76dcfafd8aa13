"""A corpus of small pages written the way real sites write them, for the built-in planner.

Each page follows a convention the planner meets in the wild: prices as ``EUR 74``,
``74 EUR``, ``€74``, ``74,00 €``, ``1.234,56 €``, ``US$ 1,234.50``, ``£5``,
``JPY 12,000``, in table columns headed Price/Fare/Total, with the currency in a
separate element, struck-through old prices, "Save €30" badges; fields labelled by
``for``, ``aria-label``, ``aria-labelledby``, a placeholder, or text that merely sits
next to them; buttons that are ``<input type=submit>``, icon buttons with only a
title, links and divs styled as buttons; dates typed as DD/MM/YYYY or MM/DD/YYYY,
or picked in three selects. Each :class:`Case` is a goal in plain English, in a
phrasing of its own, and the answer a person would give.

The pages were written before the planner was taught any of this (issue #15 item 4):
the corpus is the yardstick, not the planner's mirror. Result pages are computed
from the query and show prices only when the form was filled exactly right
(``required``), and the server records every request, so a case also checks what
the agent sent. The h-pages were written after the first round of fixes and run
before any further change (a held-out check that the fixes are general).
"""

from __future__ import annotations

import html
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import parse_qs, urlsplit

e = html.escape
NBSP, NNBSP = "\u00a0", "\u202f"


def page(title: str, body: str, lang: str = "en", head: str = "") -> bytes:
    return (f"<!doctype html><html lang={lang}><head><meta charset=utf-8><title>{title}</title>"
            "<style>body{font-family:sans-serif} .btn,.button{display:inline-block;padding:6px 14px;background:#0a66c2;color:#fff;"
            "border-radius:4px;cursor:pointer;text-decoration:none} .visually-hidden{position:absolute;left:-10000px}</style>"
            f"{head}</head><body>{body}</body></html>").encode()


def site_header(brand: str, promo: str = "") -> str:
    return (f"<header class=site-header><a class=logo href='/'>{brand}</a> <nav><a href='/deals'>Deals</a> <a href='/help'>Help</a> "
            f"<a href='/account'>Sign in</a></nav>{f'<div class=promo-banner>{promo}</div>' if promo else ''}</header>")


def table(headers: list[str], rows: list[list[str]], attrs: str = "") -> str:
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table {attrs}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


Handler = Callable[[dict[str, str]], bytes]


def gated(title: str, required: dict[str, str], body: Callable[[dict[str, str]], str], lang: str = "en") -> Handler:
    """A results page: the real content only when every required parameter is exactly as expected."""

    def handler(q: dict[str, str]) -> bytes:
        wrong = [k for k, v in required.items() if q.get(k) != v]
        if wrong:
            got = ", ".join(f"{k}={q.get(k)!r}" for k in wrong)
            return page(f"{title} – check your search", f"<h1>No results</h1><p class=error>Please check your search ({e(got)}).</p>", lang)
        return page(title, body(q), lang)

    return handler


def static(title: str, body: str, lang: str = "en") -> Handler:
    return lambda q: page(title, body, lang)


ROUTES: dict[str, Handler] = {}


def route(path: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        ROUTES[path] = fn
        return fn

    return register


def flight_rows(prices: list[str]) -> list[list[str]]:
    flights = [("KL 1234", "07:10", "1h 55m"), ("HV 5678", "12:45", "2h 05m"), ("VY 9012", "18:30", "2h 10m"), ("FR 3456", "21:05", "2h 00m")]
    return [[*flights[i], p] for i, p in enumerate(prices)]


# ---------------------------------------------------------------------- prices


# p01: the issue's own case — "EUR 74" in a Price column, a plain form with an <input type=submit>.
ROUTES["/p01"] = static("SkyHop – cheap flights", site_header("SkyHop") + """
<main><h1>Where to next?</h1>
<form action="/p01/results" method="get" class="search-form">
  <div class=field><label for=orig>From</label><input id=orig name=from type=text autocomplete=off></div>
  <div class=field><label for=dest>To</label><input id=dest name=to type=text autocomplete=off></div>
  <div class=field><label for=when>Depart</label><input id=when name=date type=date></div>
  <input type=submit value="Search">
</form></main>""")
ROUTES["/p01/results"] = gated("SkyHop – results", {"from": "Amsterdam", "to": "Palma", "date": "2026-07-06"}, lambda q: f"""
<main><h1>Amsterdam → Palma</h1><p>3 flights found</p>
{table(["Flight", "Departure", "Duration", "Price"], flight_rows(["EUR 112", "EUR 74", "EUR 89"]), "class=results")}</main>""")

# p02: "74 EUR", hotel cards with ratings that are numbers too.
ROUTES["/p02"] = static("Stay – Lisbon hotels", site_header("Stay") + "<main><h1>Hotels in Lisbon</h1>" + "".join(
    f"<div class=hotel-card><h3>{name}</h3><p class=meta>{area} · {rating}★ · {reviews} reviews</p>"
    f"<div class=rate>{price} <small>per night</small></div><a class=btn href='/p02/{i}'>View deal</a></div>"
    for i, (name, area, rating, reviews, price) in enumerate([
        ("Hotel Sol", "Alfama", "4.5", "1,204", "95 EUR"), ("Casa Azul", "Baixa", "4.1", "388", "61 EUR"),
        ("Grand Tejo", "Belém", "4.8", "2,311", "142 EUR")])) + "</main>")

# p03: "€1,204" thousands; a promotion banner in the header mentions a smaller amount.
ROUTES["/p03"] = static("Jetaway – Paris to New York", site_header("Jetaway", "Save €50 with code SUMMER") + "<main><h1>Paris → New York</h1>"
                        + table(["Airline", "Depart", "Price"], [["Air France", "10:20", "€1,204"], ["Delta", "13:15", "€987"], ["United", "17:40", "€2,050"]]) + "</main>")

# p04: German shop, "1.234,56 €" (dot for thousands, comma for decimals); ratings "4,5 von 5".
ROUTES["/p04"] = static("Küchenwelt – Kaffeemaschinen", "<main><h1>Kaffeemaschinen</h1><ul class=produkte>" + "".join(
    f"<li class=produkt><a href='/p04/{i}'>{name}</a><span class=bewertung>{stars} von 5 Sternen</span>"
    f"<span class=preis>{price}</span><small>inkl. MwSt.</small></li>"
    for i, (name, stars, price) in enumerate([("Siebträger Classic", "4,5", "249,90 €"), ("Vollautomat Pro", "4,7", "1.234,56 €"),
                                               ("Filtermaschine", "4,1", "74,00 €"), ("Milchaufschäumer", "3,9", "9,99 €")])) + "</ul></main>", "de")

# p05: German thousands without decimals, "1.299 €" — one thousand two hundred ninety-nine.
ROUTES["/p05"] = static("Radhaus – E-Bikes", "<main><h1>E-Bikes</h1>" + "".join(
    f"<article class=card><h2>{name}</h2><p class=price>{price}</p></article>"
    for name, price in [("City E", "899 €"), ("Trekking E", "1.299 €"), ("Kinderrad", "74,50 €")]) + "</main>", "de")

# p06: "US$ 1,234.50" in a column headed Total (no word "price" anywhere).
ROUTES["/p06"] = static("FlyUS – fares", site_header("FlyUS") + "<main><h1>New York → Tokyo</h1>"
                        + table(["Flight", "Stops", "Taxes", "Total"], [["UA 79", "0", "US$ 210.00", "US$ 1,234.50"], ["AA 167", "1", "US$ 180.00", "US$ 987.00"],
                                                                        ["JL 5", "0", "US$ 220.00", "US$ 1,020.75"]]) + "</main>")

# p07: "£5" — whole pounds next to pence prices.
ROUTES["/p07"] = static("Corner Books", "<main><h1>Paperbacks</h1><ul>" + "".join(
    f"<li><span class=title>{t}</span> – <span class=price>{p}</span></li>"
    for t, p in [("Middlemarch", "£7.50"), ("Emma", "£5"), ("Ulysses", "£12")]) + "</ul></main>", "en-GB")

# p08: "JPY 12,000" — an ISO code before the amount.
ROUTES["/p08"] = static("Shinkansen fares", "<main><h1>Tokyo → Kyoto</h1>"
                        + table(["Train", "Departs", "Fare"], [["Nozomi 1", "06:00", "JPY 15,500"], ["Hikari 501", "06:33", "JPY 12,000"], ["Kodama 701", "06:56", "JPY 9,800"]]) + "</main>", "en")

# p09: "9,800円" — the yen sign after the amount.
ROUTES["/p09"] = static("旅館 – Kyoto ryokan", "<main><h1>Ryokan in Kyoto</h1>" + "".join(
    f"<div class=plan><h3>{n}</h3><p class=price>{p}<span class=tax>（税込）</span></p></div>"
    for n, p in [("Standard room", "12,000円"), ("Garden room", "15,500円"), ("Compact room", "9,800円")]) + "</main>", "ja")

# p10: the currency in an element of its own, no space between them.
ROUTES["/p10"] = static("Ferryfinder", "<main><h1>Ferries Piraeus → Naxos</h1>" + table(
    ["Operator", "Departs", "Price"],
    [[op, t, f"<span class=currency>EUR</span><span class=amount>{a}</span>"] for op, t, a in [("Blue Star", "07:25", "112"), ("SeaJets", "07:00", "74"), ("Minoan", "12:30", "89")]],
) + "</main>")

# p11: no currency in the cells: it is in the column header; another numeric column has smaller numbers.
ROUTES["/p11"] = static("RailEasy – timetable", "<main><h1>Vienna → Salzburg</h1>" + table(
    ["Train", "Duration (min)", "Changes", "Fare (EUR)"], [["RJX 160", "142", "0", "129.00"], ["WB 905", "148", "0", "89.00"], ["IC 540", "171", "1", "104.50"]],
) + "</main>")

# p12: sale prices next to struck-through old ones.
ROUTES["/p12"] = static("Runwell – sale", "<main><h1>Running shoes on sale</h1>" + "".join(
    f"<div class=product-tile><h2>{name}</h2><p>{old} <span class=price-now>{now}</span></p></div>"
    for name, old, now in [("Trail runner", "<del>€99.00</del>", "€74.00"), ("Road runner", "", "€89.00"), ("Court classic", "<s>€120.00</s>", "€95.00")]) + "</main>")

# p13: a product table; the question names the product.
ROUTES["/p13"] = static("Kettles – HomeStore", "<main><h1>Kettles</h1>" + table(
    ["Product", "Capacity", "Price"], [["Red kettle", "1.7 l", "€29.90"], ["Blue kettle", "1.5 l", "€34.90"], ["Steel kettle", "1.7 l", "€44.00"]]) + "</main>")

# p14: a checkout summary as a definition list: Subtotal, Shipping, Total.
ROUTES["/p14"] = static("Checkout – review your order", """<main><h1>Review your order</h1>
<dl class=summary><dt>Subtotal</dt><dd>USD 1,180.00</dd><dt>Shipping</dt><dd>USD 54.50</dd><dt>Total</dt><dd>USD 1,234.50</dd></dl>
<button class=btn>Place order</button></main>""")

# p15: French formatting: narrow no-break space for thousands, no-break space before €.
ROUTES["/p15"] = static("Maison – canapés", "<main><h1>Canapés</h1>" + "".join(
    f"<div class=article><span class=nom>{n}</span> <span class=prix>{p}</span></div>"
    for n, p in [("Canapé d'angle", f"1{NNBSP}234,56{NBSP}€"), ("Canapé deux places", f"899,00{NBSP}€"), ("Pouf", f"74,00{NBSP}€")]) + "</main>", "fr")

# p16: the Amazon pattern: an off-screen accessible price and an aria-hidden visual one split in pieces.
ROUTES["/p16"] = static("Cables & more", "<main><h1>Results</h1>" + "".join(
    f"<div class=s-result-item><h2>{n}</h2><span class=a-price><span class='a-offscreen visually-hidden'>${w}.{f}</span>"
    f"<span aria-hidden=true><span class=a-price-symbol>$</span><span class=a-price-whole>{w}<span class=a-price-decimal>.</span></span>"
    f"<span class=a-price-fraction>{f}</span></span></span></div>"
    for n, w, f in [("USB-C cable", "12", "99"), ("Docking station", "129", "00"), ("HDMI adapter", "8", "49")]) + "</main>")

# p17: "from €59 pp" with "Save €30" badges.
ROUTES["/p17"] = static("Sunbreaks – holidays", "<main><h1>Summer holidays</h1>" + "".join(
    f"<div class=deal-card><h3>{n}</h3>{f'<span class=badge>Save {s}</span>' if s else ''}<p class=from-price>from <strong>{p}</strong> pp</p></div>"
    for n, s, p in [("Crete, 7 nights", "€30", "€112"), ("Algarve, 3 nights", "", "€59"), ("Sicily, 5 nights", "€40", "€74")]) + "</main>")

# ---------------------------------------------------------------------- fields and buttons


# p18: fields named only by aria-label; the submit button is an icon with an aria-label.
ROUTES["/p18"] = static("Wings – book a flight", site_header("Wings") + """<main><h1>Book a flight</h1>
<form action="/p18/results" class=searchbar>
  <input name=o aria-label="Leaving from"> <input name=d aria-label="Going to"> <input name=dt type=date aria-label="Departing">
  <button type=submit aria-label="Search"><svg width=16 height=16 viewBox="0 0 16 16"><circle cx=7 cy=7 r=5 stroke=black fill=none /></svg></button>
</form></main>""")
ROUTES["/p18/results"] = gated("Wings – results", {"o": "Oslo", "d": "Nice", "dt": "2026-12-24"}, lambda q: "<main><h1>Oslo – Nice</h1>" + table(
    ["Flight", "Time", "Duration", "Price"], flight_rows(["€140", "€96", "€118"])) + "</main>")

# p19: placeholders only; the date is a text field that wants DD/MM/YYYY; the button says "Let's go".
ROUTES["/p19"] = static("Voa – voos baratos", """<main><h1>Find cheap flights</h1>
<form action="/p19/results"><input name=from placeholder="Where from?"> <input name=to placeholder="Where to?">
  <input name=day placeholder="dd/mm/yyyy" inputmode=numeric> <button class=cta>Let's go</button></form></main>""", "en-GB")
ROUTES["/p19/results"] = gated("Voa – results", {"from": "Lisbon", "to": "Porto", "day": "06/07/2026"}, lambda q: "<main><h1>Lisbon → Porto, 06/07/2026</h1>"
                               + table(["Flight", "Departs", "Duration", "Fare"], flight_rows(["€48", "€39", "€61"])) + "</main>")

# p20: labels are text that sits next to the field (no for, no aria); submit is <input type=submit>.
ROUTES["/p20"] = static("Flugsuche", """<main><h1>Search flights</h1>
<form action="/p20/results">
  <div class=row><span class=lbl>Origin</span><input name=o></div>
  <div class=row><span class=lbl>Destination</span><input name=d></div>
  <div class=row><span class=lbl>Outbound date</span><input name=out type=date></div>
  <input type=submit class=btn value="Find flights">
</form></main>""")
ROUTES["/p20/results"] = gated("Flugsuche – results", {"o": "Berlin", "d": "Rome", "out": "2026-09-15"}, lambda q: "<main><h1>Berlin → Rome</h1>"
                               + table(["Flight", "Departs", "Duration", "Fare"], flight_rows(["EUR 133", "EUR 79", "EUR 101"])) + "</main>")

# p21: an old-school form laid out in a table; "E-mail:" with a hyphen; submit is <input type=submit value=Send>.
ROUTES["/p21"] = static("Contact us", """<h1>Contact us</h1><form action="/p21/done" method=get><table>
<tr><td>Name:</td><td><input name=n size=30></td></tr>
<tr><td>E-mail:</td><td><input name=m size=30></td></tr>
<tr><td></td><td><input type=submit value=Send> <input type=reset value=Clear></td></tr></table></form>""")
ROUTES["/p21/done"] = gated("Thank you", {"n": "Ada Lovelace", "m": "ada@example.com"},
                            lambda q: f"<h1>Message sent</h1><p class=notice>Thanks {e(q['n'])}, we will write to {e(q['m'])}.</p>")

# p22: aria-labelledby with a required marker; "Last name *" by for; confirmation shown as role=status.
ROUTES["/p22"] = static("Register", """<main><h1>Create an account</h1><form action="/p22/done">
<div class=form-group><span id=fn-l>First name <abbr title=required>*</abbr></span><input aria-labelledby=fn-l name=first></div>
<div class=form-group><label for=ln>Last name *</label><input id=ln name=last></div>
<button type=submit class="btn btn-primary">Register</button></form></main>""")
ROUTES["/p22/done"] = gated("Welcome", {"first": "Grace", "last": "Hopper"},
                            lambda q: f"<main><h1>Account</h1><div class='alert alert-success' role=status>Welcome aboard, {e(q['first'])} {e(q['last'])}!</div></main>")

# p23: no form at all: a link styled as a button runs the search in script (Enter does nothing).
ROUTES["/p23"] = static("Lampshop", """<main><h1>Lamps and lighting</h1><div class=search>
<input id=q placeholder="What are you looking for?">
<a href="#" class="button button--primary" onclick="location='/p23/results?q='+encodeURIComponent(document.getElementById('q').value);return false">Search</a>
</div></main>""")
ROUTES["/p23/results"] = gated("Lampshop – results", {"q": "desk lamp"}, lambda q: "<main><h1>Desk lamps</h1><ul>" + "".join(
    f"<li class=result><a href='#'>{n}</a> <span class=price>{p}</span></li>" for n, p in [("Arc desk lamp", "€39.95"), ("Clip desk lamp", "€24.50")]) + "</ul></main>")

# p24: a <div> with an onclick is the only button.
ROUTES["/p24"] = static("Delivery check", """<main><h1>Do we deliver to you?</h1>
<label for=pc>Postcode</label> <input id=pc>
<div class="btn btn-primary" onclick="location='/p24/done?pc='+encodeURIComponent(document.getElementById('pc').value)">Continue</div></main>""")
ROUTES["/p24/done"] = gated("Delivery", {"pc": "10115"}, lambda q: f"<main><h1>Good news</h1><p class=delivery-info>We deliver to {e(q['pc'])} on Tuesday.</p></main>")

# p25: an icon button named only by its title; the search box by aria-label; results link to product pages.
ROUTES["/p25"] = static("Furnish", """<main><h1>Furniture</h1><form action="/p25/results" role=search>
<input type=search name=q aria-label="Search the catalogue"> <button class=icon-btn title="Search">&#128269;</button></form></main>""")
ROUTES["/p25/results"] = gated("Furnish – results", {"q": "oak chair"}, lambda q: "<main><h1>2 results</h1><ul class=results>" + "".join(
    f"<li><a href='/p25/product/{s}'>{n}</a> <span class=price>{p}</span></li>" for s, n, p in [("classic", "Oak chair Classic", "€120.00"), ("low", "Oak chair Low", "€145.00")]) + "</ul></main>")
ROUTES["/p25/product/classic"] = static("Oak chair Classic – Furnish", """<main><h1>Oak chair Classic</h1>
<p class=was>Was <del>€150.00</del></p><p class=price>Now €120.00</p><p>Free delivery over €500</p><button class=btn>Add to basket</button></main>""")

# p26: a select labelled only by a caption div next to it (its name is cryptic); another wrapped in its label.
ROUTES["/p26"] = static("Airline – fares", """<main><h1>Choose your fare</h1><form action="/p26/results">
<div class=f><div class=caption>Cabin class</div><select name=c1><option value=Y>Economy</option><option value=W>Premium economy</option><option value=C>Business</option></select></div>
<label>Passengers <select name=p1><option>1</option><option>2</option><option>3</option><option>4</option></select></label>
<button>Show fares</button></form></main>""")
ROUTES["/p26/results"] = gated("Airline – business fares", {"c1": "C", "p1": "2"}, lambda q: "<main><h1>Business, 2 passengers</h1>"
                               + table(["Flight", "Departs", "Duration", "Total"], flight_rows(["€1,520", "€1,340"])) + "</main>")

# p27: radios in a fieldset with a legend.
ROUTES["/p27"] = static("Iberjet", """<main><h1>Flights</h1><form action="/p27/results">
<fieldset><legend>Trip type</legend><label><input type=radio name=t value=rt checked> Return</label> <label><input type=radio name=t value=ow> One way</label></fieldset>
<label for=f>From</label> <input id=f name=f> <label for=to>To</label> <input id=to name=to> <button>Search</button></form></main>""")
ROUTES["/p27/results"] = gated("Iberjet – one way", {"t": "ow", "f": "Madrid", "to": "Lisbon"}, lambda q: "<main><h1>One way Madrid – Lisbon</h1>"
                               + table(["Flight", "Departs", "Duration", "Price"], flight_rows(["€58", "€44", "€71"])) + "</main>")

# p28: a hotel search with US-style text date fields (MM/DD/YYYY placeholders).
ROUTES["/p28"] = static("StayUSA", """<main><h1>Find a hotel</h1><form action="/p28/results">
<label for=dst>Destination</label> <input id=dst name=city>
<label for=ci>Check-in</label> <input id=ci name=checkin placeholder="MM/DD/YYYY">
<label for=co>Check-out</label> <input id=co name=checkout placeholder="MM/DD/YYYY">
<input type=submit value="Search hotels"></form></main>""", "en-US")
ROUTES["/p28/results"] = gated("StayUSA – Lisbon", {"city": "Lisbon", "checkin": "07/06/2026", "checkout": "07/09/2026"}, lambda q: "<main><h1>Hotels in Lisbon</h1>" + "".join(
    f"<div class=hotel><h3>{n}</h3><p class=nightly>${p} / night</p></div>" for n, p in [("The Avenida", "189"), ("Rossio Inn", "134"), ("Tagus Suites", "256")]) + "</main>", "en-US")

# p29: the date as three selects (day, month, year) under a legend.
ROUTES["/p29"] = static("Rail France", """<main><h1>Train tickets</h1><form action="/p29/results">
<label for=dep>From</label> <input id=dep name=dep> <label for=arr>To</label> <input id=arr name=arr>
<fieldset><legend>Date of travel</legend>
<select name=dd aria-label=Day>""" + "".join(f"<option>{d}</option>" for d in range(1, 32)) + """</select>
<select name=mm aria-label=Month>""" + "".join(f"<option value={i}>{m}</option>" for i, m in enumerate(
    ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"], 1)) + """</select>
<select name=yy aria-label=Year><option>2026</option><option>2027</option></select></fieldset>
<button>Find trains</button></form></main>""")
ROUTES["/p29/results"] = gated("Rail France – Paris → Lyon", {"dep": "Paris", "arr": "Lyon", "dd": "14", "mm": "8", "yy": "2026"}, lambda q: "<main><h1>Paris → Lyon, 14 August 2026</h1>"
                               + table(["Train", "Departs", "Duration", "Price"], flight_rows(["€65", "€29", "€45"])) + "</main>")

# p30: a checkbox hidden behind its styled label (the usual toggle switch).
ROUTES["/p30"] = static("Flexifly", """<main><h1>Flights</h1><form action="/p30/results">
<label for=to>To</label> <input id=to name=to>
<input type=checkbox id=flex name=flex style="display:none"><label for=flex class=toggle>Flexible dates (± 3 days)</label>
<button>Search</button></form></main>""")
ROUTES["/p30/results"] = gated("Flexifly – results", {"to": "Rome", "flex": "on"}, lambda q: "<main><h1>Flexible fares to Rome</h1><p>±3 days</p></main>")

# ---------------------------------------------------------------------- reading values next to their labels


# p31: a booking confirmation as a definition list.
ROUTES["/p31"] = static("Booking confirmed", """<main><h1>Your booking is confirmed</h1><dl class=booking>
<dt>Booking reference</dt><dd>XK7Q2P</dd><dt>Departure date</dt><dd>Monday, 6 July 2026</dd><dt>Passenger</dt><dd>Ada Lovelace</dd></dl></main>""")

# p32: "Label: value" in one paragraph, the label in <strong>.
ROUTES["/p32"] = static("Order status", """<main><h1>Thanks for your order</h1>
<p><strong>Order number:</strong> 100-4471</p><p><b>Estimated delivery:</b> 12/08/2026</p><p>Questions? Call us.</p></main>""", "en-GB")

# p39: Swedish "1 299 kr".
ROUTES["/p39"] = static("Möbelhuset", "<main><h1>Soffor</h1>" + "".join(
    f"<div class=vara><h3>{n}</h3><span class=pris>{p}</span></div>" for n, p in [("Soffa Lund", f"2{NBSP}499 kr"), ("Fåtölj Ek", "899 kr"), ("Bäddsoffa", f"1{NBSP}299 kr")]) + "</main>", "sv")

# p40: Brazilian "R$ 1.234,56".
ROUTES["/p40"] = static("Loja – celulares", "<main><h1>Celulares</h1>" + "".join(
    f"<div class=produto><h3>{n}</h3><span class=preco>{p}</span><span class=parcelas>ou 10x sem juros</span></div>"
    for n, p in [("Modelo A", "R$ 1.234,56"), ("Modelo B", "R$ 899,90"), ("Modelo C", "R$ 2.100,00")]) + "</main>", "pt-BR")


# ---------------------------------------------------------------------- held out: written after the planner was fixed, run before any further change


# h01: "74,90 EUR" with a comma and the code after; "-20%" badges.
ROUTES["/h01"] = static("Teeladen", "<main><h1>Teekannen</h1><div class=grid>" + "".join(
    f"<div class=tile><span class=badge>{b}</span><h4>{n}</h4><div class=price-box>{p} <small>inkl. MwSt.</small></div></div>"
    for n, b, p in [("Gusseisen", "-20%", "74,90 EUR"), ("Glas", "", "19,90 EUR"), ("Porzellan", "-10%", "34,50 EUR")]) + "</div></main>", "de")

# h02: a hotel search with two date inputs; cards give a nightly and a total price ("€ 89" with a space).
ROUTES["/h02"] = static("Nightly – hotels", """<main><h1>Find your stay</h1><form action="/h02/results">
<label for=w>Destination</label><input id=w name=where><label for=a>Check-in date</label><input id=a name=in type=date>
<label for=b>Check-out date</label><input id=b name=out type=date><button type=submit>Search</button></form></main>""")
ROUTES["/h02/results"] = gated("Nightly – Porto", {"where": "Porto", "in": "2026-10-02", "out": "2026-10-05"}, lambda q: "<main><h1>Stays in Porto</h1>" + "".join(
    f"<div class=card><h3>{n}</h3><p><span class=nightly>€ {a}</span> per night</p><p class=total>€ {a * 3} total</p></div>"
    for n, a in [("Ribeira Loft", 112), ("Casa do Porto", 89), ("Douro View", 134)]) + "</main>")

# h03: the search button's only name is screen-reader text; the box by its placeholder.
ROUTES["/h03"] = static("Kitchen Co", """<style>.sr-only{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0,0,0,0)}</style>
<main><h1>Kitchen Co</h1><form action="/h03/results"><input name=query placeholder="Search products…">
<select name=cat><option>All</option><option>Kettles</option></select>
<button type=submit><span class=sr-only>Search</span><svg width=12 height=12><rect width=12 height=12 /></svg></button></form></main>""", "en-GB")
ROUTES["/h03/results"] = gated("Kitchen Co – kettle", {"query": "kettle"}, lambda q: "<main><h1>Kettles</h1><ol>" + "".join(
    f"<li><a href='#'>{n}</a><span class=amount>{p}</span></li>" for n, p in [("Dome kettle", "£24.99"), ("Gooseneck kettle", "£39.00")]) + "</ol></main>", "en-GB")

# h04: "Label:" and value in sibling spans.
ROUTES["/h04"] = static("Gadget – product", """<main><h1>Laptop Pro 14</h1><div class=row><span class=label>Price:</span> <span class=value>$1,299.99</span></div>
<div class=row><span class=label>Shipping:</span> <span class=value>$25.00</span></div><div class=row><span class=label>In stock:</span> <span class=value>12</span></div></main>""", "en-US")

# h05: labels above the fields as divs and <small>; submit is <input type=submit class=btn>; the answer is a toast.
ROUTES["/h05"] = static("Book a seat", """<main><h1>Passenger details</h1><form action="/h05/done">
<div class=col><div class=form-label>Passenger name</div><input class=form-control name=pn></div>
<div class=col><small>Email address</small><input type=email name=pe placeholder="you@example.com"></div>
<input type=submit value="Book now" class=btn></form></main>""")
ROUTES["/h05/done"] = gated("Booked", {"pn": "Ada Lovelace", "pe": "ada@example.com"},
                            lambda q: f"<main><h1>Thank you</h1><div class='toast toast-success'>Booked! Confirmation sent to {e(q['pe'])}</div></main>")

# h06: "from 39 €" in a Price column, "sold out" rows, platform numbers.
ROUTES["/h06"] = static("Busfahrt", "<main><h1>Departures</h1>" + table(
    ["Departure", "Platform", "Price"], [["08:15", "3", "sold out"], ["10:40", "5", "from 39 €"], ["13:05", "2", "from 45 €"]]) + "</main>")

# h07: Swiss francs "CHF 1’250.–".
ROUTES["/h07"] = static("Uhren", "<main><h1>Uhren</h1>" + "".join(
    f"<p class=artikel>{n}: <b>{p}</b></p>" for n, p in [("Taucheruhr", "CHF 1’250.–"), ("Dresswatch", "CHF 980.–"), ("Chronograph", "CHF 2’100.50")]) + "</main>", "de-CH")

# h08: a German form (Von / Nach / Datum TT.MM.JJJJ) searched in English.
ROUTES["/h08"] = static("Bahn – Fahrplan", """<main><h1>Verbindung suchen</h1><form action="/h08/results">
<label for=von>Von</label><input id=von name=von><label for=nach>Nach</label><input id=nach name=nach>
<label for=dat>Datum</label><input id=dat name=datum placeholder="TT.MM.JJJJ"><button>Suchen</button></form></main>""", "de")
ROUTES["/h08/results"] = gated("Bahn – Berlin → Hamburg", {"von": "Berlin", "nach": "Hamburg", "datum": "03.10.2026"}, lambda q: "<main><h1>Berlin → Hamburg</h1>"
                               + table(["Zug", "Ab", "Dauer", "Preis"], flight_rows(["49,90 €", "29,90 €", "39,90 €"])) + "</main>", "de")

# h09: a vertical table: row headers in <th>.
ROUTES["/h09"] = static("Flight KL 1234", """<main><h1>KL 1234</h1><table class=details><tr><th>Departure</th><td>07:10</td></tr>
<tr><th>Arrival</th><td>09:05</td></tr><tr><th>Aircraft</th><td>Boeing 737-800</td></tr></table></main>""")

# h10: cabin as a radiogroup of buttons (role=radio) that set a hidden field.
ROUTES["/h10"] = static("Skyline", """<main><h1>Choose a cabin</h1><form action="/h10/results"><input type=hidden name=cabin id=cabin value=economy>
<div role=radiogroup aria-label=Cabin>
<button type=button role=radio aria-checked=true onclick="pick(this,'economy')">Economy</button>
<button type=button role=radio aria-checked=false onclick="pick(this,'business')">Business</button></div>
<button type=submit>Search</button></form>
<script>function pick(b, v){document.getElementById('cabin').value=v;for(const x of b.parentNode.children)x.setAttribute('aria-checked', x===b)}</script></main>""")
ROUTES["/h10/results"] = gated("Skyline – business", {"cabin": "business"}, lambda q: "<main><h1>Business fares</h1>"
                               + table(["Flight", "Time", "Duration", "Price"], flight_rows(["€860", "€790"])) + "</main>")

# h11: a list with em-dashes.
ROUTES["/h11"] = static("Leuchten", "<main><h1>Leuchten</h1><ul>" + "".join(
    f"<li>{n} — {p}</li>" for n, p in [("Stehlampe", "89,00 €"), ("Paper lamp", "19,99 €"), ("Tischlampe", "45,00 €")]) + "</ul></main>", "de")

# h12: the second of a list.
ROUTES["/h12"] = static("Fly Cheap – results", "<main><h1>Results</h1>" + table(["Flight", "Departs", "Duration", "Price"], flight_rows(["€132", "€105", "€91"])) + "</main>")


# ---------------------------------------------------------------------- the corpus


@dataclass
class Case:
    id: str
    goal: str  # "{u}" is the corpus site's address
    answer: str  # what a person would answer (compared ignoring white space), or "~text" for "contains"
    sent: tuple[str, dict[str, str]] | None = None  # a request the site must have received: path and exact query
    about: str = ""
    tags: list[str] = field(default_factory=list)

    def accepts(self, answer: str | None) -> bool:
        if answer is None:
            return False
        squash = lambda s: "".join(s.split())  # noqa: E731 - white space incl. no-break spaces
        if self.answer.startswith("~"):
            return squash(self.answer[1:]) in squash(answer)
        return squash(answer) == squash(self.answer)


CASES: list[Case] = [
    Case("p01-eur-code-before", "Go to {u}/p01, search for flights from Amsterdam to Palma on July 6th 2026 and return the cheapest price", "EUR 74",
         ("/p01/results", {"from": "Amsterdam", "to": "Palma", "date": "2026-07-06"}), "EUR 74 in a Price column; <input type=submit>"),
    Case("p02-eur-code-after", "Open {u}/p02 and tell me the lowest price per night", "61 EUR", about="74 EUR on hotel cards with ratings and review counts"),
    Case("p03-euro-thousands-promo", "Visit {u}/p03 and return the cheapest price", "€987", about="€1,204; a 'Save €50' banner in the header"),
    Case("p04-de-thousands-decimals", "Visit {u}/p04 and return the highest price", "1.234,56 €", about="German 1.234,56 €"),
    Case("p05-de-thousands-only", "go to {u}/p05 then return the most expensive price", "1.299 €", about="German 1.299 € = 1299"),
    Case("p06-usd-total-column", "Go to {u}/p06 and return the cheapest total", "US$ 987.00", about="US$ 1,234.50 in a Total column next to a Taxes column"),
    Case("p07-gbp-whole", "open {u}/p07 then give me the cheapest price", "£5", about="£5 next to £7.50"),
    Case("p08-jpy-code", "Go to {u}/p08 and report the lowest fare", "JPY 9,800", about="JPY 12,000"),
    Case("p09-yen-after", "Open {u}/p09 and return the cheapest price", "9,800円", about="9,800円"),
    Case("p10-currency-own-element", "go to {u}/p10 and return the cheapest price", "EUR 74", about="<span>EUR</span><span>74</span>"),
    Case("p11-currency-in-header", "Go to {u}/p11 and return the lowest fare", "89.00", about="Fare (EUR) column, bare numbers; a smaller Duration column"),
    Case("p12-struck-old-price", "Go to {u}/p12 and get the price of the Trail runner", "€74.00", about="<del>€99.00</del> €74.00"),
    Case("p12b-struck-highest", "Go to {u}/p12 and return the highest price", "€95.00", about="<s>€120.00</s> €95.00 is not the highest"),
    Case("p13-how-much-is", "Go to {u}/p13. How much is the Blue kettle?", "€34.90", about="a question; capacities 1.7 l in the same row"),
    Case("p14-checkout-total", "Open {u}/p14 and return the total", "USD 1,234.50", about="dt Total / dd USD 1,234.50 after a Subtotal"),
    Case("p15-fr-narrow-spaces", "Open {u}/p15 and return the highest price", f"1{NNBSP}234,56{NBSP}€", about="French 1 234,56 € with no-break spaces"),
    Case("p16-offscreen-price", "Go to {u}/p16 and return the highest price", "$129.00", about="an off-screen accessible price and an aria-hidden one in pieces"),
    Case("p17-from-pp-save-badge", "Go to {u}/p17 and return the cheapest price", "€59", about="from €59 pp; 'Save €30' badges"),
    Case("p18-aria-label-fields", "Go to {u}/p18, search for flights from Oslo to Nice on 24 December 2026 and return the cheapest price", "€96",
         ("/p18/results", {"o": "Oslo", "d": "Nice", "dt": "2026-12-24"}), "aria-label fields; an icon <button aria-label=Search>"),
    Case("p19-placeholders-dmy", "Go to {u}/p19, search for flights from Lisbon to Porto on 6 July 2026 and return the cheapest price", "€39",
         ("/p19/results", {"from": "Lisbon", "to": "Porto", "day": "06/07/2026"}), "placeholders only; a dd/mm/yyyy text date"),
    Case("p20-nearby-labels-look-up", "Go to {u}/p20, look up flights from Berlin to Rome on 2026-09-15 and give me the lowest fare", "EUR 79",
         ("/p20/results", {"o": "Berlin", "d": "Rome", "out": "2026-09-15"}), "labels as neighbouring text; 'look up'"),
    Case("p21-table-form-email", "Go to {u}/p21, type Ada Lovelace into Name, type ada@example.com into Email, click Send and read the confirmation",
         "~Thanks Ada Lovelace, we will write to ada@example.com.", ("/p21/done", {"n": "Ada Lovelace", "m": "ada@example.com"}),
         "labels in table cells; 'E-mail:'; <input type=submit value=Send>"),
    Case("p22-labelledby-asterisk-status", "Open {u}/p22, fill in First name with Grace, fill in Last name with Hopper, click Register and return the confirmation message",
         "~Welcome aboard, Grace Hopper!", ("/p22/done", {"first": "Grace", "last": "Hopper"}), "aria-labelledby, 'Last name *', a role=status message"),
    Case("p23-link-button-search", "Go to {u}/p23, search for desk lamp and return the cheapest price", "€24.50", ("/p23/results", {"q": "desk lamp"}),
         "no form; a link styled as the Search button"),
    Case("p24-div-button", "Go to {u}/p24, type 10115 into Postcode, click Continue and read the delivery message", "~We deliver to 10115 on Tuesday.",
         ("/p24/done", {"pc": "10115"}), "a <div onclick> button"),
    Case("p25-title-icon-button", "Go to {u}/p25, type oak chair into the search field, click the search button and return the first price", "€120.00",
         ("/p25/results", {"q": "oak chair"}), "an icon button named by title; search box by aria-label"),
    Case("p26-select-caption", "Go to {u}/p26, choose Business for cabin class, select 2 in Passengers, click Show fares and return the cheapest price", "€1,340",
         ("/p26/results", {"c1": "C", "p1": "2"}), "a select labelled by a caption div; one wrapped in its label"),
    Case("p27-fieldset-radios", "Go to {u}/p27, choose One way as trip type, type Madrid into From, type Lisbon into To, click Search and return the cheapest price", "€44",
         ("/p27/results", {"t": "ow", "f": "Madrid", "to": "Lisbon"}), "radios under a legend"),
    Case("p28-us-text-dates", "Go to {u}/p28, type Lisbon into Destination, set Check-in to July 6th, 2026, set Check-out to July 9th, 2026, click Search hotels and return the cheapest price",
         "$134", ("/p28/results", {"city": "Lisbon", "checkin": "07/06/2026", "checkout": "07/09/2026"}), "MM/DD/YYYY text date fields; '$134 / night'"),
    Case("p29-three-select-date", "Go to {u}/p29, search for trains from Paris to Lyon on 14 August 2026 and return the cheapest price", "€29",
         ("/p29/results", {"dep": "Paris", "arr": "Lyon", "dd": "14", "mm": "8", "yy": "2026"}), "the date in Day/Month/Year selects"),
    Case("p30-hidden-checkbox-toggle", "Go to {u}/p30, type Rome into To, tick Flexible dates, click Search and read the heading", "Flexible fares to Rome",
         ("/p30/results", {"to": "Rome", "flex": "on"}), "a display:none checkbox behind its label"),
    Case("p31-dl-date", "Open {u}/p31 and return the departure date", "Monday, 6 July 2026", about="dt Departure date / dd Monday, 6 July 2026"),
    Case("p31b-dl-reference", "Open {u}/p31 and tell me the booking reference", "XK7Q2P", about="dt Booking reference / dd XK7Q2P"),
    Case("p32-strong-label-value", "Go to {u}/p32 and return the order number", "100-4471", about="<strong>Order number:</strong> 100-4471"),
    Case("p32b-estimated-delivery", "Go to {u}/p32 and read the estimated delivery date", "12/08/2026", about="<b>Estimated delivery:</b> 12/08/2026"),
    Case("p33-find-phrasing", "Visit {u}/p07 and find the cheapest price", "£5", about="'find the cheapest price'"),
    Case("p34-question-with-url", "What's the cheapest fare on {u}/p08?", "JPY 9,800", about="one question naming the page"),
    Case("p35-how-much-costs", "Go to {u}/p13 and tell me how much the Steel kettle costs", "€44.00", about="'how much ... costs'"),
    Case("p36-open-result-its-price", "Go to {u}/p25, search for oak chair, open the first result and return its price", "€120.00",
         ("/p25/results", {"q": "oak chair"}), "product page: 'Was €150.00', 'Now €120.00', 'Free delivery over €500'"),
    Case("p39-sek-suffix", "Go to {u}/p39 and return the cheapest price", "899 kr", about="Swedish 1 299 kr"),
    Case("p40-brl", "Go to {u}/p40 and return the cheapest price", "R$ 899,90", about="Brazilian R$ 1.234,56"),
    # held out (written after the first fixes, run before any further change)
    Case("h01-eur-comma-after", "Go to {u}/h01 and return the cheapest price", "19,90 EUR", about="74,90 EUR; -20% badges"),
    Case("h02-hotel-two-dates", "Go to {u}/h02, type Porto into Destination, set Check-in date to 2026-10-02, set Check-out date to 2026-10-05, click Search "
         "and return the lowest price per night", "€ 89", ("/h02/results", {"where": "Porto", "in": "2026-10-02", "out": "2026-10-05"}), "€ 89 per night next to € 267 total"),
    Case("h03-sr-only-button", "Go to {u}/h03, search for kettle and return the first price", "£24.99", ("/h03/results", {"query": "kettle", "cat": "All"}),
         "a button named by sr-only text; two fields"),
    Case("h04-label-span-shipping", "Go to {u}/h04 and tell me what the shipping costs", "$25.00", about="<span>Shipping:</span> <span>$25.00</span>"),
    Case("h05-labels-above-toast", "Go to {u}/h05, enter Ada Lovelace as the passenger name, enter ada@example.com as the email address, press Book now "
         "and return the booking confirmation", "~Booked! Confirmation sent to ada@example.com", ("/h05/done", {"pn": "Ada Lovelace", "pe": "ada@example.com"}),
         "labels as divs above the fields; a toast"),
    Case("h06-from-price-sold-out", "Go to {u}/h06 and return the cheapest price", "39 €", about="from 39 € in a Price column; sold out; platform numbers"),
    Case("h07-chf-swiss", "Go to {u}/h07 and return the cheapest price", "CHF 980.–", about="CHF 1’250.–"),
    Case("h08-german-form", "Go to {u}/h08, search for trains from Berlin to Hamburg on 3 October 2026 and return the cheapest price", "29,90 €",
         ("/h08/results", {"von": "Berlin", "nach": "Hamburg", "datum": "03.10.2026"}), "Von/Nach/Datum TT.MM.JJJJ"),
    Case("h09-vertical-table", "Open {u}/h09 and return the arrival time", "09:05", about="<th>Arrival</th><td>09:05</td>"),
    Case("h10-radio-buttons", "Go to {u}/h10, choose Business as cabin, click Search and return the cheapest price", "€790", ("/h10/results", {"cabin": "business"}),
         "role=radio buttons in a radiogroup"),
    Case("h11-how-much-on-url", "How much does the Paper lamp cost on {u}/h11?", "19,99 €", about="question naming the page; em-dash list"),
    Case("h12-second-price", "Open {u}/h12 and tell me the second price", "€105", about="an ordinal other than first/last"),
]


# ---------------------------------------------------------------------- the server


class CorpusSite:
    """The corpus pages on 127.0.0.1 (a ThreadingHTTPServer in a thread); records every query it receives."""

    def __init__(self, routes: dict | None = None) -> None:
        """``routes``: another page table (the held-out set's) in place of the corpus's."""
        self.requests: list[tuple[str, dict[str, str]]] = []
        table = ROUTES if routes is None else routes
        site = self

        class H(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                parts = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
                site.requests.append((parts.path, query))
                handler = table.get(parts.path)
                body = handler(query) if handler else page("Not found", "<h1>Not found</h1>")
                self.send_response(200 if handler else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def received(self, path: str, query: dict[str, str]) -> bool:
        return (path, query) in self.requests

    def __enter__(self) -> "CorpusSite":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
