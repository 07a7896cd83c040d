//! The metadata every call carries: `authorization: Bearer <token>` and, on
//! session-scoped calls, `openspeak-session: <session_id>`.

use openspeak_shared::metadata::{AUTHORIZATION, SESSION};
use tonic::Request;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};

use crate::common::error::RunError;

/// A token, parsed once into its header value so that each of the many calls
/// only clones it.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// `Bearer <token>`.
    bearer: AsciiMetadataValue,
}

impl Credentials {
    /// Credentials for `token`.
    pub fn new(token: &str) -> Result<Credentials, RunError> {
        let bearer =
            MetadataValue::try_from(format!("Bearer {token}")).map_err(|_| RunError::BadToken)?;
        Ok(Credentials { bearer })
    }

    /// A request carrying the token.
    pub fn request<T>(&self, message: T) -> Request<T> {
        let mut req = Request::new(message);
        req.metadata_mut()
            .insert(AUTHORIZATION, self.bearer.clone());
        req
    }

    /// A session-scoped request: the token and the session id.
    pub fn session_request<T>(&self, session_id: u32, message: T) -> Request<T> {
        let mut req = self.request(message);
        req.metadata_mut()
            .insert(SESSION, AsciiMetadataValue::from(session_id));
        req
    }
}

/// Clients per member token. The server caps the sessions one member
/// token may hold (`auth.max_sessions_per_token`, 16 by default) and the
/// calls it may make (`auth.requests_per_second`); a run of many clients
/// therefore spreads them over tokens, as real users have one each.
pub const CLIENTS_PER_TOKEN: usize = 8;

/// The clients' tokens: client `i` uses token `i / CLIENTS_PER_TOKEN`.
#[derive(Debug, Clone)]
pub struct ClientTokens(Vec<Credentials>);

impl ClientTokens {
    /// `tokens`, which must not be empty.
    pub fn new(tokens: Vec<Credentials>) -> ClientTokens {
        assert!(!tokens.is_empty(), "a run has at least one token");
        ClientTokens(tokens)
    }

    /// How many tokens `clients` clients need.
    pub fn needed(clients: u32) -> usize {
        (clients as usize).div_ceil(CLIENTS_PER_TOKEN).max(1)
    }

    /// The credentials of client `index`.
    pub fn for_client(&self, index: usize) -> &Credentials {
        &self.0[(index / CLIENTS_PER_TOKEN) % self.0.len()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_carry_token_and_session() {
        let creds = Credentials::new("abc").unwrap();
        let req = creds.session_request(42, ());
        assert_eq!(req.metadata().get(AUTHORIZATION).unwrap(), "Bearer abc");
        assert_eq!(req.metadata().get(SESSION).unwrap(), "42");
        assert!(creds.request(()).metadata().get(SESSION).is_none());
        assert!(Credentials::new("bad\ntoken").is_err());
    }

    #[test]
    fn clients_share_a_token_in_groups() {
        assert_eq!(ClientTokens::needed(0), 1);
        assert_eq!(ClientTokens::needed(8), 1);
        assert_eq!(ClientTokens::needed(9), 2);
        assert_eq!(ClientTokens::needed(2000), 250);
        let tokens = ClientTokens::new(vec![
            Credentials::new("a").unwrap(),
            Credentials::new("b").unwrap(),
        ]);
        let bearer = |i| {
            let creds: &Credentials = tokens.for_client(i);
            creds
                .request(())
                .metadata()
                .get(AUTHORIZATION)
                .unwrap()
                .clone()
        };
        assert_eq!(bearer(0), "Bearer a");
        assert_eq!(bearer(7), "Bearer a");
        assert_eq!(bearer(8), "Bearer b");
        assert_eq!(bearer(15), "Bearer b");
    }
}
