//! Phone-number normalisation: every form of one number becomes the same string of international
//! digits without `+` (`79161234567`), so a miss, a later call from the customer, an agent's
//! outbound call and a callback all match.

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
}
