//! Reading and checking the PEM files of `[tls]`. Every error names the
//! config key whose file is at fault, since that is what an operator edits.

use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;

/// The crypto every TLS config of laneq uses: ring (no C toolchain beyond
/// what ring's own build needs, no cmake: aws-lc-rs, rustls' other
/// provider, builds with cmake for minutes). rustls 0.23.48 deprecates it
/// for lacking post-quantum key exchange, which aws-lc-rs alone offers.
#[allow(deprecated)]
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of a PEM file, checked to be within their validity
/// period now.
pub fn certs(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let shown = path.display();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{key}: cannot read {shown}: {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{key}: {shown} is not PEM certificates: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{key}: {shown} holds no certificate"));
    }
    for cert in &certs {
        in_validity(cert).map_err(|e| format!("{key}: a certificate in {shown} {e}"))?;
    }
    Ok(certs)
}

/// A PEM private key (PKCS#8, PKCS#1 or SEC1).
pub fn private_key(key: &str, path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| format!("{key}: {} is not a PEM private key: {e}", path.display()))
}

/// A certificate chain and its key, checked to belong together.
pub fn identity(
    (cert_key, cert): (&str, &Path),
    (key_key, key): (&str, &Path),
) -> Result<CertifiedKey, String> {
    let chain = certs(cert_key, cert)?;
    let private = private_key(key_key, key)?;
    CertifiedKey::from_der(chain, private, &provider()).map_err(|e| {
        format!(
            "{key_key}: {} is not the key of {cert_key} ({}): {e}",
            key.display(),
            cert.display()
        )
    })
}

/// The CA certificates of a PEM file as trust roots.
pub fn roots(key: &str, path: &Path, into: &mut RootCertStore) -> Result<(), String> {
    for cert in certs(key, path)? {
        into.add(cert)
            .map_err(|e| format!("{key}: {} is not a usable CA: {e}", path.display()))?;
    }
    Ok(())
}

/// Whether a certificate is within its validity period now; else why not.
fn in_validity(cert: &CertificateDer<'_>) -> Result<(), String> {
    let (_, parsed) =
        x509_parser::parse_x509_certificate(cert).map_err(|e| format!("cannot be parsed: {e}"))?;
    let validity = parsed.validity();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    if now < validity.not_before.timestamp() {
        return Err(format!("is not valid yet (from {})", validity.not_before));
    }
    if now > validity.not_after.timestamp() {
        return Err(format!("has expired (on {})", validity.not_after));
    }
    Ok(())
}

/// The subject's common name of a certificate, if it has one.
pub fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert).ok()?;
    let cn = parsed.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}
