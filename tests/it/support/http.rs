//! A node's HTTP routes seen as Prometheus and a probe see them: one
//! HTTP/1.1 GET per call, plain or over TLS, and `/metrics` parsed by a
//! Prometheus text parser.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET path` on `addr` over HTTP/1.1; the status code and the body.
pub async fn get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    get_with(addr, path, None).await
}

/// `GET path` with a bearer token, as a Prometheus scraper sends it.
pub async fn get_with(
    addr: &str,
    path: &str,
    token: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let raw = exchange(&mut stream, addr, path, token).await?;
    Ok(response(&raw))
}

/// [`get_with`] over TLS, trusting `ca`.
pub async fn get_tls(
    addr: &str,
    path: &str,
    ca: &Path,
    token: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let mut stream = tls_connect(addr, ca, None, b"http/1.1").await?;
    let raw = exchange(&mut stream, addr, path, token).await?;
    Ok(response(&raw))
}

/// Sends one GET and reads the whole answer.
async fn exchange<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    stream: &mut S,
    addr: &str,
    path: &str,
    token: Option<&str>,
) -> std::io::Result<Vec<u8>> {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    Ok(raw)
}

/// The status code and body of a raw HTTP/1.1 answer.
fn response(raw: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

/// A raw TLS connection to `addr`, trusting `ca`, presenting `identity`,
/// offering `alpn`: the stream and the certificate the node presented.
pub async fn tls_connect(
    addr: &str,
    ca: &Path,
    identity: Option<(&Path, &Path)>,
    alpn: &[u8],
) -> std::io::Result<TlsStream> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(laneq::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .unwrap()
                .map(Result::unwrap);
            let key = PrivateKeyDer::from_pem_file(key).unwrap();
            builder.with_client_auth_cert(chain.collect(), key).unwrap()
        }
    };
    config.alpn_protocols = vec![alpn.to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from("127.0.0.1").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
}

pub type TlsStream = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// The body of a chunked transfer.
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}

/// One scrape of a node's `/metrics`.
pub struct Metrics {
    pub text: String,
    samples: Vec<prometheus_parse::Sample>,
}

impl Metrics {
    pub async fn scrape(addr: &str) -> Self {
        let (status, text) = get(addr, "/metrics").await.expect("GET /metrics");
        assert_eq!(status, 200, "GET /metrics: {text}");
        let lines = text.lines().map(|l| Ok(l.to_string()));
        let scrape =
            prometheus_parse::Scrape::parse(lines).expect("a Prometheus text parser reads it");
        Metrics {
            text,
            samples: scrape.samples,
        }
    }

    /// The value of the sample `name` whose labels include `labels`; None
    /// if there is none. Panics if more than one matches.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found: Vec<f64> = self
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match &s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => *v,
                other => panic!("{name} is not a single value: {other:?}"),
            })
            .collect();
        assert!(found.len() <= 1, "{name} {labels:?} matches {found:?}");
        found.first().copied()
    }

    /// The value of `name` with `labels`, which must be there.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no sample {name} {labels:?} in:\n{}", self.text))
    }

    /// The buckets of histogram `name` with `labels`: (upper bound,
    /// cumulative count), the last bound infinite.
    pub fn buckets(&self, name: &str, labels: &[(&str, &str)]) -> Vec<(f64, f64)> {
        let found = (self.samples.iter())
            .filter(|s| s.metric == name)
            .find(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)));
        match found.map(|s| &s.value) {
            Some(prometheus_parse::Value::Histogram(b)) => {
                b.iter().map(|b| (b.less_than, b.count)).collect()
            }
            other => panic!("{name} {labels:?} is not a histogram: {other:?}"),
        }
    }

    /// The samples of every metric named with `prefix`, by name and
    /// labels: what must be equal on every node.
    pub fn with_prefix(&self, prefix: &str) -> BTreeMap<String, f64> {
        self.samples
            .iter()
            .filter(|s| s.metric.starts_with(prefix))
            .filter_map(|s| {
                let value = match &s.value {
                    prometheus_parse::Value::Counter(v)
                    | prometheus_parse::Value::Gauge(v)
                    | prometheus_parse::Value::Untyped(v) => *v,
                    // A histogram by its buckets' counts: equal when all are.
                    prometheus_parse::Value::Histogram(buckets) => (buckets.iter())
                        .map(|b| b.count * (1.0 + b.less_than.min(1e9)))
                        .sum(),
                    prometheus_parse::Value::Summary(_) => return None,
                };
                let labels: BTreeMap<_, _> = s.labels.iter().collect();
                Some((format!("{}{labels:?}", s.metric), value))
            })
            .collect()
    }
}
