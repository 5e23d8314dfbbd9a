//! IoT Hub's error responses, both ways (`reference/iothub-rest-api.md` §10).
//!
//! The emulator writes format A (`{"Message":"ErrorCode:<Name>;<text>",
//! "ExceptionMessage":"Tracking ID:…"}`) with a matching `iothub-errorcode`
//! header; the REST client reads the code from any of the four body formats
//! the real service has been seen to send, or from the header. Pure.

use serde_json::Value;

/// An IoT Hub error code: its number and name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorCode {
    /// The six-digit code; its first three digits are the HTTP status.
    pub number: u32,
    /// The name, as in `iothub-errorcode`.
    pub name: &'static str,
}

impl ErrorCode {
    /// The HTTP status this code is sent with.
    #[must_use]
    pub fn status(self) -> u16 {
        u16::try_from(self.number / 1000).unwrap_or(500)
    }
}

macro_rules! codes {
    ($($constant:ident = $number:literal $name:literal;)*) => {
        $(
            #[doc = concat!("`", $name, "` (", stringify!($number), ").")]
            pub const $constant: ErrorCode = ErrorCode { number: $number, name: $name };
        )*
        /// Every code twinops knows, for reading names back.
        const KNOWN: &[ErrorCode] = &[$($constant),*];
    };
}

codes! {
    INVALID_PROTOCOL_VERSION = 400_001 "InvalidProtocolVersion";
    ARGUMENT_INVALID = 400_004 "ArgumentInvalid";
    IOT_HUB_FORMAT_ERROR = 400_006 "IotHubFormatError";
    UNAUTHORIZED_ACCESS = 401_002 "IotHubUnauthorizedAccess";
    UNAUTHORIZED = 401_003 "IotHubUnauthorized";
    QUOTA_EXCEEDED = 403_002 "IotHubQuotaExceeded";
    DEVICE_NOT_FOUND = 404_001 "DeviceNotFound";
    MODULE_NOT_FOUND = 404_010 "ModuleNotFound";
    MODULE_ALREADY_EXISTS = 409_301 "ModuleAlreadyExistsOnDevice";
    PRECONDITION_FAILED = 412_001 "PreconditionFailed";
    TOO_MANY_MODULES = 413_003 "TooManyModulesOnDevice";
    THROTTLING = 429_001 "ThrottlingException";
    THROTTLING_BACKLOG_TIMEOUT = 429_003 "ThrottlingBacklogTimeout";
    SERVER_ERROR = 500_001 "ServerError";
    SERVICE_UNAVAILABLE = 503_001 "ServiceUnavailable";
}

/// A format A error body, as the real service sends it.
#[must_use]
pub fn error_body(code: ErrorCode, text: &str, tracking_id: &str, timestamp: &str) -> Value {
    serde_json::json!({
        "Message": format!("ErrorCode:{};{text}", code.name),
        "ExceptionMessage": format!("Tracking ID:{tracking_id}-G:0-TimeStamp:{timestamp}"),
    })
}

/// What an error response says, whatever its format.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceError {
    /// The numeric code, when the body or header gives one.
    pub number: Option<u32>,
    /// The code's name, when known.
    pub name: Option<String>,
    /// The message.
    pub message: String,
    /// The tracking id, for support.
    pub tracking_id: Option<String>,
}

impl ServiceError {
    /// Reads an error response: the `iothub-errorcode` header and the body.
    #[must_use]
    pub fn read(header: Option<&str>, body: &[u8]) -> Self {
        let mut error = serde_json::from_slice::<Value>(body)
            .ok()
            .map(|value| from_body(&value))
            .unwrap_or_default();
        if error.message.is_empty() {
            error.message = String::from_utf8_lossy(body).chars().take(300).collect();
        }
        if let Some(header) = header.map(str::trim).filter(|h| !h.is_empty()) {
            match header.parse::<u32>() {
                Ok(number) => {
                    error.number.get_or_insert(number);
                }
                Err(_) => {
                    error.name.get_or_insert_with(|| header.to_owned());
                }
            }
        }
        match (error.number, &error.name) {
            (None, Some(name)) => error.number = known(|code| code.name == name),
            (Some(number), None) => {
                error.name = KNOWN
                    .iter()
                    .find(|code| code.number == number)
                    .map(|code| code.name.to_owned());
            }
            _ => {}
        }
        error
    }

    /// `number name`, or whichever is known.
    #[must_use]
    pub fn code(&self) -> Option<String> {
        match (self.number, &self.name) {
            (Some(number), Some(name)) => Some(format!("{number} {name}")),
            (Some(number), None) => Some(number.to_string()),
            (None, Some(name)) => Some(name.clone()),
            (None, None) => None,
        }
    }

    /// Whether this is `code`.
    #[must_use]
    pub fn is(&self, code: ErrorCode) -> bool {
        self.number == Some(code.number) || self.name.as_deref() == Some(code.name)
    }
}

fn known(matches: impl Fn(&ErrorCode) -> bool) -> Option<u32> {
    KNOWN
        .iter()
        .find(|code| matches(code))
        .map(|code| code.number)
}

/// Formats A–D of §10.1.
fn from_body(body: &Value) -> ServiceError {
    let mut error = ServiceError::default();
    match body.get("Message") {
        // C: an object.
        Some(inner @ Value::Object(_)) => read_bare(inner, &mut error),
        Some(Value::String(message)) => {
            if let Some(inner) = serde_json::from_str::<Value>(message)
                .ok()
                .filter(Value::is_object)
            {
                // B: a JSON string.
                read_bare(&inner, &mut error);
            } else if let Some(rest) = message.strip_prefix("ErrorCode:") {
                // A: `ErrorCode:<Name>;<text>`.
                let (name, text) = rest.split_once(';').unwrap_or((rest, ""));
                error.name = Some(name.to_owned());
                text.clone_into(&mut error.message);
            } else {
                error.message.clone_from(message);
            }
            if let Some(tracking) = body
                .get("ExceptionMessage")
                .and_then(Value::as_str)
                .and_then(|text| text.strip_prefix("Tracking ID:"))
            {
                error.tracking_id = Some(tracking.split('-').next().unwrap_or(tracking).to_owned());
            }
        }
        // D: bare.
        _ => read_bare(body, &mut error),
    }
    error
}

fn read_bare(body: &Value, error: &mut ServiceError) {
    error.number = match body.get("errorCode") {
        Some(Value::Number(number)) => number.as_u64().and_then(|n| u32::try_from(n).ok()),
        Some(Value::String(text)) => text.parse().ok(),
        _ => None,
    };
    if let Some(message) = body.get("message").and_then(Value::as_str) {
        message.clone_into(&mut error.message);
    }
    if let Some(tracking) = body.get("trackingId").and_then(Value::as_str) {
        error.tracking_id = Some(tracking.split('-').next().unwrap_or(tracking).to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_all_four_formats_of_the_reference() {
        let a = ServiceError::read(
            Some("PreconditionFailed"),
            br#"{"Message":"ErrorCode:PreconditionFailed;PreconditionFailed","ExceptionMessage":"Tracking ID:29e91aa72a1e491b88b2c3b3da2baaee-G:5-TimeStamp:12/11/2017 01:55:00"}"#,
        );
        assert_eq!(a.number, Some(412_001));
        assert_eq!(a.name.as_deref(), Some("PreconditionFailed"));
        assert_eq!(
            a.tracking_id.as_deref(),
            Some("29e91aa72a1e491b88b2c3b3da2baaee")
        );
        let b = ServiceError::read(
            None,
            br#"{"Message":"{\"errorCode\":401002,\"trackingId\":\"84f2-G:6\",\"message\":\"Unauthorized\",\"timestampUtc\":\"x\"}","ExceptionMessage":""}"#,
        );
        assert_eq!(
            (b.number, b.message.as_str()),
            (Some(401_002), "Unauthorized")
        );
        assert_eq!(b.name.as_deref(), Some("IotHubUnauthorizedAccess"));
        let c = ServiceError::read(
            None,
            br#"{"Message":{"errorCode":"404103","trackingId":"t","message":"gone"}}"#,
        );
        assert_eq!((c.number, c.message.as_str()), (Some(404_103), "gone"));
        let d = ServiceError::read(
            None,
            br#"{"errorCode":400004,"trackingId":"c3","message":"Value of Property or Tag cannot be null."}"#,
        );
        assert!(d.is(ARGUMENT_INVALID));
        assert_eq!(d.code().as_deref(), Some("400004 ArgumentInvalid"));
    }

    #[test]
    fn a_body_that_is_not_json_keeps_its_text_and_the_header_code() {
        let error = ServiceError::read(Some("ServerBusy"), b"upstream connect error");
        assert_eq!(error.message, "upstream connect error");
        assert_eq!(error.name.as_deref(), Some("ServerBusy"));
        assert_eq!(error.number, None);
    }

    #[test]
    fn the_emulator_body_reads_back() {
        let body = error_body(
            MODULE_NOT_FOUND,
            "module not found",
            "0123456789abcdef0123456789abcdef",
            "11/26/2026 13:00:00",
        );
        let error = ServiceError::read(Some(MODULE_NOT_FOUND.name), body.to_string().as_bytes());
        assert!(error.is(MODULE_NOT_FOUND));
        assert_eq!(MODULE_NOT_FOUND.status(), 404);
        assert_eq!(error.message, "module not found");
    }
}
