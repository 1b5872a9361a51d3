//! Which time zone(s) a customer's number is in: the table behind `[callback] customer_hours`.
//!
//! Pure data and lookups; no clock. A number (normalised: country code + national number,
//! digits only) maps to a *set* of IANA zones. One zone when the country, or the number's region,
//! has one; several when perezvon cannot tell which of a country's zones it is in. The calling
//! window must then hold in **every** zone of the set: the conservative rule, so a customer is
//! never rung before the window opens on their own clock, wherever in the country they are.
//!
//! Sources and coverage (see docs/CALLBACKS.md, "The customer's clock"):
//! - Russia (+7 3xx, 4xx, 8xx): the geographic (ABC) codes of the Russian numbering plan
//!   (Rossvyaz, "Российская система и план нумерации"), each mapped to the zone of its subject of
//!   the federation (Federal Law 107-FZ "On the calculation of time" as amended to 2020, which is
//!   what tzdb's Europe/… and Asia/… zones of Russia follow). Mobile (DEF, +7 9xx) numbers are
//!   allocated to regions in blocks of ranges, not by code, and a number keeps its region when
//!   ported; only the DEF codes wholly allocated to Moscow and the Moscow region are in the table.
//!   Every other +7 9xx number is "region unknown": all of Russia's zones (UTC+2 to UTC+12).
//! - Kazakhstan (+7 6xx, 7xx): one zone (Asia/Almaty, UTC+5 since 1 March 2024).
//! - The US and Canada (+1): the area codes listed in `NANP` (the largest cities and every
//!   area code of single-zone states and provinces we list); any other +1 number is "region
//!   unknown": all of the mainland, Alaska and Hawaii zones, and Atlantic/Newfoundland.
//! - Single-zone countries of the CIS, the Baltics, Europe and a few more (`COUNTRIES`).
//! - Anything else: the country is unknown to the table, and [`ZoneTable::lookup`] says so; the
//!   caller decides (`customer_unknown_country`).
//!
//! Operators can add or correct prefixes with `[callback] customer_zones` (longest prefix wins,
//! before this table), e.g. the DEF ranges of their own region.

use std::sync::OnceLock;

use jiff::tz::TimeZone;

/// The IANA zones the table uses. A zone set is a bit mask over this list.
pub const ZONES: &[&str] = &[
    "Europe/Kaliningrad",  // 0  UTC+2
    "Europe/Moscow",       // 1  UTC+3
    "Europe/Samara",       // 2  UTC+4 (Samara, Udmurtia)
    "Europe/Ulyanovsk",    // 3  UTC+4
    "Europe/Saratov",      // 4  UTC+4
    "Europe/Astrakhan",    // 5  UTC+4
    "Asia/Yekaterinburg",  // 6  UTC+5
    "Asia/Omsk",           // 7  UTC+6
    "Asia/Novosibirsk",    // 8  UTC+7
    "Asia/Barnaul",        // 9  UTC+7
    "Asia/Tomsk",          // 10 UTC+7
    "Asia/Novokuznetsk",   // 11 UTC+7
    "Asia/Krasnoyarsk",    // 12 UTC+7
    "Asia/Irkutsk",        // 13 UTC+8
    "Asia/Chita",          // 14 UTC+9
    "Asia/Yakutsk",        // 15 UTC+9
    "Asia/Vladivostok",    // 16 UTC+10
    "Asia/Sakhalin",       // 17 UTC+11
    "Asia/Magadan",        // 18 UTC+11
    "Asia/Kamchatka",      // 19 UTC+12
    "Asia/Anadyr",         // 20 UTC+12
    "Asia/Almaty",         // 21 Kazakhstan
    "America/New_York",    // 22
    "America/Chicago",     // 23
    "America/Denver",      // 24
    "America/Phoenix",     // 25
    "America/Los_Angeles", // 26
    "America/Anchorage",   // 27
    "Pacific/Honolulu",    // 28
    "America/Halifax",     // 29
    "America/St_Johns",    // 30
    "America/Toronto",     // 31
    "America/Vancouver",   // 32
    "America/Edmonton",    // 33
    "America/Winnipeg",    // 34
    "America/Regina",      // 35
    "Europe/Minsk",        // 36
    "Europe/Kyiv",         // 37
    "Asia/Yerevan",        // 38
    "Asia/Tbilisi",        // 39
    "Asia/Baku",           // 40
    "Asia/Tashkent",       // 41
    "Asia/Bishkek",        // 42
    "Asia/Dushanbe",       // 43
    "Asia/Ashgabat",       // 44
    "Europe/Chisinau",     // 45
    "Europe/Riga",         // 46
    "Europe/Vilnius",      // 47
    "Europe/Tallinn",      // 48
    "Europe/Helsinki",     // 49
    "Europe/Berlin",       // 50
    "Europe/London",       // 51
    "Europe/Paris",        // 52
    "Europe/Rome",         // 53
    "Europe/Warsaw",       // 54
    "Europe/Prague",       // 55
    "Europe/Istanbul",     // 56
    "Asia/Jerusalem",      // 57
    "Asia/Dubai",          // 58
    "Asia/Shanghai",       // 59
    "Asia/Kolkata",        // 60
    "Europe/Madrid",       // 61
    "Atlantic/Canary",     // 62
];

/// A set of zones: bit `i` is [`ZONES`]`[i]`.
pub type ZoneSet = u64;

const fn z(i: u32) -> ZoneSet {
    1 << i
}

/// Every zone of Russia (indexes 0..=20).
pub const RUSSIA: ZoneSet = (1 << 21) - 1;
/// Every zone of +1 perezvon knows (the US and Canada, indexes 22..=35).
pub const NANP_ALL: ZoneSet = ((1 << 36) - 1) & !((1 << 22) - 1);

/// Russian geographic (ABC) codes, `+7 <code>`, and their zone.
const RU_ABC: &[(u16, u32)] = &[
    (401, 0), // Kaliningrad
    // Moscow time (UTC+3)
    (495, 1),
    (499, 1),
    (496, 1),
    (498, 1), // Moscow, Moscow region
    (812, 1),
    (813, 1),
    (811, 1),
    (814, 1),
    (815, 1),
    (816, 1),
    (817, 1),
    (818, 1),
    (820, 1),
    (821, 1), // North-West, Komi
    (471, 1),
    (472, 1),
    (473, 1),
    (474, 1),
    (475, 1),
    (481, 1),
    (482, 1),
    (483, 1),
    (484, 1),
    (485, 1),
    (486, 1),
    (487, 1),
    (491, 1),
    (492, 1),
    (493, 1),
    (494, 1), // Centre
    (831, 1),
    (833, 1),
    (834, 1),
    (835, 1),
    (836, 1),
    (841, 1),
    (843, 1),
    (855, 1), // Volga (+3)
    (844, 1),
    (847, 1), // Volgograd (+3 since 2020), Kalmykia
    (861, 1),
    (862, 1),
    (863, 1),
    (865, 1),
    (866, 1),
    (867, 1),
    (869, 1),
    (871, 1),
    (872, 1),
    (873, 1),
    (877, 1),
    (878, 1),
    (879, 1),
    (365, 1), // South, North Caucasus, Crimea
    // UTC+4
    (846, 2),
    (848, 2),
    (341, 2), // Samara, Tolyatti, Udmurtia
    (842, 3), // Ulyanovsk
    (845, 4), // Saratov
    (851, 5), // Astrakhan
    // UTC+5
    (343, 6),
    (342, 6),
    (345, 6),
    (346, 6),
    (347, 6),
    (349, 6),
    (351, 6),
    (352, 6),
    (353, 6),
    // UTC+6
    (381, 7), // Omsk
    // UTC+7
    (383, 8), // Novosibirsk
    (385, 9),
    (388, 9),  // Altai Krai, Altai Republic
    (382, 10), // Tomsk
    (384, 11), // Kemerovo
    (390, 12),
    (391, 12),
    (394, 12), // Khakassia, Krasnoyarsk, Tuva
    // UTC+8
    (395, 13),
    (301, 13), // Irkutsk, Buryatia
    // UTC+9
    (302, 14), // Zabaykalsky
    (411, 15),
    (416, 15), // Yakutia (its main zone), Amur
    // UTC+10
    (423, 16),
    (421, 16),
    (426, 16), // Primorye, Khabarovsk, Jewish AO
    // UTC+11
    (424, 17), // Sakhalin
    (413, 18), // Magadan
    // UTC+12
    (415, 19), // Kamchatka
    (427, 20), // Chukotka
];

/// Russian mobile (DEF) codes allocated to Moscow and the Moscow region as a whole.
const RU_DEF_MOSCOW: &[u16] = &[916, 925, 926, 985];

/// NANP area codes and their zone (a selection: see the module docs).
const NANP: &[(u16, u32)] = &[
    // Eastern
    (212, 22),
    (646, 22),
    (718, 22),
    (917, 22),
    (347, 22),
    (929, 22),
    (332, 22), // New York City
    (202, 22),
    (617, 22),
    (857, 22),
    (215, 22),
    (267, 22),
    (404, 22),
    (470, 22),
    (678, 22),
    (305, 22),
    (786, 22),
    (407, 22),
    (813, 22),
    (704, 22),
    (919, 22),
    (412, 22),
    (313, 22),
    (614, 22),
    (216, 22),
    (410, 22),
    (703, 22),
    (571, 22),
    (201, 22),
    (973, 22),
    (203, 22),
    (401, 22),
    (802, 22),
    (603, 22),
    (207, 22),
    // Central
    (312, 23),
    (773, 23),
    (872, 23),
    (214, 23),
    (469, 23),
    (972, 23),
    (713, 23),
    (281, 23),
    (832, 23),
    (512, 23),
    (210, 23),
    (504, 23),
    (615, 23),
    (314, 23),
    (816, 23),
    (612, 23),
    (651, 23),
    (414, 23),
    (901, 23),
    (405, 23),
    (918, 23),
    (501, 23),
    (515, 23),
    (319, 23),
    // Mountain
    (303, 24),
    (720, 24),
    (801, 24),
    (385, 24),
    (505, 24),
    (406, 24),
    (307, 24),
    (602, 25),
    (480, 25),
    (623, 25),
    (520, 25),
    (928, 25), // Arizona: no DST
    // Pacific
    (213, 26),
    (310, 26),
    (323, 26),
    (424, 26),
    (818, 26),
    (415, 26),
    (628, 26),
    (408, 26),
    (650, 26),
    (510, 26),
    (619, 26),
    (858, 26),
    (916, 26),
    (206, 26),
    (253, 26),
    (425, 26),
    (503, 26),
    (971, 26),
    (702, 26),
    (725, 26),
    (907, 27), // Alaska
    (808, 28), // Hawaii
    // Canada
    (416, 31),
    (647, 31),
    (437, 31),
    (905, 31),
    (289, 31),
    (613, 31),
    (343, 31),
    (514, 31),
    (438, 31),
    (450, 31),
    (418, 31),
    (819, 31),
    (604, 32),
    (778, 32),
    (236, 32),
    (250, 32),
    (403, 33),
    (587, 33),
    (780, 33),
    (825, 33),
    (204, 34),
    (431, 34),
    (306, 35),
    (639, 35), // Saskatchewan: no DST
    (902, 29),
    (782, 29),
    (506, 29), // Nova Scotia, PEI, New Brunswick
    (709, 30), // Newfoundland
];

/// Other countries by calling code, and their zone set.
const COUNTRIES: &[(&str, &str, ZoneSet)] = &[
    ("375", "BY", z(36)),
    ("380", "UA", z(37)),
    ("374", "AM", z(38)),
    ("995", "GE", z(39)),
    ("994", "AZ", z(40)),
    ("998", "UZ", z(41)),
    ("996", "KG", z(42)),
    ("992", "TJ", z(43)),
    ("993", "TM", z(44)),
    ("373", "MD", z(45)),
    ("371", "LV", z(46)),
    ("370", "LT", z(47)),
    ("372", "EE", z(48)),
    ("358", "FI", z(49)),
    ("49", "DE", z(50)),
    ("44", "GB", z(51)),
    ("33", "FR", z(52)),
    ("39", "IT", z(53)),
    ("48", "PL", z(54)),
    ("420", "CZ", z(55)),
    ("90", "TR", z(56)),
    ("972", "IL", z(57)),
    ("971", "AE", z(58)),
    ("86", "CN", z(59)),
    ("91", "IN", z(60)),
    // Spain: the Canary Islands are an hour behind the mainland.
    ("34", "ES", z(61) | z(62)),
];

/// What the table knows of a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// The number's region is known: these zones (usually one).
    Region(ZoneSet),
    /// The country is known but not the region: every zone of the country.
    CountryOnly(ZoneSet),
    /// A country the table does not cover.
    UnknownCountry,
}

/// The zone table, with the zones loaded (once per process).
pub struct ZoneTable {
    zones: Vec<TimeZone>,
    ru: [u8; 1000],
    nanp: [u8; 1000],
}

/// `u8::MAX`: no entry.
const NONE: u8 = u8::MAX;

impl ZoneTable {
    /// The shared table. Zones missing from the host's tzdb fall back to jiff's bundled copy.
    pub fn get() -> &'static ZoneTable {
        static T: OnceLock<ZoneTable> = OnceLock::new();
        T.get_or_init(|| {
            let mut ru = [NONE; 1000];
            for &(code, zone) in RU_ABC {
                ru[code as usize] = zone as u8;
            }
            for &code in RU_DEF_MOSCOW {
                ru[code as usize] = 1;
            }
            let mut nanp = [NONE; 1000];
            for &(code, zone) in NANP {
                nanp[code as usize] = zone as u8;
            }
            ZoneTable {
                zones: ZONES
                    .iter()
                    .map(|n| TimeZone::get(n).unwrap_or(TimeZone::UTC))
                    .collect(),
                ru,
                nanp,
            }
        })
    }

    /// The zone of bit `i`.
    pub fn zone(&self, i: usize) -> &TimeZone {
        &self.zones[i]
    }

    pub fn len(&self) -> usize {
        self.zones.len()
    }

    pub fn is_empty(&self) -> bool {
        self.zones.is_empty()
    }

    /// Where a normalised number is (digits, country code first).
    pub fn lookup(&self, number: &str) -> Lookup {
        let b = number.as_bytes();
        let code3 = |from: usize| -> Option<usize> {
            let d = b.get(from..from + 3)?;
            d.iter().all(u8::is_ascii_digit).then(|| {
                (d[0] - b'0') as usize * 100 + (d[1] - b'0') as usize * 10 + (d[2] - b'0') as usize
            })
        };
        match b.first() {
            Some(b'7') => match b.get(1) {
                Some(b'6' | b'7') => Lookup::Region(z(21)),
                Some(_) => match code3(1).map(|c| self.ru[c]) {
                    Some(i) if i != NONE => Lookup::Region(z(u32::from(i))),
                    _ => Lookup::CountryOnly(RUSSIA),
                },
                None => Lookup::UnknownCountry,
            },
            Some(b'1') => match code3(1).map(|c| self.nanp[c]) {
                Some(i) if i != NONE => Lookup::Region(z(u32::from(i))),
                _ => Lookup::CountryOnly(NANP_ALL),
            },
            _ => COUNTRIES
                .iter()
                .find(|(cc, _, _)| number.starts_with(cc))
                .map_or(Lookup::UnknownCountry, |&(_, _, set)| Lookup::Region(set)),
        }
    }

    /// The bit of an IANA zone name in the table, if it is one of [`ZONES`].
    pub fn index_of(name: &str) -> Option<usize> {
        ZONES.iter().position(|z| *z == name)
    }

    /// The IANA names in a set, for messages.
    pub fn names(set: ZoneSet) -> Vec<&'static str> {
        ZONES
            .iter()
            .enumerate()
            .filter(|(i, _)| set & (1 << i) != 0)
            .map(|(_, n)| *n)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_zone_is_in_the_tzdb_and_indexes_fit() {
        assert!(ZONES.len() <= 64);
        for n in ZONES {
            assert!(TimeZone::get(n).is_ok(), "{n}");
        }
        for &(_, i) in RU_ABC.iter().chain(NANP) {
            assert!((i as usize) < ZONES.len());
        }
        // Codes are listed once.
        let mut seen = std::collections::HashSet::new();
        for &(c, _) in RU_ABC {
            assert!(seen.insert(c), "RU {c} twice");
        }
        let mut seen = std::collections::HashSet::new();
        for &(c, _) in NANP {
            assert!(seen.insert(c), "NANP {c} twice");
        }
        assert_eq!(ZoneTable::names(RUSSIA).len(), 21);
        assert!(ZoneTable::names(RUSSIA)
            .iter()
            .all(|n| n.starts_with("Europe/") || n.starts_with("Asia/")));
        assert_eq!(ZoneTable::names(NANP_ALL).len(), 14);
    }

    #[test]
    fn lookups() {
        let t = ZoneTable::get();
        let one = |n: &str| match t.lookup(n) {
            Lookup::Region(s) => ZoneTable::names(s),
            other => panic!("{n}: {other:?}"),
        };
        assert_eq!(one("74951234567"), ["Europe/Moscow"]);
        assert_eq!(one("79161234567"), ["Europe/Moscow"]);
        assert_eq!(one("74232123456"), ["Asia/Vladivostok"]);
        assert_eq!(one("73432123456"), ["Asia/Yekaterinburg"]);
        assert_eq!(one("74012123456"), ["Europe/Kaliningrad"]);
        assert_eq!(one("74152123456"), ["Asia/Kamchatka"]);
        assert_eq!(one("77012345678"), ["Asia/Almaty"]);
        assert_eq!(one("12125550123"), ["America/New_York"]);
        assert_eq!(one("14155550123"), ["America/Los_Angeles"]);
        assert_eq!(one("375291234567"), ["Europe/Minsk"]);
        assert_eq!(one("34612345678"), ["Europe/Madrid", "Atlantic/Canary"]);
        // A Russian mobile outside Moscow's codes: all of Russia.
        assert_eq!(t.lookup("79141234567"), Lookup::CountryOnly(RUSSIA));
        assert_eq!(t.lookup("12995550123"), Lookup::CountryOnly(NANP_ALL));
        assert_eq!(t.lookup("5511912345678"), Lookup::UnknownCountry);
        assert_eq!(t.lookup("7"), Lookup::UnknownCountry);
        assert_eq!(t.lookup(""), Lookup::UnknownCountry);
    }

    #[test]
    fn zones_have_the_offsets_the_comments_say() {
        // A winter instant: no DST anywhere in Russia or Kazakhstan.
        let at: jiff::Timestamp = "2026-12-21T12:00:00Z".parse().unwrap();
        let t = ZoneTable::get();
        let off = |i: usize| t.zone(i).to_offset(at).seconds() / 3600;
        let want = [
            2, 3, 4, 4, 4, 4, 5, 6, 7, 7, 7, 7, 7, 8, 9, 9, 10, 11, 11, 12, 12, 5,
        ];
        for (i, w) in want.iter().enumerate() {
            assert_eq!(off(i), *w, "{}", ZONES[i]);
        }
    }
}
