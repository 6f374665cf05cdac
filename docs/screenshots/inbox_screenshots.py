"""Screenshots of the inbox in Kazakh and Russian for the README:

.venv/bin/python docs/screenshots/inbox_screenshots.py
"""

import secrets
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from playwright.sync_api import sync_playwright

from adaldyk_bots.settings import Settings
from adaldyk_bots.storage.db import make_engine, utcnow
from adaldyk_bots.storage.migrate import upgrade
from tests.browser import CHROMIUM_ARGS
from tests.support import free_port
from tests.test_inbox_pages import ALMATY, ASTANA, add_appeal
from tests.web_support import PASSWORD, WebApp, create_user, load_units

db = Path(tempfile.mkdtemp()) / "shots.sqlite3"
settings = Settings(
    _env_file=None, database_url=f"sqlite:///{db}", secret_key=secrets.token_urlsafe(32), port=free_port()
)
engine = make_engine(settings.database_url)
upgrade(engine)
engine.dispose()
out = Path(__file__).resolve().parent
out.mkdir(parents=True, exist_ok=True)
with WebApp(settings) as app:
    rt = app.runtime
    load_units(rt.engine)
    create_user(rt.engine, "maria", "moderator", full_name="Мария Ким")
    add_appeal(
        rt,
        "Незаконная вырубка тополей в парке на улице Абая",
        name="Айгүл Серікова",
        unit=ASTANA,
        category="complaint",
    )
    add_appeal(
        rt,
        "Өзенге зауыт қалдықтарын төгіп жатыр, шара қолдануыңызды сұраймын",
        channel="vk",
        language="kk",
        name="Дана Омарова",
        unit=ASTANA,
        category="complaint",
    )
    add_appeal(
        rt,
        "Свалка строительного мусора у реки Есентай",
        name="Ержан Досов",
        unit=ALMATY,
        due_at=utcnow() - timedelta(days=3),
        category="request",
    )
    add_appeal(
        rt,
        "Бақта жаңа ағаштар отырғызуды ұсынамын",
        channel="vk",
        language="kk",
        name="Асель Нұрлан",
        category="proposal",
    )
    add_appeal(rt, "Дым от котельной каждый вечер", name="Иван Петров")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS)
        page = b.new_page(viewport={"width": 1400, "height": 820})
        page.goto(f"{app.url}/login?lang=ru")
        page.fill("input[name=username]", "maria")
        page.fill("input[name=password]", PASSWORD)
        page.click("form[action='/login'] button[type=submit]")
        page.wait_for_url(f"{app.url}/")
        for lang in ("kk", "ru"):
            page.goto(f"{app.url}/?lang={lang}")
            page.keyboard.press("j")
            page.screenshot(path=str(out / f"inbox-{lang}.png"), full_page=True)
        b.close()
print("ok")
