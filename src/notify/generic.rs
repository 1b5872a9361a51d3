//! `[[notify.http]]`: a request built from templates, for SMS gateways and whatever else takes
//! a plain HTTP call. The URL's placeholders are percent-encoded, the body's are escaped for its
//! `content_type` (JSON string, form value, or as is). 2xx is delivery; 408 and 5xx are retried,
//! 429 after its `Retry-After`; any other 4xx is permanent.

use reqwest::header::{HeaderName, HeaderValue, CONTENT_TYPE};

use super::http;
use super::template::{render, Escape, Values};
use super::DeliveryError;
use crate::config::HttpNotifierConfig;

/// One request, filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Built {
    pub url: reqwest::Url,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Option<String>,
}

/// The URL, headers and body of one request (pure).
pub fn build(cfg: &HttpNotifierConfig, values: &Values) -> Result<Built, DeliveryError> {
    // The templates were rendered with sample values at load; a failure here is a defect of a
    // value, reported without the URL (it may hold an API key).
    let url = render(cfg.url.expose(), values, Escape::Url).map_err(DeliveryError::Permanent)?;
    let url = reqwest::Url::parse(&url)
        .map_err(|e| DeliveryError::Permanent(format!("the filled-in URL is not valid: {e}")))?;
    let mut headers = Vec::new();
    for (name, value) in &cfg.headers {
        let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value.expose()),
        ) else {
            return Err(DeliveryError::Permanent(format!(
                "header {name:?} is not valid"
            )));
        };
        headers.push((n, v));
    }
    let body = match &cfg.body {
        Some(b) => Some(
            render(b, values, Escape::for_body(cfg.body_kind)).map_err(DeliveryError::Permanent)?,
        ),
        None => None,
    };
    Ok(Built { url, headers, body })
}

/// Sends one event.
pub async fn send(
    client: &reqwest::Client,
    cfg: &HttpNotifierConfig,
    values: &Values,
) -> Result<(), DeliveryError> {
    let Built { url, headers, body } = build(cfg, values)?;
    let mut req = client.request(cfg.method.clone(), url);
    for (n, v) in headers {
        req = req.header(n, v);
    }
    if let Some(body) = body {
        req = req
            .header(CONTENT_TYPE, cfg.content_type.as_str())
            .body(body);
    }
    let answer = http::send(req).await?;
    http::classify(&format!("http {}", cfg.name), &answer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn url_and_body_are_escaped_by_place() {
        let cfg = Config::from_toml(
            "[[notify.http]]\nname = \"sms\"\nurl = \"https://sms.example/send?to={number}&msg={text}\"\n\
             headers = { X-Key = \"k\" }\nbody = '{\"to\": \"{number}\", \"text\": \"{text}\"}'\n",
        )
        .unwrap();
        let h = &cfg.notify.http[0];
        let mut values = Values::sample();
        values.0.insert("number", "+79161234567".into());
        values.0.insert("text", "a \"b\"&c".into());
        let b = build(h, &values).unwrap();
        assert_eq!(
            b.url.as_str(),
            "https://sms.example/send?to=%2B79161234567&msg=a%20%22b%22%26c"
        );
        assert_eq!(b.headers[0].0.as_str(), "x-key");
        let body: serde_json::Value = serde_json::from_str(b.body.as_deref().unwrap()).unwrap();
        assert_eq!(body["text"], "a \"b\"&c");
    }
}
