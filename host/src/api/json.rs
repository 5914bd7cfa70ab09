//! JSON bodies read one way only: a key given twice and an array where an object is expected
//! are refused, instead of being resolved silently.
//!
//! serde_json keeps the last of two equal keys (a `Value`) or refuses them only for the fields
//! of a derived struct, and serde's derive accepts an array for a struct (`[null, null]` is a
//! `Filter` with two absent fields). Neither is configurable, so a body is read in two steps:
//! [`read`] parses it into a [`Node`] tree (serde_json does the parsing), refusing a repeated
//! key in any object with its JSON pointer; [`Strict`] then hands the tree to the target's
//! `Deserialize` like serde_json's own `Value` deserializer does, except that a struct only
//! accepts an object. Key order is kept, so the first bad field of the body is the one named.

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;

use serde::de::value::BorrowedStrDeserializer;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Unexpected, Visitor};
use serde_json::Number;

/// A parsed JSON document, with the keys of each object in document order.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Node {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    Array(Vec<Node>),
    Object(Vec<(String, Node)>),
}

/// Why a body could not be read.
#[derive(Debug)]
pub(super) enum ReadError {
    /// Not JSON at all (syntax, truncation, trailing characters, nesting too deep).
    Syntax(serde_json::Error),
    /// A key appears twice in one object; the JSON pointer of the second one.
    DuplicateKey(String),
}

/// Parses `bytes` into a tree, refusing any object with a key given twice.
pub(super) fn read(bytes: &[u8]) -> Result<Node, ReadError> {
    let duplicate = RefCell::new(None);
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let seed = Seed {
        duplicate: &duplicate,
        at: Location::Root,
    };
    let parsed = seed.deserialize(&mut deserializer).and_then(|node| {
        deserializer.end()?;
        Ok(node)
    });
    match (parsed, duplicate.into_inner()) {
        (_, Some(pointer)) => Err(ReadError::DuplicateKey(pointer)),
        (Ok(node), None) => Ok(node),
        (Err(error), None) => Err(ReadError::Syntax(error)),
    }
}

/// Where a value sits in the document, built without allocating; written out as a JSON
/// pointer (RFC 6901) only when a duplicate is found.
#[derive(Clone, Copy)]
enum Location<'a> {
    Root,
    Key(&'a Location<'a>, &'a str),
    Index(&'a Location<'a>, usize),
}

impl fmt::Display for Location<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Root => Ok(()),
            Self::Key(parent, key) => {
                write!(f, "{parent}/")?;
                f.write_str(&key.replace('~', "~0").replace('/', "~1"))
            }
            Self::Index(parent, index) => write!(f, "{parent}/{index}"),
        }
    }
}

struct Seed<'a> {
    duplicate: &'a RefCell<Option<String>>,
    at: Location<'a>,
}

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Node;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Node, E> {
        Ok(Node::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Node, E> {
        Ok(Node::Number(value.into()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Node, E> {
        Ok(Node::Number(value.into()))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Node, E> {
        // JSON Schema (and so the API document) counts `302.0` as the integer 302: read it as
        // one, where an integer field would otherwise refuse it as a float.
        const TWO_TO_63: f64 = 9_223_372_036_854_775_808.0;
        if value.fract() == 0.0 && (-TWO_TO_63..TWO_TO_63).contains(&value) {
            #[allow(
                clippy::cast_possible_truncation,
                reason = "a whole number within the range of i64, checked above"
            )]
            let whole = value as i64;
            return Ok(Node::Number(whole.into()));
        }
        // JSON has no NaN or infinity, so serde_json never hands one over.
        Ok(Number::from_f64(value).map_or(Node::Null, Node::Number))
    }

    fn visit_str<E>(self, value: &str) -> Result<Node, E> {
        Ok(Node::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Node, E> {
        Ok(Node::String(value))
    }

    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Seed {
            duplicate: self.duplicate,
            at: Location::Index(&self.at, items.len()),
        })? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut members = Vec::new();
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let at = Location::Key(&self.at, &key);
            if seen.contains(&key) {
                *self.duplicate.borrow_mut() = Some(at.to_string());
                return Err(de::Error::custom("duplicate key"));
            }
            let value = map.next_value_seed(Seed {
                duplicate: self.duplicate,
                at,
            })?;
            seen.insert(key.clone());
            members.push((key, value));
        }
        Ok(Node::Object(members))
    }
}

/// Deserializes a [`Node`] into any `Deserialize` type, as serde_json would from its text,
/// except that structs accept only objects.
pub(super) struct Strict<'de>(pub(super) &'de Node);

type Error = serde_json::Error;

impl<'de> Deserializer<'de> for Strict<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Node::Null => visitor.visit_unit(),
            Node::Bool(value) => visitor.visit_bool(*value),
            Node::Number(number) => {
                if let Some(value) = number.as_u64() {
                    visitor.visit_u64(value)
                } else if let Some(value) = number.as_i64() {
                    visitor.visit_i64(value)
                } else {
                    visitor.visit_f64(number.as_f64().unwrap_or(f64::NAN))
                }
            }
            Node::String(text) => visitor.visit_borrowed_str(text),
            Node::Array(items) => visitor.visit_seq(Items(items.iter())),
            Node::Object(members) => visitor.visit_map(Members {
                members: members.iter(),
                value: None,
            }),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Node::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.0 {
            Node::Array(_) => Err(de::Error::invalid_type(Unexpected::Seq, &"a JSON object")),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.0 {
            // The API's enums are all unit variants, named by a string.
            Node::String(text) => de::value::BorrowedStrDeserializer::<Error>::new(text)
                .deserialize_enum(name, variants, visitor),
            other => Err(de::Error::invalid_type(unexpected(other), &"a string")),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct seq tuple tuple_struct map identifier
    }
}

fn unexpected(node: &Node) -> Unexpected<'_> {
    match node {
        Node::Null => Unexpected::Unit,
        Node::Bool(value) => Unexpected::Bool(*value),
        Node::Number(_) => Unexpected::Other("a number"),
        Node::String(text) => Unexpected::Str(text),
        Node::Array(_) => Unexpected::Seq,
        Node::Object(_) => Unexpected::Map,
    }
}

struct Items<'de>(std::slice::Iter<'de, Node>);

impl<'de> SeqAccess<'de> for Items<'de> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        self.0
            .next()
            .map(|item| seed.deserialize(Strict(item)))
            .transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

struct Members<'de> {
    members: std::slice::Iter<'de, (String, Node)>,
    value: Option<&'de Node>,
}

impl<'de> MapAccess<'de> for Members<'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some((key, value)) = self.members.next() else {
            return Ok(None);
        };
        self.value = Some(value);
        seed.deserialize(BorrowedStrDeserializer::new(key))
            .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let value = self
            .value
            .take()
            .ok_or_else(|| de::Error::custom("a map value was asked for before its key"))?;
        seed.deserialize(Strict(value))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.members.len())
    }
}

/// A `serde_json::Value` as a tree (its keys are unique already).
impl From<&serde_json::Value> for Node {
    fn from(value: &serde_json::Value) -> Self {
        use serde_json::Value;
        match value {
            Value::Null => Self::Null,
            Value::Bool(value) => Self::Bool(*value),
            Value::Number(number) => Self::Number(number.clone()),
            Value::String(text) => Self::String(text.clone()),
            Value::Array(items) => Self::Array(items.iter().map(Into::into).collect()),
            Value::Object(members) => Self::Object(
                members
                    .iter()
                    .map(|(key, value)| (key.clone(), value.into()))
                    .collect(),
            ),
        }
    }
}

/// The tree as a `serde_json::Value` (for a body's canonical form: `Value` sorts keys).
impl From<&Node> for serde_json::Value {
    fn from(node: &Node) -> Self {
        match node {
            Node::Null => Self::Null,
            Node::Bool(value) => Self::Bool(*value),
            Node::Number(number) => Self::Number(number.clone()),
            Node::String(text) => Self::String(text.clone()),
            Node::Array(items) => Self::Array(items.iter().map(Into::into).collect()),
            Node::Object(members) => Self::Object(
                members
                    .iter()
                    .map(|(key, value)| (key.clone(), value.into()))
                    .collect(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn duplicate(text: &str) -> Option<String> {
        match read(text.as_bytes()) {
            Err(ReadError::DuplicateKey(pointer)) => Some(pointer),
            _ => None,
        }
    }

    #[test]
    fn a_key_given_twice_is_named_by_its_pointer_at_any_depth() {
        assert_eq!(duplicate(r#"{"a": 1, "a": 2}"#).as_deref(), Some("/a"));
        assert_eq!(
            duplicate(r#"{"a": [{"b": 1}, {"c": {"d~/": 1, "d~/": 2}}]}"#).as_deref(),
            Some("/a/1/c/d~0~1")
        );
        // Equal keys in different objects are fine.
        assert_eq!(duplicate(r#"{"a": {"x": 1}, "b": {"x": 1}, "x": 0}"#), None);
        // An escaped spelling of the same key is the same key.
        assert_eq!(
            duplicate(r#"{"ab": 1, "a\u0062": 2}"#).as_deref(),
            Some("/ab")
        );
    }

    #[test]
    fn syntax_errors_stay_syntax_errors() {
        for text in ["{\"a\": ", "{} trailing", "[1,]", ""] {
            assert!(
                matches!(read(text.as_bytes()), Err(ReadError::Syntax(_))),
                "{text}"
            );
        }
    }

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Pair {
        a: Option<u8>,
        b: Option<String>,
    }

    fn strict<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, Error> {
        let node = read(text.as_bytes()).unwrap();
        T::deserialize(Strict(&node))
    }

    #[test]
    fn structs_take_objects_only() {
        assert_eq!(
            strict::<Pair>(r#"{"b": "x", "a": 7}"#).unwrap(),
            Pair {
                a: Some(7),
                b: Some("x".into())
            }
        );
        let error = strict::<Pair>("[null, null]").unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid type: sequence, expected a JSON object"
        );
        assert!(strict::<Vec<Pair>>(r#"[[1, "x"]]"#).is_err());
        assert!(strict::<Option<Pair>>("[1]").is_err());
        // Everything else reads as serde_json reads it.
        assert_eq!(strict::<Vec<u8>>("[1, 2]").unwrap(), vec![1, 2]);
        assert_eq!(strict::<i64>("-3").unwrap(), -3);
        assert_eq!(strict::<f64>("1.5").unwrap(), 1.5);
        assert!(strict::<u8>("300").is_err());
        // A whole number written with a fraction is the integer, as JSON Schema counts it.
        assert_eq!(strict::<u32>("302.0").unwrap(), 302);
        assert_eq!(strict::<i64>("-2.0e1").unwrap(), -20);
        assert!(strict::<u32>("302.5").is_err());
        assert_eq!(strict::<f64>("2.0").unwrap(), 2.0);
        let value: serde_json::Value = strict(r#"{"z": [1, {"y": null}], "a": true}"#).unwrap();
        assert_eq!(value, serde_json::json!({"z": [1, {"y": null}], "a": true}));
        let again =
            <serde_json::Value as serde::Deserialize>::deserialize(Strict(&Node::from(&value)))
                .unwrap();
        assert_eq!(again, value);
    }
}
