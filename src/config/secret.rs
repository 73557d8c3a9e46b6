//! `Secret`: a string (password, bearer credentials) that never prints.
//!
//! Debug, Display and Serialize all write `<secret>`, as Prometheus does in
//! `/api/v1/status/config`; only [`Secret::expose`] hands out the value, so
//! reading a secret is always a visible, greppable act.

use std::fmt;

use serde::{Serialize, Serializer};

/// What a secret prints as, everywhere.
pub const REDACTED: &str = "<secret>";

/// A secret string from the config file, redacted whenever it is printed.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret value itself, for the code that sends it (e.g. an HTTP header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_the_value() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret}"), "<secret>");
        assert_eq!(format!("{secret:?}"), "<secret>");
        assert_eq!(
            serde_yaml_ng::to_string(&secret).unwrap().trim(),
            "<secret>"
        );
        assert_eq!(secret.expose(), "hunter2");
    }
}
