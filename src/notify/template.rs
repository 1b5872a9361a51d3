//! `[[notify.http]]` templates: `{name}` placeholders (see [`super::text::NAMES`]) filled in with
//! the escaping the place needs. Only `{` + a lowercase name + `}` is a placeholder, so the braces
//! of a JSON body need no escaping; an unknown name is an error, caught when the file is loaded.

pub use super::text::Values;
use super::text::NAMES;
use crate::config::BodyKind;

/// The hint of a template problem.
pub const HINT: &str =
    "placeholders: {number} {number_digits} {event} {event_id} {time} {wait_s} {lost_at} {callee} {agent} {server} {outcome} {resolved_by} {text}";

/// How a value is written into the template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// Percent-encoded (URLs and form bodies).
    Url,
    /// The inside of a JSON string (the template writes the quotes).
    Json,
    /// As it is.
    None,
}

impl Escape {
    pub fn for_body(kind: BodyKind) -> Escape {
        match kind {
            BodyKind::Json => Escape::Json,
            BodyKind::Form => Escape::Url,
            BodyKind::Text => Escape::None,
        }
    }
}

/// Fills in `template`. Errors name the unknown placeholder.
pub fn render(template: &str, values: &Values, escape: Escape) -> Result<String, String> {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let name_len = after
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(after.len());
        if name_len > 0 && after[name_len..].starts_with('}') {
            let name = &after[..name_len];
            if !NAMES.contains(&name) {
                return Err(format!("unknown placeholder {{{name}}}"));
            }
            let value = values.get(name).unwrap_or("");
            match escape {
                Escape::Url => percent_encode(value, &mut out),
                Escape::Json => json_escape(value, &mut out),
                Escape::None => out.push_str(value),
            }
            rest = &after[name_len + 1..];
        } else {
            out.push('{');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// RFC 3986 unreserved characters stay, every other byte is `%XX` (a space too: it is valid in
/// a query and in a form body alike).
fn percent_encode(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

fn json_escape(s: &str, out: &mut String) {
    // serde_json writes a quoted string; the quotes are the template's.
    let q = serde_json::Value::String(s.to_string()).to_string();
    out.push_str(&q[1..q.len() - 1]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn values() -> Values {
        let mut m = BTreeMap::new();
        m.insert("number", "+79161234567".to_string());
        m.insert("text", "Пропущен \"звонок\"\n& ещё".to_string());
        Values(m)
    }

    #[test]
    fn escapes_by_place() {
        let v = values();
        assert_eq!(
            render("https://sms.example/send?to={number}&msg={text}", &v, Escape::Url).unwrap(),
            "https://sms.example/send?to=%2B79161234567&msg=%D0%9F%D1%80%D0%BE%D0%BF%D1%83%D1%89%D0%B5%D0%BD%20%22%D0%B7%D0%B2%D0%BE%D0%BD%D0%BE%D0%BA%22%0A%26%20%D0%B5%D1%89%D1%91"
        );
        let json = render(
            "{\"to\": \"{number}\", \"text\": \"{text}\"}",
            &v,
            Escape::Json,
        )
        .unwrap();
        let back: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(back["text"], "Пропущен \"звонок\"\n& ещё");
        assert_eq!(back["to"], "+79161234567");
        assert_eq!(
            render("{text}", &v, Escape::None).unwrap(),
            "Пропущен \"звонок\"\n& ещё"
        );
    }

    #[test]
    fn braces_that_are_not_placeholders_stay() {
        let v = values();
        assert_eq!(
            render("{} {\"a\":{\"b\":1}} {", &v, Escape::Json).unwrap(),
            "{} {\"a\":{\"b\":1}} {"
        );
        assert_eq!(
            render("{nmuber}", &v, Escape::Json).unwrap_err(),
            "unknown placeholder {nmuber}"
        );
        // A known name without a value is empty, never the placeholder itself.
        assert_eq!(render("[{agent}]", &v, Escape::Url).unwrap(), "[]");
    }
}
