//! A validated AMI request: the only way anything perezvon sends reaches Asterisk.
//!
//! Why validate here and not in each caller: AMI has no escaping. A CR or LF inside a value starts
//! a new header (`Channel: x\r\nApplication: System` is header injection), Asterisk splits every
//! `Variable:` value on commas (`man_do_variable_value` -> `AST_STANDARD_APP_ARGS`), and it reads
//! each line into `char inbuf[1025]` (main/manager.c), so a longer line is cut and the rest parsed
//! as a new header. [`Action::encode`] refuses all three with an [`ActionError`] naming the header,
//! so an Originate built from a caller ID seen on the wire can never smuggle anything in.
//!
//! Building is infallible and cheap; validation runs once, in `encode`.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

/// Asterisk's per-line read buffer is 1025 bytes including the NUL: a line (CRLF included) must
/// stay strictly below this.
pub const MAX_LINE: usize = 1024;

/// Why an action cannot be sent. Every variant names the offending header, never its value
/// (a value may be a secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    #[error("action {action}: header name {name:?} is empty or contains ':', CR, LF or a space")]
    BadName { action: String, name: String },
    #[error("action {action}: value of {name} contains CR or LF (it would start a new header)")]
    LineBreak { action: String, name: String },
    #[error(
        "action {action}: Variable {name} contains a comma (Asterisk splits Variable values on commas; send one variable per header)"
    )]
    Comma { action: String, name: String },
    #[error("action {action}: Variable {name:?} needs a name without '=' (format name=value)")]
    BadVariable { action: String, name: String },
    #[error(
        "action {action}: line {name} is {len} bytes with CRLF; Asterisk reads at most {max} (shorten the value)",
        max = MAX_LINE - 1
    )]
    LineTooLong {
        action: String,
        name: String,
        len: usize,
    },
}

/// An AMI action under construction: `Action: <name>`, an optional `ActionID`, then headers in
/// the order they were added (`Variable` lines included, each one separate).
#[derive(Clone, PartialEq, Eq)]
pub struct Action {
    name: String,
    action_id: Option<Vec<u8>>,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Action {
    /// `Action::new("Originate")`.
    pub fn new(name: impl Into<String>) -> Action {
        Action {
            name: name.into(),
            action_id: None,
            headers: Vec::new(),
        }
    }

    /// Adds a header. Repeating a name adds another line (AMI keeps repeated keys in order).
    /// `ActionID` given here is the same as [`Action::action_id`].
    pub fn header(mut self, name: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Action {
        let (name, value) = (name.as_ref(), value.as_ref());
        if name.eq_ignore_ascii_case(b"ActionID") {
            self.action_id = Some(value.to_vec());
        } else {
            self.headers.push((name.to_vec(), value.to_vec()));
        }
        self
    }

    /// Adds a `Variable: name=value` line (one per variable: Asterisk splits on commas).
    pub fn variable(mut self, name: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Action {
        let mut v = name.as_ref().to_vec();
        v.push(b'=');
        v.extend_from_slice(value.as_ref());
        self.headers.push((b"Variable".to_vec(), v));
        self
    }

    /// Sets the `ActionID` (the client assigns a unique one when none is set).
    pub fn action_id(mut self, id: impl AsRef<[u8]>) -> Action {
        self.action_id = Some(id.as_ref().to_vec());
        self
    }

    /// The action's name (`Originate`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The `ActionID`, if one was set.
    pub fn id(&self) -> Option<&[u8]> {
        self.action_id.as_deref()
    }

    /// The first value of a header (case-insensitive name), as added.
    pub fn get(&self, name: &[u8]) -> Option<&[u8]> {
        if name.eq_ignore_ascii_case(b"ActionID") {
            return self.id();
        }
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// The wire form, `Action: X\r\nActionID: Y\r\n...\r\n\r\n`, or why it cannot be sent.
    pub fn encode(&self) -> Result<Bytes, ActionError> {
        let mut len = 12 + self.name.len() + 4;
        if let Some(id) = &self.action_id {
            len += 14 + id.len();
        }
        for (n, v) in &self.headers {
            len += n.len() + v.len() + 4;
        }
        let mut out = BytesMut::with_capacity(len);
        self.line(&mut out, b"Action", self.name.as_bytes())?;
        if let Some(id) = &self.action_id {
            self.line(&mut out, b"ActionID", id)?;
        }
        for (n, v) in &self.headers {
            self.line(&mut out, n, v)?;
        }
        out.put_slice(b"\r\n");
        Ok(out.freeze())
    }

    fn err_name(&self, name: &[u8]) -> (String, String) {
        (
            self.name.escape_debug().to_string(),
            String::from_utf8_lossy(name).escape_debug().to_string(),
        )
    }

    fn line(&self, out: &mut BytesMut, name: &[u8], value: &[u8]) -> Result<(), ActionError> {
        if name.is_empty()
            || name
                .iter()
                .any(|&b| matches!(b, b':' | b'\r' | b'\n' | b' ' | b'\t'))
        {
            let (action, name) = self.err_name(name);
            return Err(ActionError::BadName { action, name });
        }
        let is_var = name.eq_ignore_ascii_case(b"Variable");
        // Name the variable, not the header, when a Variable line is at fault: more useful.
        let label = if is_var {
            let eq = memchr::memchr(b'=', value).unwrap_or(value.len());
            let var = &value[..eq];
            if var.is_empty() || var.iter().any(|&b| matches!(b, b'\r' | b'\n')) {
                let (action, name) = self.err_name(var);
                return Err(ActionError::BadVariable { action, name });
            }
            var
        } else {
            name
        };
        if memchr::memchr2(b'\r', b'\n', value).is_some() {
            let (action, name) = self.err_name(label);
            return Err(ActionError::LineBreak { action, name });
        }
        if is_var && memchr::memchr(b',', value).is_some() {
            let (action, name) = self.err_name(label);
            return Err(ActionError::Comma { action, name });
        }
        let len = name.len() + 2 + value.len() + 2;
        if len >= MAX_LINE {
            let (action, name) = self.err_name(label);
            return Err(ActionError::LineTooLong { action, name, len });
        }
        out.put_slice(name);
        out.put_slice(b": ");
        out.put_slice(value);
        out.put_slice(b"\r\n");
        Ok(())
    }
}

impl fmt::Debug for Action {
    /// `Secret` and `Key` values print as `***`: a logged Login leaks nothing.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut l = f.debug_list();
        l.entry(&format_args!("Action: {}", self.name));
        if let Some(id) = &self.action_id {
            l.entry(&format_args!("ActionID: {}", String::from_utf8_lossy(id)));
        }
        super::message::debug_headers(
            &mut l,
            self.headers.iter().map(|(n, v)| (n.as_ref(), v.as_ref())),
        );
        l.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn originate_encodes_in_order_with_one_line_per_variable() {
        let a = Action::new("Originate")
            .action_id("cb-42")
            .header("Channel", "Local/89261112233@customer-sim")
            .header("Context", "callback")
            .variable("CALLBACK_ID", "cb-42")
            .variable("__CB_CUSTOMER", "89261112233")
            .header("Codecs", "alaw,ulaw")
            .header("Async", "true");
        assert_eq!(
            &a.encode().unwrap()[..],
            &b"Action: Originate\r\nActionID: cb-42\r\nChannel: Local/89261112233@customer-sim\r\n\
Context: callback\r\nVariable: CALLBACK_ID=cb-42\r\nVariable: __CB_CUSTOMER=89261112233\r\n\
Codecs: alaw,ulaw\r\nAsync: true\r\n\r\n"[..]
        );
    }

    #[test]
    fn actionid_header_is_the_action_id() {
        let a = Action::new("Ping").header("actionid", "x1");
        assert_eq!(a.id(), Some(&b"x1"[..]));
        assert_eq!(
            &a.encode().unwrap()[..],
            b"Action: Ping\r\nActionID: x1\r\n\r\n"
        );
    }

    #[test]
    fn empty_value_is_allowed() {
        let a = Action::new("Originate").header("Account", "");
        assert_eq!(
            &a.encode().unwrap()[..],
            b"Action: Originate\r\nAccount: \r\n\r\n"
        );
    }

    #[test]
    fn refusals_table() {
        let long = "x".repeat(1024 - "Data: ".len() - 2);
        let fits = "x".repeat(1024 - "Data: ".len() - 3);
        let long_var = "x".repeat(1024 - "Variable: V=".len() - 2);
        type Check = fn(&ActionError) -> bool;
        let cases: Vec<(&str, Action, Option<Check>)> = vec![
            (
                "CR in value",
                Action::new("Originate").header("Channel", "PJSIP/1\rApplication: System"),
                Some(|e| matches!(e, ActionError::LineBreak { name, .. } if name == "Channel")),
            ),
            (
                "LF in value",
                Action::new("Originate").header("CallerID", "a\nApplication: System"),
                Some(|e| matches!(e, ActionError::LineBreak { .. })),
            ),
            (
                "CRLF in variable value",
                Action::new("Originate").variable("X", "1\r\nApplication: System"),
                Some(|e| matches!(e, ActionError::LineBreak { name, .. } if name == "X")),
            ),
            (
                "LF in variable name",
                Action::new("Originate").variable("X\nY", "1"),
                Some(|e| matches!(e, ActionError::BadVariable { .. })),
            ),
            (
                "empty variable name",
                Action::new("Originate").variable("", "1"),
                Some(|e| matches!(e, ActionError::BadVariable { .. })),
            ),
            (
                "comma in variable",
                Action::new("Originate").variable("LIST", "a,b"),
                Some(|e| matches!(e, ActionError::Comma { name, .. } if name == "LIST")),
            ),
            (
                "comma in a Variable given as header",
                Action::new("Originate").header("variable", "A=1,B=2"),
                Some(|e| matches!(e, ActionError::Comma { name, .. } if name == "A")),
            ),
            (
                "CR in header name",
                Action::new("Originate").header("Chan\rnel", "x"),
                Some(|e| matches!(e, ActionError::BadName { .. })),
            ),
            (
                "colon in header name",
                Action::new("Originate").header("Channel:", "x"),
                Some(|e| matches!(e, ActionError::BadName { .. })),
            ),
            (
                "empty header name",
                Action::new("Originate").header("", "x"),
                Some(|e| matches!(e, ActionError::BadName { .. })),
            ),
            (
                "LF in action name",
                Action::new("Ping\nAction: Logoff"),
                Some(|e| matches!(e, ActionError::LineBreak { .. })),
            ),
            (
                "LF in action id",
                Action::new("Ping").action_id("1\n"),
                Some(|e| matches!(e, ActionError::LineBreak { name, .. } if name == "ActionID")),
            ),
            (
                "line of exactly 1024 bytes",
                Action::new("Originate").header("Data", &long),
                Some(|e| matches!(e, ActionError::LineTooLong { len: 1024, .. })),
            ),
            (
                "variable line of 1024 bytes",
                Action::new("Originate").variable("V", &long_var),
                Some(|e| matches!(e, ActionError::LineTooLong { name, .. } if name == "V")),
            ),
            (
                "line of 1023 bytes is fine",
                Action::new("Originate").header("Data", &fits),
                None,
            ),
            (
                "comma outside Variable is fine",
                Action::new("Originate").header("Codecs", "alaw,ulaw"),
                None,
            ),
            (
                "equals sign in variable value is fine",
                Action::new("Originate").variable("X", "a=b"),
                None,
            ),
        ];
        for (what, action, want) in cases {
            match (action.encode(), want) {
                (Ok(_), None) => {}
                (Err(e), Some(check)) => assert!(check(&e), "{what}: unexpected {e:?}"),
                (Ok(b), Some(_)) => panic!("{what}: accepted {b:?}"),
                (Err(e), None) => panic!("{what}: refused: {e}"),
            }
        }
    }

    #[test]
    fn errors_and_debug_never_show_values() {
        let a = Action::new("Login")
            .header("Username", "listener")
            .header("Secret", "hunter2\n");
        let e = a.encode().unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(e.to_string().contains("Secret"), "{e}");
        assert!(!format!("{a:?}").contains("hunter2"));
    }

    #[test]
    fn encoded_action_decodes_back() {
        let a = Action::new("Originate")
            .action_id("7")
            .header("Channel", "Local/1@x")
            .variable("A", "1")
            .variable("B", "2");
        let (msgs, stats) = crate::ami::codec::decode_all(&a.encode().unwrap());
        assert_eq!(stats.problems(), 0);
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].kind(), crate::ami::Kind::Action);
        assert_eq!(msgs[0].action_id(), Some(&b"7"[..]));
        let vars: Vec<_> = msgs[0].get_all(b"Variable").collect();
        assert_eq!(vars, vec![&b"A=1"[..], b"B=2"]);
    }
}
