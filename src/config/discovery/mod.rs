//! Service discovery configs: the `static_configs` and `<mechanism>_sd_configs` of a
//! scrape job or an `alerting.alertmanagers[]` entry (Prometheus 2.42's fields,
//! defaults, load-time checks and printing).
//!
//! **Adding a mechanism** is one file and one line: the file (`mod` it below) holds its
//! entry as written, resolved and printed, and implements [`SdEntry`] for the resolved
//! entry (its raw type, `resolve`, and the providers a list of them runs as); one line
//! in the `sd_configs!` list below names its key, that type and its arm of
//! [`SdConfig`]. The list generates [`SdConfig`], the one enum the discovery manager
//! dispatches on (for scrape jobs and for the Alertmanager resolver alike),
//! [`ServiceDiscoveryConfigs`] (a section's entries, printed by key as Prometheus
//! prints them), and [`RawSdConfigs`] (the keys read inline from a section's mapping in
//! the same pass as its own fields, so unknown keys and the mechanisms promflow lacks
//! are still reported) with its resolve loop. The provider that runs it goes into
//! `crate::discovery`, with the arm that starts it in `discovery/manager.rs`.
//!
//! This module owns the types and their validation; it never resolves a name, reads a
//! target file or calls an API (that is `crate::discovery`). Messages are Prometheus's
//! where it has one (checked with `promtool check config` 2.42).

mod dns_sd;
mod ec2_sd;
mod file_sd;
mod static_sd;

pub use dns_sd::{DnsRecordType, DnsSdConfig, DEFAULT_DNS_SD_REFRESH_INTERVAL};
pub use ec2_sd::{Ec2Filter, Ec2SdConfig, DEFAULT_EC2_SD_PORT, DEFAULT_EC2_SD_REFRESH_INTERVAL};
pub use file_sd::{FileSdConfig, DEFAULT_FILE_SD_REFRESH_INTERVAL};
pub use static_sd::StaticConfig;

use std::path::Path;
use std::time::Duration;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use super::duration::parse_duration;
use super::inline::{impl_inline_fields, Inline};
use super::locate::FieldPath;
use super::raw::ScalarText;
use super::validate::Problems;

/// A mechanism's resolved entry: one element of its list.
pub(crate) trait SdEntry: Clone + Serialize + Sized {
    /// The entry as written.
    type Raw;

    /// Resolves an entry of the section described by `section` (null entries are
    /// reported by the list), adding its problems.
    fn resolve(
        raw: &Self::Raw,
        section: &SdSection<'_>,
        path: &FieldPath,
        problems: &mut Problems,
    ) -> Self;

    /// The providers the discovery manager runs for a section's list of them.
    fn providers(entries: &[Self]) -> Vec<SdConfig>;
}

/// What resolving an entry may depend on besides the entry: the section holding it.
pub(crate) struct SdSection<'a> {
    /// The config file's directory, which relative paths are resolved against.
    pub base_dir: &'a Path,
    /// Whether the section has `relabel_configs` (without, Prometheus checks the
    /// static targets' addresses at load time).
    pub relabeled: bool,
}

/// Declares the mechanisms, from one list of them; see the module's documentation.
macro_rules! sd_configs {
    ($($(#[$doc:meta])* $key:ident: $entry:ty => $variant:ident($provider:ty),)*) => {
        /// What one discovery provider runs: the mechanisms promflow supports, one arm
        /// each. The discovery manager starts one provider per value (and keeps it
        /// across reloads while the value is equal); scrape jobs and Alertmanager
        /// entries both get theirs from [`ServiceDiscoveryConfigs::providers`].
        #[derive(Clone, Debug, PartialEq)]
        pub enum SdConfig {
            $($(#[$doc])* $variant($provider),)*
        }

        /// The service discovery configs of a scrape job or an Alertmanager entry:
        /// each mechanism's entries as listed, defaults applied.
        #[derive(Clone, Debug, Default, PartialEq)]
        pub struct ServiceDiscoveryConfigs {
            $(#[doc = concat!("`", stringify!($key), "`.")] pub $key: Vec<$entry>,)*
        }

        impl ServiceDiscoveryConfigs {
            /// The providers to run, mechanism by mechanism in the list's order (static
            /// configs first, as before), each mechanism's entries as listed.
            pub fn providers(&self) -> Vec<SdConfig> {
                let mut out = Vec::new();
                $(out.extend(<$entry as SdEntry>::providers(&self.$key));)*
                out
            }
        }

        impl Serialize for ServiceDiscoveryConfigs {
            /// Every list that has entries, by key, as Prometheus prints them.
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut keys = [$(stringify!($key)),*];
                keys.sort_unstable();
                let mut map = serializer.serialize_map(None)?;
                for key in keys {
                    $(if key == stringify!($key) && !self.$key.is_empty() {
                        map.serialize_entry(key, &self.$key)?;
                    })*
                }
                map.end()
            }
        }

        /// The service discovery configs of a section as written, read inline from its
        /// mapping ([`WithSdConfigs`]).
        #[derive(Debug, Default)]
        pub(crate) struct RawSdConfigs {
            $(pub $key: Option<Vec<Option<<$entry as SdEntry>::Raw>>>,)*
        }

        impl_inline_fields!(RawSdConfigs { $($key),* });

        impl RawSdConfigs {
            /// Resolves every list of the section at `path`.
            pub(crate) fn resolve(
                &self,
                section: &SdSection<'_>,
                path: &FieldPath,
                problems: &mut Problems,
            ) -> ServiceDiscoveryConfigs {
                ServiceDiscoveryConfigs {
                    $($key: resolve_list(
                        stringify!($key),
                        self.$key.as_deref(),
                        section,
                        path,
                        problems,
                    ),)*
                }
            }
        }
    };
}

sd_configs! {
    /// Every `static_configs` entry of a section: one provider for all, as Prometheus.
    static_configs: StaticConfig => Static(Vec<StaticConfig>),
    /// One `file_sd_configs` entry.
    file_sd_configs: FileSdConfig => File(FileSdConfig),
    /// One `dns_sd_configs` entry.
    dns_sd_configs: DnsSdConfig => Dns(DnsSdConfig),
    /// One `ec2_sd_configs` entry.
    ec2_sd_configs: Ec2SdConfig => Ec2(Box<Ec2SdConfig>),
}

/// The entries of list `key` of the section at `path`; a null entry is Prometheus's
/// `empty or null section`.
fn resolve_list<E: SdEntry>(
    key: &str,
    raw: Option<&[Option<E::Raw>]>,
    section: &SdSection<'_>,
    path: &FieldPath,
    problems: &mut Problems,
) -> Vec<E> {
    let path = path.key(key);
    let mut out = Vec::new();
    for (index, entry) in raw.unwrap_or(&[]).iter().enumerate() {
        let entry_path = path.index(index);
        match entry {
            None => problems.push(entry_path, format!("empty or null section in {key}")),
            Some(entry) => out.push(E::resolve(entry, section, &entry_path, problems)),
        }
    }
    out
}

/// A section of the file (`T`, serde-derived) whose mapping also holds its service
/// discovery configs (read as `config/inline.rs` says).
pub(crate) type WithSdConfigs<T> = Inline<T, RawSdConfigs>;

impl<T> WithSdConfigs<T> {
    /// The section's service discovery configs as written.
    pub(crate) fn sd_configs(&self) -> &RawSdConfigs {
        &self.inline
    }
}

fn text(value: &Option<ScalarText>) -> String {
    value.as_ref().map(|v| v.0.clone()).unwrap_or_default()
}

/// A refresh interval: absent or zero means the default (a zero interval cannot tick).
fn refresh_interval(
    raw: &Option<ScalarText>,
    default: Duration,
    path: &FieldPath,
    problems: &mut Problems,
) -> Duration {
    let Some(raw) = raw else { return default };
    match parse_duration(&raw.0) {
        Ok(duration) if duration.is_zero() => default,
        Ok(duration) => duration,
        Err(message) => {
            problems.push(path.clone(), message.to_string());
            default
        }
    }
}

/// A port number; Prometheus reads any integer, promflow says up front that
/// values outside 0..=65535 cannot be reached.
fn port(raw: &Option<ScalarText>, default: u16, path: &FieldPath, problems: &mut Problems) -> u16 {
    let Some(raw) = raw else { return default };
    match raw.0.parse::<i64>() {
        Ok(port) if (0..=65535).contains(&port) => port as u16,
        Ok(port) => {
            problems.push(path.clone(), format!("port {port} is not in 0..65535"));
            default
        }
        Err(_) => {
            problems.push(
                path.clone(),
                format!("cannot unmarshal {:?} into a port number", raw.0),
            );
            default
        }
    }
}
