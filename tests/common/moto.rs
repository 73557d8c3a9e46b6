//! A real EC2 API for discovery tests: `moto_server` (PyPI `moto[server]`) on a free
//! port of 127.0.0.1, plus a small aws-sdk-ec2 client to create, stop and terminate
//! instances in it. [`spawn_moto`] and [`sdk_config`] serve other AWS APIs (SNS).
//!
//! The binary is `$MOTO_SERVER_BIN` (set by `.ci/test`), else `<repo>/.venv/bin/moto_server`;
//! if neither exists the test panics with the install command. Instances get private
//! IPs in a 127.0.0.0/24 subnet, so every address promflow scrapes is on loopback.

use std::path::{Path, PathBuf};

use aws_sdk_ec2::config::{BehaviorVersion, Credentials, Region, SharedCredentialsProvider};
use aws_sdk_ec2::types::{
    AttributeBooleanValue, InstanceType, ResourceType, Tag, TagSpecification,
};
use aws_sdk_ec2::Client;

use super::{spawn_peer, Peer};

pub const REGION: &str = "us-east-1";
pub const AVAILABILITY_ZONE: &str = "us-east-1a";
/// The AMI moto's catalog has (the one the Prometheus oracle sample used).
pub const AMI: &str = "ami-03cf127a";

/// Where `moto_server` is, or a panic that says how to install it.
pub fn moto_server_bin() -> PathBuf {
    let bin = std::env::var_os("MOTO_SERVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| super::repo_root().join(".venv/bin/moto_server"));
    if !bin.exists() {
        panic!(
            "moto_server is missing ({}): run `bash .ci/test`, or `python3 -m venv .venv && \
             .venv/bin/pip install 'moto[server]'` in the repository root, or set MOTO_SERVER_BIN",
            bin.display()
        );
    }
    bin
}

/// A running moto_server with a VPC and a 127.0.0.0/24 subnet made in it.
pub struct Moto {
    peer: Peer,
    runtime: tokio::runtime::Runtime,
    client: Client,
    pub vpc_id: String,
    pub subnet_id: String,
}

impl std::ops::Deref for Moto {
    type Target = Peer;
    fn deref(&self) -> &Peer {
        &self.peer
    }
}

/// A bare moto_server (every AWS API it mocks, nothing created), ready to answer.
pub fn spawn_moto() -> Peer {
    let bin = moto_server_bin();
    let dir = tempfile::Builder::new()
        .prefix("moto-test-")
        .tempdir()
        .expect("temp dir");
    spawn_peer(
        "moto_server",
        Path::new(&bin),
        dir,
        "/moto-api/",
        |_, addr| {
            vec![
                "-H".into(),
                addr.ip().to_string(),
                "-p".into(),
                addr.port().to_string(),
            ]
        },
    )
}

/// What an AWS SDK client of `moto` needs: its endpoint, [`REGION`], test keys.
pub fn sdk_config(moto: &Peer) -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(moto.url(""))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "test", "test", None, None, "test",
        )))
        .http_client(promflow::http_client::aws_http_client(
            promflow::http_client::default_client().expect("HTTP client"),
            None,
        ))
        .build()
}

impl Moto {
    pub fn start() -> Moto {
        let peer = spawn_moto();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = Client::new(&sdk_config(&peer));
        let (vpc_id, subnet_id) = runtime.block_on(async {
            let vpc = client
                .create_vpc()
                .cidr_block("127.0.0.0/16")
                .send()
                .await
                .expect("CreateVpc");
            let vpc_id = vpc.vpc().and_then(|v| v.vpc_id()).unwrap().to_string();
            let subnet = client
                .create_subnet()
                .vpc_id(&vpc_id)
                .cidr_block("127.0.0.0/24")
                .availability_zone(AVAILABILITY_ZONE)
                .send()
                .await
                .expect("CreateSubnet");
            let subnet_id = subnet
                .subnet()
                .and_then(|s| s.subnet_id())
                .unwrap()
                .to_string();
            // Public IPs too, so every label Prometheus sets is there (never contacted).
            client
                .modify_subnet_attribute()
                .subnet_id(&subnet_id)
                .map_public_ip_on_launch(AttributeBooleanValue::builder().value(true).build())
                .send()
                .await
                .expect("ModifySubnetAttribute");
            (vpc_id, subnet_id)
        });
        Moto {
            peer,
            runtime,
            client,
            vpc_id,
            subnet_id,
        }
    }

    /// The endpoint for `ec2_sd_configs[].endpoint`.
    pub fn endpoint(&self) -> String {
        self.peer.url("")
    }

    /// Launches one instance at `private_ip` with `tags`; returns its id.
    pub fn run_instance(&self, private_ip: &str, tags: &[(&str, &str)]) -> String {
        let mut request = self
            .client
            .run_instances()
            .image_id(AMI)
            .instance_type(InstanceType::T3Micro)
            .min_count(1)
            .max_count(1)
            .subnet_id(&self.subnet_id)
            .private_ip_address(private_ip);
        if !tags.is_empty() {
            let mut spec = TagSpecification::builder().resource_type(ResourceType::Instance);
            for (key, value) in tags {
                spec = spec.tags(Tag::builder().key(*key).value(*value).build());
            }
            request = request.tag_specifications(spec.build());
        }
        let out = self.runtime.block_on(request.send()).expect("RunInstances");
        out.instances()[0].instance_id().unwrap().to_string()
    }

    pub fn stop_instance(&self, id: &str) {
        self.runtime
            .block_on(self.client.stop_instances().instance_ids(id).send())
            .expect("StopInstances");
    }

    pub fn terminate_instance(&self, id: &str) {
        self.runtime
            .block_on(self.client.terminate_instances().instance_ids(id).send())
            .expect("TerminateInstances");
    }
}
