//! The AWS SDK's HTTP side: its config loader and its HTTP client, sending every SDK
//! request (the API, STS, the credential providers) through one of
//! [`super::build_client`]'s clients, so a section's `tls_config`, proxy and redirect
//! settings hold for the SDK as for every other client.

use super::{error_chain, OAuth2Tokens, TlsSetupError, TokenError};
use crate::config::OAuth2;

/// The AWS SDK's config loader for one of promflow's AWS clients (EC2 discovery, the
/// SNS receiver): every request of the SDK (the API, STS, the credential providers)
/// goes through `http` ([`aws_http_client`]), `timeout` per operation, and `region`,
/// `profile` and static `credentials` (access and secret key) where set; the SDK's
/// default chain supplies the rest. `source` names the static credentials in the
/// SDK's logs.
pub fn aws_config_loader(
    http: aws_smithy_runtime_api::client::http::SharedHttpClient,
    region: &str,
    profile: &str,
    credentials: Option<(&str, &str)>,
    timeout: std::time::Duration,
    source: &'static str,
) -> aws_config::ConfigLoader {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http)
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .operation_timeout(timeout)
                .build(),
        );
    if !region.is_empty() {
        loader = loader.region(aws_config::Region::new(region.to_string()));
    }
    if !profile.is_empty() {
        loader = loader.profile_name(profile);
    }
    if let Some((access_key, secret_key)) = credentials {
        loader = loader.credentials_provider(aws_sdk_ec2::config::Credentials::new(
            access_key, secret_key, None, None, source,
        ));
    }
    loader
}

/// The AWS SDK's HTTP client on `client` (one of [`build_client`]'s, so its
/// `tls_config`, proxy and redirect settings hold), as Prometheus 2.42 hands the AWS
/// SDK its prometheus/common client. With `oauth2`, a token replaces the request's
/// (SigV4) `Authorization`, as golang.org/x/oauth2's transport does there.
pub fn aws_http_client(
    client: reqwest::Client,
    oauth2: Option<OAuth2>,
) -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_runtime_api::client::http::{http_client_fn, SharedHttpConnector};
    let connector = SharedHttpConnector::new(AwsConnector { client, oauth2 });
    http_client_fn(move |_, _| connector.clone())
}

/// [`aws_http_client`]'s connector: one SDK request, sent through reqwest.
#[derive(Debug)]
struct AwsConnector {
    client: reqwest::Client,
    oauth2: Option<OAuth2>,
}

impl aws_smithy_runtime_api::client::http::HttpConnector for AwsConnector {
    fn call(
        &self,
        request: aws_smithy_runtime_api::client::orchestrator::HttpRequest,
    ) -> aws_smithy_runtime_api::client::http::HttpConnectorFuture {
        let client = self.client.clone();
        let oauth2 = self.oauth2.clone();
        aws_smithy_runtime_api::client::http::HttpConnectorFuture::new(async move {
            send_aws_request(&client, oauth2.as_ref(), request).await
        })
    }
}

/// Why [`send_aws_request`] refused a request before or after sending it (the SDK's
/// "user error"). Each kind shows the text of what it wraps, and no source: the SDK
/// error chain (`error_chain`) reads as it did when these were strings.
#[derive(Debug, thiserror::Error)]
enum AwsRequestError {
    #[error("{0}")]
    Method(<reqwest::Method as std::str::FromStr>::Err),
    #[error("streaming request bodies are not supported")]
    StreamingBody,
    /// The request does not build; shown with its source chain.
    #[error("{}", error_chain(.0))]
    Build(reqwest::Error),
    #[error("{0}")]
    OAuth2Setup(TlsSetupError),
    #[error("{0}")]
    Token(TokenError),
    #[error("{0}")]
    AuthorizationHeader(reqwest::header::InvalidHeaderValue),
    #[error("{0}")]
    Status(aws_smithy_runtime_api::http::HttpError),
}

async fn send_aws_request(
    client: &reqwest::Client,
    oauth2: Option<&OAuth2>,
    request: aws_smithy_runtime_api::client::orchestrator::HttpRequest,
) -> Result<
    aws_smithy_runtime_api::client::orchestrator::HttpResponse,
    aws_smithy_runtime_api::client::result::ConnectorError,
> {
    use aws_smithy_runtime_api::client::result::ConnectorError;
    use aws_smithy_runtime_api::http::StatusCode;
    let user_error = |e: AwsRequestError| ConnectorError::user(e.into());
    let method = reqwest::Method::from_bytes(request.method().as_bytes())
        .map_err(|e| user_error(AwsRequestError::Method(e)))?;
    // EC2, STS and SNS send query-protocol forms: the body is always in memory.
    let body = request
        .body()
        .bytes()
        .ok_or_else(|| user_error(AwsRequestError::StreamingBody))?
        .to_vec();
    let mut builder = client.request(method, request.uri()).body(body);
    for (name, value) in request.headers() {
        builder = builder.header(name, value);
    }
    let mut outgoing = builder
        .build()
        .map_err(|e| user_error(AwsRequestError::Build(e)))?;
    if let Some(oauth2) = oauth2 {
        let tokens = OAuth2Tokens::shared(oauth2)
            .map_err(|e| user_error(AwsRequestError::OAuth2Setup(e)))?;
        let header = tokens
            .header()
            .await
            .map_err(|e| user_error(AwsRequestError::Token(e)))?;
        let value = reqwest::header::HeaderValue::from_str(&header)
            .map_err(|e| user_error(AwsRequestError::AuthorizationHeader(e)))?;
        outgoing
            .headers_mut()
            .insert(reqwest::header::AUTHORIZATION, value);
    }
    let connector_error = |e: reqwest::Error| {
        if e.is_timeout() {
            ConnectorError::timeout(e.into())
        } else if e.is_connect() {
            ConnectorError::io(e.into())
        } else {
            ConnectorError::other(e.into(), None)
        }
    };
    let response = client.execute(outgoing).await.map_err(connector_error)?;
    let status = StatusCode::try_from(response.status().as_u16())
        .map_err(|e| user_error(AwsRequestError::Status(e)))?;
    let headers = response.headers().clone();
    let bytes = response.bytes().await.map_err(connector_error)?;
    let mut answer = aws_smithy_runtime_api::client::orchestrator::HttpResponse::new(
        status,
        aws_smithy_types::body::SdkBody::from(bytes),
    );
    for (name, value) in &headers {
        if let Ok(value) = value.to_str() {
            answer
                .headers_mut()
                .append(name.as_str().to_string(), value.to_string());
        }
    }
    Ok(answer)
}
