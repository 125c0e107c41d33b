//! Who may be answered from the cache.
//!
//! A locally answered read must carry credentials the site accepts, and come from a caller the
//! configuration trusts (`[auth]`): the site filters every read by the caller's permission
//! rules, which a shared cache cannot replicate, so reads of untrusted callers pass through.
//!
//! Credentials are checked with the site once (a one-row `read` made with the caller's own
//! auth dict) and the verdict is remembered for `auth.ttl` (rejections for
//! `auth.rejection_ttl`), keyed by a salted SHA-256 of the credentials: secrets are never
//! stored, compared or logged in clear. While the site is down, credentials accepted before
//! stay accepted; unknown ones cannot be checked and their reads are passed through (and fail
//! with the site's unreachability).
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::error::ApiError;
use crate::query::PassReason;

/// Who a request says it is (no secrets).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    Script(String),
    User(String),
    Session,
}

/// The credentials of one request: who, acting as whom, and the salted digest of the secrets.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub identity: Identity,
    pub sudo_as: Option<String>,
    digest: [u8; 32],
}

/// What to do with a read that the cache could answer.
#[derive(Debug, PartialEq, Eq)]
pub enum AuthDecision {
    /// Answer from the cache.
    Local,
    /// Let the site answer (and apply its rules), for this reason.
    PassThrough(PassReason),
    /// The site rejected these credentials recently: its own error again.
    Reject(ApiError),
    /// Ask the site whether it accepts them, then decide.
    Validate,
}

#[derive(Clone, Debug)]
enum Verdict {
    Accepted(Instant),
    Rejected(Instant, ApiError),
}

/// The remembered verdicts.
pub struct AuthGate {
    salt: [u8; 16],
    local_scripts: Vec<String>,
    local_logins: Vec<String>,
    ttl: Duration,
    rejection_ttl: Duration,
    verdicts: Mutex<HashMap<[u8; 32], Verdict>>,
}

impl AuthGate {
    pub fn new(config: &Config) -> AuthGate {
        let mut local_scripts = config.auth.local_scripts.clone();
        if local_scripts.is_empty() && !config.shotgun.script_name.is_empty() {
            local_scripts.push(config.shotgun.script_name.clone());
        }
        AuthGate {
            salt: rand::random(),
            local_scripts,
            local_logins: config.auth.local_logins.clone(),
            ttl: config.auth.ttl,
            rejection_ttl: config.auth.rejection_ttl,
            verdicts: Mutex::new(HashMap::new()),
        }
    }

    /// Reads the auth dict (`params[0]`). `None` when it carries no usable credentials.
    pub fn credentials(&self, auth: &Json) -> Option<Credentials> {
        let text = |k: &str| auth.get(k).and_then(Json::as_str);
        let (identity, secrets): (Identity, Vec<&str>) =
            if let (Some(login), Some(password)) = (text("user_login"), text("user_password")) {
                (
                    Identity::User(login.to_owned()),
                    vec!["user", login, password, text("auth_token").unwrap_or("")],
                )
            } else if let (Some(name), Some(key)) = (text("script_name"), text("script_key")) {
                (Identity::Script(name.to_owned()), vec!["script", name, key])
            } else if let Some(token) = text("session_token") {
                (Identity::Session, vec!["session", token])
            } else {
                return None;
            };
        let sudo_as = text("sudo_as_login").map(str::to_owned);
        let mut hasher = Sha256::new();
        hasher.update(self.salt);
        for part in secrets.iter().chain(sudo_as.as_deref().iter()) {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part.as_bytes());
        }
        Some(Credentials {
            identity,
            sudo_as,
            digest: hasher.finalize().into(),
        })
    }

    /// Whether this caller's reads may come from the cache at all.
    fn trusted(&self, creds: &Credentials) -> bool {
        // With sudo_as_login the site applies that user's permissions.
        if let Some(login) = &creds.sudo_as {
            return self.local_logins.contains(login);
        }
        match &creds.identity {
            Identity::Script(name) => self.local_scripts.contains(name),
            Identity::User(login) => self.local_logins.contains(login),
            // A session token does not say whose it is.
            Identity::Session => false,
        }
    }

    pub fn decide(&self, creds: Option<&Credentials>, site_reachable: bool) -> AuthDecision {
        let Some(creds) = creds else {
            return AuthDecision::PassThrough(PassReason::NoCredentials);
        };
        if !self.trusted(creds) {
            return AuthDecision::PassThrough(PassReason::CallerNotTrusted);
        }
        let verdict = self
            .verdicts
            .lock()
            .ok()
            .and_then(|v| v.get(&creds.digest).cloned());
        match verdict {
            Some(Verdict::Accepted(at)) if at.elapsed() < self.ttl || !site_reachable => {
                AuthDecision::Local
            }
            Some(Verdict::Rejected(at, fault)) if at.elapsed() < self.rejection_ttl => {
                AuthDecision::Reject(fault)
            }
            _ if site_reachable => AuthDecision::Validate,
            _ => AuthDecision::PassThrough(PassReason::CredentialsUnverified),
        }
    }

    /// Remembers what the site said of these credentials.
    pub fn record(&self, creds: &Credentials, accepted: Result<(), ApiError>) {
        let verdict = match accepted {
            Ok(()) => Verdict::Accepted(Instant::now()),
            Err(fault) => Verdict::Rejected(Instant::now(), fault),
        };
        if let Ok(mut verdicts) = self.verdicts.lock() {
            // Bounded: expired entries go when the map grows large.
            if verdicts.len() > 10_000 {
                let (ttl, rttl) = (self.ttl, self.rejection_ttl);
                verdicts.retain(|_, v| match v {
                    Verdict::Accepted(at) => at.elapsed() < ttl,
                    Verdict::Rejected(at, _) => at.elapsed() < rttl,
                });
            }
            verdicts.insert(creds.digest, verdict);
        }
    }
}

/// The request that checks credentials: one row of nothing, with the caller's own auth dict.
pub fn validation_request(auth: &Json) -> Json {
    json!({
        "method_name": "read",
        "params": [auth, {
            "type": "HumanUser",
            "filters": {"logical_operator": "and", "conditions": [{"path": "id", "relation": "is", "values": [0]}]},
            "return_fields": ["id"],
            "return_only": "active",
            "paging": {"entities_per_page": 1, "current_page": 1},
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate() -> AuthGate {
        let mut config = Config::default();
        config.shotgun.script_name = "pipeline".into();
        config.auth.local_logins = vec!["alice".into()];
        config.auth.rejection_ttl = Duration::from_secs(60);
        AuthGate::new(&config)
    }

    #[test]
    fn only_trusted_callers_with_accepted_credentials_are_local() {
        let gate = gate();
        let script = gate
            .credentials(&json!({"script_name": "pipeline", "script_key": "k"}))
            .expect("creds");
        assert_eq!(gate.decide(Some(&script), true), AuthDecision::Validate);
        gate.record(&script, Ok(()));
        assert_eq!(gate.decide(Some(&script), true), AuthDecision::Local);

        let other = gate
            .credentials(&json!({"script_name": "artist_tool", "script_key": "k"}))
            .expect("creds");
        assert_eq!(
            gate.decide(Some(&other), true),
            AuthDecision::PassThrough(PassReason::CallerNotTrusted)
        );
        let sudo = gate
            .credentials(
                &json!({"script_name": "pipeline", "script_key": "k", "sudo_as_login": "bob"}),
            )
            .expect("creds");
        assert_eq!(
            gate.decide(Some(&sudo), true),
            AuthDecision::PassThrough(PassReason::CallerNotTrusted)
        );
        let alice = gate
            .credentials(&json!({"user_login": "alice", "user_password": "pw"}))
            .expect("creds");
        assert_eq!(gate.decide(Some(&alice), true), AuthDecision::Validate);
        let session = gate
            .credentials(&json!({"session_token": "t"}))
            .expect("creds");
        assert_eq!(
            gate.decide(Some(&session), true),
            AuthDecision::PassThrough(PassReason::CallerNotTrusted)
        );
        assert_eq!(
            gate.decide(None, true),
            AuthDecision::PassThrough(PassReason::NoCredentials)
        );
    }

    #[test]
    fn a_wrong_key_is_a_different_credential_and_rejections_are_remembered() {
        let gate = gate();
        let good = gate
            .credentials(&json!({"script_name": "pipeline", "script_key": "right"}))
            .expect("creds");
        let bad = gate
            .credentials(&json!({"script_name": "pipeline", "script_key": "wrong"}))
            .expect("creds");
        gate.record(&good, Ok(()));
        assert_eq!(gate.decide(Some(&bad), true), AuthDecision::Validate);
        let fault = ApiError::authentication("Can't authenticate script 'pipeline'");
        gate.record(&bad, Err(fault.clone()));
        assert_eq!(gate.decide(Some(&bad), true), AuthDecision::Reject(fault));
        assert_eq!(gate.decide(Some(&good), true), AuthDecision::Local);
    }

    #[test]
    fn while_the_site_is_down_only_known_credentials_are_local() {
        let mut config = Config::default();
        config.shotgun.script_name = "pipeline".into();
        config.auth.ttl = Duration::ZERO;
        let gate = AuthGate::new(&config);
        let known = gate
            .credentials(&json!({"script_name": "pipeline", "script_key": "k"}))
            .expect("creds");
        gate.record(&known, Ok(()));
        assert_eq!(
            gate.decide(Some(&known), true),
            AuthDecision::Validate,
            "expired: check again"
        );
        assert_eq!(
            gate.decide(Some(&known), false),
            AuthDecision::Local,
            "site down: accepted before"
        );
        let unknown = gate
            .credentials(&json!({"script_name": "pipeline", "script_key": "other"}))
            .expect("creds");
        assert_eq!(
            gate.decide(Some(&unknown), false),
            AuthDecision::PassThrough(PassReason::CredentialsUnverified)
        );
    }

    #[test]
    fn secrets_do_not_appear_in_credentials() {
        let gate = gate();
        let creds = gate
            .credentials(&json!({"script_name": "pipeline", "script_key": "hunter2"}))
            .expect("creds");
        assert!(!format!("{creds:?}").contains("hunter2"));
    }
}
