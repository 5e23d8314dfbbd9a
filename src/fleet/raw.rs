//! Twins read lightly, for plans over large fleets: the ids and the etag are
//! decoded, every other member stays the JSON text it was written as,
//! borrowed from the line, and is parsed only when a plan asks for it.
//!
//! `tags`, `properties.desired` and `properties.reported` are split into
//! their members on reading, because targets and plans look inside them on
//! every twin; anything deeper is split on demand.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// A JSON object's members in the order written, each value as its text.
#[derive(Debug, Default)]
struct Members<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'a> Members<'a> {
    /// The value of `key`; the last one when a key is repeated, as a JSON
    /// reader that builds a map keeps it.
    fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.0
            .iter()
            .rev()
            .find(|(name, _)| name == key)
            .map(|(_, value)| *value)
    }
}

/// An object member's key, borrowed unless it holds escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(text)))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(text.to_owned())))
            }
            fn visit_string<E: de::Error>(self, text: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(text)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

impl<'de> Members<'de> {
    /// The members of the object `map` is reading.
    fn read<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut members = Vec::new();
        while let Some(Key(key)) = map.next_key()? {
            members.push((key, map.next_value()?));
        }
        Ok(Members(members))
    }

    /// The object as JSON text again.
    fn rebuilt(&self) -> String {
        rebuilt(self.0.iter().map(|(key, raw)| (key.as_ref(), raw.get())))
    }
}

/// `{"key":value,...}` from keys and the JSON text of their values.
fn rebuilt<'t>(members: impl Iterator<Item = (&'t str, &'t str)>) -> String {
    let mut out = String::from("{");
    for (at, (key, text)) in members.enumerate() {
        if at > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::Value::from(key).to_string());
        out.push(':');
        out.push_str(text);
    }
    out.push('}');
    out
}

/// A value that should be an object: its body read, or what it was instead.
enum Shaped<T> {
    Object(T),
    Null,
    Other(&'static str),
}

/// What is read of an object's members.
trait Body<'de>: Sized {
    fn read<A: MapAccess<'de>>(map: A) -> Result<Self, A::Error>;
}

impl<'de, T: Body<'de>> Deserialize<'de> for Shaped<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ShapedVisitor(std::marker::PhantomData))
    }
}

struct ShapedVisitor<T>(std::marker::PhantomData<T>);

macro_rules! other_kinds {
    ($($method:ident: $type:ty => $kind:literal),* $(,)?) => {
        $(fn $method<E: de::Error>(self, _: $type) -> Result<Self::Value, E> {
            Ok(Shaped::Other($kind))
        })*
    };
}

impl<'de, T: Body<'de>> Visitor<'de> for ShapedVisitor<T> {
    type Value = Shaped<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Shaped<T>, A::Error> {
        T::read(map).map(Shaped::Object)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Shaped<T>, E> {
        Ok(Shaped::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Shaped<T>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Shaped::Other("an array"))
    }

    other_kinds! {
        visit_bool: bool => "a boolean",
        visit_i64: i64 => "a number",
        visit_u64: u64 => "a number",
        visit_f64: f64 => "a number",
        visit_str: &str => "a string",
    }
}

/// A twin's top level: `properties` read apart, everything else as text.
struct TopBody<'a> {
    members: Members<'a>,
    tags: Option<Section<'a>>,
    properties: Option<Shaped<PropertiesBody<'a>>>,
}

impl<'de> Body<'de> for TopBody<'de> {
    fn read<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut members = Vec::new();
        let mut tags = None;
        let mut properties = None;
        while let Some(Key(key)) = map.next_key()? {
            match key.as_ref() {
                "properties" => properties = Some(map.next_value()?),
                "tags" => tags = Some(map.next_value()?),
                _ => members.push((key, map.next_value()?)),
            }
        }
        Ok(Self {
            members: Members(members),
            tags,
            properties,
        })
    }
}

/// `properties`: desired and reported as text, split below; the rest as text.
struct PropertiesBody<'a> {
    desired: Option<Section<'a>>,
    reported: Option<Section<'a>>,
    rest: Members<'a>,
}

impl<'de> Body<'de> for PropertiesBody<'de> {
    fn read<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut body = Self {
            desired: None,
            reported: None,
            rest: Members::default(),
        };
        while let Some(Key(key)) = map.next_key()? {
            match key.as_ref() {
                "desired" => body.desired = Some(map.next_value()?),
                "reported" => body.reported = Some(map.next_value()?),
                _ => body.rest.0.push((key, map.next_value()?)),
            }
        }
        Ok(body)
    }
}

/// A member read in the same pass as its twin: an object's members, each
/// kept as text, or any other value as JSON text.
enum Section<'a> {
    Object(Members<'a>),
    Other(String),
}

impl<'de> Deserialize<'de> for Section<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SectionVisitor)
    }
}

struct SectionVisitor;

macro_rules! section_scalars {
    ($($method:ident: $type:ty),* $(,)?) => {
        $(fn $method<E: de::Error>(self, value: $type) -> Result<Section<'de>, E> {
            Ok(Section::Other(serde_json::Value::from(value).to_string()))
        })*
    };
}

impl<'de> Visitor<'de> for SectionVisitor {
    type Value = Section<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Section<'de>, A::Error> {
        Members::read(map).map(Section::Object)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Section<'de>, E> {
        Ok(Section::Other("null".to_owned()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Section<'de>, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<serde_json::Value>()? {
            items.push(item);
        }
        Ok(Section::Other(serde_json::Value::Array(items).to_string()))
    }

    section_scalars! {
        visit_bool: bool,
        visit_i64: i64,
        visit_u64: u64,
        visit_f64: f64,
        visit_str: &str,
    }
}

impl<'a> Section<'a> {
    /// The text at `path` below this member.
    fn text<K: AsRef<str>>(&self, path: &[K]) -> Option<Cow<'a, str>> {
        match (path.split_first(), self) {
            (None, Self::Object(members)) => Some(Cow::Owned(members.rebuilt())),
            (None, Self::Other(text)) => Some(Cow::Owned(text.clone())),
            (Some((key, rest)), Self::Object(members)) => descend(members.get(key.as_ref())?, rest),
            (Some(_), Self::Other(_)) => None,
        }
    }
}

/// The text at `path` below `raw`.
fn descend<'a, K: AsRef<str>>(raw: &'a RawValue, path: &[K]) -> Option<Cow<'a, str>> {
    match path.split_first() {
        None => Some(Cow::Borrowed(raw.get())),
        Some((key, rest)) => descend(member(raw, key.as_ref())?, rest),
    }
}

/// The value of `key` in `raw`, when it is an object: the last one when a
/// key is repeated, as [`Members::get`] finds it, but read in one pass
/// that keeps nothing else.
fn member<'a>(raw: &'a RawValue, key: &str) -> Option<&'a RawValue> {
    struct Find<'k>(&'k str);
    impl<'de> Visitor<'de> for Find<'_> {
        type Value = Option<&'de RawValue>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut found = None;
            while let Some(Key(name)) = map.next_key()? {
                if name == self.0 {
                    found = Some(map.next_value()?);
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(found)
        }
    }
    if !raw.get().starts_with('{') {
        return None;
    }
    let mut reader = serde_json::Deserializer::from_str(raw.get());
    reader.deserialize_map(Find(key)).ok().flatten()
}

/// One twin, read lightly from one line of JSON.
pub struct RawTwin<'a> {
    /// The device id.
    pub device_id: Cow<'a, str>,
    /// The module id, for a module twin.
    pub module_id: Option<Cow<'a, str>>,
    /// The etag, when the twin has one.
    pub etag: Option<Cow<'a, str>>,
    /// Top-level members other than `properties` and `tags`.
    members: Members<'a>,
    tags: Option<Section<'a>>,
    properties: Option<Properties<'a>>,
}

/// `properties` of a twin; `None` members when it was `null`.
struct Properties<'a> {
    desired: Option<Section<'a>>,
    reported: Option<Section<'a>>,
    rest: Members<'a>,
    null: bool,
}

impl<'a> RawTwin<'a> {
    /// Reads one snapshot line.
    ///
    /// # Errors
    /// What is wrong with the line, as [`crate::hub::snapshot`] words it: not
    /// JSON, not an object, no string `deviceId`, `tags` or `properties` not
    /// objects, a `moduleId` that is not a string.
    pub fn parse(line: &'a str) -> Result<Self, String> {
        let top: Shaped<TopBody<'a>> =
            serde_json::from_str(line).map_err(|error| crate::hub::snapshot::not_json(&error))?;
        let top = match top {
            Shaped::Object(top) => top,
            Shaped::Null => return Err("line is not a JSON object (found null)".to_owned()),
            Shaped::Other(kind) => {
                return Err(format!("line is not a JSON object (found {kind})"));
            }
        };
        let TopBody {
            members,
            tags,
            properties,
        } = top;
        let device_id = match members.get("deviceId") {
            Some(raw) => string(raw).ok_or_else(|| {
                format!("`deviceId` must be a string, found {}", kind_of(raw.get()))
            })?,
            None => return Err("twin has no `deviceId`".to_owned()),
        };
        let properties = match properties {
            None => None,
            Some(Shaped::Null) => Some(Properties {
                desired: None,
                reported: None,
                rest: Members::default(),
                null: true,
            }),
            Some(Shaped::Object(body)) => Some(Properties {
                desired: body.desired,
                reported: body.reported,
                rest: body.rest,
                null: false,
            }),
            Some(Shaped::Other(kind)) => {
                return Err(format!(
                    "twin `{device_id}`: `properties` must be an object, found {kind}"
                ));
            }
        };
        let tags = match tags {
            None => None,
            Some(Section::Other(text)) if text == "null" => None,
            Some(Section::Other(text)) => {
                return Err(format!(
                    "twin `{device_id}`: `tags` must be an object, found {}",
                    kind_of(&text)
                ));
            }
            Some(object) => Some(object),
        };
        let module_id = match members.get("moduleId") {
            None => None,
            Some(raw) if raw.get() == "null" => None,
            Some(raw) => Some(string(raw).ok_or_else(|| {
                format!(
                    "twin `{device_id}`: `moduleId` must be a string, found {}",
                    kind_of(raw.get())
                )
            })?),
        };
        let etag = members.get("etag").and_then(string);
        Ok(Self {
            device_id,
            module_id,
            etag,
            members,
            tags,
            properties,
        })
    }

    /// The JSON text at `path` (keys from the top of the twin), as written;
    /// `None` when nothing is there. `tags` and sections of `properties`
    /// asked for whole come back as written too.
    #[must_use]
    pub fn text<K: AsRef<str>>(&self, path: &[K]) -> Option<Cow<'a, str>> {
        let (first, rest) = path.split_first()?;
        match first.as_ref() {
            "tags" if self.tags.is_some() => self.tags.as_ref()?.text(rest),
            "properties" if self.properties.is_some() => {
                let properties = self.properties.as_ref()?;
                if properties.null {
                    return rest.is_empty().then_some(Cow::Borrowed("null"));
                }
                let Some((key, below)) = rest.split_first() else {
                    return Some(Cow::Owned(properties.rebuilt()));
                };
                match key.as_ref() {
                    "desired" => properties.desired.as_ref()?.text(below),
                    "reported" => properties.reported.as_ref()?.text(below),
                    key => descend(properties.rest.get(key)?, below),
                }
            }
            key => descend(self.members.get(key)?, rest),
        }
    }
}

impl RawTwin<'_> {
    /// Whether the value at `path` is an object, without rebuilding the
    /// text of a section read whole.
    #[must_use]
    pub fn is_object(&self, path: &[&str]) -> bool {
        let section = match path {
            ["tags"] => self.tags.as_ref(),
            ["properties", "desired"] => self.properties.as_ref().and_then(|p| p.desired.as_ref()),
            ["properties", "reported"] => {
                self.properties.as_ref().and_then(|p| p.reported.as_ref())
            }
            _ => return self.text(path).is_some_and(|text| text.starts_with('{')),
        };
        matches!(section, Some(Section::Object(_)))
    }
}

impl Properties<'_> {
    /// `properties` as JSON text again.
    fn rebuilt(&self) -> String {
        let sections = [("desired", &self.desired), ("reported", &self.reported)];
        let texts: Vec<(&str, String)> = sections
            .iter()
            .filter_map(|(name, section)| {
                Some((*name, section.as_ref()?.text::<&str>(&[])?.into_owned()))
            })
            .collect();
        rebuilt(
            texts
                .iter()
                .map(|(name, text)| (*name, text.as_str()))
                .chain(
                    self.rest
                        .0
                        .iter()
                        .map(|(key, raw)| (key.as_ref(), raw.get())),
                ),
        )
    }
}

/// The string `raw` holds, unescaped.
fn string(raw: &RawValue) -> Option<Cow<'_, str>> {
    if !raw.get().starts_with('"') {
        return None;
    }
    serde_json::from_str::<Key<'_>>(raw.get())
        .ok()
        .map(|key| key.0)
}

/// What kind of JSON value `text` is, for messages.
fn kind_of(text: &str) -> &'static str {
    match text.as_bytes().first() {
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

#[cfg(test)]
mod tests {
    use super::RawTwin;
    use serde_json::Value;

    const TWIN: &str = r#"{"deviceId":"d\u0031","moduleId":"m","etag":"AAA=","status":"enabled","tags":{"site":"ams","hw":{"model":"rpi"}},"properties":{"desired":{"p":{"a":1},"$version":2},"reported":{"v":"0.1"},"x":3}}"#;

    fn text(twin: &RawTwin<'_>, path: &[&str]) -> Option<Value> {
        twin.text(path)
            .map(|text| serde_json::from_str(&text).unwrap())
    }

    #[test]
    fn every_path_reads_as_a_full_parse_would() {
        let twin = RawTwin::parse(TWIN).unwrap();
        assert_eq!(twin.device_id, "d1");
        assert_eq!(twin.module_id.as_deref(), Some("m"));
        assert_eq!(twin.etag.as_deref(), Some("AAA="));
        let odd = r#"{"deviceId":"d","tags":{},"properties":{"desired":[1,{"a":"\u00e9"}],"reported":2.5e3}}"#;
        // A repeated key (one written escaped) counts once, the last; a
        // path through a value that is not an object finds nothing.
        let repeated = r#"{"deviceId":"d","tags":{"hw":{"model":"a","m\u006fdel":"b"},"site":{"x":1}},"properties":{"desired":{"p":3}}}"#;
        for line in [TWIN, odd, repeated] {
            paths_agree(line);
        }
        let odd = RawTwin::parse(odd).unwrap();
        assert!(!odd.is_object(&["properties", "desired"]));
        assert!(odd.is_object(&["tags"]));
    }

    fn paths_agree(line: &str) {
        let twin = RawTwin::parse(line).unwrap();
        let full: Value = serde_json::from_str(line).unwrap();
        for path in [
            &["status"][..],
            &["tags"],
            &["tags", "site"],
            &["tags", "hw", "model"],
            &["tags", "nope"],
            &["properties"],
            &["properties", "desired"],
            &["properties", "desired", "p", "a"],
            &["properties", "reported", "v"],
            &["properties", "x"],
            &["properties", "desired", "missing"],
            &["deviceId"],
            &["nothing", "here"],
        ] {
            let pointer = path
                .iter()
                .fold(String::new(), |pointer, key| pointer + "/" + key);
            assert_eq!(
                text(&twin, path).as_ref(),
                full.pointer(&pointer),
                "{path:?}"
            );
        }
    }

    #[test]
    fn bad_lines_are_named_as_the_snapshot_reader_names_them() {
        let reason = |line: &str| RawTwin::parse(line).err().unwrap();
        assert_eq!(reason("[1]"), "line is not a JSON object (found an array)");
        assert_eq!(reason("{}"), "twin has no `deviceId`");
        assert_eq!(
            reason(r#"{"deviceId":1}"#),
            "`deviceId` must be a string, found a number"
        );
        assert_eq!(
            reason(r#"{"deviceId":"a","tags":[]}"#),
            "twin `a`: `tags` must be an object, found an array"
        );
        assert_eq!(
            reason(r#"{"properties":"x","deviceId":"a"}"#),
            "twin `a`: `properties` must be an object, found a string"
        );
        assert_eq!(
            reason(r#"{"deviceId":"a","moduleId":true}"#),
            "twin `a`: `moduleId` must be a string, found a boolean"
        );
        assert!(reason("{\"deviceId\":").starts_with("not valid JSON at column"));
    }
}
