"""Routing suggestions (routing.py) from the shipped config/org.toml, in Kazakh and Russian: the region
named in the text picks the regional unit of the committee whose words it uses; outside bodies for what
is not the ministry's; and the appeal page's one-click forms that a moderator confirms."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlmodel import Session, col, select

from adaldyk_bots.org_config import ORG_FILE, load_org
from adaldyk_bots.routing import Router, suggest
from adaldyk_bots.settings import DEFAULT_CONFIG_DIR
from adaldyk_bots.storage.models import Appeal, Unit
from tests.web_support import WebApp, create_user, load_units, login, seed_appeal


@pytest.fixture(scope="module")
def router() -> Router:
    return Router(load_org(DEFAULT_CONFIG_DIR / ORG_FILE))


def codes(router: Router, text: str) -> list[str]:
    return [g.code for g in router.suggest(text)]


# (text, the first suggestion, others that must follow it)
CASES = [
    # A Karaganda river dump: the Karaganda department first, its committee after.
    ("На берегу реки Нура в Карагандинской области устроили свалку", "cerc_karaganda", ["cerc"]),
    ("Қарағанды облысында өзен жағасына қоқыс төгіліп жатыр", "cerc_karaganda", ["cerc"]),
    # A Karaganda poacher: the forestry inspection of Karaganda.
    ("Возле Темиртау браконьеры охотятся на сайгаков", "forestry_karaganda", ["forestry"]),
    ("Қарағанды облысында браконьерлер киік атып жүр", "forestry_karaganda", ["forestry"]),
    # Zhezkazgan has been in Ulytau since 2022.
    ("Жезказган: выбросы медеплавильного завода", "cerc_ulytau", ["cerc"]),
    ("Жезқазғанда зауыттан түтін шығып жатыр", "cerc_ulytau", ["cerc"]),
    # "Алматы облысы" is the oblast; "Алматы" alone the city.
    ("Алматы облысында орман кесіп жатыр", "forestry_almaty_region", ["forestry"]),
    ("В Алматы ужасный смог", "cerc_almaty_city", ["cerc"]),
    ("Шымкентте ауаны ластап жатыр", "cerc_shymkent", ["cerc"]),
    ("Астанада қоқыс үйіндісі өртеніп жатыр", "cerc_astana", ["cerc"]),
    # No region: the committee only.
    ("Незаконная вырубка леса", "forestry", []),
    ("Орман кесіліп жатыр", "forestry", []),
    # Outside bodies (R5): fisheries to agriculture, a yard to the akimat, subsoil to industry.
    ("Рыбнадзор бездействует, рыболовы ставят сети", "agriculture", []),
    ("Балықшылар тыйым салынған торлармен балық аулап жүр", "agriculture", []),
    ("Во дворе не вывозят мусор, контейнеры переполнены", "akimat", []),
    ("Месторождение разрабатывают без лицензии на недропользование", "industry", []),
    ("Жер қойнауын пайдалану: кен орны заңсыз", "industry", []),
    ("Арық пен суару каналы бітеліп қалды", "water", []),
]


@pytest.mark.parametrize(("text", "first", "then"), CASES, ids=[c[1] + ":" + c[0][:20] for c in CASES])
def test_suggestions(router: Router, text: str, first: str, then: list[str]) -> None:
    found = codes(router, text)
    assert found and found[0] == first, found
    assert found[1 : 1 + len(then)] == then, found


def test_a_department_never_comes_from_another_region(router: Router) -> None:
    found = codes(router, "Свалка у реки в Павлодаре")
    assert found[0] == "cerc_pavlodar" and not any(
        c.startswith("cerc_") and c != "cerc_pavlodar" for c in found
    )


def test_a_suggestion_says_why(router: Router) -> None:
    best = router.suggest("На берегу реки в Караганде свалка и мусор")[0]
    assert best.kind == "unit" and best.code == "cerc_karaganda"
    assert set(best.words) == {"свалк", "мусор"} and best.regions == ("караганд",)
    assert best.name("kk") == "Қарағанды облысы бойынша экология департаменті"
    assert best.name("ru") == "Департамент экологии по Карагандинской области"


def test_the_longest_words_win_where_they_overlap(router: Router) -> None:
    # "вывоз мусора" is the akimat's; the ecology department's "мусор" is inside it and yields.
    assert "cerc" not in codes(router, "Не вывозят мусор")
    assert router.regions_named("Алматы облысында") == ["almaty_region"]
    assert router.regions_named("Алматы қаласында") == ["almaty_city"]


def test_nothing_to_suggest(router: Router) -> None:
    assert router.suggest("") == [] and router.suggest("Спасибо большое!") == []
    assert router.suggest("Рахмет!") == []


def test_exclude_and_limit(router: Router) -> None:
    text = "Свалка и вырубка леса в Караганде, браконьеры"
    assert len(router.suggest(text, limit=2)) == 2
    assert "cerc_karaganda" not in [g.code for g in router.suggest(text, exclude={"cerc_karaganda"})]
    config = load_org(DEFAULT_CONFIG_DIR / ORG_FILE)
    assert [g.code for g in suggest(config, text)] == [g.code for g in router.suggest(text)]


# --- on the appeal page --------------------------------------------------------------------------


@pytest.fixture
def web(make_settings: Any) -> Iterator[WebApp]:
    with WebApp(make_settings()) as app:
        load_units(app.runtime.engine)
        create_user(app.runtime.engine, "maria", "moderator")
        create_user(app.runtime.engine, "aida", "auditor")
        create_user(app.runtime.engine, "olga", "officer", "cerc_astana")
        yield app


def test_the_page_offers_the_suggestions_as_forms_the_moderator_confirms(web: WebApp) -> None:
    number = seed_appeal(web.runtime, text="На берегу реки в Карагандинской области свалка, и рыбу травят")
    client = web.new_client()
    csrf = login(client, "maria")
    page = client.get(f"/appeals/{number}?lang=en")
    assert page.status_code == 200
    card = page.text[page.text.index('id="routing"') :]
    forms = re.findall(
        r'action="/appeals/[^"]+/unit"[^>]*>\s*<input[^>]*>\s*'
        r'<input type="hidden" name="unit" value="([^"]+)"',
        card,
    )
    assert forms[:2] == ["cerc_karaganda", "cerc"], forms
    assert "Assign to Департамент экологии по Карагандинской области" in html.unescape(card)
    assert "Министерство сельского хозяйства" in card  # fisheries: forward (R5)
    with Session(web.runtime.engine) as s:  # nothing changed by showing it
        assert s.exec(select(Appeal.unit_id).where(Appeal.number == number)).one() is None
    done = client.post(
        f"/appeals/{number}/unit", data={"unit": forms[0], "csrf_token": csrf}, follow_redirects=False
    )
    assert done.status_code == 303 and "done=unit" in done.headers["location"]
    with Session(web.runtime.engine) as s:
        unit = s.exec(
            select(Unit.code).join(Appeal, col(Appeal.unit_id) == col(Unit.id)).where(Appeal.number == number)
        ).one()
        assert unit == "cerc_karaganda"
    # In Kazakh the names are Kazakh; the present unit is no longer suggested.
    kk = client.get(f"/appeals/{number}?lang=kk").text
    card = kk[kk.index('id="routing"') :]
    assert (
        "Экологиялық реттеу және бақылау комитеті" in card
        and 'value="cerc_karaganda"' not in card.split("corruption")[0]
    )
    client.close()


def test_an_officer_is_offered_only_units_within_their_own(web: WebApp) -> None:
    number = seed_appeal(web.runtime, text="Астанада қоқыс үйіндісі", unit_code="cerc_astana")
    client = web.new_client()
    login(client, "olga")
    page = client.get(f"/appeals/{number}?lang=ru").text
    card = page[page.index('id="routing"') :]
    assert 'name="unit" value="cerc"' not in card  # the committee is above her unit
    assert "/corruption" not in card  # and only moderators mark corruption reports
    client.close()
    auditor = web.new_client()
    login(auditor, "aida")
    page = auditor.get(f"/appeals/{number}?lang=ru").text
    card = page[page.index('id="routing"') :]
    assert "<button" not in card.split("</section>")[0]  # read-only: names, no buttons
    auditor.close()


@pytest.mark.parametrize(
    "text",
    [
        "Лестница в подъезде сломана",  # "лес." is a whole word, not the start of «лестница»
        "Помощь для многодетных семей",  # «семей» is not Semey
        "Пишу вам во ВКонтакте, ответьте скорее",  # no region abbreviation inside common words
        "Есік ашылмайды",  # «есік» (a door) is not Esik
        "Теңіз жағасында демалдық",  # «теңіз» (the sea) is not the Tengiz field or Korgalzhyn
    ],
)
def test_common_words_are_not_taken_for_regions_or_topics(router: Router, text: str) -> None:
    assert router.regions_named(text) == [] and router.suggest(text) == [], router.suggest(text)
