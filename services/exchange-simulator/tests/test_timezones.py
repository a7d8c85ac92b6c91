"""Windows time zones (timezones.py) and their XML (availability.py), without a server."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from exchangelib.properties import TimeZone
from exchangelib.properties import TimeZoneDefinition as ClientDefinition
from exchangelib.util import xml_to_str
from exchangelib.version import EXCHANGE_2016, Version
from exchangelib.winzone import MS_TIMEZONE_TO_IANA_MAP
from lxml import etree

from spacesync.exchange_simulator import timezones
from spacesync.exchange_simulator.ews.availability import (
    definition_element,
    get_server_time_zones,
    request_zone,
    xs_duration,
)
from spacesync.exchange_simulator.ews.soap import M, T
from spacesync.exchange_simulator.timezones import (
    FIRST_YEAR,
    LAST_YEAR,
    MAX_GROUPS,
    RuleZone,
    TransitionRule,
    definition,
    iana_for,
    known_ids,
    windows_id_for,
)

SAMPLES = Path("/work/shared/ews/samples")
COMMON = {
    "UTC": "Etc/UTC",
    "GMT Standard Time": "Europe/London",
    "Greenwich Standard Time": "Atlantic/Reykjavik",
    "W. Europe Standard Time": "Europe/Berlin",
    "Romance Standard Time": "Europe/Paris",
    "Central Europe Standard Time": "Europe/Budapest",
    "Central European Standard Time": "Europe/Warsaw",
    "GTB Standard Time": "Europe/Bucharest",
    "FLE Standard Time": "Europe/Kiev",
    "Russian Standard Time": "Europe/Moscow",
    "Turkey Standard Time": "Europe/Istanbul",
    "Israel Standard Time": "Asia/Jerusalem",
    "South Africa Standard Time": "Africa/Johannesburg",
    "Arabian Standard Time": "Asia/Dubai",
    "India Standard Time": "Asia/Calcutta",
    "China Standard Time": "Asia/Shanghai",
    "Singapore Standard Time": "Asia/Singapore",
    "Tokyo Standard Time": "Asia/Tokyo",
    "Korea Standard Time": "Asia/Seoul",
    "AUS Eastern Standard Time": "Australia/Sydney",
    "Cen. Australia Standard Time": "Australia/Adelaide",
    "E. Australia Standard Time": "Australia/Brisbane",
    "W. Australia Standard Time": "Australia/Perth",
    "New Zealand Standard Time": "Pacific/Auckland",
    "Hawaiian Standard Time": "Pacific/Honolulu",
    "Alaskan Standard Time": "America/Anchorage",
    "Pacific Standard Time": "America/Los_Angeles",
    "Mountain Standard Time": "America/Denver",
    "US Mountain Standard Time": "America/Phoenix",
    "Central Standard Time": "America/Chicago",
    "Central Standard Time (Mexico)": "America/Mexico_City",
    "Eastern Standard Time": "America/New_York",
    "Atlantic Standard Time": "America/Halifax",
    "Newfoundland Standard Time": "America/St_Johns",
    "SA Pacific Standard Time": "America/Bogota",
    "E. South America Standard Time": "America/Sao_Paulo",
    "Argentina Standard Time": "America/Buenos_Aires",
    "Pacific SA Standard Time": "America/Santiago",
    "Nepal Standard Time": "Asia/Katmandu",
    "Iran Standard Time": "Asia/Tehran",
}
# Ramadan moves Morocco's clock changes every year: no yearly rule describes them, as on Windows.
IRREGULAR = {"Morocco Standard Time"}
# Zones whose rules changed more often since 2006 than MAX_GROUPS allows: only the recent groups are kept.
TRIMMED = {"Iran Standard Time", "Israel Standard Time", "Pacific SA Standard Time"}
VERSION = Version(build=EXCHANGE_2016)


def _changes(zone: ZoneInfo, year: int) -> Iterator[dt.datetime]:
    """The UTC instants (to the second) where the zone's offset changes during `year`."""
    moment = dt.datetime(year, 1, 1, tzinfo=dt.UTC)
    while moment.year == year:
        following = moment + dt.timedelta(days=1)
        if moment.astimezone(zone).utcoffset() != following.astimezone(zone).utcoffset():
            low, high = moment, following
            while high - low > dt.timedelta(seconds=1):
                middle = low + (high - low) // 2
                middle -= dt.timedelta(microseconds=middle.microsecond)
                same = middle.astimezone(zone).utcoffset() == low.astimezone(zone).utcoffset()
                low, high = (middle, high) if same else (low, middle)
            yield high
        moment = following


def _mismatches(expected: ZoneInfo, actual: dt.tzinfo, year: int, step_days: int = 1) -> list[dt.datetime]:
    """Instants of `year` where `actual` gives another UTC offset than `expected`: every `step_days` at 05:00 UTC,
    and a second before and at each change."""
    moments = [dt.datetime(year, 1, 1, 5, tzinfo=dt.UTC) + dt.timedelta(days=day) for day in range(0, 365, step_days)]
    for change in _changes(expected, year):
        moments += [change - dt.timedelta(seconds=1), change]
    return [moment for moment in moments
            if moment.astimezone(actual).utcoffset() != moment.astimezone(expected).utcoffset()]


def _shape(element: etree._Element) -> tuple[Any, ...]:
    children = tuple(_shape(child) for child in element if isinstance(child.tag, str))
    return etree.QName(element).localname, sorted(element.attrib.items()), (element.text or "").strip(), children


def _client_zone(windows_id: str, year: int) -> dt.tzinfo:
    """What exchangelib makes of our definition for `year`, sent back as GetUserAvailability's t:TimeZone."""
    zone = definition(windows_id)
    assert zone is not None
    parsed = ClientDefinition.from_xml(elem=etree.fromstring(etree.tostring(definition_element(zone))), account=None)
    converted = TimeZone.from_server_timezone(tz_definition=parsed, for_year=year)
    return request_zone(etree.fromstring(xml_to_str(converted.to_xml(version=VERSION))))


def test_the_mapping_is_cldrs() -> None:
    assert len(timezones.WINDOWS_TO_IANA) >= 139
    for windows_id, iana in timezones.WINDOWS_TO_IANA.items():
        assert MS_TIMEZONE_TO_IANA_MAP[windows_id] == iana, windows_id
    for windows_id, iana in COMMON.items():
        zone = iana_for(windows_id)
        assert zone is not None
        assert zone.key == iana
        assert windows_id_for(iana) == windows_id
    assert iana_for("Middle Earth Standard Time") is None
    assert windows_id_for("Europe/Vienna") is None  # CLDR's territory 001 zone of its id is Europe/Berlin
    assert set(known_ids()) == set(timezones.WINDOWS_TO_IANA)


def test_w_europe_is_what_exchange_sends() -> None:
    parser = etree.XMLParser(remove_blank_text=True, remove_comments=True)
    sample = etree.parse(str(SAMPLES / "03_crud_view_fb_basic/010_g_freebusy_GetServerTimeZones.response.xml"),
                         parser)
    expected = sample.find(f".//{{{T}}}TimeZoneDefinition")
    zone = definition("W. Europe Standard Time")
    assert expected is not None
    assert zone is not None
    assert _shape(definition_element(zone)) == _shape(expected)


def test_names_and_periods() -> None:
    eastern = definition("Eastern Standard Time")
    assert eastern is not None
    assert eastern.name == "(UTC-05:00) Eastern Time (US & Canada)"
    # The US rules changed in 2007: two groups, the second from 1 January 2007, as Exchange has them.
    assert [(start.group, start.since) for start in eastern.transitions] == [("0", None), ("1", dt.date(2007, 1, 1))]
    assert [(rule.month, rule.day_of_week, rule.occurrence) for rule in eastern.groups[1].recurring] == [
        (3, "Sunday", 2), (11, "Sunday", 1)]
    tokyo = definition("Tokyo Standard Time")
    assert tokyo is not None
    assert [group.to_period for group in tokyo.groups] == [tokyo.periods[0].id]
    assert tokyo.periods[0].bias == -dt.timedelta(hours=9)
    tashkent = definition("West Asia Standard Time")
    assert tashkent is not None
    assert tashkent.name == "(UTC+05:00) Tashkent"  # no Windows name stored: a generic one
    assert definition("Middle Earth Standard Time") is None


@pytest.mark.parametrize("windows_id", sorted(set(COMMON) - TRIMMED))
def test_common_zones_match_the_iana_data_in_every_year(windows_id: str) -> None:
    zone = definition(windows_id)
    assert zone is not None
    for year in range(FIRST_YEAR, LAST_YEAR + 1):
        assert _mismatches(ZoneInfo(zone.iana), zone.rule_zone(year), year, step_days=5) == [], (windows_id, year)


def test_every_zone_is_usable_by_exchangelib_and_right_around_now() -> None:
    this_year = dt.date.today().year
    for windows_id in known_ids():
        zone = definition(windows_id)
        assert zone is not None
        assert 1 <= len(zone.groups) <= MAX_GROUPS
        assert [group.id for group in zone.groups] == [str(n) for n in range(len(zone.groups))]
        parsed = ClientDefinition.from_xml(elem=etree.fromstring(etree.tostring(definition_element(zone))),
                                           account=None)
        for year in range(FIRST_YEAR, LAST_YEAR + 1):
            TimeZone.from_server_timezone(tz_definition=parsed, for_year=year)
        if windows_id in IRREGULAR:
            continue
        for year in range(this_year - 1, this_year + 3):
            assert _mismatches(ZoneInfo(zone.iana), zone.rule_zone(year), year, step_days=7) == [], (windows_id, year)


@pytest.mark.parametrize("windows_id", ["W. Europe Standard Time", "Eastern Standard Time", "AUS Eastern Standard Time",
                                        "New Zealand Standard Time", "India Standard Time", "UTC",
                                        "Russian Standard Time", "Pacific SA Standard Time"])
@pytest.mark.parametrize("year", [2006, 2007, 2011, 2014, 2031])
def test_exchangelib_round_trip_gives_the_right_local_times(windows_id: str, year: int) -> None:
    zone = ZoneInfo(COMMON[windows_id])
    if windows_id in TRIMMED and year < dt.date.today().year - 2:
        pytest.skip("only the recent groups are kept (MAX_GROUPS)")
    if windows_id == "Russian Standard Time" and year in (2011, 2014):
        # The year Moscow moved its base offset: Windows' per-year rule starts/ends "daylight" on 1 January.
        assert len(_mismatches(zone, _client_zone(windows_id, year), year)) <= 2
        return
    assert _mismatches(zone, _client_zone(windows_id, year), year) == []


def test_rule_zone_gap_and_repeated_hour() -> None:
    berlin = RuleZone(-60, TransitionRule(10, 6, 5, dt.timedelta(hours=3), 0),
                      TransitionRule(3, 6, 5, dt.timedelta(hours=2), -60))
    summer, winter = dt.timedelta(hours=2), dt.timedelta(hours=1)
    assert dt.datetime(2031, 3, 30, 1, 59, tzinfo=berlin).utcoffset() == winter
    assert dt.datetime(2031, 3, 30, 2, 30, tzinfo=berlin).utcoffset() == winter  # skipped hour, fold 0
    assert dt.datetime(2031, 3, 30, 3, 0, tzinfo=berlin).utcoffset() == summer
    assert dt.datetime(2031, 10, 26, 2, 30, tzinfo=berlin).utcoffset() == summer  # repeated hour, first pass
    assert dt.datetime(2031, 10, 26, 2, 30, fold=1, tzinfo=berlin).utcoffset() == winter
    first = dt.datetime(2031, 10, 26, 0, 30, tzinfo=dt.UTC).astimezone(berlin)
    second = dt.datetime(2031, 10, 26, 1, 30, tzinfo=dt.UTC).astimezone(berlin)
    assert (first.replace(tzinfo=None), first.fold) == (dt.datetime(2031, 10, 26, 2, 30), 0)
    assert (second.replace(tzinfo=None), second.fold) == (dt.datetime(2031, 10, 26, 2, 30), 1)
    assert second.astimezone(dt.UTC) == dt.datetime(2031, 10, 26, 1, 30, tzinfo=dt.UTC)
    assert (berlin.dst(dt.datetime(2031, 7, 1)), berlin.tzname(dt.datetime(2031, 7, 1))) == (winter, "Daylight")


def test_rule_zone_south_and_fixed() -> None:
    sydney = RuleZone(-600, TransitionRule(4, 6, 1, dt.timedelta(hours=3), 0),
                      TransitionRule(10, 6, 1, dt.timedelta(hours=2), -60))
    assert dt.datetime(2031, 1, 15, 12, tzinfo=sydney).utcoffset() == dt.timedelta(hours=11)
    assert dt.datetime(2031, 7, 15, 12, tzinfo=sydney).utcoffset() == dt.timedelta(hours=10)
    assert dt.datetime(2031, 12, 31, 23, tzinfo=sydney).utcoffset() == dt.timedelta(hours=11)
    # exchangelib's placeholder rules for a zone without daylight time (equal biases), and Month 0.
    dummy = RuleZone(-540, TransitionRule(1, 0, 1, dt.timedelta(0), 0), TransitionRule(12, 6, 5, dt.timedelta(0), 0))
    never = RuleZone(300, TransitionRule(0, 6, 1, dt.timedelta(0), 0), TransitionRule(0, 6, 1, dt.timedelta(0), -60))
    for day in range(0, 365, 7):
        moment = dt.datetime(2031, 1, 1, tzinfo=dt.UTC) + dt.timedelta(days=day)
        assert moment.astimezone(dummy).utcoffset() == dt.timedelta(hours=9)
        assert moment.astimezone(never).utcoffset() == dt.timedelta(hours=-5)


def test_xs_duration() -> None:
    assert [xs_duration(dt.timedelta(minutes=minutes)) for minutes in (-60, 120, -330, 0, 30, 345)] == [
        "-PT1H", "PT2H", "-PT5H30M", "PT0H", "PT30M", "PT5H45M"]
    assert xs_duration(dt.timedelta(hours=23, minutes=59, seconds=59)) == "PT23H59M59S"


def _time_zones_request(ids: list[str] | None, full: bool = True) -> etree._Element:
    request = etree.Element(f"{{{M}}}GetServerTimeZones", ReturnFullTimeZoneData="true" if full else "false")
    if ids is not None:
        container = etree.SubElement(request, f"{{{M}}}Ids")
        for zone_id in ids:
            etree.SubElement(container, f"{{{T}}}Id").text = zone_id
    return request


def test_get_server_time_zones_answers_validate(ews_schema: etree.XMLSchema | None) -> None:
    everything = get_server_time_zones(None, _time_zones_request(None))  # type: ignore[arg-type]
    names = get_server_time_zones(None, _time_zones_request(["UTC", "Tokyo Standard Time"], full=False))  # type: ignore[arg-type]
    unknown = get_server_time_zones(None, _time_zones_request(["UTC", "Middle Earth Standard Time"]))  # type: ignore[arg-type]
    assert len(everything.findall(f".//{{{T}}}TimeZoneDefinition")) == len(known_ids())
    assert [(d.get("Id"), len(d)) for d in names.iter(f"{{{T}}}TimeZoneDefinition")] == [
        ("UTC", 0), ("Tokyo Standard Time", 0)]
    assert unknown.findtext(f".//{{{M}}}ResponseCode") == "ErrorTimeZone"
    if ews_schema is None:
        pytest.skip("SPACESYNC_EWS_SCHEMA_DIR is not set")
    for answer in (everything, names, unknown):
        assert ews_schema.validate(answer), ews_schema.error_log
