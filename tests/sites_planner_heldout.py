"""A held-out set of pages and goals for the built-in planner, written from a description of what it should handle.

These pages were written without reading the planner (``sojourn/agent/``) or the pages of
tests/sites_planner.py: only the shape of a :class:`~tests.sites_planner.Case` and of the
corpus server were copied. They are the "languages of the web" a planner meets outside its
own test corpus: prices as ``1.249,00 €``, ``CHF 59.–``, ``¥1,350``, ``R$ 9,90``, ``32 zł``,
``₹1,24,999`` (lakh grouping), ``389 kr.``, ``8 490 Ft``, ``₩160,000``, ``₺129,50`` split over
three elements, ``$1,049.00 MXN``; dates as ``TT.MM.JJJJ``, ``YYYY/MM/DD``, ``dd/mm/aaaa``,
``3 mars 2026`` or a French month select; fields labelled by a wrapping <label>,
``aria-labelledby``, a placeholder only, a visually hidden label, a preceding <dt> or <th>, a
div of text above them, or a label in German, Spanish, French or Portuguese while the goal is in
English; selects whose option values are codes, radio groups, checkboxes, a two-step form;
tables, cards, definition lists, a comparison table and a list rendered by script.

Form pages send GET requests; the server records every request, so a form case checks the
exact query it received, and result pages show results only when the form was filled exactly
right (:func:`~tests.sites_planner.gated`). Page ids are ``x01``…``x36``.
"""

from __future__ import annotations

from tests.sites_planner import NBSP, NNBSP, Case, CorpusSite, Handler, e, gated, page, static, table

HELDOUT_ROUTES: dict[str, Handler] = {}
R = HELDOUT_ROUTES


def bar(brand: str, links: str = "", promo: str = "") -> str:
    """A site's own header: a logo, a few links, maybe a promotion line."""
    return (f"<header><a class=logo href='/'>{brand}</a> <nav>{links}</nav>"
            f"{f'<p class=promo>{promo}</p>' if promo else ''}</header>")


def hidden(q: dict[str, str], *names: str) -> str:
    return "".join(f"<input type=hidden name={n} value='{e(q.get(n, ''), quote=True)}'>" for n in names)


# ====================================================================== reading a page

# x01: German shop, cards (name in <h3>, price in a sibling <p>), 1.249,00 €; "Barista Pro Max" listed before "Barista Pro".
R["/x01"] = static("KaffeeWerk – Siebträgermaschinen", bar("KaffeeWerk", "<a href='/konto'>Mein Konto</a> <a href='/korb'>Warenkorb</a>",
                                                             "Gratis Versand ab 50 €") + "<main><h1>Siebträgermaschinen</h1><div class=raster>" + "".join(
    f"<article class=produkt><h3>{n}</h3><p class=kurz>{d}</p><p class=preis>{p}</p><p class=hinweis>inkl. MwSt., zzgl. Versand</p>"
    f"<a class=btn href='#'>In den Warenkorb</a></article>"
    for n, d, p in [("Barista Lite", "Einkreiser, 15 bar, 1,2 l Tank", "849,00 €"),
                    ("Barista Pro Max", "Dualboiler, Rotationspumpe, 2,5 l Tank", "1.599,00 €"),
                    ("Barista Pro", "Dualboiler, PID-Regelung, 2 l Tank", "1.249,00 €")]) + "</div></main>", lang="de")

# x02: Swiss shop in English, CHF 34.90 and CHF 59.–; the goal says "blue kettle", the card says "Retro kettle – blue".
R["/x02"] = static("Alpine Home – Kettles", bar("Alpine Home", "<a href='/cart'>Cart (0)</a>") + "<main><h1>Kettles</h1><div class=cards>" + "".join(
    f"<div class=card><h2 class=card-title>{n}</h2><div class=specs>{s}</div><div class=price>{p}</div>"
    f"<button type=button>Add to cart</button></div>"
    for n, s, p in [("Retro kettle – cream", "1.7 l · 2200 W", "CHF 29.90"), ("Retro kettle – blue", "1.7 l · 2200 W", "CHF 34.90"),
                    ("Glass kettle", "1.5 l · 2000 W · LED", "CHF 59.–")]) + "</div></main>")

# x03: a Tokyo ramen shop's menu as a definition list (dt dish, dd price), ¥1,350.
R["/x03"] = static("らーめん一番 – Menu", "<main><h1>らーめん一番 <small>Ramen Ichiban</small></h1><h2>Menu</h2><dl class=menu>" + "".join(
    f"<dt>{n}</dt><dd>{p}</dd>" for n, p in [("醤油らーめん Shoyu ramen", "¥1,200"), ("味噌らーめん Miso ramen", "¥1,350"),
                                               ("豚骨らーめん Tonkotsu ramen", "¥1,450"), ("餃子 Gyoza (6 pcs)", "¥500")])
    + "</dl><p class=note>All prices include tax (税込). Open 11:00–22:00.</p></main>", lang="ja")

# x04: Brazilian shop, R$ 9,90 next to R$ 1.099,00 (thousands with a dot) and "10x de R$ 109,90" instalments; a free-shipping banner.
R["/x04"] = static("Café & Cia – Acessórios", bar("Café & Cia", "<a href='/conta'>Minha conta</a>", "Frete grátis acima de R$ 199") +
                   "<main><h1>Acessórios para café</h1><ul class=vitrine>" + "".join(
    f"<li class=produto><h3>{n}</h3><p class=preco>{p}</p>{f'<p class=parcelas>{x}</p>' if x else ''}<a class=btn href='#'>Comprar</a></li>"
    for n, p, x in [("Caneca esmaltada 350 ml", "R$ 12,50", ""), ("Moedor elétrico de café", "R$ 1.099,00", "ou 10x de R$ 109,90 sem juros"),
                    ("Coador de pano", "R$ 9,90", ""), ("Chaleira bico de ganso", "R$ 189,90", "ou 3x de R$ 63,30")]) + "</ul></main>", lang="pt-BR")

# x05: Polish coach tickets as cards: carrier in the heading, "Odjazd"/"Przyjazd" times, 19,50 zł and 32 zł, free seats as numbers.
R["/x05"] = static("Bilety autobusowe Kraków – Zakopane", "<main><h1>Kraków → Zakopane</h1><p>piątek, 13.03.2026</p>" + "".join(
    f"<section class=kurs><h3>{c}</h3><p class=godziny>Odjazd {d} · Przyjazd {a}</p><p class=miejsca>Wolne miejsca: {s}</p>"
    f"<p class=cena>{p}</p><a class=btn href='#'>Kup bilet</a></section>"
    for c, d, a, s, p in [("Szwagropol", "06:15", "08:25", "41", "24 zł"), ("Majer Bus", "07:40", "09:55", "12", "19,50 zł"),
                          ("FlixBus", "09:05", "11:20", "57", "32 zł")]) + "</main>", lang="pl")

# x06: a German rail timetable table (Zug/Abfahrt/Ankunft/…); the goal asks for the "departure time of the second train".
R["/x06"] = static("Verbindungen Berlin Hbf – München Hbf", bar("Bahn.example", "<a href='/buchungen'>Meine Reisen</a>") +
                   "<main><h1>Berlin Hbf → München Hbf</h1><p>Fr., 13.03.2026 · 1 Erwachsener, 2. Klasse</p>"
                   + table(["Zug", "Abfahrt", "Ankunft", "Dauer", "Umst.", "Preis"],
                           [["ICE 571", "07:34", "11:50", "4:16 h", "0", "ab 59,90 €"], ["IC 2013", "09:12", "14:02", "4:50 h", "1", "ab 37,90 €"],
                            ["ICE 577", "10:34", "14:50", "4:16 h", "0", "ab 79,90 €"]], "class=verbindungen") + "</main>", lang="de")

# x07: French event cards; the date is a <time> reading "3 mars 2026"; the goal says "jazz concert", the heading "concert de jazz".
R["/x07"] = static("Agenda – Paris en mars", "<main><h1>Agenda de mars</h1>" + "".join(
    f"<article class=evenement><h2>{t}</h2><p class=quand><time datetime='{iso}'>{d}</time> · {h}</p><p class=lieu>{lieu}</p>"
    f"<p class=prix>à partir de {p}</p></article>"
    for t, iso, d, h, lieu, p in [("Orchestre de chambre – Mozart", "2026-03-14", "14 mars 2026", "19h00", "Salle Gaveau", "32,00 €"),
                                  ("Trio Manouche – concert de jazz", "2026-03-03", "3 mars 2026", "20h30", "Le Duc des Lombards", "25,00 €"),
                                  ("Soirée stand-up", "2026-03-21", "21 mars 2026", "21h00", "Le Point Virgule", "18,00 €")]) + "</main>", lang="fr")

# x08: a comparison table: products are columns, attributes are <th> rows.
R["/x08"] = static("Voyager laptops – compare", "<main><h1>Compare Voyager models</h1><table class=compare><thead><tr><th></th>"
                   "<th scope=col>Voyager 14</th><th scope=col>Voyager 16</th></tr></thead><tbody>" + "".join(
    f"<tr><th scope=row>{a}</th><td>{x}</td><td>{y}</td></tr>"
    for a, x, y in [("Price", "€1,099", "€1,399"), ("Display", "14″ 2.8K OLED", "16″ 3.2K IPS"), ("Weight", "1.4 kg", "1.9 kg"),
                    ("Battery", "72 Wh", "90 Wh"), ("Ports", "2× USB-C, HDMI", "3× USB-C, HDMI, SD")]) + "</tbody></table></main>")

# x09: Danish flight cards (Afgang = departure), prices 389 kr. next to 1.129 kr.; the goal asks for the cheapest flight's departure time.
R["/x09"] = static("Fly København – Oslo", "<main><h1>København → Oslo</h1><p>tirsdag 17. marts 2026</p>" + "".join(
    f"<div class=fly><h3>{f}</h3><p><span class=lbl>Afgang</span> <time>{d}</time> – <span class=lbl>Ankomst</span> <time>{a}</time></p>"
    f"<p class=pris>{p}</p><a class=btn href='#'>Vælg</a></div>"
    for f, d, a, p in [("SAS SK 1456", "06:40", "07:50", "449 kr."), ("Norwegian DY 3911", "14:25", "15:35", "389 kr."),
                       ("SAS SK 1470", "18:05", "19:15", "1.129 kr.")]) + "</main>", lang="da")

# x10: British hotel cards with struck-through old prices; the goal asks for the second hotel's price.
R["/x10"] = static("Brighton hotels", bar("StayBright", "<a href='/login'>Log in</a>") + "<main><h1>Hotels in Brighton</h1>" + "".join(
    f"<div class=hotel><h2>{n}</h2><p class=area>{a}</p><p class=price>{f'<s>{old}</s> ' if old else ''}<strong>{p}</strong> "
    f"<span>per night</span></p></div>"
    for n, a, old, p in [("The Lanes Hotel", "The Lanes · 0.3 miles to the pier", "", "£96"),
                         ("Harbour Inn", "Marina · 1.8 miles to the centre", "£140", "£118"),
                         ("Seafront Suites", "Hove · sea views", "£210", "£179")]) + "</main>")

# x11: a Shinkansen timetable table; the goal asks for the last train's arrival time.
R["/x11"] = static("Tokyo → Shin-Osaka timetable", "<main><h1>Tōkaidō Shinkansen: Tokyo → Shin-Osaka</h1>" + table(
    ["Train", "Departs", "Arrives", "Fare"],
    [["Nozomi 1", "06:00", "08:27", "¥14,720"], ["Hikari 633", "07:03", "10:02", "¥14,400"], ["Kodama 705", "07:57", "11:53", "¥13,870"],
     ["Nozomi 265", "21:24", "23:45", "¥14,720"]], "class=timetable") + "<p>Reserved seat, adult, one way.</p></main>")

# x12: flat listings: each card has a heading and a <dl> of attributes (Rent, Size, Rooms, Available).
R["/x12"] = static("Flats to rent in Berlin", "<main><h1>Flats to rent in Berlin</h1>" + "".join(
    f"<article class=listing><h3>{t}</h3><dl><dt>Rent</dt><dd>{r}</dd><dt>Size</dt><dd>{s}</dd><dt>Rooms</dt><dd>{n}</dd>"
    f"<dt>Available</dt><dd>{av}</dd></dl></article>"
    for t, r, s, n, av in [("Altbau flat in Neukölln", "890 € warm", "54 m²", "2", "01.05.2026"),
                           ("Bright 2-room flat in Kreuzberg", "1.150 € warm", "68 m²", "2", "01.04.2026"),
                           ("Loft in Friedrichshain", "1.780 € warm", "92 m²", "3", "15.04.2026")]) + "</main>")

# x13: a Swedish furniture list rendered by script after load; 2 499 kr with a no-break space.
R["/x13"] = static("Möbelhuset – Arbetsrum", "<main><h1>Arbetsrum</h1><div id=list>Laddar…</div></main><script>"
                   "const items=[['BJÖRK birch shelf','899\u00a0kr'],['LUNDA oak desk','2\u00a0499\u00a0kr'],['TALL pine bed frame','3\u00a0299\u00a0kr']];"
                   "setTimeout(()=>{document.getElementById('list').innerHTML=items.map(([n,p])=>"
                   "`<div class=produkt><h3>${n}</h3><p class=pris>${p}</p><button>Köp</button></div>`).join('')},400);</script>", lang="sv")

# x14: Indian laptop cards: ₹1,24,999 (lakh grouping), an M.R.P. struck through, "Save ₹10,000" and "EMI from ₹2,541/month".
R["/x14"] = static("Laptops – ShopKart", bar("ShopKart", "<a href='/cart'>Cart</a>") + "<main><h1>Laptops</h1>" + "".join(
    f"<div class=item><h3>{n}</h3><div class=pricing><span class=now>{p}</span> {f'<s class=mrp>M.R.P. {mrp}</s> <span class=badge>Save {save}</span>' if mrp else ''}</div>"
    f"<div class=emi>No cost EMI from {emi}/month</div></div>"
    for n, p, mrp, save, emi in [("Nimbus 14 (i5, 16 GB, 512 GB SSD)", "₹72,490", "", "", "₹3,396"),
                                 ("Nimbus Pro 16 (i7, 32 GB, 1 TB SSD)", "₹1,24,999", "₹1,39,999", "₹15,000", "₹5,854"),
                                 ("Nimbus Air 13 (i3, 8 GB, 256 GB SSD)", "₹54,990", "₹64,990", "₹10,000", "₹2,541")]) + "</main>")

# x15: a Dutch departures board as cards ("Vertrek" = departure); the goal asks for the third bus's departure time.
R["/x15"] = static("Vertrektijden Leidseplein", "<main><h1>Vertrektijden – halte Leidseplein</h1>" + "".join(
    f"<div class=rit><h3>{b}</h3><p><span class=lbl>Vertrek</span> <strong>{t}</strong></p><p class=perron>Perron {p}</p></div>"
    for b, t, p in [("Bus 22 – Centraal Station", "09:20", "B"), ("Bus 18 – Slotervaart", "09:42", "A"), ("Bus 397 – Schiphol", "10:05", "C"),
                    ("Bus 22 – Centraal Station", "10:20", "B")]) + "</main>", lang="nl")

# x16: a French basket: a table whose <tfoot> holds Sous-total, Livraison and "Total TTC" 1 287,90 € (narrow no-break spaces).
R["/x16"] = static("Votre panier", "<main><h1>Votre panier</h1><table class=panier><thead><tr><th>Article</th><th>Qté</th><th>Prix unitaire</th>"
                   "<th>Total</th></tr></thead><tbody>"
                   f"<tr><td>Canapé 3 places, lin</td><td>1</td><td>1{NNBSP}199,00{NBSP}€</td><td>1{NNBSP}199,00{NBSP}€</td></tr>"
                   f"<tr><td>Coussin lin 45×45</td><td>2</td><td>24,50{NBSP}€</td><td>49,00{NBSP}€</td></tr></tbody><tfoot>"
                   f"<tr><th colspan=3>Sous-total</th><td>1{NNBSP}248,00{NBSP}€</td></tr>"
                   f"<tr><th colspan=3>Livraison</th><td>39,90{NBSP}€</td></tr>"
                   f"<tr class=total><th colspan=3>Total TTC</th><td><strong>1{NNBSP}287,90{NBSP}€</strong></td></tr></tfoot></table>"
                   "<a class=btn href='#'>Valider ma commande</a></main>", lang="fr")

# x17: Seoul restaurant cards with lunch-set prices in won; the goal asks for the NAME of the cheapest one.
R["/x17"] = static("Where to eat in Seoul", "<main><h1>Lunch in Seoul</h1>" + "".join(
    f"<div class=place><h3>{n}</h3><p class=kind>{k}</p><p><span class=lbl>Lunch set</span> <span class=price>{p}</span></p>"
    f"<p class=rating>★ {r}</p></div>"
    for n, k, p, r in [("Jungsik", "Modern Korean · Gangnam", "₩85,000", "4.7"), ("Tosokchon Samgyetang", "Ginseng chicken soup · Jongno", "₩20,000", "4.4"),
                       ("Gogung Myeongdong", "Jeonju bibimbap · Jung-gu", "₩12,000", "4.3")]) + "</main>")

# x18: admission deadlines in a table, dates written YYYY/MM/DD.
R["/x18"] = static("Admissions – deadlines 2026", "<main><h1>Application deadlines 2026</h1>" + table(
    ["Term", "Application deadline", "Application fee"],
    [["Spring term", "2026/03/14", "¥30,000"], ["Summer term", "2026/06/13", "¥30,000"], ["Autumn term", "2026/09/12", "¥35,000"]],
    "class=deadlines") + "<p>Applications must arrive by 17:00 JST on the deadline.</p></main>")

# x19: Turkish shop cards, the price split over three elements: ₺ | 129 | ,50; the goal asks for the last product's price.
R["/x19"] = static("Mutfak – Kahve & Çay", "<main><h1>Kahve &amp; Çay</h1>" + "".join(
    f"<div class=urun><h3>{n}</h3><div class=fiyat><span class=sym>₺</span><span class=tam>{t}</span><span class=kurus>,{k}</span></div>"
    f"<button>Sepete ekle</button></div>"
    for n, t, k in [("Çay bardağı seti (6'lı)", "249", "90"), ("Bakır cezve", "389", "00"), ("Türk kahvesi 250 g", "129", "50")]) + "</main>", lang="tr")

# x20: Hungarian accommodation table (Ár = price), 8 490 Ft with no-break spaces, ratings written 8,6.
R["/x20"] = static("Szállások Budapest", "<main><h1>Szállások – Budapest</h1>" + table(
    ["Szállás", "Értékelés", "Ár / éj"],
    [["Duna Panzió", "8,6", f"12{NBSP}990 Ft"], ["Lánchíd Hostel", "7,9", f"8{NBSP}490 Ft"], ["Gellért Residence", "9,1", f"24{NBSP}900 Ft"]],
    "class=szallasok") + "</main>", lang="hu")


# ====================================================================== filling a form

# x21: German flight search: labels Abflughafen / Zielflughafen / Hinflug, a text date "TT.MM.JJJJ".
R["/x21"] = static("FlugDirekt – Flüge suchen", bar("FlugDirekt", "<a href='/angebote'>Angebote</a>") + """
<main><h1>Flüge suchen</h1><form action="/x21/ergebnisse" method=get>
 <p><label for=ab>Abflughafen</label><br><input id=ab name=ab placeholder="Stadt oder Flughafen"></p>
 <p><label for=an>Zielflughafen</label><br><input id=an name=an placeholder="Stadt oder Flughafen"></p>
 <p><label for=hin>Hinflug</label><br><input id=hin name=hin placeholder="TT.MM.JJJJ" inputmode=numeric></p>
 <button type=submit class=btn>Flüge suchen</button></form></main>""", lang="de")
R["/x21/ergebnisse"] = gated("FlugDirekt – Ergebnisse", {"ab": "Paris", "an": "Rome", "hin": "12.03.2026"}, lambda q: (
    "<main><h1>Paris → Rom, Do. 12.03.2026</h1>" + table(
        ["Flug", "Abflug", "Ankunft", "Preis"],
        [["AF 1404", "07:15", "09:20", "129,99 €"], ["U2 4821", "11:40", "13:45", "89,99 €"], ["AZ 319", "18:05", "20:10", "214,50 €"]]) + "</main>"), lang="de")

# x22: British rail search, every field named by aria-labelledby (visible spans), a date input.
R["/x22"] = static("RailGo – find trains", bar("RailGo") + """
<main><h1>Find trains</h1><form action="/x22/journeys" method=get class=journey>
 <div><span id=l-o class=caption>Origin station</span><input name=origin aria-labelledby=l-o></div>
 <div><span id=l-d class=caption>Destination station</span><input name=destination aria-labelledby=l-d></div>
 <div><span id=l-t class=caption>Travel date</span><input type=date name=date aria-labelledby=l-t></div>
 <button class=btn>Find trains</button></form></main>""")
R["/x22/journeys"] = gated("RailGo – journeys", {"origin": "Leeds", "destination": "York", "date": "2026-04-03"}, lambda q: (
    "<main><h1>Leeds → York, Fri 3 Apr 2026</h1>" + "".join(
        f"<div class=journey-card><h3>{op}</h3><p><span>Departs</span> <time>{d}</time> · <span>Arrives</span> <time>{a}</time></p>"
        f"<p class=fare>{f}</p></div>"
        for op, d, a, f in [("Northern", "07:14", "07:41", "£7.60"), ("TransPennine Express", "07:32", "07:55", "£9.80"),
                            ("LNER", "07:58", "08:21", "£12.40")]) + "</main>"))

# x23: a Japanese highway-bus search with placeholders only, the date as YYYY/MM/DD.
R["/x23"] = static("Highway Bus Japan", """
<main><h1>Highway Bus Japan</h1><form action="/x23/results" method=get>
 <input name=dep placeholder="Departure city"> <input name=arr placeholder="Arrival city"> <input name=d placeholder="YYYY/MM/DD">
 <button class=btn>Search</button></form></main>""")
R["/x23/results"] = gated("Highway Bus Japan – results", {"dep": "Osaka", "arr": "Kyoto", "d": "2026/05/01"}, lambda q: (
    "<main><h1>Osaka → Kyoto · 2026/05/01</h1>" + table(
        ["Bus", "Departs", "Arrives", "Fare"],
        [["Keihan Express 3", "08:10", "09:05", "¥1,200"], ["Willer W21", "09:30", "10:35", "¥890"], ["JR Bus Premium", "11:00", "11:55", "¥2,100"]]) + "</main>"))

# x24: a bulk-order quote form with labels wrapping the inputs; an optional field left empty.
R["/x24"] = static("PackCo – request a quote", bar("PackCo") + """
<main><h1>Request a quote</h1><p>Shipping boxes, €35.00 per 100.</p><form action="/x24/quote" method=get>
 <p><label>Quantity <input type=number name=qty min=1></label></p>
 <p><label>Delivery city <input name=city></label></p>
 <p><label>Company (optional) <input name=company></label></p>
 <button type=submit class=btn>Request quote</button></form></main>""")
R["/x24/quote"] = gated("PackCo – your quote", {"qty": "42", "city": "Berlin", "company": ""}, lambda q: (
    "<main><h1>Your quote</h1><dl><dt>Quote number</dt><dd>Q-2026-0042</dd><dt>Quantity</dt><dd>42</dd><dt>Delivery to</dt><dd>Berlin</dd>"
    "<dt>Total</dt><dd>€1,470.00</dd></dl></main>"))

# x25: a hotel search whose labels are visually hidden; an icon button; results show per-night and total prices.
R["/x25"] = static("Nightly – hotels", """
<main><h1>Find your stay</h1><form action="/x25/hotels" method=get class=search>
 <label class=visually-hidden for=dst>Destination</label><input id=dst name=dst placeholder="Where are you going?">
 <label class=visually-hidden for=ci>Check-in date</label><input type=date id=ci name=ci>
 <label class=visually-hidden for=co>Check-out date</label><input type=date id=co name=co>
 <button aria-label=Search class=btn>&#128269;</button></form></main>""")
R["/x25/hotels"] = gated("Nightly – Vienna", {"dst": "Vienna", "ci": "2026-06-10", "co": "2026-06-12"}, lambda q: (
    "<main><h1>Vienna · 10–12 June 2026 · 2 nights</h1>" + "".join(
        f"<div class=stay><h3>{n}</h3><p class=night>{p} <small>per night</small></p><p class=total>{t} for 2 nights</p></div>"
        for n, p, t in [("Hotel Am Stephansplatz", "EUR 189", "EUR 378"), ("Pension Nussdorf", "EUR 86", "EUR 172"),
                        ("Motel Prater", "EUR 112", "EUR 224")]) + "</main>"))

# x26: a library-card renewal whose labels are <dt>s before <dd>s holding the inputs.
R["/x26"] = static("City Library – renew your card", """
<main><h1>Renew your library card</h1><form action="/x26/renewed" method=get><dl class=form>
 <dt>Full name</dt><dd><input name=nm></dd>
 <dt>Card number</dt><dd><input name=card></dd></dl>
 <button class=btn>Renew</button></form></main>""")
R["/x26/renewed"] = gated("City Library – renewed", {"nm": "Marie Curie", "card": "4471-2210"}, lambda q: (
    "<main><h1>Card renewed</h1><dl><dt>Name</dt><dd>Marie Curie</dd><dt>New expiry date</dt><dd>31.12.2027</dd></dl></main>"))

# x27: a tour booking in Seoul: labels in <th> cells, number fields with default values, a promo code left empty; won prices.
R["/x27"] = static("Seoul night palace tour", """
<main><h1>Gyeongbokgung night tour</h1><p>Adults ₩45,000 · Children (3–12) ₩25,000</p>
<form action="/x27/total" method=get><table class=booking>
 <tr><th>Adults</th><td><input type=number name=ad value=1 min=1></td></tr>
 <tr><th>Children (3–12)</th><td><input type=number name=ch value=0 min=0></td></tr>
 <tr><th>Promo code</th><td><input name=promo></td></tr></table>
 <button class=btn>Calculate</button></form></main>""")
R["/x27/total"] = gated("Seoul night palace tour – total", {"ad": "3", "ch": "1", "promo": ""}, lambda q: (
    "<main><h1>Your booking</h1>" + table(["", "Qty", "Price", "Amount"],
                                          [["Adults", "3", "₩45,000", "₩135,000"], ["Children", "1", "₩25,000", "₩25,000"]])
    + "<p class=total>Total <strong>₩160,000</strong></p></main>"))

# x28: British rail fare options: two selects whose option values are codes (1st, SNR); a fixed journey in hidden inputs.
R["/x28"] = static("RailGo – fare options", """
<main><h1>London Euston → Manchester Piccadilly</h1><p>Thu 14 May 2026, 08:00, Anytime single</p>
<form action="/x28/fare" method=get><input type=hidden name=j value=EUS-MAN>
 <p><label for=cls>Seat class</label> <select id=cls name=cls><option value=std>Standard</option><option value=1st>First</option></select></p>
 <p><label for=rc>Railcard</label> <select id=rc name=rc><option value="">None</option><option value=YNG>16-25 Railcard</option>
   <option value=SNR>Senior Railcard</option><option value=FAM>Family &amp; Friends Railcard</option></select></p>
 <button class=btn>Show fare</button></form></main>""")
R["/x28/fare"] = gated("RailGo – your fare", {"j": "EUS-MAN", "cls": "1st", "rc": "SNR"}, lambda q: (
    "<main><h1>Your fare</h1><p>First Class Anytime Single with Senior Railcard (1/3 off)</p>"
    "<p><span class=lbl>Fare</span> <strong class=fare>£96.90</strong> <s>£145.35</s></p></main>"))

# x29: a Swiss-French checkout step: a radio group (Livraison express) and "Code postal (NPA)".
R["/x29"] = static("Boutique Léman – livraison", """
<main><h1>Livraison</h1><p>Panier : 3 articles, CHF 88.90</p><form action="/x29/recap" method=get>
 <fieldset><legend>Mode de livraison</legend>
  <label><input type=radio name=liv value=std checked> Livraison standard (3–5 jours ouvrables) – gratuite</label><br>
  <label><input type=radio name=liv value=exp> Livraison express (24 h) – CHF 12.50</label><br>
  <label><input type=radio name=liv value=retrait> Retrait en magasin (Lausanne)</label></fieldset>
 <p><label for=npa>Code postal (NPA)</label> <input id=npa name=npa size=6></p>
 <button class=btn>Continuer</button></form></main>""", lang="fr")
R["/x29/recap"] = gated("Boutique Léman – récapitulatif", {"liv": "exp", "npa": "1003"}, lambda q: (
    "<main><h1>Récapitulatif</h1><dl><dt>Sous-total</dt><dd>CHF 88.90</dd><dt>Livraison express</dt><dd>CHF 12.50</dd>"
    "<dt>Total</dt><dd>CHF 101.40</dd><dt>Livraison à</dt><dd>1003 Lausanne</dd></dl></main>"), lang="fr")

# x30: a newsletter form: an e-mail field and three topic checkboxes (none ticked).
R["/x30"] = static("Wanderlust – newsletter", """
<main><h1>Get our newsletter</h1><form action="/x30/subscribed" method=get>
 <p><label for=em>E-mail address</label> <input type=email id=em name=email></p>
 <fieldset><legend>Topics</legend>
  <label><input type=checkbox name=deals> Weekly deals</label>
  <label><input type=checkbox name=tips> Travel tips</label>
  <label><input type=checkbox name=partners> Partner offers</label></fieldset>
 <button class=btn>Subscribe</button></form></main>""")
R["/x30/subscribed"] = gated("Wanderlust – subscribed", {"email": "ana@example.com", "tips": "on"}, lambda q: (
    "<main><h1>You are in</h1><p role=status>Thanks! Travel tips will be sent to ana@example.com.</p></main>"))

# x31: a Spanish two-step train search: Origen/Destino, then "Fecha de ida" dd/mm/aaaa on a second page (hidden fields carry step 1).
R["/x31"] = static("TrenYa – busca tu tren", """
<main><h1>Busca tu tren</h1><p>Paso 1 de 2</p><form action="/x31/paso2" method=get>
 <p><label for=o>Origen</label> <input id=o name=o></p>
 <p><label for=d>Destino</label> <input id=d name=d></p>
 <button class=btn>Continuar</button></form></main>""", lang="es")
R["/x31/paso2"] = lambda q: page("TrenYa – fecha", (
    f"<main><h1>{e(q.get('o', ''))} → {e(q.get('d', ''))}</h1><p>Paso 2 de 2</p><form action='/x31/resultados' method=get>{hidden(q, 'o', 'd')}"
    "<p><label for=f>Fecha de ida</label> <input id=f name=f placeholder='dd/mm/aaaa'></p>"
    "<button class=btn>Buscar trenes</button></form></main>"), lang="es")
R["/x31/resultados"] = gated("TrenYa – resultados", {"o": "Madrid", "d": "Valencia", "f": "14/05/2026"}, lambda q: (
    "<main><h1>Madrid → Valencia, jueves 14/05/2026</h1>" + table(
        ["Tren", "Salida", "Llegada", "Precio"],
        [["AVE 5061", "06:30", "08:10", "45,90 €"], ["AVLO 6331", "09:15", "10:57", "23,50 €"], ["Alvia 4171", "12:40", "14:35", "31,00 €"]]) + "</main>"), lang="es")

# x32: a French restaurant booking: selects for people, day, month (French month names, values 01–12) and time.
MOIS = ["janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre", "novembre", "décembre"]
R["/x32"] = static("Chez Margot – réserver", "<main><h1>Réserver une table</h1><p>Saison 2026</p><form action='/x32/confirmation' method=get>"
                   "<p><label for=pers>Nombre de personnes</label> <select id=pers name=pers>" + "".join(
                       f"<option value={n}{' selected' if n == 2 else ''}>{n} personne{'s' if n > 1 else ''}</option>" for n in range(1, 9)) + "</select></p>"
                   "<p><label for=jour>Jour</label> <select id=jour name=jour>" + "".join(f"<option>{d}</option>" for d in range(1, 32)) + "</select> "
                   "<label for=mois>Mois</label> <select id=mois name=mois>" + "".join(
                       f"<option value={i:02d}>{m}</option>" for i, m in enumerate(MOIS, 1)) + "</select> <input type=hidden name=an value=2026></p>"
                   "<p><label for=heure>Heure</label> <select id=heure name=heure>" + "".join(
                       f"<option>{h}</option>" for h in ["19:00", "19:30", "20:00", "20:30", "21:00"]) + "</select></p>"
                   "<button class=btn>Réserver</button></form></main>", lang="fr")
R["/x32/confirmation"] = gated("Chez Margot – confirmation", {"pers": "4", "jour": "3", "mois": "03", "an": "2026", "heure": "20:00"}, lambda q: (
    "<main><h1>Réservation confirmée</h1><p>Table pour 4 personnes, mardi 3 mars 2026 à 20:00.</p>"
    "<p>Numéro de réservation : <strong>R-0303-2000</strong></p></main>"), lang="fr")

# x33: a Mexican shop's search box (aria-label and a Spanish placeholder); results in "$1,049.00 MXN"; the second result's price.
R["/x33"] = static("Deportes Norte", bar("Deportes Norte", "<a href='/carrito'>Carrito</a>") + """
<main><form action="/x33/buscar" method=get role=search><input type=search name=q aria-label="Buscar productos" placeholder="¿Qué estás buscando?">
 <button class=btn>Buscar</button></form><h1>Ofertas de temporada</h1><p>Hasta 30% de descuento en calzado.</p></main>""", lang="es-MX")
R["/x33/buscar"] = gated("Deportes Norte – resultados", {"q": "running shoes"}, lambda q: (
    "<main><h1>Resultados para “running shoes”</h1>" + "".join(
        f"<div class=producto><h3>{n}</h3><p class=precio>{f'<s>{old}</s> ' if old else ''}<span>{p}</span></p></div>"
        for n, old, p in [("Tenis para correr Veloz", "", "$1,299.00 MXN"), ("Tenis running Brisa", "$1,399.00", "$1,049.00 MXN"),
                          ("Tenis trail Sierra", "", "$1,899.00 MXN")]) + "</main>"), lang="es-MX")

# x34: an airline search: Departure/Arrival airport selects whose values are IATA codes; a date input; fares in złoty.
AIRPORTS = [("LIS", "Lisbon (LIS)"), ("OPO", "Porto (OPO)"), ("WAW", "Warsaw Chopin (WAW)"), ("KRK", "Kraków (KRK)"), ("GDN", "Gdańsk (GDN)")]
R["/x34"] = static("FlyPol – book a flight", "<main><h1>Book a flight</h1><form action='/x34/flights' method=get>" + "".join(
    f"<p><label for={n}>{lab}</label> <select id={n} name={n}><option value=''>Select…</option>"
    + "".join(f"<option value={c}>{t}</option>" for c, t in AIRPORTS) + "</select></p>"
    for n, lab in [("dep", "Departure airport"), ("arr", "Arrival airport")])
    + "<p><label for=out>Outbound</label> <input type=date id=out name=out></p><button class=btn>Search flights</button></form></main>")
R["/x34/flights"] = gated("FlyPol – flights", {"dep": "LIS", "arr": "WAW", "out": "2026-09-20"}, lambda q: (
    "<main><h1>Lisbon → Warsaw, Sun 20 Sep 2026</h1>" + "".join(
        f"<div class=flight><h3>{f}</h3><p>Departs {d}</p><p class=fare>{p}</p></div>"
        for f, d, p in [("LO 436", "06:05", f"1{NBSP}249 zł"), ("LO 438", "13:50", "689 zł"), ("TP 1266", "18:20", "742 zł")]) + "</main>"))

# x35: a Brazilian loan simulator: "Valor do empréstimo (R$)" (number), "Prazo (meses)" (a select); the result "Parcela mensal".
R["/x35"] = static("Banco Exemplo – simulador", """
<main><h1>Simule seu empréstimo pessoal</h1><form action="/x35/simulacao" method=get>
 <p><label for=v>Valor do empréstimo (R$)</label> <input type=number id=v name=valor min=500 step=100></p>
 <p><label for=p>Prazo (meses)</label> <select id=p name=prazo><option>12</option><option>24</option><option>36</option><option>48</option></select></p>
 <button class=btn>Simular</button></form><p>Taxa a partir de 1,49% a.m.</p></main>""", lang="pt-BR")
R["/x35/simulacao"] = gated("Banco Exemplo – simulação", {"valor": "5000", "prazo": "24"}, lambda q: (
    "<main><h1>Resultado da simulação</h1><dl><dt>Valor solicitado</dt><dd>R$ 5.000,00</dd><dt>Prazo</dt><dd>24 meses</dd>"
    "<dt>Parcela mensal</dt><dd>R$ 249,33</dd><dt>Taxa de juros</dt><dd>1,49% a.m.</dd><dt>Total a pagar</dt><dd>R$ 5.983,92</dd></dl></main>"), lang="pt-BR")

# x36: a car-rental search whose labels are plain divs above the fields; a rental-length select left at its default.
R["/x36"] = static("DriveAway – car hire", """
<main><h1>Car hire</h1><form action="/x36/cars" method=get class=rental>
 <div class=f><div class=lbl>Pick-up location</div><input name=pu></div>
 <div class=f><div class=lbl>Pick-up date</div><input type=date name=pd></div>
 <div class=f><div class=lbl>Rental length</div><select name=days><option value=1>1 day</option><option value=3 selected>3 days</option>
   <option value=7>1 week</option></select></div>
 <button class=btn>Show cars</button></form></main>""")
R["/x36/cars"] = gated("DriveAway – cars", {"pu": "Munich Airport", "pd": "2026-07-01", "days": "3"}, lambda q: (
    "<main><h1>Munich Airport · from 1 Jul 2026 · 3 days</h1>" + "".join(
        f"<div class=car><h3>{n}</h3><p><span class=rate>{r}</span><span class=unit>/day</span></p><p class=total>{t} total</p></div>"
        for n, r, t in [("VW Golf or similar", "€39.90", "€119.70"), ("Fiat 500 or similar", "€34.50", "€103.50"),
                        ("BMW 3 Series or similar", "€71.00", "€213.00")]) + "</main>"))


# ====================================================================== the cases

HELDOUT_CASES: list[Case] = [
    # reading
    Case("x01-de-cards-named-item", "On {u}/x01, what is the price of the Barista Pro?", "1.249,00 €",
         about="German cards; 'Barista Pro Max' listed before 'Barista Pro'"),
    Case("x02-chf-blue-kettle", "What is the price of the blue kettle on {u}/x02?", "CHF 34.90", about="'Retro kettle – blue'; CHF 59.–"),
    Case("x03-yen-dl-menu", "How much is the miso ramen at {u}/x03?", "¥1,350", about="dt dish (Japanese + English) / dd price"),
    Case("x04-brl-cheapest", "Open {u}/x04 and tell me the cheapest price", "R$ 9,90", about="R$ 1.099,00; '10x de R$ 109,90'; free shipping banner"),
    Case("x05-pln-most-expensive", "Go to {u}/x05 and tell me the most expensive fare", "32 zł", about="Polish cards; 19,50 zł; seat counts"),
    Case("x06-de-timetable-second", "On {u}/x06, tell me the departure time of the second train", "09:12", about="German table, 'Abfahrt' column"),
    Case("x07-fr-event-date", "On {u}/x07, what is the date of the jazz concert?", "~3 mars 2026", about="French cards, <time>3 mars 2026</time>"),
    Case("x08-compare-columns", "On {u}/x08, what is the weight of the Voyager 16?", "1.9 kg", about="products as columns, attributes as <th> rows"),
    Case("x09-dkk-cheapest-departure", "On {u}/x09, tell me the departure time of the cheapest flight", "14:25",
         about="Danish cards, 'Afgang'; 389 kr. vs 1.129 kr."),
    Case("x10-gbp-second-hotel", "Open {u}/x10 and tell me the price of the second hotel", "£118", about="<s>£140</s> £118 per night"),
    Case("x11-jpy-last-arrival", "On {u}/x11, tell me the arrival time of the last train", "23:45", about="timetable table, Arrives column"),
    Case("x12-dl-in-cards", "On {u}/x12, what is the size of the Kreuzberg flat?", "68 m²", about="cards with a <dl> each"),
    Case("x13-sek-js-rendered", "How much does the oak desk cost on {u}/x13?", f"2{NBSP}499 kr", about="cards rendered by script after 400 ms"),
    Case("x14-inr-lakh-cheapest", "Go to {u}/x14 and tell me the cheapest laptop price", "₹54,990",
         about="₹1,24,999; M.R.P. struck; 'Save ₹10,000'; 'EMI from ₹2,541/month'"),
    Case("x15-nl-third-bus", "On {u}/x15, tell me the departure time of the third bus", "10:05", about="Dutch cards, 'Vertrek'"),
    Case("x16-fr-basket-total", "Open {u}/x16 and tell me the order total", f"1{NNBSP}287,90{NBSP}€", about="<tfoot> 'Total TTC' after Sous-total"),
    Case("x17-krw-cheapest-name", "On {u}/x17, which restaurant has the cheapest lunch set? Tell me its name.", "~Gogung",
         about="the answer is a name, the qualifier is on a won price"),
    Case("x18-ymd-deadline", "On {u}/x18, what is the application deadline for the summer term?", "2026/06/13", about="YYYY/MM/DD in a table"),
    Case("x19-try-split-last", "On {u}/x19, what is the price of the last product?", "₺129,50", about="₺ | 129 | ,50 in three spans"),
    Case("x20-huf-cheapest", "Go to {u}/x20 and tell me the cheapest price", f"8{NBSP}490 Ft", about="Hungarian table 'Ár / éj'; ratings 8,6"),
    # forms
    Case("x21-de-flight-form", "On {u}/x21, search flights from Paris to Rome on 12 March 2026 and tell me the cheapest fare", "89,99 €",
         ("/x21/ergebnisse", {"ab": "Paris", "an": "Rome", "hin": "12.03.2026"}), "Abflughafen/Zielflughafen/Hinflug TT.MM.JJJJ"),
    Case("x22-labelledby-rail", "Go to {u}/x22, look for trains from Leeds to York on 3 April 2026 and tell me the departure time of the first train",
         "07:14", ("/x22/journeys", {"origin": "Leeds", "destination": "York", "date": "2026-04-03"}), "aria-labelledby; Origin/Destination station"),
    Case("x23-placeholder-ymd-bus", "On {u}/x23, search buses from Osaka to Kyoto on 1 May 2026 and tell me the cheapest fare", "¥890",
         ("/x23/results", {"dep": "Osaka", "arr": "Kyoto", "d": "2026/05/01"}), "placeholders only; YYYY/MM/DD"),
    Case("x24-wrapping-labels-quote", "On {u}/x24, enter 42 as the quantity and Berlin as the city, then submit and tell me the quote number",
         "~Q-2026-0042", ("/x24/quote", {"qty": "42", "city": "Berlin", "company": ""}), "labels wrapping inputs; 'Delivery city'"),
    Case("x25-hidden-labels-hotel", "On {u}/x25, find hotels in Vienna from 10 June 2026 to 12 June 2026 and tell me the lowest price per night",
         "EUR 86", ("/x25/hotels", {"dst": "Vienna", "ci": "2026-06-10", "co": "2026-06-12"}), "visually hidden labels; icon button; totals"),
    Case("x26-dt-labels-renew", "On {u}/x26, enter Marie Curie as the name and 4471-2210 as the card number, then renew and tell me the new expiry date",
         "~31.12.2027", ("/x26/renewed", {"nm": "Marie Curie", "card": "4471-2210"}), "labels in <dt>, inputs in <dd>"),
    Case("x27-th-labels-defaults", "On {u}/x27, enter 3 for the adults and 1 for the children, then calculate and tell me the total price",
         "₩160,000", ("/x27/total", {"ad": "3", "ch": "1", "promo": ""}), "labels in <th>; number fields with defaults 1 and 0"),
    Case("x28-selects-codes", "On {u}/x28, pick First as the seat class and Senior as the railcard, then show the fare and tell me the price",
         "£96.90", ("/x28/fare", {"j": "EUS-MAN", "cls": "1st", "rc": "SNR"}), "selects with coded values; a struck old fare"),
    Case("x29-fr-radio-postcode", "On {u}/x29, choose express delivery, enter 1003 as the postcode and continue, then tell me the order total",
         "CHF 101.40", ("/x29/recap", {"liv": "exp", "npa": "1003"}), "French radio group; 'Code postal (NPA)'"),
    Case("x30-checkbox-newsletter", "On {u}/x30, enter ana@example.com as the email, tick Travel tips, then subscribe and tell me the confirmation message",
         "~Travel tips will be sent to ana@example.com", ("/x30/subscribed", {"email": "ana@example.com", "tips": "on"}),
         "one of three checkboxes; 'E-mail address'"),
    Case("x31-es-two-step", "On {u}/x31, search trains from Madrid to Valencia on 14 May 2026 and tell me the cheapest price", "23,50 €",
         ("/x31/resultados", {"o": "Madrid", "d": "Valencia", "f": "14/05/2026"}), "Origen/Destino, then a second page with 'Fecha de ida' dd/mm/aaaa"),
    Case("x32-fr-selects-date", "On {u}/x32, book a table for 4 people on 3 March 2026 at 20:00 and tell me the reservation number", "~R-0303-2000",
         ("/x32/confirmation", {"pers": "4", "jour": "3", "mois": "03", "an": "2026", "heure": "20:00"}),
         "selects: people, day, French month names, time"),
    Case("x33-mx-search-second", "On {u}/x33, enter running shoes in the search field, search and tell me the price of the second result",
         "~$1,049.00", ("/x33/buscar", {"q": "running shoes"}), "aria-label search box, Spanish placeholder; $1,049.00 MXN"),
    Case("x34-airport-selects", "On {u}/x34, search flights from Lisbon to Warsaw on 20 September 2026 and tell me the cheapest fare", "689 zł",
         ("/x34/flights", {"dep": "LIS", "arr": "WAW", "out": "2026-09-20"}), "Departure/Arrival airport selects (IATA values); 1 249 zł"),
    Case("x35-pt-loan-select", "On {u}/x35, enter 5000 for the loan amount and 24 for the term, then simulate and tell me the monthly payment",
         "R$ 249,33", ("/x35/simulacao", {"valor": "5000", "prazo": "24"}), "Portuguese labels; the term is a select; 'Parcela mensal'"),
    Case("x36-div-labels-car", "On {u}/x36, enter Munich Airport as the pick-up location and 2026-07-01 as the pick-up date, then search and tell me "
         "the cheapest daily rate", "€34.50", ("/x36/cars", {"pu": "Munich Airport", "pd": "2026-07-01", "days": "3"}),
         "labels as divs above the fields; €34.50/day next to totals"),
]


# ---------------------------------------------------------------------- the server


class HeldoutSite(CorpusSite):
    """The held-out pages on 127.0.0.1: the corpus's server with the held-out page table."""

    def __init__(self, routes: dict[str, Handler] | None = None) -> None:
        super().__init__(HELDOUT_ROUTES if routes is None else routes)
