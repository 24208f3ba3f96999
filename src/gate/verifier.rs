//! Who may pass the gate: each verifier looks at the credentials a request presented (keys
//! taken out of it, as digests) and says what it finds. The gate asks them in order and
//! decides the lockout and the 401's challenge once, from their verdicts; a new way to
//! authenticate is a new verifier, not a new branch in the gate.

use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::http::HeaderValue;

use crate::auth::{self, AuthMethod, Credentials, KeyRefusal};
use crate::keys::KeySet;
use crate::oauth::{OAuth, TokenCheck};

/// What one verifier finds.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Good credentials: let through, recorded as having come this way (with the key's
    /// label, for a labelled key).
    Admit(AuthMethod, Option<Arc<str>>),
    /// Refused whatever another verifier would find (several different keys at once): a
    /// guess, counted.
    Refuse(KeyRefusal),
    /// Credentials of its own that are no longer good (an expired or revoked token):
    /// refused, but no guess at a key, so not counted.
    Stale,
    /// Nothing it knows.
    Unknown,
}

/// Checks credentials. Synchronous and cheap: it runs on the request path, for every request
/// to a protected route (BENCHMARKS.md's gate rows).
pub trait Verifier: Send + Sync {
    fn verify(&self, credentials: &Credentials) -> Verdict;

    /// The `WWW-Authenticate` a 401 carries, to say where to authenticate; `presented`:
    /// the request sent something.
    fn challenge(&self, _presented: bool) -> Option<HeaderValue> {
        None
    }
}

/// The API keys, in constant time (`auth::check`); reloaded on SIGHUP.
pub struct Keys(pub Arc<ArcSwap<KeySet>>);

impl Verifier for Keys {
    fn verify(&self, credentials: &Credentials) -> Verdict {
        match auth::check(&self.0.load(), credentials) {
            Ok((method, label)) => Verdict::Admit(method, label),
            Err(KeyRefusal::Several) => Verdict::Refuse(KeyRefusal::Several),
            Err(KeyRefusal::Missing | KeyRefusal::Invalid) => Verdict::Unknown,
        }
    }
}

/// With `--oauth`: access tokens of latchkey's own authorization server.
pub struct AccessTokens(pub Arc<OAuth>);

impl Verifier for AccessTokens {
    fn verify(&self, credentials: &Credentials) -> Verdict {
        match self.0.check(credentials) {
            TokenCheck::Valid => Verdict::Admit(AuthMethod::OAuth, None),
            TokenCheck::Stale => Verdict::Stale,
            TokenCheck::Unknown => Verdict::Unknown,
        }
    }

    fn challenge(&self, presented: bool) -> Option<HeaderValue> {
        Some(self.0.challenge(presented))
    }
}

/// What the verifiers found together, in order: the first to admit or refuse decides.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Admit(AuthMethod, Option<Arc<str>>),
    Refuse {
        refusal: KeyRefusal,
        /// Whether the refused credentials count as a guess (the lockout's failure).
        guess: bool,
    },
}

/// Asks `verifiers` about `credentials`. Nothing presented is refused without asking.
pub fn decide(verifiers: &[Box<dyn Verifier>], credentials: &Credentials) -> Decision {
    if credentials.is_empty() {
        return Decision::Refuse {
            refusal: KeyRefusal::Missing,
            guess: false,
        };
    }
    let mut stale = false;
    for verifier in verifiers {
        match verifier.verify(credentials) {
            Verdict::Admit(method, label) => return Decision::Admit(method, label),
            Verdict::Refuse(refusal) => {
                return Decision::Refuse {
                    refusal,
                    guess: true,
                };
            }
            Verdict::Stale => stale = true,
            Verdict::Unknown => {}
        }
    }
    Decision::Refuse {
        refusal: KeyRefusal::Invalid,
        guess: !stale,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Says what it was made to say.
    struct Says(fn() -> Verdict);

    impl Verifier for Says {
        fn verify(&self, _: &Credentials) -> Verdict {
            (self.0)()
        }
    }

    fn verifiers(verdicts: &[fn() -> Verdict]) -> Vec<Box<dyn Verifier>> {
        verdicts
            .iter()
            .map(|v| Box::new(Says(*v)) as Box<dyn Verifier>)
            .collect()
    }

    fn presented() -> Credentials {
        let mut request = axum::http::Request::get("/mcp")
            .header("x-api-key", "k".repeat(32))
            .body(axum::body::Body::empty())
            .unwrap();
        auth::take_credentials(&mut request).credentials
    }

    #[test]
    fn the_first_verifier_that_admits_or_refuses_decides() {
        let all = verifiers(&[
            || Verdict::Unknown,
            || Verdict::Admit(AuthMethod::OAuth, None),
        ]);
        assert_eq!(
            decide(&all, &presented()),
            Decision::Admit(AuthMethod::OAuth, None)
        );
        let all = verifiers(&[
            || Verdict::Refuse(KeyRefusal::Several),
            || Verdict::Admit(AuthMethod::OAuth, None),
        ]);
        assert_eq!(
            decide(&all, &presented()),
            Decision::Refuse {
                refusal: KeyRefusal::Several,
                guess: true
            }
        );
    }

    #[test]
    fn a_stale_token_is_refused_but_no_guess_and_nothing_sent_is_missing() {
        let all = verifiers(&[|| Verdict::Unknown, || Verdict::Stale]);
        assert_eq!(
            decide(&all, &presented()),
            Decision::Refuse {
                refusal: KeyRefusal::Invalid,
                guess: false
            }
        );
        let all = verifiers(&[|| Verdict::Unknown, || Verdict::Unknown]);
        assert_eq!(
            decide(&all, &presented()),
            Decision::Refuse {
                refusal: KeyRefusal::Invalid,
                guess: true
            }
        );
        let all = verifiers(&[|| Verdict::Admit(AuthMethod::OAuth, None)]);
        assert_eq!(
            decide(&all, &Credentials::default()),
            Decision::Refuse {
                refusal: KeyRefusal::Missing,
                guess: false
            }
        );
    }
}
