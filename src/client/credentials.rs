//! What a client presents on every call: a bearer token, and an admin's
//! note of whom it acts for. Tokens are `<name>.<secret>`; the cluster
//! stores only the SHA-256 of the secret, which the creator makes here.

use rand::RngCore;
use sha2::{Digest, Sha256};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Status};

use crate::wire::ON_BEHALF_OF_HEADER;

/// Random bytes in a token's secret.
const SECRET_BYTES: usize = 32;

/// A channel whose calls carry the client's credentials.
pub type Transport = InterceptedService<Channel, Credentials>;

/// The credentials a client attaches to each call: none on an insecure
/// cluster.
#[derive(Clone, Default)]
pub struct Credentials {
    authorization: Option<MetadataValue<Ascii>>,
    on_behalf_of: Option<MetadataValue<Ascii>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token itself.
        f.debug_struct("Credentials")
            .field("token", &self.authorization.as_ref().map(|_| "<set>"))
            .field("on_behalf_of", &self.on_behalf_of)
            .finish()
    }
}

impl Credentials {
    /// Credentials of `token` (`<name>.<secret>`), and of an admin acting
    /// for `on_behalf_of`.
    pub fn new(token: Option<&str>, on_behalf_of: Option<&str>) -> Result<Self, String> {
        let authorization = match token.map(str::trim) {
            None | Some("") => None,
            Some(t) => {
                token_name(t)?;
                Some(
                    format!("Bearer {t}")
                        .parse()
                        .map_err(|_| "token: only printable ASCII".to_string())?,
                )
            }
        };
        let on_behalf_of = match on_behalf_of {
            None | Some("") => None,
            Some(w) => Some(
                w.parse()
                    .map_err(|_| "on behalf of: only printable ASCII".to_string())?,
            ),
        };
        Ok(Self {
            authorization,
            on_behalf_of,
        })
    }
}

impl tonic::service::Interceptor for Credentials {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(a) = &self.authorization {
            req.metadata_mut().insert("authorization", a.clone());
        }
        if let Some(w) = &self.on_behalf_of {
            req.metadata_mut().insert(ON_BEHALF_OF_HEADER, w.clone());
        }
        Ok(req)
    }
}

/// The name part of a token, checking its shape.
pub fn token_name(token: &str) -> Result<&str, String> {
    match crate::wire::split_token(token) {
        Some((name, _)) => Ok(name),
        None => Err("token: expected <name>.<secret>, as `laneq token create` prints it".into()),
    }
}

/// A new token for `name`: the token to hand out (`<name>.<secret>`, shown
/// once) and the SHA-256 of its secret, which is all the cluster keeps.
pub fn new_token(name: &str) -> (String, Vec<u8>) {
    let mut bytes = [0u8; SECRET_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let digest = Sha256::digest(secret.as_bytes()).to_vec();
    (format!("{name}.{secret}"), digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_token_names_itself_and_only_its_digest_leaves() {
        let (token, digest) = new_token("ci");
        assert_eq!(token_name(&token), Ok("ci"));
        let secret = token.rsplit_once('.').unwrap().1;
        assert_eq!(secret.len(), 2 * SECRET_BYTES);
        assert_eq!(digest, Sha256::digest(secret.as_bytes()).to_vec());
        assert_ne!(new_token("ci").0, token, "secrets are random");
        assert!(Credentials::new(Some("nodot"), None).is_err());
        assert!(Credentials::new(Some(&token), Some("alice")).is_ok());
        let shown = format!("{:?}", Credentials::new(Some(&token), None).unwrap());
        assert!(!shown.contains(secret), "{shown}");
    }
}
