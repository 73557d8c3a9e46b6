//! The reference setup of deploy/README.md on loopback, in the pieces its end-to-end
//! test (tests/reference_stack.rs, whose header lists every change made to the
//! shipped files) and its latency bench (benches/reference_latency.rs) share: the
//! shipped files with addresses and timers changed, the EC2 hosts behind moto, the
//! services' tasks behind dnsmasq with the services instance, promflow or Prometheus
//! on either side, and Slack and Pushover stand-ins for Alertmanager.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use super::dnsmasq::Dnsmasq;
use super::exporter::Exporter;
use super::fleet::{self, CpuHost, ServiceTask};
use super::moto::{self, Moto};
use super::receiver::{check_pushover_request, check_slack_request, CaptureServer, Captured};
use super::tls::TestPki;
use super::{free_port_on, repo_root, wait_until, NodeExporter, Peer, Prometheus, Promflow};
use serde_json::Value as Json;
use serde_yaml_ng::Value as Yaml;

/// How long a step of the setup may take.
pub const WAIT: Duration = Duration::from_secs(60);
/// The EC2 hosts: Name tag and private IP.
pub const HOSTS: [(&str, Ipv4Addr); 3] = [
    ("swarm-1", Ipv4Addr::new(127, 0, 0, 21)),
    ("swarm-2", Ipv4Addr::new(127, 0, 0, 22)),
    ("db-1", Ipv4Addr::new(127, 0, 0, 23)),
];
/// The tasks of myservice.
pub const TASKS: [Ipv4Addr; 3] = [
    Ipv4Addr::new(127, 0, 0, 31),
    Ipv4Addr::new(127, 0, 0, 32),
    Ipv4Addr::new(127, 0, 0, 33),
];

#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Side {
    Promflow,
    Prometheus,
}

/// promflow or Prometheus.
pub enum Server {
    Promflow(Promflow),
    Prometheus(Prometheus),
}

impl std::ops::Deref for Server {
    type Target = Peer;
    fn deref(&self) -> &Peer {
        match self {
            Server::Promflow(p) => p,
            Server::Prometheus(p) => p,
        }
    }
}

impl Server {
    /// Starts `side` on `config(None)`, then reloads it with `config(Some(own address))`
    /// and waits until its own target is scraped.
    pub fn start(
        side: Side,
        config: impl Fn(Option<&str>) -> String,
        promflow_args: &[&str],
        nameserver: Option<Ipv4Addr>,
    ) -> Server {
        let server = match side {
            Side::Promflow => {
                Server::Promflow(Promflow::start_with_args(&config(None), promflow_args))
            }
            Side::Prometheus => {
                Server::Prometheus(Prometheus::start_resolving(&config(None), &[], nameserver))
            }
        };
        let own = server.addr().to_string();
        server.write_config(&config(Some(&own)));
        server.sighup();
        assert!(
            wait_until(WAIT, || targets(&server)
                .iter()
                .any(|t| t.1 == own && t.2 == "up")),
            "{side:?} does not scrape itself after the reload: {:?}",
            targets(&server)
        );
        server
    }
}

/// (job, instance, health) of the active targets.
pub fn targets(server: &Peer) -> Vec<(String, String, String)> {
    let v: Json = serde_json::from_str(&server.get_ok("/api/v1/targets")).unwrap();
    v["data"]["activeTargets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let s = |v: &Json| v.as_str().unwrap_or_default().to_string();
            (
                s(&t["labels"]["job"]),
                s(&t["labels"]["instance"]),
                s(&t["health"]),
            )
        })
        .collect()
}

pub fn instances_of(server: &Peer, job: &str) -> BTreeSet<String> {
    targets(server)
        .into_iter()
        .filter(|t| t.0 == job && t.2 == "up")
        .map(|t| t.1)
        .collect()
}

// ---------------------------------------------------------------------------
// The shipped files, with addresses and timers changed

pub fn shipped(path: &str) -> Yaml {
    let text = std::fs::read_to_string(repo_root().join(path)).unwrap();
    serde_yaml_ng::from_str(&text).unwrap()
}

pub fn to_yaml(v: &Yaml) -> String {
    serde_yaml_ng::to_string(v).unwrap()
}

pub fn s(text: &str) -> Yaml {
    Yaml::String(text.to_string())
}

/// Every duration of `for:` and of a range selector, divided by 60 (minutes become
/// seconds, hours minutes).
pub fn scaled_rules(text: &str) -> String {
    let re = regex::Regex::new(r"(for: |\[)(\d+)([mh])\b").unwrap();
    re.replace_all(text, |c: &regex::Captures| {
        format!("{}{}{}", &c[1], &c[2], if &c[3] == "m" { "s" } else { "m" })
    })
    .into_owned()
}

pub fn one_second_timers(config: &mut Yaml) {
    for key in ["scrape_interval", "scrape_timeout", "evaluation_interval"] {
        config["global"][key] = s("1s");
    }
}

/// The scrape configs of `config` without `job`'s when `addr` is `None`, else with
/// its target set to `addr`.
pub fn set_own_target(config: &mut Yaml, job: &str, addr: Option<&str>) {
    let jobs = config["scrape_configs"].as_sequence_mut().unwrap();
    match addr {
        None => jobs.retain(|j| j["job_name"] != s(job)),
        Some(a) => {
            let j = jobs.iter_mut().find(|j| j["job_name"] == s(job)).unwrap();
            j["static_configs"][0]["targets"] = Yaml::Sequence(vec![s(a)]);
        }
    }
}

pub fn job_mut<'a>(config: &'a mut Yaml, job: &str) -> &'a mut Yaml {
    config["scrape_configs"]
        .as_sequence_mut()
        .unwrap()
        .iter_mut()
        .find(|j| j["job_name"] == s(job))
        .unwrap_or_else(|| panic!("no job {job}"))
}

/// Rule file paths made absolute: into `rules_dir` (scaled copies) or the repository.
pub fn rule_files(config: &mut Yaml, dir: &Path) {
    for f in config["rule_files"].as_sequence_mut().unwrap() {
        let name = Path::new(f.as_str().unwrap()).file_name().unwrap();
        *f = s(&dir.join(name).display().to_string());
    }
}

/// deploy/services.yml with 1s timers but `scrape_interval` (1s in the test).
pub fn services_config(own: Option<&str>, task_port: u16, scrape_interval: &str) -> String {
    let mut c = shipped("deploy/services.yml");
    one_second_timers(&mut c);
    c["global"]["scrape_interval"] = s(scrape_interval);
    rule_files(&mut c, &repo_root().join("queries"));
    set_own_target(&mut c, "promflow-services", own);
    let sd = &mut job_mut(&mut c, "myservice")["dns_sd_configs"][0];
    sd["port"] = Yaml::Number(task_port.into());
    sd["refresh_interval"] = s("1s");
    to_yaml(&c)
}

pub struct MainAddrs<'a> {
    pub rules_dir: &'a Path,
    pub services: String,
    /// Every Alertmanager main sends to.
    pub alertmanagers: Vec<String>,
    pub moto: &'a Moto,
    pub node_port: u16,
    pub cadvisor_port: u16,
}

pub fn main_config(own: Option<&str>, a: &MainAddrs) -> String {
    let mut c = shipped("deploy/main.yml");
    one_second_timers(&mut c);
    rule_files(&mut c, a.rules_dir);
    set_own_target(&mut c, "promflow-main", own);
    c["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] =
        Yaml::Sequence(a.alertmanagers.iter().map(|am| s(am)).collect());
    job_mut(&mut c, "federate-services")["static_configs"][0]["targets"] =
        Yaml::Sequence(vec![s(&a.services)]);
    for (job, shipped_port, port) in [
        ("node", 9100, a.node_port),
        ("cadvisor", 8080, a.cadvisor_port),
    ] {
        let j = job_mut(&mut c, job);
        let sd = &mut j["ec2_sd_configs"][0];
        sd["region"] = s(moto::REGION);
        sd["endpoint"] = s(&a.moto.endpoint());
        sd["access_key"] = s("test");
        sd["secret_key"] = s("test");
        sd["refresh_interval"] = s("5s");
        sd["port"] = Yaml::Number(port.into());
        for r in j["relabel_configs"].as_sequence_mut().unwrap() {
            if r["replacement"] == s(&format!("${{1}}:{shipped_port}")) {
                r["replacement"] = s(&format!("${{1}}:{port}"));
            }
        }
    }
    to_yaml(&c)
}

/// deploy/alertmanager.yml sending to `slack` and, through `pushover` (an
/// intercepting proxy with a certificate for api.pushover.net signed by `ca`), to
/// Pushover.
pub fn alertmanager_config(slack: &CaptureServer, pushover: &CaptureServer, ca: &str) -> String {
    let mut c = shipped("deploy/alertmanager.yml");
    c["global"]["slack_api_url"] = s(&slack.url("/services/T000/B000/XXXX"));
    c["templates"] = Yaml::Sequence(vec![s(&repo_root()
        .join("deploy/templates/*.tmpl")
        .display()
        .to_string())]);
    c["route"]["group_wait"] = s("1s");
    c["route"]["group_interval"] = s("2s");
    let receivers = c["receivers"].as_sequence_mut().unwrap();
    let pushover_receiver = receivers
        .iter_mut()
        .find(|r| r["pushover_configs"].is_sequence())
        .unwrap();
    let http: Yaml = serde_yaml_ng::from_str(&format!(
        "proxy_url: {}\ntls_config:\n  ca_file: {ca}\n",
        pushover.url("")
    ))
    .unwrap();
    pushover_receiver["pushover_configs"][0]["http_config"] = http;
    to_yaml(&c)
}

/// A Slack and a Pushover stand-in.
pub struct Receivers {
    pub slack: CaptureServer,
    pub pushover: CaptureServer,
}

impl Receivers {
    pub fn start(pki: &TestPki) -> Receivers {
        Receivers {
            slack: CaptureServer::start(),
            pushover: CaptureServer::start_tls_proxy(
                &pki.file("pushover.crt"),
                &pki.file("pushover.key"),
            ),
        }
    }

    pub fn config(&self, pki: &TestPki) -> String {
        alertmanager_config(&self.slack, &self.pushover, &pki.file("ca.crt"))
    }

    /// The Slack messages whose title starts with `prefix`, checked against Slack's format.
    pub fn slack_titled(&self, prefix: &str) -> Vec<Json> {
        self.slack
            .requests()
            .iter()
            .map(check_slack_request)
            .filter(|m| {
                m["attachments"][0]["title"]
                    .as_str()
                    .is_some_and(|t| t.starts_with(prefix))
            })
            .collect()
    }

    /// The Pushover messages whose title starts with `prefix`, checked against Pushover's API.
    pub fn pushover_titled(&self, prefix: &str) -> Vec<std::collections::BTreeMap<String, String>> {
        self.pushover
            .requests()
            .iter()
            .inspect(|r| assert_eq!(r.header("host"), Some("api.pushover.net")))
            .map(|r| check_pushover_request(&as_form(r)))
            .filter(|f| f.get("title").is_some_and(|t| t.starts_with(prefix)))
            .collect()
    }
}

/// Alertmanager 0.25 sends Pushover's parameters in the URL's query (an empty
/// `text/plain` POST, which Pushover's API accepts as well); the same request with
/// them as a form body, for [`check_pushover_request`].
pub fn as_form(request: &Captured) -> Captured {
    let mut r = request.clone();
    if let Some((path, query)) = request.path.split_once('?') {
        assert!(
            request.body.is_empty(),
            "parameters in the query and a body"
        );
        r.path = path.to_string();
        r.body = query.as_bytes().to_vec();
        r.headers.retain(|(k, _)| k != "content-type");
        r.headers.push((
            "content-type".into(),
            "application/x-www-form-urlencoded".into(),
        ));
    }
    r
}

/// Scaled copies ([`scaled_rules`]) of the rule files `deploy/main.yml` names, written
/// into `dir` (which must exist).
pub fn write_scaled_rules(dir: &Path) {
    for f in shipped("deploy/main.yml")["rule_files"]
        .as_sequence()
        .unwrap()
    {
        let path = repo_root().join("deploy").join(f.as_str().unwrap());
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(dir.join(path.file_name().unwrap()), scaled_rules(&text)).unwrap();
    }
}

/// The test CA with a certificate for api.pushover.net, for [`Receivers`].
pub fn pushover_pki() -> TestPki {
    let pki = TestPki::generate();
    pki.leaf(
        "pushover",
        "ca",
        "api.pushover.net",
        "subjectAltName=DNS:api.pushover.net\nextendedKeyUsage=serverAuth\n",
        2,
    );
    pki
}

/// The EC2 hosts of [`HOSTS`] in moto: a real node_exporter on swarm-1 and db-1, the
/// synthetic [`CpuHost`] on swarm-2, cAdvisor stand-ins on all three.
pub struct Ec2Hosts {
    pub moto: Moto,
    /// swarm-2's node exporter.
    pub cpu: CpuHost,
    pub node_port: u16,
    pub cadvisor_port: u16,
    _nodes: [NodeExporter; 2],
    _cadvisors: Vec<Exporter>,
}

impl Ec2Hosts {
    /// Starts them; `node_port` is also free on `more_ips` (hosts a caller adds).
    pub fn start(more_ips: &[Ipv4Addr]) -> Ec2Hosts {
        let host_ips: Vec<Ipv4Addr> = HOSTS.iter().map(|h| h.1).collect();
        let all: Vec<Ipv4Addr> = host_ips.iter().chain(more_ips).copied().collect();
        let node_port = free_port_on(&all);
        let at = |ip: Ipv4Addr, port: u16| SocketAddr::from((ip, port));
        let nodes = [
            NodeExporter::start_on(at(HOSTS[0].1, node_port)),
            NodeExporter::start_on(at(HOSTS[2].1, node_port)),
        ];
        let cpu = CpuHost::start(at(HOSTS[1].1, node_port)).expect("swarm-2 node exporter");
        let cadvisor_port = free_port_on(&host_ips);
        let cadvisors = host_ips
            .iter()
            .map(|ip| fleet::start_cadvisor(at(*ip, cadvisor_port)).expect("cadvisor"))
            .collect();
        let moto = Moto::start();
        for (name, ip) in HOSTS {
            moto.run_instance(&ip.to_string(), &[("Name", name)]);
        }
        Ec2Hosts {
            moto,
            cpu,
            node_port,
            cadvisor_port,
            _nodes: nodes,
            _cadvisors: cadvisors,
        }
    }
}

/// `tasks.myservice` resolving to `ips`, as lines of a hosts file.
pub fn tasks_hosts_file(ips: &[Ipv4Addr]) -> String {
    ips.iter()
        .map(|ip| format!("{ip} tasks.myservice\n"))
        .collect()
}

/// The services side: the tasks of myservice (in DNS as `tasks.myservice`) and the
/// services instance that finds and scrapes them.
pub struct ServicesSide {
    pub tasks: Vec<ServiceTask>,
    /// `ip:port` of each task.
    pub task_addrs: Vec<String>,
    pub dns: Dnsmasq,
    pub server: Server,
}

impl ServicesSide {
    /// Prometheus reads no resolver but /etc/resolv.conf's, so as the services
    /// instance its dnsmasq listens on port 53 (needs root). The services instance
    /// scrapes every `scrape_interval`.
    pub fn start(side: Side, scrape_interval: &str) -> ServicesSide {
        let task_port = free_port_on(&TASKS);
        let tasks: Vec<ServiceTask> = TASKS
            .iter()
            .map(|ip| ServiceTask::start(SocketAddr::from((*ip, task_port)), 60).expect("task"))
            .collect();
        let task_addrs = TASKS.iter().map(|ip| format!("{ip}:{task_port}")).collect();
        let dns = match side {
            Side::Promflow => Dnsmasq::start(&tasks_hosts_file(&TASKS), &[]),
            Side::Prometheus => Dnsmasq::start_port_53(&tasks_hosts_file(&TASKS)),
        };
        let nameserver_flag = format!("--discovery.dns.nameserver={}", dns.addr());
        let server = Server::start(
            side,
            |own| services_config(own, task_port, scrape_interval),
            &[&nameserver_flag],
            Some(dns.ip()),
        );
        ServicesSide {
            tasks,
            task_addrs,
            dns,
            server,
        }
    }
}
