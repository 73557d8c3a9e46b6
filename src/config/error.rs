//! `ConfigError` and `Problem`: everything wrong with a config file, located.
//!
//! A `ConfigError` is never a single failure: validation collects every problem
//! it finds before returning, and each `Problem` says where it is (file, line,
//! field path) so the user can fix them all in one pass.

use std::fmt;

/// One thing wrong with a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The config file's name as given to the loader (e.g. `prometheus.yml`).
    pub file: String,
    /// 1-based line of the offending field, when it could be located.
    pub line: Option<usize>,
    /// Field path such as `scrape_configs[1].scrape_timeout`; empty for
    /// problems of the whole file (e.g. a YAML syntax error).
    pub field: String,
    /// What is wrong, in Prometheus's words where Prometheus has words for it.
    pub message: String,
}

impl fmt::Display for Problem {
    /// `prometheus.yml:14: scrape_configs[0].scrape_timeout: <message>`; the
    /// line and field parts are left out when unknown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// A config file that could not be loaded, with every problem found in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// All problems, in the order of the file where they could be located.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    /// One problem per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, problem) in self.problems.iter().enumerate() {
            if index > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_one_problem_per_line() {
        let error = ConfigError {
            problems: vec![
                Problem {
                    file: "prometheus.yml".into(),
                    line: Some(14),
                    field: "scrape_configs[0].scrape_timeout".into(),
                    message: "scrape timeout 20s greater than scrape interval 10s".into(),
                },
                Problem {
                    file: "prometheus.yml".into(),
                    line: None,
                    field: String::new(),
                    message: "cannot read file".into(),
                },
            ],
        };
        assert_eq!(
            error.to_string(),
            "prometheus.yml:14: scrape_configs[0].scrape_timeout: scrape timeout 20s greater than scrape interval 10s\n\
             prometheus.yml: cannot read file"
        );
    }
}
