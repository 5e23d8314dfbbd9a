//! Shared access signatures and connection strings for Azure IoT Hub
//! (`reference/iothub-rest-api.md` §3).
//!
//! [`ConnectionString`] parses `HostName=…;SharedAccessKeyName=…;
//! SharedAccessKey=…`; [`sign`] makes a token the way the reference's test
//! vectors pin it; [`validate`] checks one as the service (and the emulator)
//! does. Keys, tokens and signatures live in [`Secret`], whose `Debug` and
//! `Display` print `[redacted]`, and no error message ever contains them.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use sha2::Sha256;

use crate::hub::err::AuthError;

/// Bytes percent-encoded in a signature: everything but ASCII letters and
/// digits, so `+`, `/` and `=` of base64 become `%2B`, `%2F`, `%3D`.
const SIGNATURE: &AsciiSet = NON_ALPHANUMERIC;
/// Bytes percent-encoded in a resource URI: as in a signature, but a host
/// name's `.`, `-` and `_` stay (`localhost:8443` → `localhost%3A8443`).
const RESOURCE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'.').remove(b'-').remove(b'_');
/// Tokens are accepted this long after their expiry (the reference validator
/// of the C# SDK allows five minutes of clock skew).
pub const EXPIRY_GRACE_SECONDS: u64 = 300;

/// A value that must never be shown: a key, a token, a signature.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    #[must_use]
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that must send it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A service connection string: the hub's host and a shared access policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionString {
    /// `HostName`, e.g. `myhub.azure-devices.net` or `localhost:8443`.
    pub host_name: String,
    /// `SharedAccessKeyName`, e.g. `iothubowner`.
    pub key_name: String,
    /// `SharedAccessKey`, base64.
    pub key: Secret,
}

impl FromStr for ConnectionString {
    type Err = AuthError;

    /// Parses `Key=Value` pairs separated by `;` (values may contain `=`,
    /// as base64 keys do). Errors name the missing or malformed part, never
    /// the key's value.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut host_name = None;
        let mut key_name = None;
        let mut key = None;
        for part in text
            .trim()
            .split(';')
            .filter(|part| !part.trim().is_empty())
        {
            let Some((name, value)) = part.split_once('=') else {
                return Err(AuthError::ConnectionString {
                    reason: "every part must be `Name=Value`".to_owned(),
                });
            };
            let slot = match name.trim() {
                "HostName" => &mut host_name,
                "SharedAccessKeyName" => &mut key_name,
                "SharedAccessKey" => &mut key,
                // Device connection strings and other fields (e.g.
                // `GatewayHostName`) are not for the service API.
                "DeviceId" | "ModuleId" => {
                    return Err(AuthError::ConnectionString {
                        reason: "this is a device connection string; twinops needs a service \
                                 connection string with `SharedAccessKeyName`"
                            .to_owned(),
                    });
                }
                _ => continue,
            };
            *slot = Some(value.trim().to_owned());
        }
        let missing = |name: &str| AuthError::ConnectionString {
            reason: format!("`{name}` is missing"),
        };
        let key = key.ok_or_else(|| missing("SharedAccessKey"))?;
        if STANDARD.decode(&key).is_err() {
            return Err(AuthError::ConnectionString {
                reason: "`SharedAccessKey` is not base64".to_owned(),
            });
        }
        Ok(Self {
            host_name: host_name
                .filter(|h| !h.is_empty())
                .ok_or_else(|| missing("HostName"))?,
            key_name: key_name
                .filter(|n| !n.is_empty())
                .ok_or_else(|| missing("SharedAccessKeyName"))?,
            key: Secret::new(key),
        })
    }
}

/// The `sr` twinops signs for a host: lower-cased and percent-encoded
/// (`localhost:8443` → `localhost%3A8443`); a real hub's host is unchanged.
#[must_use]
pub fn resource_for(host: &str) -> String {
    utf8_percent_encode(&host.to_lowercase(), RESOURCE).to_string()
}

/// The raw base64 signature of `resource` and `expiry` under a base64 `key`.
fn signature(resource: &str, expiry: u64, key: &Secret) -> Result<Hmac<Sha256>, AuthError> {
    let key = STANDARD
        .decode(key.expose())
        .map_err(|_| AuthError::ConnectionString {
            reason: "`SharedAccessKey` is not base64".to_owned(),
        })?;
    let mut mac =
        Hmac::<Sha256>::new_from_slice(&key).map_err(|_| AuthError::ConnectionString {
            reason: "`SharedAccessKey` cannot be used as an HMAC key".to_owned(),
        })?;
    mac.update(format!("{resource}\n{expiry}").as_bytes());
    Ok(mac)
}

/// A token for `resource` (signed exactly as written), valid until `expiry`
/// (Unix seconds): `SharedAccessSignature sr=…&sig=…&se=…&skn=…`.
///
/// # Errors
/// When the key is not base64.
pub fn sign(
    resource: &str,
    expiry: u64,
    key_name: &str,
    key: &Secret,
) -> Result<Secret, AuthError> {
    let mac = signature(resource, expiry, key)?;
    let raw = STANDARD.encode(mac.finalize().into_bytes());
    let sig = utf8_percent_encode(&raw, SIGNATURE);
    Ok(Secret::new(format!(
        "SharedAccessSignature sr={resource}&sig={sig}&se={expiry}&skn={key_name}"
    )))
}

/// `text` with anything shaped like a token, a signature or a key removed:
/// for messages from elsewhere (a hub, a proxy) that might echo a request.
#[must_use]
pub fn redacted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let next = ["SharedAccessSignature ", "sig=", "SharedAccessKey="]
            .iter()
            .filter_map(|marker| rest.find(marker).map(|at| (at, marker.len())))
            .min();
        let Some((at, length)) = next else {
            out.push_str(rest);
            return out;
        };
        out.push_str(&rest[..at + length]);
        out.push_str("[redacted]");
        let after = &rest[at + length..];
        let end = after
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ',' | ';'))
            .unwrap_or(after.len());
        rest = &after[end..];
    }
}

/// A shared access policy of a hub, as the emulator knows it.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Its name (`skn`).
    pub name: String,
    /// Its primary key, base64.
    pub primary: Secret,
    /// Its secondary key, base64.
    pub secondary: Option<Secret>,
}

/// Checks an `Authorization` header for a request to `host` (with or
/// without a port) at `now` (Unix seconds), as reference §3.4 describes;
/// returns the policy's name.
///
/// # Errors
/// [`AuthError::Missing`] without a header, [`AuthError::Unauthorized`]
/// for any other failure, saying which check failed but never the token.
pub fn validate(
    header: Option<&str>,
    policies: &[Policy],
    host: &str,
    now: u64,
) -> Result<String, AuthError> {
    let header = header.ok_or(AuthError::Missing)?;
    let unauthorized = |reason: &str| AuthError::Unauthorized {
        reason: reason.to_owned(),
    };
    let fields = header
        .strip_prefix("SharedAccessSignature ")
        .ok_or_else(|| unauthorized("not a shared access signature"))?;
    let (mut resource, mut sig, mut expiry, mut name) = (None, None, None, None);
    for pair in fields.split('&') {
        let Some((field, value)) = pair.split_once('=') else {
            return Err(unauthorized("malformed signature field"));
        };
        let decoded = || {
            percent_decode_str(value)
                .decode_utf8()
                .map(std::borrow::Cow::into_owned)
        };
        match field {
            // `sr` is signed exactly as received (clients disagree on its encoding).
            "sr" => resource = Some(value.to_owned()),
            "sig" => sig = decoded().ok(),
            "se" => expiry = decoded().ok(),
            "skn" => name = decoded().ok(),
            _ => {}
        }
    }
    let resource = resource.ok_or_else(|| unauthorized("no `sr`"))?;
    let sig = sig.ok_or_else(|| unauthorized("no `sig`"))?;
    let expiry: u64 = expiry
        .and_then(|se| se.parse().ok())
        .ok_or_else(|| unauthorized("no valid `se`"))?;
    let name = name.ok_or_else(|| unauthorized("no `skn`"))?;
    let policy = policies
        .iter()
        .find(|policy| policy.name == name)
        .ok_or_else(|| unauthorized("unknown shared access policy"))?;
    let claimed = STANDARD
        .decode(sig.as_bytes())
        .map_err(|_| unauthorized("signature is not base64"))?;
    let signed_by = |key: &Secret| {
        signature(&resource, expiry, key).is_ok_and(|mac| mac.verify_slice(&claimed).is_ok())
    };
    if !(signed_by(&policy.primary) || policy.secondary.as_ref().is_some_and(signed_by)) {
        return Err(unauthorized("signature does not match"));
    }
    if expiry.saturating_add(EXPIRY_GRACE_SECONDS) < now {
        return Err(unauthorized("token expired"));
    }
    let audience = percent_decode_str(&resource)
        .decode_utf8()
        .map_err(|_| unauthorized("`sr` is not UTF-8"))?
        .to_lowercase();
    let host = host.to_lowercase();
    let host_without_port = host
        .rsplit_once(':')
        .map_or(host.as_str(), |(name, _)| name);
    let audience_without_port = audience
        .rsplit_once(':')
        .map_or(audience.as_str(), |(name, _)| name);
    if audience != host && audience_without_port != host_without_port {
        return Err(unauthorized("token is for another hub"));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::{ConnectionString, Policy, Secret, resource_for, sign, validate};
    use crate::hub::err::AuthError;

    // Reference §3.3: the test vectors of both official SDKs' SAS builders.
    const KEY: &str = "dGVzdGtleXRlc3RrZXl0ZXN0a2V5dGVzdGtleTEyMzQ=";
    const EXPIRY: u64 = 1_700_000_000;

    fn key() -> Secret {
        Secret::new(KEY)
    }

    #[test]
    fn signs_the_reference_test_vectors() {
        let token = sign("myhub.azure-devices.net", EXPIRY, "iothubowner", &key()).unwrap();
        assert_eq!(
            token.expose(),
            "SharedAccessSignature sr=myhub.azure-devices.net&sig=9G7fHabHDO1IX85aQwMyz3EFZpPOuLlbqVEhCkRYDnA%3D&se=1700000000&skn=iothubowner"
        );
        let node = sign("localhost:8443", EXPIRY, "iothubowner", &key()).unwrap();
        assert!(
            node.expose()
                .contains("sig=EK3%2BsQDO%2FROjB%2BWH4hO7GIijydTorxxkI1%2F5%2FcOBWn0%3D&")
        );
        let python = sign("localhost%3A8443", EXPIRY, "iothubowner", &key()).unwrap();
        let raw = "6iZzhoACRjBUERZ2YpNK8rF4zef9hnxhNPr3bw31fPk=";
        let encoded = raw
            .replace('+', "%2B")
            .replace('/', "%2F")
            .replace('=', "%3D");
        assert!(python.expose().contains(&format!("sig={encoded}&")));
    }

    #[test]
    fn resources_are_lower_cased_and_encoded_as_twinops_signs_them() {
        assert_eq!(
            resource_for("MyHub.Azure-Devices.net"),
            "myhub.azure-devices.net"
        );
        assert_eq!(resource_for("localhost:8443"), "localhost%3A8443");
    }

    #[test]
    fn secrets_never_print() {
        let connection: ConnectionString = format!(
            "HostName=myhub.azure-devices.net;SharedAccessKeyName=iothubowner;SharedAccessKey={KEY}"
        )
        .parse()
        .unwrap();
        let shown = format!("{connection:?} {}", connection.key);
        assert!(!shown.contains(KEY), "{shown}");
        assert!(shown.contains("[redacted]"));
        let token = sign("h", EXPIRY, "n", &connection.key).unwrap();
        assert!(!format!("{token:?} {token}").contains("sig="));
    }

    #[test]
    fn connection_string_errors_name_the_part_not_the_key() {
        let errors = [
            format!("HostName=h;SharedAccessKey={KEY}"),
            "HostName=h;SharedAccessKeyName=n;SharedAccessKey=not*base64".to_owned(),
            format!("HostName=h;DeviceId=d;SharedAccessKey={KEY}"),
            "garbage".to_owned(),
        ];
        for text in errors {
            let error = text.parse::<ConnectionString>().unwrap_err().to_string();
            assert!(
                !error.contains(KEY) && !error.contains("not*base64"),
                "{error}"
            );
        }
        let error = format!("HostName=h;SharedAccessKey={KEY}")
            .parse::<ConnectionString>()
            .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("`SharedAccessKeyName` is missing")
        );
    }

    fn policies() -> Vec<Policy> {
        vec![Policy {
            name: "iothubowner".into(),
            primary: Secret::new(STANDARD_OTHER_KEY),
            secondary: Some(key()),
        }]
    }

    const STANDARD_OTHER_KEY: &str = "b3RoZXJrZXlvdGhlcmtleW90aGVya2V5b3RoZXJrZXk=";

    #[test]
    fn validates_what_each_sdk_sends() {
        let now = EXPIRY - 10;
        let python = sign("localhost%3A8443", EXPIRY, "iothubowner", &key()).unwrap();
        assert_eq!(
            validate(Some(python.expose()), &policies(), "localhost:8443", now).unwrap(),
            "iothubowner"
        );
        // Node signs the raw host and reorders fields.
        let node = sign("localhost", EXPIRY, "iothubowner", &key()).unwrap();
        let reordered = node.expose().replace(
            "&se=1700000000&skn=iothubowner",
            "&skn=iothubowner&se=1700000000",
        );
        assert!(validate(Some(&reordered), &policies(), "localhost:443", now).is_ok());
    }

    #[test]
    fn refuses_what_the_service_refuses() {
        let now = EXPIRY - 10;
        let token = sign("localhost%3A8443", EXPIRY, "iothubowner", &key()).unwrap();
        let tampered = token.expose().replace("se=1700000000", "se=1700000001");
        let cases = [
            (
                validate(None, &policies(), "localhost:8443", now),
                "missing",
            ),
            (
                validate(Some("Bearer x"), &policies(), "localhost:8443", now),
                "not a shared access signature",
            ),
            (
                validate(Some(&tampered), &policies(), "localhost:8443", now),
                "signature does not match",
            ),
            (
                validate(Some(token.expose()), &policies(), "otherhost:8443", now),
                "another hub",
            ),
            (
                validate(
                    Some(token.expose()),
                    &policies(),
                    "localhost:8443",
                    EXPIRY + 301,
                ),
                "expired",
            ),
        ];
        for (result, expected) in cases {
            let error = result.unwrap_err();
            assert!(error.to_string().contains(expected), "{error}");
            let shown = error.to_string();
            assert!(
                !shown.contains("sig=") && !shown.contains(KEY) && !shown.contains("%3D"),
                "{shown}"
            );
        }
        assert!(
            validate(
                Some(token.expose()),
                &policies(),
                "localhost:8443",
                EXPIRY + 299
            )
            .is_ok()
        );
        assert!(matches!(
            validate(None, &policies(), "h", now),
            Err(AuthError::Missing)
        ));
    }
}
