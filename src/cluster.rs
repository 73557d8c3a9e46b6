//! A promflow cluster of processes (`--cluster.processes`, `--cluster.process-id`,
//! `--cluster.hostfile`): which process this is, where the others are, and which
//! targets are this process's to scrape.
//!
//! Contract:
//! - [`Cluster::from_flags`] checks the three flags together; one process (the
//!   default) needs no hostfile. The hostfile is timely's: one `host:port` per line,
//!   process `i` on line `i` (blank lines and `#` comments skipped), where the
//!   dataflow's exchange listens; a line may go on, after a space, with that process's
//!   HTTP base URL (`http://host:9090`), through which the others read its storage.
//! - [`Cluster::owns`]: placement by rendezvous (highest random weight) hashing of a
//!   target's identity. Every process computes the same owner for a target from the
//!   target alone, so each target is scraped by exactly one process; going from N to
//!   N + 1 processes moves only the targets the new process wins, about 1/(N + 1).
//! - [`Cluster::peer_urls`]: the other processes' HTTP base URLs, for queries that
//!   read the whole cluster's storage.

use std::path::Path;
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// One process of the cluster, as its hostfile line gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Process {
    /// `host:port` of its dataflow exchange (timely's networking).
    pub exchange: String,
    /// Its HTTP base URL, when the hostfile gives one.
    pub web: Option<String>,
}

/// This process's place in the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cluster {
    /// This process's index.
    pub process_id: usize,
    /// Every process, by index (one entry, without addresses, for a single process).
    pub processes: Vec<Process>,
}

/// Why the cluster flags do not go together.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClusterError {
    /// `--cluster.processes 0`.
    #[error("--cluster.processes must be at least 1")]
    NoProcesses,
    /// The id is not below the count.
    #[error("--cluster.process-id {id} is not below --cluster.processes {processes}")]
    IdOutOfRange {
        /// `--cluster.process-id`.
        id: usize,
        /// `--cluster.processes`.
        processes: usize,
    },
    /// Several processes without a hostfile.
    #[error("--cluster.processes {0} needs --cluster.hostfile (one host:port line per process)")]
    NoHostfile(usize),
    /// The hostfile cannot be read.
    #[error("--cluster.hostfile: {error}")]
    Unreadable {
        /// The file.
        path: String,
        /// Go's wording of the failure (`open /x: no such file or directory`).
        error: String,
    },
    /// A line that is not `host:port [url]`.
    #[error("--cluster.hostfile {path}:{line}: {what}")]
    BadLine {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        what: String,
    },
    /// Fewer or more process lines than processes.
    #[error(
        "--cluster.hostfile {path} lists {listed} processes, --cluster.processes is {processes}"
    )]
    Count {
        /// The file.
        path: String,
        /// Process lines found.
        listed: usize,
        /// `--cluster.processes`.
        processes: usize,
    },
}

impl Cluster {
    /// One process on its own (no flags given).
    pub fn single() -> Cluster {
        Cluster {
            process_id: 0,
            processes: vec![Process {
                exchange: String::new(),
                web: None,
            }],
        }
    }

    /// The cluster the flags describe (see the module doc).
    pub fn from_flags(
        processes: usize,
        process_id: usize,
        hostfile: Option<&Path>,
    ) -> Result<Cluster, ClusterError> {
        if processes == 0 {
            return Err(ClusterError::NoProcesses);
        }
        if process_id >= processes {
            return Err(ClusterError::IdOutOfRange {
                id: process_id,
                processes,
            });
        }
        let Some(path) = hostfile else {
            if processes > 1 {
                return Err(ClusterError::NoHostfile(processes));
            }
            return Ok(Cluster::single());
        };
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ClusterError::Unreadable {
            path: shown.clone(),
            error: crate::os_error::path_error("open", path, &e),
        })?;
        let listed = parse_hostfile(&text).map_err(|(line, what)| ClusterError::BadLine {
            path: shown.clone(),
            line,
            what,
        })?;
        if listed.len() != processes {
            return Err(ClusterError::Count {
                path: shown,
                listed: listed.len(),
                processes,
            });
        }
        Ok(Cluster {
            process_id,
            processes: listed,
        })
    }

    /// Whether there is more than this process.
    pub fn is_multi(&self) -> bool {
        self.processes.len() > 1
    }

    /// The process that owns the target of `identity` (rendezvous hashing).
    pub fn owner(&self, identity: u64) -> usize {
        (0..self.processes.len())
            .max_by_key(|&p| (xxh3_64_with_seed(&identity.to_le_bytes(), p as u64), p))
            .unwrap_or(0)
    }

    /// Whether this process scrapes the target of `identity`.
    pub fn owns(&self, identity: u64) -> bool {
        !self.is_multi() || self.owner(identity) == self.process_id
    }

    /// The other processes' HTTP base URLs that the hostfile gives.
    pub fn peer_urls(&self) -> Vec<&str> {
        self.processes
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != self.process_id)
            .filter_map(|(_, p)| p.web.as_deref())
            .collect()
    }
}

/// The processes of a hostfile, or the 1-based line and what is wrong with it.
fn parse_hostfile(text: &str) -> Result<Vec<Process>, (usize, String)> {
    let mut out = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut fields = line.split_whitespace();
        let exchange = fields.next().unwrap_or_default();
        let valid_exchange = exchange
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !valid_exchange {
            return Err((index + 1, format!("{exchange:?} is not host:port")));
        }
        let web = fields
            .next()
            .map(|url| url.trim_end_matches('/').to_string());
        if let Some(url) = &web {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err((index + 1, format!("{url:?} is not an http or https URL")));
            }
        }
        if let Some(extra) = fields.next() {
            return Err((index + 1, format!("unexpected {extra:?} after the URL")));
        }
        out.push(Process {
            exchange: exchange.to_string(),
            web,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(n: usize, id: usize) -> Cluster {
        Cluster {
            process_id: id,
            processes: (0..n)
                .map(|i| Process {
                    exchange: format!("127.0.0.1:{}", 2101 + i),
                    web: Some(format!("http://127.0.0.1:{}", 9091 + i)),
                })
                .collect(),
        }
    }

    #[test]
    fn each_target_has_one_owner_and_growing_moves_about_one_in_n() {
        let targets: Vec<u64> = (0..3000u64)
            .map(|i| xxh3_64_with_seed(&i.to_le_bytes(), 7))
            .collect();
        for n in 1..=4 {
            for &t in &targets {
                let owners = (0..n).filter(|&i| cluster(n, i).owns(t)).count();
                assert_eq!(owners, 1);
            }
        }
        // 3 → 4 processes: only targets the new process wins move, about a quarter.
        let (three, four) = (cluster(3, 0), cluster(4, 0));
        let moved: Vec<&u64> = targets
            .iter()
            .filter(|&&t| three.owner(t) != four.owner(t))
            .collect();
        assert!(moved.iter().all(|&&t| four.owner(t) == 3));
        let share = moved.len() as f64 / targets.len() as f64;
        assert!((0.2..0.3).contains(&share), "{share}");
        // Spread evenly enough.
        for p in 0..4 {
            let mine = targets.iter().filter(|&&t| four.owner(t) == p).count();
            assert!((600..900).contains(&mine), "process {p}: {mine}");
        }
    }

    #[test]
    fn hostfile_lines_and_flag_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts");
        std::fs::write(
            &path,
            "# three processes\n127.0.0.1:2101 http://127.0.0.1:9091/\n\n127.0.0.1:2102\nhost-c:2103 https://c:9090 # c\n",
        )
        .unwrap();
        let c = Cluster::from_flags(3, 1, Some(&path)).unwrap();
        assert_eq!(c.processes.len(), 3);
        assert_eq!(c.processes[0].web.as_deref(), Some("http://127.0.0.1:9091"));
        assert_eq!(c.processes[1].web, None);
        assert_eq!(c.peer_urls(), ["http://127.0.0.1:9091", "https://c:9090"]);
        assert_eq!(
            Cluster::from_flags(2, 0, Some(&path))
                .unwrap_err()
                .to_string(),
            format!(
                "--cluster.hostfile {} lists 3 processes, --cluster.processes is 2",
                path.display()
            )
        );
        assert_eq!(
            Cluster::from_flags(2, 2, None).unwrap_err(),
            ClusterError::IdOutOfRange {
                id: 2,
                processes: 2
            }
        );
        assert_eq!(
            Cluster::from_flags(2, 0, None).unwrap_err(),
            ClusterError::NoHostfile(2)
        );
        assert_eq!(Cluster::from_flags(1, 0, None).unwrap(), Cluster::single());
        std::fs::write(&path, "127.0.0.1:2101\nlocalhost\n").unwrap();
        assert_eq!(
            Cluster::from_flags(2, 0, Some(&path))
                .unwrap_err()
                .to_string(),
            format!(
                "--cluster.hostfile {}:2: \"localhost\" is not host:port",
                path.display()
            )
        );
        let missing = dir.path().join("none");
        assert!(Cluster::from_flags(2, 0, Some(&missing))
            .unwrap_err()
            .to_string()
            .contains("no such file or directory"));
    }
}
