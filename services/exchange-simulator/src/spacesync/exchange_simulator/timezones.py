"""Windows time zones as Exchange knows them, built from the IANA database (pure, no I/O).

Exchange names zones by their Windows ids ("W. Europe Standard Time") and describes them in two forms:

- `t:TimeZoneDefinition` (GetServerTimeZones, TimeZoneContext, StartTimeZone): periods (a UTC bias each),
  transition groups (a yearly rule each: "last Sunday of March at 02:00 go to Daylight") and the list of which
  group is in force from which date. `definition()` builds one from Python's zoneinfo: the rules of every year from
  FIRST_YEAR to LAST_YEAR are read off the IANA data, consecutive years with the same rule become one group, and
  each later group starts on 1 January of its first year, as Windows' "dynamic DST" registry entries do.
- `t:TimeZone` of GetUserAvailability (SerializableTimeZone): one base Bias plus StandardTime/DaylightTime rules.
  `RuleZone` turns one into a `tzinfo`, so times can be shown as the naive local times the client asked for.

The Windows id -> IANA mapping is CLDR's windowsZones.xml, territory 001 (the zone Windows means by the id).
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# CLDR windowsZones.xml (typeVersion 2021a), territory "001": Windows zone id -> IANA zone.
WINDOWS_TO_IANA: dict[str, str] = {
    "AUS Central Standard Time": "Australia/Darwin",
    "AUS Eastern Standard Time": "Australia/Sydney",
    "Afghanistan Standard Time": "Asia/Kabul",
    "Alaskan Standard Time": "America/Anchorage",
    "Aleutian Standard Time": "America/Adak",
    "Altai Standard Time": "Asia/Barnaul",
    "Arab Standard Time": "Asia/Riyadh",
    "Arabian Standard Time": "Asia/Dubai",
    "Arabic Standard Time": "Asia/Baghdad",
    "Argentina Standard Time": "America/Buenos_Aires",
    "Astrakhan Standard Time": "Europe/Astrakhan",
    "Atlantic Standard Time": "America/Halifax",
    "Aus Central W. Standard Time": "Australia/Eucla",
    "Azerbaijan Standard Time": "Asia/Baku",
    "Azores Standard Time": "Atlantic/Azores",
    "Bahia Standard Time": "America/Bahia",
    "Bangladesh Standard Time": "Asia/Dhaka",
    "Belarus Standard Time": "Europe/Minsk",
    "Bougainville Standard Time": "Pacific/Bougainville",
    "Canada Central Standard Time": "America/Regina",
    "Cape Verde Standard Time": "Atlantic/Cape_Verde",
    "Caucasus Standard Time": "Asia/Yerevan",
    "Cen. Australia Standard Time": "Australia/Adelaide",
    "Central America Standard Time": "America/Guatemala",
    "Central Asia Standard Time": "Asia/Bishkek",
    "Central Brazilian Standard Time": "America/Cuiaba",
    "Central Europe Standard Time": "Europe/Budapest",
    "Central European Standard Time": "Europe/Warsaw",
    "Central Pacific Standard Time": "Pacific/Guadalcanal",
    "Central Standard Time": "America/Chicago",
    "Central Standard Time (Mexico)": "America/Mexico_City",
    "Chatham Islands Standard Time": "Pacific/Chatham",
    "China Standard Time": "Asia/Shanghai",
    "Cuba Standard Time": "America/Havana",
    "Dateline Standard Time": "Etc/GMT+12",
    "E. Africa Standard Time": "Africa/Nairobi",
    "E. Australia Standard Time": "Australia/Brisbane",
    "E. Europe Standard Time": "Europe/Chisinau",
    "E. South America Standard Time": "America/Sao_Paulo",
    "Easter Island Standard Time": "Pacific/Easter",
    "Eastern Standard Time": "America/New_York",
    "Eastern Standard Time (Mexico)": "America/Cancun",
    "Egypt Standard Time": "Africa/Cairo",
    "Ekaterinburg Standard Time": "Asia/Yekaterinburg",
    "FLE Standard Time": "Europe/Kiev",
    "Fiji Standard Time": "Pacific/Fiji",
    "GMT Standard Time": "Europe/London",
    "GTB Standard Time": "Europe/Bucharest",
    "Georgian Standard Time": "Asia/Tbilisi",
    "Greenland Standard Time": "America/Godthab",
    "Greenwich Standard Time": "Atlantic/Reykjavik",
    "Haiti Standard Time": "America/Port-au-Prince",
    "Hawaiian Standard Time": "Pacific/Honolulu",
    "India Standard Time": "Asia/Calcutta",
    "Iran Standard Time": "Asia/Tehran",
    "Israel Standard Time": "Asia/Jerusalem",
    "Jordan Standard Time": "Asia/Amman",
    "Kaliningrad Standard Time": "Europe/Kaliningrad",
    "Korea Standard Time": "Asia/Seoul",
    "Libya Standard Time": "Africa/Tripoli",
    "Line Islands Standard Time": "Pacific/Kiritimati",
    "Lord Howe Standard Time": "Australia/Lord_Howe",
    "Magadan Standard Time": "Asia/Magadan",
    "Magallanes Standard Time": "America/Punta_Arenas",
    "Marquesas Standard Time": "Pacific/Marquesas",
    "Mauritius Standard Time": "Indian/Mauritius",
    "Middle East Standard Time": "Asia/Beirut",
    "Montevideo Standard Time": "America/Montevideo",
    "Morocco Standard Time": "Africa/Casablanca",
    "Mountain Standard Time": "America/Denver",
    "Mountain Standard Time (Mexico)": "America/Mazatlan",
    "Myanmar Standard Time": "Asia/Rangoon",
    "N. Central Asia Standard Time": "Asia/Novosibirsk",
    "Namibia Standard Time": "Africa/Windhoek",
    "Nepal Standard Time": "Asia/Katmandu",
    "New Zealand Standard Time": "Pacific/Auckland",
    "Newfoundland Standard Time": "America/St_Johns",
    "Norfolk Standard Time": "Pacific/Norfolk",
    "North Asia East Standard Time": "Asia/Irkutsk",
    "North Asia Standard Time": "Asia/Krasnoyarsk",
    "North Korea Standard Time": "Asia/Pyongyang",
    "Omsk Standard Time": "Asia/Omsk",
    "Pacific SA Standard Time": "America/Santiago",
    "Pacific Standard Time": "America/Los_Angeles",
    "Pacific Standard Time (Mexico)": "America/Tijuana",
    "Pakistan Standard Time": "Asia/Karachi",
    "Paraguay Standard Time": "America/Asuncion",
    "Qyzylorda Standard Time": "Asia/Qyzylorda",
    "Romance Standard Time": "Europe/Paris",
    "Russia Time Zone 10": "Asia/Srednekolymsk",
    "Russia Time Zone 11": "Asia/Kamchatka",
    "Russia Time Zone 3": "Europe/Samara",
    "Russian Standard Time": "Europe/Moscow",
    "SA Eastern Standard Time": "America/Cayenne",
    "SA Pacific Standard Time": "America/Bogota",
    "SA Western Standard Time": "America/La_Paz",
    "SE Asia Standard Time": "Asia/Bangkok",
    "Saint Pierre Standard Time": "America/Miquelon",
    "Sakhalin Standard Time": "Asia/Sakhalin",
    "Samoa Standard Time": "Pacific/Apia",
    "Sao Tome Standard Time": "Africa/Sao_Tome",
    "Saratov Standard Time": "Europe/Saratov",
    "Singapore Standard Time": "Asia/Singapore",
    "South Africa Standard Time": "Africa/Johannesburg",
    "South Sudan Standard Time": "Africa/Juba",
    "Sri Lanka Standard Time": "Asia/Colombo",
    "Sudan Standard Time": "Africa/Khartoum",
    "Syria Standard Time": "Asia/Damascus",
    "Taipei Standard Time": "Asia/Taipei",
    "Tasmania Standard Time": "Australia/Hobart",
    "Tocantins Standard Time": "America/Araguaina",
    "Tokyo Standard Time": "Asia/Tokyo",
    "Tomsk Standard Time": "Asia/Tomsk",
    "Tonga Standard Time": "Pacific/Tongatapu",
    "Transbaikal Standard Time": "Asia/Chita",
    "Turkey Standard Time": "Europe/Istanbul",
    "Turks And Caicos Standard Time": "America/Grand_Turk",
    "US Eastern Standard Time": "America/Indianapolis",
    "US Mountain Standard Time": "America/Phoenix",
    "UTC": "Etc/UTC",
    "UTC+12": "Etc/GMT-12",
    "UTC+13": "Etc/GMT-13",
    "UTC-02": "Etc/GMT+2",
    "UTC-08": "Etc/GMT+8",
    "UTC-09": "Etc/GMT+9",
    "UTC-11": "Etc/GMT+11",
    "Ulaanbaatar Standard Time": "Asia/Ulaanbaatar",
    "Venezuela Standard Time": "America/Caracas",
    "Vladivostok Standard Time": "Asia/Vladivostok",
    "Volgograd Standard Time": "Europe/Volgograd",
    "W. Australia Standard Time": "Australia/Perth",
    "W. Central Africa Standard Time": "Africa/Lagos",
    "W. Europe Standard Time": "Europe/Berlin",
    "W. Mongolia Standard Time": "Asia/Hovd",
    "West Asia Standard Time": "Asia/Tashkent",
    "West Bank Standard Time": "Asia/Hebron",
    "West Pacific Standard Time": "Pacific/Port_Moresby",
    "Yakutsk Standard Time": "Asia/Yakutsk",
    "Yukon Standard Time": "America/Whitehorse",
}

# Windows' display names (the TimeZoneDefinition Name) of the zones met most; the others get "(UTC+hh:mm) City".
DISPLAY_NAMES: dict[str, str] = {
    "Dateline Standard Time": "(UTC-12:00) International Date Line West",
    "UTC-11": "(UTC-11:00) Coordinated Universal Time-11",
    "Hawaiian Standard Time": "(UTC-10:00) Hawaii",
    "Alaskan Standard Time": "(UTC-09:00) Alaska",
    "Pacific Standard Time": "(UTC-08:00) Pacific Time (US & Canada)",
    "Pacific Standard Time (Mexico)": "(UTC-08:00) Baja California",
    "US Mountain Standard Time": "(UTC-07:00) Arizona",
    "Mountain Standard Time": "(UTC-07:00) Mountain Time (US & Canada)",
    "Mountain Standard Time (Mexico)": "(UTC-07:00) La Paz, Mazatlan",
    "Central America Standard Time": "(UTC-06:00) Central America",
    "Central Standard Time": "(UTC-06:00) Central Time (US & Canada)",
    "Central Standard Time (Mexico)": "(UTC-06:00) Guadalajara, Mexico City, Monterrey",
    "Canada Central Standard Time": "(UTC-06:00) Saskatchewan",
    "SA Pacific Standard Time": "(UTC-05:00) Bogota, Lima, Quito, Rio Branco",
    "Eastern Standard Time": "(UTC-05:00) Eastern Time (US & Canada)",
    "US Eastern Standard Time": "(UTC-05:00) Indiana (East)",
    "Atlantic Standard Time": "(UTC-04:00) Atlantic Time (Canada)",
    "SA Western Standard Time": "(UTC-04:00) Georgetown, La Paz, Manaus, San Juan",
    "Pacific SA Standard Time": "(UTC-04:00) Santiago",
    "Newfoundland Standard Time": "(UTC-03:30) Newfoundland",
    "E. South America Standard Time": "(UTC-03:00) Brasilia",
    "Argentina Standard Time": "(UTC-03:00) City of Buenos Aires",
    "UTC-02": "(UTC-02:00) Coordinated Universal Time-02",
    "Azores Standard Time": "(UTC-01:00) Azores",
    "UTC": "(UTC) Coordinated Universal Time",
    "GMT Standard Time": "(UTC+00:00) Dublin, Edinburgh, Lisbon, London",
    "Greenwich Standard Time": "(UTC+00:00) Monrovia, Reykjavik",
    "W. Europe Standard Time": "(UTC+01:00) Amsterdam, Berlin, Bern, Rome, Stockholm, Vienna",
    "Central Europe Standard Time": "(UTC+01:00) Belgrade, Bratislava, Budapest, Ljubljana, Prague",
    "Romance Standard Time": "(UTC+01:00) Brussels, Copenhagen, Madrid, Paris",
    "Central European Standard Time": "(UTC+01:00) Sarajevo, Skopje, Warsaw, Zagreb",
    "W. Central Africa Standard Time": "(UTC+01:00) West Central Africa",
    "GTB Standard Time": "(UTC+02:00) Athens, Bucharest",
    "FLE Standard Time": "(UTC+02:00) Helsinki, Kyiv, Riga, Sofia, Tallinn, Vilnius",
    "Israel Standard Time": "(UTC+02:00) Jerusalem",
    "Egypt Standard Time": "(UTC+02:00) Cairo",
    "South Africa Standard Time": "(UTC+02:00) Harare, Pretoria",
    "Turkey Standard Time": "(UTC+03:00) Istanbul",
    "Russian Standard Time": "(UTC+03:00) Moscow, St. Petersburg",
    "Arab Standard Time": "(UTC+03:00) Kuwait, Riyadh",
    "E. Africa Standard Time": "(UTC+03:00) Nairobi",
    "Iran Standard Time": "(UTC+03:30) Tehran",
    "Arabian Standard Time": "(UTC+04:00) Abu Dhabi, Muscat",
    "Pakistan Standard Time": "(UTC+05:00) Islamabad, Karachi",
    "India Standard Time": "(UTC+05:30) Chennai, Kolkata, Mumbai, New Delhi",
    "Nepal Standard Time": "(UTC+05:45) Kathmandu",
    "Bangladesh Standard Time": "(UTC+06:00) Dhaka",
    "SE Asia Standard Time": "(UTC+07:00) Bangkok, Hanoi, Jakarta",
    "China Standard Time": "(UTC+08:00) Beijing, Chongqing, Hong Kong, Urumqi",
    "Singapore Standard Time": "(UTC+08:00) Kuala Lumpur, Singapore",
    "Taipei Standard Time": "(UTC+08:00) Taipei",
    "W. Australia Standard Time": "(UTC+08:00) Perth",
    "Tokyo Standard Time": "(UTC+09:00) Osaka, Sapporo, Tokyo",
    "Korea Standard Time": "(UTC+09:00) Seoul",
    "Cen. Australia Standard Time": "(UTC+09:30) Adelaide",
    "AUS Central Standard Time": "(UTC+09:30) Darwin",
    "E. Australia Standard Time": "(UTC+10:00) Brisbane",
    "AUS Eastern Standard Time": "(UTC+10:00) Canberra, Melbourne, Sydney",
    "Tasmania Standard Time": "(UTC+10:00) Hobart",
    "West Pacific Standard Time": "(UTC+10:00) Guam, Port Moresby",
    "New Zealand Standard Time": "(UTC+12:00) Auckland, Wellington",
    "UTC+12": "(UTC+12:00) Coordinated Universal Time+12",
    "Fiji Standard Time": "(UTC+12:00) Fiji",
    "Tonga Standard Time": "(UTC+13:00) Nuku'alofa",
}

FIRST_YEAR = 2006  # Windows' registry rules for most zones begin here: Exchange's period ids say "2006-Standard"
LAST_YEAR = 2040  # the group in force in this year stays in force after it
# exchangelib finds the group for a year by sorting the Transitions by their group id *as text*: with more than ten
# groups "10" would sort before "2". Real definitions stay far below that; older groups are dropped if not.
MAX_GROUPS = 10

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")  # index: date.weekday()

_IANA_TO_WINDOWS = {iana: windows_id for windows_id, iana in WINDOWS_TO_IANA.items()}


def iana_for(windows_id: str) -> ZoneInfo | None:
    """The IANA zone a Windows zone id means (CLDR territory 001), or None for an id Exchange would not know."""
    name = WINDOWS_TO_IANA.get(windows_id)
    if name is None:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def windows_id_for(iana_name: str) -> str | None:
    """The Windows id whose CLDR zone is exactly `iana_name` ("Europe/Berlin" -> "W. Europe Standard Time")."""
    return _IANA_TO_WINDOWS.get(iana_name)


def known_ids() -> list[str]:
    """Every Windows id the simulator can describe, in the order GetServerTimeZones lists them."""
    return [windows_id for windows_id in WINDOWS_TO_IANA if iana_for(windows_id) is not None]


# --- TimeZoneDefinition -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    id: str
    name: str  # "Standard" or "Daylight"
    bias: timedelta  # UTC = local time + bias, i.e. minus the UTC offset (Berlin's standard period: -1 h)


@dataclass(frozen=True)
class RecurringDayTransition:
    """'Go to period `to` on the n-th (or last) weekday of month at time_offset', in wall-clock time before it."""

    to: str
    time_offset: timedelta
    month: int
    weekday: int  # 0 = Monday
    occurrence: int  # 1..4, or -1: the last one in the month

    @property
    def day_of_week(self) -> str:
        return WEEKDAYS[self.weekday]


@dataclass(frozen=True)
class TransitionsGroup:
    """One yearly rule: either a plain transition to one period (no DST) or the two recurring transitions."""

    id: str
    to_period: str | None
    recurring: tuple[RecurringDayTransition, ...] = ()


@dataclass(frozen=True)
class GroupStart:
    group: str
    since: date | None  # None: the first group, in force from the beginning of time


@dataclass(frozen=True)
class TimeZoneDefinition:
    id: str
    name: str
    iana: str
    periods: tuple[Period, ...]
    groups: tuple[TransitionsGroup, ...]
    transitions: tuple[GroupStart, ...]

    def group_for(self, year: int) -> TransitionsGroup:
        """The group in force in `year` (as exchangelib picks it for GetUserAvailability's TimeZone)."""
        chosen = self.transitions[0].group
        for start in self.transitions:
            if start.since is None or start.since.year <= year:
                chosen = start.group
        return next(group for group in self.groups if group.id == chosen)

    def rule_zone(self, year: int) -> RuleZone:
        """The SerializableTimeZone a client derives from this definition for `year`, as a tzinfo."""
        group = self.group_for(year)
        periods = {period.id: period for period in self.periods}
        if group.to_period is not None:
            return RuleZone(_minutes(periods[group.to_period].bias), None, None)
        to_daylight, to_standard = group.recurring
        standard, daylight = periods[to_standard.to], periods[to_daylight.to]
        return RuleZone(
            _minutes(standard.bias),
            TransitionRule(to_standard.month, to_standard.weekday, to_standard.occurrence, to_standard.time_offset, 0),
            TransitionRule(to_daylight.month, to_daylight.weekday, to_daylight.occurrence, to_daylight.time_offset,
                           _minutes(daylight.bias) - _minutes(standard.bias)),
        )


@cache
def definition(windows_id: str) -> TimeZoneDefinition | None:
    """The full TimeZoneDefinition of a Windows zone id, read off the IANA data, or None for an unknown id."""
    zone = iana_for(windows_id)
    if zone is None:
        return None
    groups: list[tuple[int, _YearRule]] = []
    for year in range(FIRST_YEAR, LAST_YEAR + 1):
        rule = _year_rule(zone, year)
        if groups:
            merged = groups[-1][1].merged(rule)
            if merged is not None:
                groups[-1] = (groups[-1][0], merged)
                continue
        groups.append((year, rule))
    groups = _around_now(groups)
    periods: list[Period] = []
    out_groups: list[TransitionsGroup] = []
    starts: list[GroupStart] = []
    for index, (year, rule) in enumerate(groups):
        group_id = str(index)
        standard_id = f"trule:Microsoft/Registry/{windows_id}/{year}-Standard"
        periods.append(Period(standard_id, "Standard", -rule.standard))
        if rule.daylight is None or rule.to_daylight is None or rule.to_standard is None:
            out_groups.append(TransitionsGroup(group_id, standard_id))
        else:
            daylight_id = f"trule:Microsoft/Registry/{windows_id}/{year}-Daylight"
            periods.append(Period(daylight_id, "Daylight", -rule.daylight))
            out_groups.append(TransitionsGroup(group_id, None, (
                rule.to_daylight.transition(daylight_id), rule.to_standard.transition(standard_id))))
        starts.append(GroupStart(group_id, None if index == 0 else date(year, 1, 1)))
    name = DISPLAY_NAMES.get(windows_id) or _generic_name(zone.key, groups[-1][1].standard)
    return TimeZoneDefinition(windows_id, name, zone.key, tuple(periods), tuple(out_groups), tuple(starts))


def _around_now(groups: list[tuple[int, _YearRule]]) -> list[tuple[int, _YearRule]]:
    """At most MAX_GROUPS groups, from the one in force two years ago: the years clients ask about."""
    if len(groups) <= MAX_GROUPS:
        return groups
    anchor = date.today().year - 2
    first = max((index for index, (year, _) in enumerate(groups) if year <= anchor), default=0)
    first = min(first, len(groups) - MAX_GROUPS)
    return groups[first:first + MAX_GROUPS]


def _generic_name(iana_name: str, standard: timedelta) -> str:
    city = iana_name.rsplit("/", 1)[-1].replace("_", " ")
    return f"{_utc_label(standard)} {city}"


def _utc_label(offset: timedelta) -> str:
    minutes = _minutes(offset)
    sign = "-" if minutes < 0 else "+"
    hours, rest = divmod(abs(minutes), 60)
    return f"(UTC{sign}{hours:02d}:{rest:02d})"


def _minutes(delta: timedelta) -> int:
    return int(delta.total_seconds()) // 60


@dataclass(frozen=True)
class _When:
    """When a change happens in one year: month, weekday, wall-clock time, and which n-th weekdays that can be."""

    month: int
    weekday: int
    time_offset: timedelta
    occurrences: frozenset[int]

    @classmethod
    def at(cls, wall: datetime) -> _When:
        days = calendar.monthrange(wall.year, wall.month)[1]
        nth = (wall.day - 1) // 7 + 1
        occurrences = {nth} if nth <= 4 else set()
        if wall.day + 7 > days:
            occurrences.add(-1)
        midnight = datetime.combine(wall.date(), time())
        return cls(wall.month, wall.weekday(), wall - midnight, frozenset(occurrences))

    def merged(self, other: _When) -> _When | None:
        if (self.month, self.weekday, self.time_offset) != (other.month, other.weekday, other.time_offset):
            return None
        common = self.occurrences & other.occurrences
        return _When(self.month, self.weekday, self.time_offset, common) if common else None

    def transition(self, to: str) -> RecurringDayTransition:
        # "Last" when it may be: Windows writes "last Sunday of October", not "4th Sunday" for 2026's 25 October.
        occurrence = -1 if -1 in self.occurrences else min(self.occurrences)
        return RecurringDayTransition(to, self.time_offset, self.month, self.weekday, occurrence)


@dataclass(frozen=True)
class _YearRule:
    standard: timedelta  # UTC offsets
    daylight: timedelta | None = None
    to_daylight: _When | None = None
    to_standard: _When | None = None

    def merged(self, other: _YearRule) -> _YearRule | None:
        if (self.standard, self.daylight) != (other.standard, other.daylight):
            return None
        if self.to_daylight is None or self.to_standard is None:
            return self
        if other.to_daylight is None or other.to_standard is None:
            return None
        to_daylight = self.to_daylight.merged(other.to_daylight)
        to_standard = self.to_standard.merged(other.to_standard)
        if to_daylight is None or to_standard is None:
            return None
        return _YearRule(self.standard, self.daylight, to_daylight, to_standard)


def _offset(zone: ZoneInfo, moment: datetime) -> timedelta:
    offset = moment.astimezone(zone).utcoffset()
    assert offset is not None
    return offset


def _changes(zone: ZoneInfo, year: int) -> list[tuple[datetime, timedelta, timedelta]]:
    """(UTC instant, offset before, offset after) of each offset change whose wall-clock time falls in `year`."""
    cursor = datetime(year, 1, 1, tzinfo=UTC) - timedelta(days=2)
    end = datetime(year + 1, 1, 1, tzinfo=UTC) + timedelta(days=2)
    current = _offset(zone, cursor)
    found: list[tuple[datetime, timedelta, timedelta]] = []
    while cursor < end:
        step = min(cursor + timedelta(days=7), end)
        if _offset(zone, step) == current:
            cursor = step
            continue
        low, high = cursor, step  # the offset changes in (low, high]: find the first second of the new one
        while high - low > timedelta(seconds=1):
            middle = low + timedelta(seconds=(high - low).total_seconds() // 2)
            if _offset(zone, middle) == current:
                low = middle
            else:
                high = middle
        after = _offset(zone, high)
        if (high + current).replace(tzinfo=None).year == year:
            found.append((high, current, after))
        cursor, current = high, after
    return found


def _year_rule(zone: ZoneInfo, year: int) -> _YearRule:
    """The year's rule as Windows would store it: standard and daylight offsets and when each begins.

    The larger offset is daylight time (Windows' view, also for Dublin and Casablanca). A year that switches once
    (a zone giving up or starting DST, or moving its base offset) gets a rule that starts or ends DST on 1 January,
    as Windows' per-year entries do. A year with more than two offsets is described by the offset it ends with.
    """
    first = datetime(year, 1, 1, tzinfo=zone).utcoffset()
    assert first is not None
    changes = _changes(zone, year)
    if not changes:
        return _YearRule(first)
    offsets = {first, *(after for _, _, after in changes)}
    if len(offsets) != 2:
        return _YearRule(changes[-1][2])
    standard, daylight = sorted(offsets)
    new_year = _When.at(datetime(year, 1, 1))
    into_daylight = next((_When.at((at + before).replace(tzinfo=None))
                          for at, before, after in changes if after == daylight), new_year)
    into_standard = next((_When.at((at + before).replace(tzinfo=None))
                          for at, before, after in changes if after == standard), new_year)
    return _YearRule(standard, daylight, into_daylight, into_standard)


# --- SerializableTimeZone (GetUserAvailability's t:TimeZone) --------------------------------------------------------


@dataclass(frozen=True)
class TransitionRule:
    """StandardTime or DaylightTime: the change happens on the n-th weekday of month, at time_of_day wall-clock
    time (before the change); `bias` is added to the zone's base Bias while the period lasts."""

    month: int  # 1..12; 0: never
    weekday: int  # 0 = Monday
    day_order: int  # 1..4; 5 or -1: the last one in the month
    time_of_day: timedelta
    bias: int  # minutes

    def on(self, year: int) -> datetime:
        first_weekday, days = calendar.monthrange(year, self.month)
        first = 1 + (self.weekday - first_weekday) % 7
        if self.day_order in (-1, 5) or self.day_order > 5:
            day = first + 7 * ((days - first) // 7)
        else:
            day = first + 7 * (max(self.day_order, 1) - 1)
        return datetime(year, self.month, day) + self.time_of_day


class RuleZone(tzinfo):
    """A tzinfo from a base Bias and StandardTime/DaylightTime rules (UTC = local time + Bias + period Bias).

    Works north and south of the equator (daylight time spanning the new year); without two usable rules, or with
    equal biases (exchangelib's dummy rules for zones without DST), it is a fixed offset.
    """

    def __init__(self, bias: int, standard: TransitionRule | None, daylight: TransitionRule | None) -> None:
        super().__init__()
        self.standard_offset = -timedelta(minutes=bias + (standard.bias if standard else 0))
        self.daylight_offset = -timedelta(minutes=bias + (daylight.bias if daylight else 0))
        self._rules: tuple[TransitionRule, TransitionRule] | None = None
        changes = self.daylight_offset != self.standard_offset
        if standard is not None and daylight is not None and standard.month > 0 and daylight.month > 0 and changes:
            self._rules = (standard, daylight)

    def __repr__(self) -> str:
        return f"RuleZone(standard={self.standard_offset}, daylight={self.daylight_offset}, rules={self._rules})"

    def _is_daylight(self, utc: datetime) -> bool:
        """Whether the naive UTC time `utc` falls in daylight time."""
        if self._rules is None:
            return False
        standard, daylight = self._rules
        year = (utc + self.standard_offset).year
        daylight_starts = daylight.on(year) - self.standard_offset  # its wall clock still shows standard time
        standard_starts = standard.on(year) - self.daylight_offset
        if daylight_starts < standard_starts:
            return daylight_starts <= utc < standard_starts
        return not standard_starts <= utc < daylight_starts  # southern hemisphere: daylight time spans new year

    def _offset_at_wall(self, dt: datetime) -> timedelta:
        wall = dt.replace(tzinfo=None)
        as_standard = not self._is_daylight(wall - self.standard_offset)
        as_daylight = self._is_daylight(wall - self.daylight_offset)
        if as_standard and as_daylight:  # repeated hour: fold 0 is the first (daylight) one
            return self.standard_offset if dt.fold else self.daylight_offset
        if as_standard or as_daylight:
            return self.standard_offset if as_standard else self.daylight_offset
        return self.daylight_offset if dt.fold else self.standard_offset  # skipped hour: PEP 495 rules

    def utcoffset(self, dt: datetime | None) -> timedelta:
        return self.standard_offset if dt is None else self._offset_at_wall(dt)

    def dst(self, dt: datetime | None) -> timedelta:
        return self.utcoffset(dt) - self.standard_offset

    def tzname(self, dt: datetime | None) -> str:
        return "Daylight" if self.dst(dt) else "Standard"

    def fromutc(self, dt: datetime) -> datetime:
        utc = dt.replace(tzinfo=None)
        daylight = self._is_daylight(utc)
        local = utc + (self.daylight_offset if daylight else self.standard_offset)
        # The second pass through a repeated hour is fold 1.
        repeated = not daylight and self._is_daylight(local - self.daylight_offset)
        return local.replace(tzinfo=self, fold=1 if repeated else 0)
