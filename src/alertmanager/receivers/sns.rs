//! Amazon SNS: the `Publish` call of Alertmanager 0.25's `notify/sns`, made with the
//! AWS SDK (SigV4-signed), to `api_url` (a template; the SDK's regional endpoint when
//! empty).
//!
//! The call: `TopicArn` (a FIFO topic, name ending `.fifo`, also gets
//! `MessageDeduplicationId` and `MessageGroupId`, both the SHA-256 of the group key
//! in hex), `PhoneNumber`, `TargetArn` (each a template, sent when configured),
//! `Message` cut to 256 KiB, or 1600 bytes with a phone number (at a character
//! boundary — Alertmanager cuts inside a character), with the message attribute
//! `truncated: true` when cut, `Subject` unless configured empty, and `attributes`
//! (keys and values templates) as `String` message attributes.
//!
//! Credentials: `sigv4.access_key`/`secret_key` when both set, else the SDK's
//! default chain (environment, `sigv4.profile` or the default profile, web identity,
//! IMDS, ECS); `sigv4.role_arn` is assumed through STS (at STS's own endpoint, not
//! `api_url`). The region is `sigv4.region` or the chain's; without one the send
//! fails and may be retried, as Alertmanager's. An SNS error answer is classified by
//! its status (5xx may be retried); no answer may be retried. A template error fails
//! for good (Alertmanager 0.25 ignores it and publishes the empty text).
//!
//! Config checks as Alertmanager's: exactly one, or all three, of `topic_arn`,
//! `phone_number` and `target_arn` (its XOR check); `sigv4.access_key` and
//! `secret_key` together. `send_resolved` defaults to true. Not supported:
//! `http_config` (the SDK uses its own client, with the system's CA roots).

use super::{group_key_hash, Expander, Failure, RequestError, SendError};
use super::{Delivery, ReceiverKind};
use crate::alertmanager::config::template_or;
use crate::alertmanager::config::Globals;
use crate::alertmanager::config_show::{
    insert_nonempty, insert_text, notifier_head, sorted_map, string, SECRET,
};
use crate::alertmanager::template::{Data, Templates};
use crate::config::HttpClientConfig;
use crate::config::{FieldPath, Problems, Secret, TlsConfig};
use crate::http_client::{aws_config_loader, aws_http_client, default_client, error_chain};
use aws_sdk_sns::error::SdkError;
use aws_sdk_sns::types::MessageAttributeValue;
use serde::Deserialize;
use serde_yaml_ng::{Mapping, Value as YamlValue};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// SNS's message limit, in bytes.
const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// An SMS's limit, in bytes.
const MAX_SMS_BYTES: usize = 1600;

/// One `Publish` call.
#[derive(Clone, Debug, PartialEq)]
pub struct Publish {
    /// The endpoint (empty: the SDK's).
    pub api_url: String,
    /// `sigv4`.
    pub sigv4: Sigv4,
    /// `TopicArn`.
    pub topic_arn: Option<String>,
    /// `PhoneNumber`.
    pub phone_number: Option<String>,
    /// `TargetArn`.
    pub target_arn: Option<String>,
    /// `Subject`.
    pub subject: Option<String>,
    /// `Message`.
    pub message: String,
    /// `MessageAttributes` (all `String`).
    pub attributes: BTreeMap<String, String>,
    /// `MessageDeduplicationId` and `MessageGroupId` (FIFO topics).
    pub fifo_id: Option<String>,
}

/// The call for `data` in the group `group_key`.
pub fn request(
    c: &SnsConfig,
    templates: &Templates,
    data: &Data,
    group_key: &str,
) -> Result<Box<Publish>, RequestError> {
    let mut t = Expander::new(templates, data);
    let api_url = t.expand(&c.api_url);
    let mut attributes: BTreeMap<String, String> = c
        .attributes
        .iter()
        .map(|(k, v)| (t.expand(k), t.expand(v)))
        .collect();
    let mut limit = MAX_MESSAGE_BYTES;
    let mut fifo_id = None;
    let topic_arn = (!c.topic_arn.is_empty()).then(|| t.expand(&c.topic_arn));
    if topic_arn.as_deref().is_some_and(|a| a.ends_with(".fifo")) {
        fifo_id = Some(group_key_hash(group_key));
    }
    let phone_number = (!c.phone_number.is_empty()).then(|| t.expand(&c.phone_number));
    if phone_number.is_some() {
        limit = MAX_SMS_BYTES;
    }
    let target_arn = (!c.target_arn.is_empty()).then(|| t.expand(&c.target_arn));
    let mut message = t.expand(&c.message);
    if message.len() > limit {
        let mut end = limit;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        attributes.insert("truncated".into(), "true".into());
    }
    let subject = (!c.subject.is_empty()).then(|| t.expand(&c.subject));
    t.finish()?;
    Ok(Box::new(Publish {
        api_url,
        sigv4: c.sigv4.clone(),
        topic_arn,
        phone_number,
        target_arn,
        subject,
        message,
        attributes,
        fifo_id,
    }))
}

/// Publishes once.
pub async fn send(p: &Publish, timeout: Duration) -> Result<(), SendError> {
    let client = client(p, timeout).await?;
    let attributes = p
        .attributes
        .iter()
        .map(|(k, v)| {
            let value = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(v)
                .build()
                .map_err(|e| SendError::Permanent(Failure::SnsAttribute(e)))?;
            Ok((k.clone(), value))
        })
        .collect::<Result<_, SendError>>()?;
    let result = client
        .publish()
        .set_topic_arn(p.topic_arn.clone())
        .set_phone_number(p.phone_number.clone())
        .set_target_arn(p.target_arn.clone())
        .set_subject(p.subject.clone())
        .message(&p.message)
        .set_message_attributes(Some(attributes))
        .set_message_deduplication_id(p.fifo_id.clone())
        .set_message_group_id(p.fifo_id.clone())
        .send()
        .await;
    match result {
        Ok(_) => Ok(()),
        Err(e) => {
            let reason = error_chain(&e);
            let status = match &e {
                SdkError::ServiceError(s) => Some(s.raw().status().as_u16()),
                SdkError::ResponseError(r) => Some(r.raw().status().as_u16()),
                _ => None,
            };
            // Alertmanager's Retrier on SNS's answer: 5xx may be retried, any other
            // status may not; no answer may be retried.
            match status {
                Some(status) if !(500..600).contains(&status) => {
                    Err(SendError::Permanent(Failure::SnsStatus { status, reason }))
                }
                _ => Err(SendError::Retryable(Failure::SnsPublish { reason })),
            }
        }
    }
}

/// An SNS client for `p`'s endpoint, region and credentials.
async fn client(p: &Publish, timeout: Duration) -> Result<aws_sdk_sns::Client, SendError> {
    let s = &p.sigv4;
    let credentials = (!s.access_key.is_empty() && !s.secret_key.expose().is_empty())
        .then(|| (s.access_key.as_str(), s.secret_key.expose()));
    let http = default_client().map_err(|e| SendError::Permanent(Failure::Client(e)))?;
    let loader = || {
        aws_config_loader(
            aws_http_client(http.clone(), None),
            &s.region,
            &s.profile,
            credentials,
            timeout,
            "sns_configs",
        )
    };
    let mut builder = loader();
    if !p.api_url.is_empty() {
        builder = builder.endpoint_url(&p.api_url);
    }
    let mut config = builder.load().await;
    if config.region().is_none() {
        return Err(SendError::Retryable(Failure::SnsRegion));
    }
    if !s.role_arn.is_empty() {
        let sts = loader().load().await;
        let provider = aws_config::sts::AssumeRoleProvider::builder(&s.role_arn)
            .session_name("promflow")
            .configure(&sts)
            .build()
            .await;
        config = config
            .into_builder()
            .credentials_provider(aws_sdk_sns::config::SharedCredentialsProvider::new(
                provider,
            ))
            .build();
    }
    Ok(aws_sdk_sns::Client::new(&config))
}

/// An entry as Alertmanager 0.25 shows it (`crate::alertmanager::config_show`):
/// defaults filled in, the secret key as `<secret>`, unset fields left out.
pub(crate) fn show(c: &YamlValue) -> Mapping {
    let mut m = notifier_head(c, true);
    insert_nonempty(&mut m, c, &["api_url"]);
    let mut sigv4 = Mapping::new();
    let written = &c["sigv4"];
    insert_nonempty(&mut sigv4, written, &["region", "access_key"]);
    if written
        .get("secret_key")
        .and_then(string)
        .is_some_and(|k| !k.is_empty())
    {
        sigv4.insert("secret_key".into(), SECRET.into());
    }
    insert_nonempty(&mut sigv4, written, &["profile", "role_arn"]);
    m.insert("sigv4".into(), YamlValue::Mapping(sigv4));
    insert_nonempty(&mut m, c, &["topic_arn", "phone_number", "target_arn"]);
    insert_text(&mut m, c, "subject", defaults::SUBJECT);
    insert_text(&mut m, c, "message", defaults::MESSAGE);
    if let Some(attributes) = sorted_map(&c["attributes"]) {
        m.insert("attributes".into(), attributes);
    }
    m
}

// ---------------------------------------------------------------------------
// Config

/// Alertmanager 0.25's default texts of an SNS config (`DefaultSNSConfig`).
pub mod defaults {
    /// `subject`.
    pub const SUBJECT: &str = r#"{{ template "sns.default.subject" . }}"#;
    /// `message`.
    pub const MESSAGE: &str = r#"{{ template "sns.default.message" . }}"#;
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawSigv4 {
    region: Option<String>,
    access_key: Option<String>,
    secret_key: Option<String>,
    profile: Option<String>,
    role_arn: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawSns {
    send_resolved: Option<bool>,
    api_url: Option<String>,
    sigv4: Option<RawSigv4>,
    topic_arn: Option<String>,
    phone_number: Option<String>,
    target_arn: Option<String>,
    subject: Option<String>,
    message: Option<String>,
    attributes: Option<BTreeMap<String, String>>,
}

/// `sigv4` (prometheus/common's `SigV4Config`).
#[derive(Clone, Debug, PartialEq)]
pub struct Sigv4 {
    /// `region`.
    pub region: String,
    /// `access_key`.
    pub access_key: String,
    /// `secret_key`.
    pub secret_key: Secret,
    /// `profile`.
    pub profile: String,
    /// `role_arn`.
    pub role_arn: String,
}

/// `sns_configs` entry.
#[derive(Clone, Debug)]
pub struct SnsConfig {
    /// Defaults to true.
    pub send_resolved: bool,
    /// Template.
    pub api_url: String,
    /// `sigv4`.
    pub sigv4: Sigv4,
    /// Template.
    pub topic_arn: String,
    /// Template.
    pub phone_number: String,
    /// Template.
    pub target_arn: String,
    /// Template.
    pub subject: String,
    /// Template.
    pub message: String,
    /// Keys and values are templates.
    pub attributes: BTreeMap<String, String>,
    /// Always the default (no `http_config`).
    pub tls_config: TlsConfig,
}

/// Resolves one `sns_configs` entry, adding its problems.
pub(crate) fn resolve(c: &RawSns, path: &FieldPath, p: &mut Problems) -> SnsConfig {
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let (topic_arn, phone_number, target_arn) = (
        text(&c.topic_arn),
        text(&c.phone_number),
        text(&c.target_arn),
    );
    if (target_arn.is_empty() != topic_arn.is_empty()) != phone_number.is_empty() {
        p.push(
            path.clone(),
            "must provide either a Target ARN, Topic ARN, or Phone Number for SNS config",
        );
    }
    let raw = c.sigv4.as_ref();
    let field = |f: fn(&RawSigv4) -> &Option<String>| raw.map(f).map(text).unwrap_or_default();
    let sigv4 = Sigv4 {
        region: field(|s| &s.region),
        access_key: field(|s| &s.access_key),
        secret_key: Secret::new(field(|s| &s.secret_key)),
        profile: field(|s| &s.profile),
        role_arn: field(|s| &s.role_arn),
    };
    if sigv4.access_key.is_empty() != sigv4.secret_key.expose().is_empty() {
        p.push(
            path.key("sigv4"),
            "must provide a AWS SigV4 Access key and Secret Key if credentials are specified in the SigV4 config",
        );
    }
    SnsConfig {
        send_resolved: c.send_resolved.unwrap_or(true),
        api_url: text(&c.api_url),
        sigv4,
        topic_arn,
        phone_number,
        target_arn,
        subject: template_or(&c.subject, defaults::SUBJECT),
        message: template_or(&c.message, defaults::MESSAGE),
        attributes: c.attributes.clone().unwrap_or_default(),
        tls_config: Default::default(),
    }
}

impl ReceiverKind for SnsConfig {
    type Raw = RawSns;
    const NAME: &'static str = "sns";
    const COUNTED_FROM_START: bool = true;

    fn resolve(
        raw: &RawSns,
        _global: &Globals,
        _base: &Path,
        path: &FieldPath,
        p: &mut Problems,
    ) -> SnsConfig {
        resolve(raw, path, p)
    }

    fn request(
        &self,
        templates: &Templates,
        data: &Data,
        group_key: &str,
    ) -> Result<Delivery, RequestError> {
        request(self, templates, data, group_key).map(Delivery::Sns)
    }

    fn http_config(&self) -> Option<&HttpClientConfig> {
        None
    }

    fn send_resolved(&self) -> bool {
        self.send_resolved
    }

    fn show(entry: &YamlValue, _global: &YamlValue) -> Mapping {
        show(entry)
    }
}
