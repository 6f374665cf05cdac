"""config/org.toml: the shipped file is the whole ministry and loads; every kind of mistake is refused
with its line and reason; `adaldyk migrate` writes it (deputies replaced, accounts linked) and a wrong file
stops `serve`, `web` and `worker` before anything starts."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from adaldyk_bots.org import acting_head, chain, link_accounts, sync_units, unit_by_code
from adaldyk_bots.org_config import ORG_FILE, OrgConfigError, load_org, outside_bodies
from adaldyk_bots.settings import DEFAULT_CONFIG_DIR
from adaldyk_bots.storage.db import make_engine, unit_of_work
from adaldyk_bots.storage.models import StaffUser, Unit, UnitDeputy
from tests.support import free_port
from tests.web_support import WebApp, create_user, load_units, login

SHIPPED = DEFAULT_CONFIG_DIR / ORG_FILE

# A small correct file; each wrong file below changes one thing in it.
GOOD = """\
[[region]]
code = "karaganda"
name_ru = "Карагандинская область"
name_kk = "Қарағанды облысы"
stems = ["караганд", "қарағанды"]

[[unit]]
code = "ministry"
kind = "ministry"
name_ru = "Министерство"
name_kk = "Министрлік"

[[unit]]
code = "cerc"
kind = "committee"
parent = "ministry"
name_ru = "Комитет"
name_kk = "Комитет"
keywords = ["свалк", "қоқыс"]

[[unit]]
code = "cerc_karaganda"
kind = "department"
parent = "cerc"
name_ru = "Департамент"
name_kk = "Департамент"
head = "[ФИО]"
head_username = "kz_head"
regions = ["karaganda"]

[[unit.deputy]]
name = "Заместитель"
position_ru = "Заместитель руководителя"
username = "kz_deputy"
from = 2026-07-01
to = 2026-07-28

[[outside_body]]
code = "agriculture"
name_ru = "Министерство сельского хозяйства"
name_kk = "Ауыл шаруашылығы министрлігі"
keywords = ["рыб", "балық"]
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / ORG_FILE
    path.write_text(text, encoding="utf-8")
    return path


def _line_of(text: str, fragment: str, occurrence: int = 1) -> int:
    lines = [n for n, line in enumerate(text.splitlines(), start=1) if fragment in line]
    return lines[occurrence - 1]


def test_the_shipped_file_is_the_whole_ministry() -> None:
    config = load_org(SHIPPED)
    kinds = [u.kind for u in config.units]
    assert kinds.count("department") == 20 and kinds.count("inspection") == 17
    assert kinds.count("ministry") == 1 and kinds.count("committee") == 2 and kinds.count("office") == 1
    assert len(config.regions) == 20
    # Every region (17 oblasts, 3 cities) has exactly one Department of Ecology, under the committee.
    departments = [u for u in config.units if u.kind == "department"]
    assert sorted(r for u in departments for r in u.regions) == sorted(r.code for r in config.regions)
    assert {u.parent for u in departments} == {"cerc"}
    assert all(u.name_ru.startswith("Департамент экологии по ") for u in departments)
    assert all(u.name_kk.endswith(" бойынша экология департаменті") for u in departments)
    assert {u.parent for u in config.units if u.kind == "inspection"} == {"forestry"}
    # Codes others rely on are kept.
    for code in ("project_office", "cerc", "cerc_astana", "cerc_almaty_city", "cerc_karaganda", "forestry"):
        assert config.unit(code) is not None, code
    for code in ("kazhydromet", "zhasyl_damu"):
        assert config.unit(code) is not None and config.unit(code).kind == "subordinate"  # type: ignore[union-attr]
    # Zhezkazgan is in Ulytau since 2022, not in Karaganda.
    regions = {r.code: r for r in config.regions}
    assert "жезказган" in regions["ulytau"].stems and "жезказган" not in regions["karaganda"].stems
    bodies = {b.code for b in outside_bodies(DEFAULT_CONFIG_DIR)}
    assert {
        "agriculture",
        "akimat",
        "anti_corruption",
        "internal_affairs",
        "health",
        "industry",
        "water",
    } <= bodies
    # Every unit names its head's position in both languages.
    assert all(u.head_position_ru and u.head_position_kk for u in config.units)


# (what is wrong; the text replaced, by what, and which occurrence; the line to be named: a fragment of
# it and which occurrence; the words of the reason)
WRONG: list[tuple[str, str, str, int, str, int, str]] = [
    # tomllib names where it noticed: the next table header, after the unclosed array
    (
        "syntax",
        'keywords = ["свалк", "қоқыс"]',
        'keywords = ["свалк"',
        1,
        'code = "cerc_karaganda"',
        0,
        "not valid TOML",
    ),
    ("unknown key", 'head = "[ФИО]"', 'head = "[ФИО]"\nheads = "x"', 1, "heads =", 1, "unknown key 'heads'"),
    ("missing name", 'name_kk = "Комитет"\n', "", 1, "[[unit]]", 2, "unit cerc: name_kk is missing"),
    ("empty name", 'name_ru = "Департамент"', 'name_ru = "  "', 1, 'name_ru = "  "', 1, "name_ru is empty"),
    (
        "unknown parent",
        'parent = "cerc"',
        'parent = "cercc"',
        1,
        'parent = "cercc"',
        1,
        "parent 'cercc' is not",
    ),
    (
        "own parent",
        'parent = "ministry"',
        'parent = "cerc"',
        1,
        'parent = "cerc"',
        1,
        "cannot be its own parent",
    ),
    (
        "duplicate code",
        'code = "cerc_karaganda"',
        'code = "cerc"',
        1,
        'code = "cerc"',
        2,
        "the code is used twice",
    ),
    ("bad kind", 'kind = "department"', 'kind = "departament"', 1, "departament", 1, "kind must be one of"),
    ("bad code", 'code = "cerc_karaganda"', 'code = "Cerc-K"', 1, "Cerc-K", 1, "code must be a code of"),
    ("bad date", "from = 2026-07-01", 'from = "2026-13-01"', 1, "2026-13-01", 1, "from must be a date like"),
    (
        "inverted range",
        "to = 2026-07-28",
        "to = 2026-06-28",
        1,
        "to = 2026-06-28",
        1,
        "is before 'from' 2026-07-01",
    ),
    ("unknown region", '["karaganda"]', '["qaraghandy"]', 1, "qaraghandy", 1, "region 'qaraghandy' is not"),
    (
        "unknown table",
        "[[outside_body]]",
        "[[outside_bodies]]",
        1,
        "outside_bodies",
        1,
        "unknown key 'outside_bodies'",
    ),
    (
        "reserved body code",
        'code = "agriculture"',
        'code = "other"',
        1,
        'code = "other"',
        1,
        "the forwarding form's «another organisation»",
    ),
    ("deputy key", 'name = "Заместитель"', 'nme = "Заместитель"', 1, "nme =", 1, "unknown key 'nme'"),
    ("deputy missing date", "from = 2026-07-01\n", "", 1, "[[unit.deputy]]", 1, "from is missing"),
]


@pytest.mark.parametrize(
    ("what", "old", "new", "nth", "at", "at_nth", "reason"), WRONG, ids=[w[0] for w in WRONG]
)
def test_each_mistake_is_named_with_its_line_and_reason(
    tmp_path: Path, what: str, old: str, new: str, nth: int, at: str, at_nth: int, reason: str
) -> None:
    assert old in GOOD, what
    text = GOOD.replace(old, new, nth)
    with pytest.raises(OrgConfigError) as refused:
        load_org(_write(tmp_path, text))
    message = str(refused.value)
    assert reason in message, message
    expected = _line_of(text, at, at_nth) if at_nth else _line_of(GOOD, 'keywords = ["свалк"') + 2
    assert f"line {expected}: " in message, (what, expected, message)


def test_a_circle_of_parents_is_named_once(tmp_path: Path) -> None:
    text = GOOD.replace('parent = "ministry"', 'parent = "cerc_karaganda"')
    with pytest.raises(OrgConfigError) as refused:
        load_org(_write(tmp_path, text))
    line = _line_of(text, 'parent = "cerc_karaganda"')
    circle = "cerc → cerc_karaganda → cerc"
    assert refused.value.problems == [f"line {line}: unit cerc: the parents go round in a circle: {circle}"]


def test_every_problem_is_reported_at_once_in_line_order(tmp_path: Path) -> None:
    text = GOOD.replace('parent = "cerc"', 'parent = "nowhere"').replace('kind = "committee"', 'kind = "x"')
    with pytest.raises(OrgConfigError) as refused:
        load_org(_write(tmp_path, text))
    # The type errors come first (the file's shape), each with its line.
    assert len(refused.value.problems) == 1 and "kind must be one of" in refused.value.problems[0]
    text = GOOD.replace('parent = "cerc"', 'parent = "nowhere"').replace(
        'regions = ["karaganda"]', 'regions = ["mars"]'
    )
    with pytest.raises(OrgConfigError) as refused:
        load_org(_write(tmp_path, text))
    lines = [int(p.split(":")[0].removeprefix("line ")) for p in refused.value.problems]
    assert len(lines) == 2 and lines == sorted(lines)


def test_no_file_is_an_empty_org(tmp_path: Path) -> None:
    assert load_org(tmp_path / "absent.toml").units == ()


def test_loading_writes_units_replaces_deputies_and_links_accounts(database_url: str, tmp_path: Path) -> None:
    engine = make_engine(database_url)
    try:
        path = _write(tmp_path, GOOD)
        with unit_of_work(engine) as s:
            assert sync_units(s, path) == 3
        with Session(engine) as s:
            dept = unit_by_code(s, "cerc_karaganda")
            assert dept is not None and dept.id is not None
            assert dept.kind == "department" and dept.regions == ["karaganda"] and dept.head_user_id is None
            upwards = [
                s.exec(select(Unit.id).where(Unit.code == c)).one()
                for c in ("cerc_karaganda", "cerc", "ministry")
            ]
            assert upwards == chain(s, dept.id)
            on_leave = acting_head(s, dept.id, date(2026, 7, 10))
            assert on_leave is not None and on_leave.deputy and on_leave.user_id is None
        # Accounts made after the load are linked at once (as `adaldyk user create` does).
        head_id = create_user(engine, "kz_head", "officer", "cerc_karaganda")
        deputy_id = create_user(engine, "kz_deputy", "officer", "cerc_karaganda")
        with unit_of_work(engine) as s:
            assert link_accounts(s, load_org(path)) == []
        with Session(engine) as s:
            dept = unit_by_code(s, "cerc_karaganda")
            assert dept is not None and dept.id is not None and dept.head_user_id == head_id
            assert acting_head(s, dept.id, date(2026, 7, 10)).user_id == deputy_id  # type: ignore[union-attr]
            assert acting_head(s, dept.id, date(2026, 7, 29)).user_id == head_id  # type: ignore[union-attr]
        # A second load with other deputy dates replaces the rows, and keeps the links.
        _write(tmp_path, GOOD.replace("to = 2026-07-28", "to = 2026-08-15"))
        with unit_of_work(engine) as s:
            sync_units(s, path)
        with Session(engine) as s:
            rows = s.exec(select(UnitDeputy)).all()
            assert [(r.ends_on, r.user_id) for r in rows] == [(date(2026, 8, 15), deputy_id)]
            assert len(s.exec(select(Unit)).all()) == 3
        # The shipped file on top: the same codes are updated, the rest added.
        with unit_of_work(engine) as s:
            assert sync_units(s, SHIPPED) == len(load_org(SHIPPED).units)
        with Session(engine) as s:
            assert len(s.exec(select(Unit)).all()) == len(load_org(SHIPPED).units)
            dept = unit_by_code(s, "cerc_karaganda")
            assert dept is not None and dept.name_ru == "Департамент экологии по Карагандинской области"
    finally:
        engine.dispose()


# --- the commands --------------------------------------------------------------------------------


def _adaldyk(
    database_url: str, config: Path, *args: str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADALDYK_")}
    env.update(
        ADALDYK_DATABASE_URL=database_url,
        ADALDYK_SECRET_KEY="test-secret-key-0123456789",
        ADALDYK_CONFIG_DIR=str(config),
        ADALDYK_PORT=str(free_port()),
    )
    return subprocess.run(
        [sys.executable, "-m", "adaldyk_bots", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def config_copy(tmp_path: Path) -> Path:
    target = tmp_path / "config"
    shutil.copytree(DEFAULT_CONFIG_DIR, target)
    return target


def test_a_wrong_file_stops_start_up_with_its_line(database_url: str, config_copy: Path) -> None:
    org = config_copy / ORG_FILE
    text = org.read_text(encoding="utf-8").replace(
        'code = "cerc_karaganda"\nkind = "department"\nparent = "cerc"',
        'code = "cerc_karaganda"\nkind = "department"\nparent = "cerk"',
    )
    assert 'parent = "cerk"' in text
    org.write_text(text, encoding="utf-8")
    line = _line_of(text, 'parent = "cerk"')
    for command in ("serve", "web", "worker", "migrate"):
        refused = _adaldyk(database_url, config_copy, command)
        assert refused.returncode == 1, (command, refused.stdout, refused.stderr)
        assert f"line {line}: unit cerc_karaganda: parent 'cerk' is not a unit code" in refused.stderr, (
            command
        )
        assert "Traceback" not in refused.stderr


def test_migrate_loads_the_file_and_user_create_links_the_head(database_url: str, config_copy: Path) -> None:
    done = _adaldyk(database_url, config_copy, "migrate")
    assert done.returncode == 0, done.stderr
    assert f"{len(load_org(SHIPPED).units)} units loaded" in done.stdout
    made = _adaldyk(
        database_url,
        config_copy,
        "user",
        "create",
        "karaganda_head",
        "--role",
        "officer",
        "--unit",
        "cerc_karaganda",
        "--password-stdin",
        stdin="pw-pw-pw-pw-1\n",
    )
    assert made.returncode == 0, made.stderr
    engine = make_engine(database_url)
    try:
        with Session(engine) as s:
            dept = unit_by_code(s, "cerc_karaganda")
            assert dept is not None and dept.head_user_id is not None
    finally:
        engine.dispose()


def test_an_account_made_on_the_admin_page_is_linked_to_the_head(make_settings: Any) -> None:
    with WebApp(make_settings()) as web:
        load_units(web.runtime.engine)
        create_user(web.runtime.engine, "root", "admin")
        client = web.new_client()
        csrf = login(client, "root")
        made = client.post(
            "/admin/users",
            data={
                "username": "karaganda_head",
                "role": "officer",
                "unit": "cerc_karaganda",
                "password": "pw-pw-pw-pw-1-long",
                "csrf_token": csrf,
            },
            follow_redirects=False,
        )
        assert made.status_code == 303, made.text
        client.close()
        with Session(web.runtime.engine) as s:
            dept = unit_by_code(s, "cerc_karaganda")
            head = s.exec(select(StaffUser.id).where(StaffUser.username == "karaganda_head")).one()
            assert dept is not None and dept.head_user_id == head
