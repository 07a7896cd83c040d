//! The metadata every call carries: `authorization: Bearer <token>` and, on
//! session-scoped calls, `openspeak-session: <session_id>`.

use openspeak_shared::metadata::{AUTHORIZATION, SESSION};
use tonic::Request;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};

use crate::common::error::SessionsError;

/// A token, parsed once into its header value so that each of the many calls
/// only clones it.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// `Bearer <token>`.
    bearer: AsciiMetadataValue,
}

impl Credentials {
    /// Credentials for `token`.
    pub fn new(token: &str) -> Result<Credentials, SessionsError> {
        let bearer = MetadataValue::try_from(format!("Bearer {token}"))
            .map_err(|_| SessionsError::BadToken)?;
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
}
