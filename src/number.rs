//! Phone-number normalisation: every form of one number becomes the same string of international
//! digits without `+` (`79161234567`), so a miss, a later call from the customer, an agent's
//! outbound call and a callback all match.
//!
//! Normalisation is hand-written on purpose: the tracker runs it for every call, it follows the
//! `[pbx]` number plan of the configuration, and it must never wait for metadata. The *kind* of
//! a number (mobile, fixed line, premium rate...) and its country come from Google's
//! libphonenumber metadata through the [`phonenumber`] crate ([`classify`]), which only the
//! callback guard and check-config ask for; the metadata is decoded once, on first use.

/// How to read numbers of the PBX's country (from `[pbx]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberPlan {
    /// International country code, digits only (`7`).
    pub country_code: String,
    /// The trunk prefix dialled before a national number (`8` in Russia, `0` in most of Europe).
    pub national_prefix: String,
    /// Digits in a national significant number (10 in Russia); 0 = unknown.
    pub national_length: usize,
    /// Prefix dialled before an international number (`810` in Russia, `00` elsewhere).
    pub international_prefix: String,
}

impl Default for NumberPlan {
    fn default() -> Self {
        NumberPlan {
            country_code: "7".into(),
            national_prefix: "8".into(),
            national_length: 10,
            international_prefix: "810".into(),
        }
    }
}

/// Why a caller number cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotANumber {
    /// Empty, `<unknown>`, `anonymous`, `restricted`...: the caller withheld it.
    Withheld,
    /// Letters or other characters: never normalised, never dialled.
    Invalid,
}

impl NumberPlan {
    /// Normalises a caller/callee number. Separators (space, `-`, `(`, `)`, `.`) are ignored; a
    /// leading `+` means international. Short numbers (extensions) are returned as their digits.
    pub fn normalize(&self, raw: &str) -> Result<String, NotANumber> {
        let s = raw.trim();
        let lower = s.to_ascii_lowercase();
        if s.is_empty()
            || matches!(
                lower.as_str(),
                "<unknown>"
                    | "unknown"
                    | "anonymous"
                    | "restricted"
                    | "private"
                    | "unavailable"
                    | "withheld"
            )
        {
            return Err(NotANumber::Withheld);
        }
        let plus = s.starts_with('+');
        let mut digits = String::with_capacity(s.len());
        for (i, c) in s.char_indices() {
            match c {
                '0'..='9' => digits.push(c),
                '+' if i == 0 => {}
                ' ' | '-' | '(' | ')' | '.' => {}
                _ => return Err(NotANumber::Invalid),
            }
        }
        if digits.is_empty() {
            return Err(NotANumber::Invalid);
        }
        if plus {
            return Ok(digits);
        }
        let n = self.national_length;
        if !self.international_prefix.is_empty() && digits.len() > n + 2 {
            if let Some(rest) = digits.strip_prefix(&self.international_prefix) {
                return Ok(rest.to_string());
            }
        }
        if n > 0 {
            let cc = &self.country_code;
            let np = &self.national_prefix;
            if digits.len() == n + np.len() && !np.is_empty() && digits.starts_with(np.as_str()) {
                return Ok(format!("{cc}{}", &digits[np.len()..]));
            }
            if digits.len() == n + cc.len() && digits.starts_with(cc.as_str()) {
                return Ok(digits);
            }
            if digits.len() == n {
                return Ok(format!("{cc}{digits}"));
            }
        }
        Ok(digits)
    }

    /// `+79161234567` from the normalised form.
    pub fn e164(&self, normalized: &str) -> String {
        format!("+{normalized}")
    }

    /// `89161234567` for a number of this country; other countries get the international prefix.
    pub fn national(&self, normalized: &str) -> String {
        match normalized.strip_prefix(self.country_code.as_str()) {
            Some(rest) if self.national_length == 0 || rest.len() == self.national_length => {
                format!("{}{rest}", self.national_prefix)
            }
            _ => format!("{}{normalized}", self.international_prefix),
        }
    }
}

/// **The** display form of a customer's number, everywhere perezvon shows one: E.164 with `+`
/// (`+79161234567`) when the number normalised to a full international number (8 digits or
/// more: the country code is known), else the raw caller ID as Asterisk gave it (an extension,
/// a short code), or `(withheld)`. JSON output keeps the raw caller ID beside it.
pub fn display(normalized: Option<&str>, raw: Option<&str>) -> String {
    match (normalized, raw) {
        (Some(n), _) if n.len() >= 8 && n.bytes().all(|b| b.is_ascii_digit()) => format!("+{n}"),
        (_, Some(r)) if !r.trim().is_empty() => r.to_string(),
        (Some(n), None) if !n.is_empty() => n.to_string(),
        _ => "(withheld)".to_string(),
    }
}

/// The kind of a number, as libphonenumber's metadata tells it (`callback.allow_kinds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NumberKind {
    Mobile,
    FixedLine,
    /// Where the plan cannot tell the two apart (the US and Canada, +1): admitted by
    /// `allow_kinds` holding either `mobile` or `fixed_line`.
    FixedLineOrMobile,
    TollFree,
    PremiumRate,
    SharedCost,
    PersonalNumber,
    Voip,
    Pager,
    Uan,
    Voicemail,
}

impl NumberKind {
    /// Every kind with its config name.
    pub const ALL: [(&'static str, NumberKind); 11] = [
        ("mobile", NumberKind::Mobile),
        ("fixed_line", NumberKind::FixedLine),
        ("fixed_line_or_mobile", NumberKind::FixedLineOrMobile),
        ("toll_free", NumberKind::TollFree),
        ("premium_rate", NumberKind::PremiumRate),
        ("shared_cost", NumberKind::SharedCost),
        ("personal_number", NumberKind::PersonalNumber),
        ("voip", NumberKind::Voip),
        ("pager", NumberKind::Pager),
        ("uan", NumberKind::Uan),
        ("voicemail", NumberKind::Voicemail),
    ];

    pub fn parse(name: &str) -> Option<NumberKind> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, k)| *k)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NumberKind::Mobile => "mobile",
            NumberKind::FixedLine => "fixed_line",
            NumberKind::FixedLineOrMobile => "fixed_line_or_mobile",
            NumberKind::TollFree => "toll_free",
            NumberKind::PremiumRate => "premium_rate",
            NumberKind::SharedCost => "shared_cost",
            NumberKind::PersonalNumber => "personal_number",
            NumberKind::Voip => "voip",
            NumberKind::Pager => "pager",
            NumberKind::Uan => "uan",
            NumberKind::Voicemail => "voicemail",
        }
    }
}

impl std::fmt::Display for NumberKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What libphonenumber knows of a valid number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    pub kind: NumberKind,
    /// ISO 3166 alpha-2 (`RU`, `KZ`), `None` for a non-geographic code (satellite +881/+882,
    /// international freephone +800...).
    pub country: Option<String>,
    /// The international calling code (`7`).
    pub calling_code: u16,
}

/// Classifies a normalised number (international digits without `+`: `79161234567`) by
/// libphonenumber's metadata. `None` when it is not a valid number of any plan (too short, an
/// unassigned range, an extension).
///
/// The number is already split-ready, so it is not run through `phonenumber::parse`: that
/// parser (0.3.10) strips a national prefix even after `+` (`+7 800...` becomes `00...` with
/// Russia's trunk prefix 8), which would make every Russian number whose national part starts
/// with 8 invalid: 8-800, 8-809, and St Petersburg's 812. The calling code is split off here
/// (ITU codes are prefix-free, 1 to 3 digits), the region picked among those sharing the code
/// as libphonenumber does (leading digits, else the first plan the number fits), and the kind
/// read from that region's patterns.
pub fn classify(normalized: &str) -> Option<Classified> {
    if normalized.len() < 4
        || normalized.len() > 17
        || !normalized.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let db = &*phonenumber::metadata::DATABASE;
    let (code, national) = (1..=3).find_map(|len| {
        let code: u16 = normalized[..len].parse().ok()?;
        db.by_code(&code).map(|metas| (metas, &normalized[len..]))
    })?;
    let meta = code.iter().copied().find(|m| match m.leading_digits() {
        Some(lead) => lead.find(national).is_some_and(|x| x.start() == 0),
        None => kind_in(m, national).is_some(),
    })?;
    Some(Classified {
        kind: kind_in(meta, national)?,
        // Non-geographic plans (satellite +881/+882, freephone +800) are region "001".
        country: (meta.id() != "001").then(|| meta.id().to_string()),
        calling_code: meta.country_code(),
    })
}

/// The kind of a national number in one region's plan, in libphonenumber's order (costly
/// kinds first, fixed line and mobile last); `None` when the plan does not have it.
fn kind_in(meta: &phonenumber::Metadata, national: &str) -> Option<NumberKind> {
    let d = meta.descriptors();
    if !d.general().is_match(national) {
        return None;
    }
    let fits =
        |x: Option<&phonenumber::metadata::Descriptor>| x.is_some_and(|x| x.is_match(national));
    for (desc, kind) in [
        (d.premium_rate(), NumberKind::PremiumRate),
        (d.toll_free(), NumberKind::TollFree),
        (d.shared_cost(), NumberKind::SharedCost),
        (d.voip(), NumberKind::Voip),
        (d.personal_number(), NumberKind::PersonalNumber),
        (d.pager(), NumberKind::Pager),
        (d.uan(), NumberKind::Uan),
        (d.voicemail(), NumberKind::Voicemail),
    ] {
        if fits(desc) {
            return Some(kind);
        }
    }
    match (fits(d.fixed_line()), fits(d.mobile())) {
        (true, true) => Some(NumberKind::FixedLineOrMobile),
        (true, false) => {
            // A plan whose fixed and mobile patterns are one (the US) cannot tell them apart.
            let same = d.fixed_line().map(|x| x.national_number().as_str())
                == d.mobile().map(|x| x.national_number().as_str());
            Some(if same {
                NumberKind::FixedLineOrMobile
            } else {
                NumberKind::FixedLine
            })
        }
        (false, true) => Some(NumberKind::Mobile),
        (false, false) => None,
    }
}

/// `callback.allow_kinds` and `callback.allow_countries`: which kinds of numbers of which
/// countries may be called back. An empty list does not restrict; a set list refuses a number
/// libphonenumber does not know as valid.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KindGuard {
    pub kinds: Vec<NumberKind>,
    /// ISO 3166 alpha-2, upper case.
    pub countries: Vec<String>,
}

/// Why [`KindGuard`] refuses a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KindRefusal {
    /// Not a valid number of any numbering plan.
    Invalid,
    Kind(NumberKind),
    Country,
}

impl KindGuard {
    /// Whether the guard restricts anything (and so needs the metadata).
    pub fn is_active(&self) -> bool {
        !self.kinds.is_empty() || !self.countries.is_empty()
    }

    /// Checks a normalised number; loads the metadata only when the guard is active.
    pub fn check(&self, normalized: &str) -> Result<(), KindRefusal> {
        if !self.is_active() {
            return Ok(());
        }
        let c = classify(normalized).ok_or(KindRefusal::Invalid)?;
        if !self.kinds.is_empty() && !self.admits_kind(c.kind) {
            return Err(KindRefusal::Kind(c.kind));
        }
        if !self.countries.is_empty()
            && !c
                .country
                .as_ref()
                .is_some_and(|cc| self.countries.iter().any(|x| x == cc))
        {
            return Err(KindRefusal::Country);
        }
        Ok(())
    }

    fn admits_kind(&self, k: NumberKind) -> bool {
        self.kinds.contains(&k)
            || (k == NumberKind::FixedLineOrMobile
                && (self.kinds.contains(&NumberKind::Mobile)
                    || self.kinds.contains(&NumberKind::FixedLine)))
    }
}

/// Whether `code` is an ISO 3166 alpha-2 code libphonenumber has a numbering plan for.
pub fn is_known_country(code: &str) -> bool {
    code.parse::<phonenumber::country::Id>().is_ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_display_form() {
        use super::display;
        assert_eq!(
            display(Some("79161234567"), Some("89161234567")),
            "+79161234567"
        );
        assert_eq!(
            display(Some("79161234567"), Some("+79161234567")),
            "+79161234567"
        );
        assert_eq!(display(Some("79161234567"), None), "+79161234567");
        assert_eq!(display(Some("201"), Some("201")), "201");
        assert_eq!(display(None, Some("anonymous")), "anonymous");
        assert_eq!(display(None, None), "(withheld)");
    }

    use super::*;

    #[test]
    fn russian_forms_are_one_number() {
        let p = NumberPlan::default();
        for raw in [
            "89161234567",
            "79161234567",
            "+79161234567",
            "+7 (916) 123-45-67",
            "9161234567",
        ] {
            assert_eq!(p.normalize(raw), Ok("79161234567".into()), "{raw}");
        }
        assert_eq!(p.normalize("81049301234567"), Ok("49301234567".into()));
        assert_eq!(p.normalize("201"), Ok("201".into()));
    }

    #[test]
    fn withheld_and_invalid() {
        let p = NumberPlan::default();
        assert_eq!(p.normalize("<unknown>"), Err(NotANumber::Withheld));
        assert_eq!(p.normalize("anonymous"), Err(NotANumber::Withheld));
        assert_eq!(p.normalize(""), Err(NotANumber::Withheld));
        assert_eq!(p.normalize("7916abc"), Err(NotANumber::Invalid));
        assert_eq!(p.normalize("7916\r\n123"), Err(NotANumber::Invalid));
        assert_eq!(p.normalize("+"), Err(NotANumber::Invalid));
    }

    #[test]
    fn output_forms() {
        let p = NumberPlan::default();
        assert_eq!(p.e164("79161234567"), "+79161234567");
        assert_eq!(p.national("79161234567"), "89161234567");
        assert_eq!(p.national("49301234567"), "81049301234567");
    }

    #[test]
    fn kinds_and_countries_from_the_metadata() {
        let kind = |n: &str| classify(n).map(|c| (c.kind, c.country));
        let ru = Some("RU".to_string());
        assert_eq!(kind("79161234567"), Some((NumberKind::Mobile, ru.clone())));
        assert_eq!(
            kind("74951234567"),
            Some((NumberKind::FixedLine, ru.clone()))
        );
        // National parts starting with the trunk prefix 8 (phonenumber's parser drops it).
        assert_eq!(
            kind("78121234567"),
            Some((NumberKind::FixedLine, ru.clone()))
        );
        assert_eq!(
            kind("78001234567"),
            Some((NumberKind::TollFree, ru.clone()))
        );
        assert_eq!(kind("78091234567"), Some((NumberKind::PremiumRate, ru)));
        assert_eq!(
            kind("77012345678"),
            Some((NumberKind::Mobile, Some("KZ".to_string())))
        );
        assert_eq!(
            kind("12025550123").map(|k| k.1),
            Some(Some("US".to_string()))
        );
        assert_eq!(classify("8823451234567").and_then(|c| c.country), None);
        for not_a_number in ["3", "201", "7916", "", "7916abc", "79161234567123456789"] {
            assert_eq!(classify(not_a_number), None, "{not_a_number}");
        }
    }

    #[test]
    fn the_kind_guard() {
        let g = KindGuard {
            kinds: vec![NumberKind::Mobile, NumberKind::FixedLine],
            countries: vec!["RU".into(), "KZ".into()],
        };
        assert_eq!(g.check("79161234567"), Ok(()));
        assert_eq!(g.check("74951234567"), Ok(()));
        assert_eq!(g.check("77012345678"), Ok(()));
        assert_eq!(
            g.check("78091234567"),
            Err(KindRefusal::Kind(NumberKind::PremiumRate))
        );
        assert_eq!(
            g.check("78001234567"),
            Err(KindRefusal::Kind(NumberKind::TollFree))
        );
        assert_eq!(g.check("447911123456"), Err(KindRefusal::Country));
        assert_eq!(g.check("37491234567"), Err(KindRefusal::Country));
        assert_eq!(g.check("3"), Err(KindRefusal::Invalid));
        assert!(g.check("8823451234567").is_err());
        // +1 cannot tell mobile from fixed: either kind admits it.
        let us = KindGuard {
            kinds: vec![NumberKind::Mobile],
            countries: vec![],
        };
        assert_eq!(us.check("12025550123"), Ok(()));
        // An inactive guard admits anything and never touches the metadata.
        assert_eq!(KindGuard::default().check("3"), Ok(()));
        assert!(is_known_country("KZ") && !is_known_country("XX") && !is_known_country("ru"));
        for (name, k) in NumberKind::ALL {
            assert_eq!(NumberKind::parse(name), Some(k));
            assert_eq!(k.as_str(), name);
        }
    }
}
