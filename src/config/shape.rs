//! How a configuration object is decoded: `config_object!` writes a struct's `Deserialize`
//! (issue 23).
//!
//! It replaces `#[derive(Deserialize)] #[serde(deny_unknown_fields)]` with the same rules and
//! serde's own messages (`unknown field`, `duplicate field`, `missing field`), in less code: the
//! key of every object is read by one visitor shared by all of them ([`Fields`]), and an
//! object is read only from a JSON object (`deserialize_map`). The derive also read a struct
//! from an array, positionally (`"token_cache": [100]`), in a second copy of each struct's
//! code; such an array is now refused like any other value of the wrong type ("invalid type:
//! sequence, expected struct RawTokenCache"). The derive's 28 copies of `deserialize_struct`
//! were an eighth of the module and its largest TurboFan compiles.
//!
//! Each field says what its absence means: `required` (`missing field`), `default`
//! (`Default::default()`, serde's `#[serde(default)]`) or `none` (an `Option` left `None`, as
//! the derive does for an `Option` without a default). A field's key is its name unless one is
//! given in parentheses after it.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, Visitor};

/// The keys of one object: a key is its index here, any other is an `unknown field`.
pub struct Fields(pub &'static [&'static str]);

impl<'de> DeserializeSeed<'de> for Fields {
    type Value = usize;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<usize, D::Error> {
        deserializer.deserialize_identifier(self)
    }
}

impl<'de> Visitor<'de> for Fields {
    type Value = usize;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("field identifier")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<usize, E> {
        self.0.iter().position(|f| *f == v).ok_or_else(|| E::unknown_field(v, self.0))
    }
}

macro_rules! config_object {
    (
        $(#[$attr:meta])*
        pub struct $name:ident {
            $(
                $(#[doc = $doc:literal])*
                pub $field:ident $(($key:literal))? : $ty:ty = $missing:ident
            ),* $(,)?
        }
    ) => {
        $(#[$attr])*
        pub struct $name {
            $( $(#[doc = $doc])* pub $field: $ty, )*
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                const FIELDS: &[&str] = &[$($crate::config::shape::config_object!(@key $field $($key)?)),*];
                #[allow(non_camel_case_types, dead_code)]
                enum Field { $($field),* }
                struct Object;
                impl<'de> ::serde::de::Visitor<'de> for Object {
                    type Value = $name;
                    fn expecting(&self, f: &mut ::std::fmt::Formatter) -> ::std::fmt::Result {
                        f.write_str(concat!("struct ", stringify!($name)))
                    }
                    fn visit_map<A: ::serde::de::MapAccess<'de>>(self, mut map: A) -> Result<$name, A::Error> {
                        // The values read so far in one struct: an error on the way drops them
                        // with one call, not field by field at every return.
                        struct Read { $( $field: Option<$ty>, )* }
                        let mut read = Read { $( $field: None, )* };
                        while let Some(i) = map.next_key_seed($crate::config::shape::Fields(FIELDS))? {
                            $(
                                if i == Field::$field as usize {
                                    if read.$field.is_some() {
                                        return Err(::serde::de::Error::duplicate_field(FIELDS[i]));
                                    }
                                    read.$field = Some(map.next_value()?);
                                    continue;
                                }
                            )*
                        }
                        Ok($name {
                            $( $field: match read.$field {
                                Some(v) => v,
                                None => $crate::config::shape::config_object!(@missing $missing FIELDS[Field::$field as usize]),
                            }, )*
                        })
                    }
                }
                deserializer.deserialize_map(Object)
            }
        }
    };
    (@key $field:ident) => { stringify!($field) };
    (@key $field:ident $key:literal) => { $key };
    (@missing required $key:expr) => { return Err(::serde::de::Error::missing_field($key)) };
    (@missing default $key:expr) => { Default::default() };
    (@missing none $key:expr) => { None };
}

pub(crate) use config_object;

/// A JSON object of named entries (`providers`, `webhooks`, `error_formats`, ...), as serde
/// decodes a `BTreeMap` (in the order of their names, "expected a map" for anything else) but
/// for a name given twice: serde keeps its last value, which hides the first entry from whoever
/// reads the document top down; it is refused here, as a struct refuses a field given twice
/// (`duplicate name`, raised where serde raises `duplicate field`, after the key). A sorted
/// `Vec`: a B-tree's code for each type of entry was 5 KB of the module per type, for maps of
/// a few entries read once.
#[derive(Debug, Clone)]
pub struct Named<T>(Vec<(String, T)>);

impl<T> Default for Named<T> {
    fn default() -> Self {
        Named(Vec::new())
    }
}

impl<T> Named<T> {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Where `name` goes, or `None` when it is there already.
    fn slot(&self, name: &str) -> Option<usize> {
        self.0.binary_search_by(|(n, _)| n.as_str().cmp(name)).err()
    }
}

impl<'a, T> IntoIterator for &'a Named<T> {
    type Item = (&'a String, &'a T);
    type IntoIter = std::iter::Map<std::slice::Iter<'a, (String, T)>, fn(&'a (String, T)) -> (&'a String, &'a T)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(n, v)| (n, v))
    }
}

impl<T> IntoIterator for Named<T> {
    type Item = (String, T);
    type IntoIter = std::vec::IntoIter<(String, T)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Named<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for Entries<T> {
            type Value = Named<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Named<T>, A::Error> {
                let mut named = Named(Vec::new());
                while let Some(name) = map.next_key::<String>()? {
                    let Some(i) = named.slot(&name) else {
                        // Named when it is a plain name (what a copied entry has), as an
                        // unknown field is: a key is never quoted otherwise.
                        return Err(if plain_name(&name) {
                            de::Error::custom(format_args!("duplicate name `{name}`"))
                        } else {
                            de::Error::custom("duplicate name")
                        });
                    };
                    let value = map.next_value::<T>()?;
                    named.0.insert(i, (name, value));
                }
                Ok(named)
            }
        }
        deserializer.deserialize_map(Entries(PhantomData))
    }
}

/// A name that may be quoted in an error: what a typo or a copied entry looks like.
pub(crate) fn plain_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// `Named` decodes as serde decodes a `BTreeMap`: the same entries in the same order, the
    /// same errors at the same places; but a name given twice is refused.
    #[test]
    fn named_reads_what_a_btree_map_reads() {
        let docs = [
            r#"{}"#,
            r#"{"b": 2, "a": 1, "c": 3}"#,
            r#"{"z": 1, "é": 2, "Z": 3, "": 4, "a\u0000": 5, "a": 6}"#,
            r#"{"a": "x"}"#,
            r#"[1, 2]"#,
            r#"null"#,
            r#""map""#,
            r#"{"a": 1,}"#,
            r#"{"a" 1}"#,
            r#"{"a": 1"#,
            r#"{"a": 1} x"#,
        ];
        for doc in docs {
            let want = serde_json::from_str::<BTreeMap<String, u64>>(doc).map(|m| m.into_iter().collect::<Vec<_>>()).map_err(|e| e.to_string());
            let got = serde_json::from_str::<Named<u64>>(doc).map(|m| m.into_iter().collect::<Vec<_>>()).map_err(|e| e.to_string());
            assert_eq!(got, want, "{doc}");
        }
        let named: Named<u64> = serde_json::from_str(r#"{"b": 2, "a": 1}"#).unwrap();
        assert_eq!((named.len(), (&named).into_iter().collect::<Vec<_>>()), (2, vec![(&"a".to_string(), &1), (&"b".to_string(), &2)]));
        let twice = |doc: &str| serde_json::from_str::<Named<u64>>(doc).map(|_| ()).map_err(|e| e.to_string());
        // Raised after the second key, before its value is read (a wrong value is not reached).
        assert_eq!(twice(r#"{"a": 1, "b": 2, "a": "x"}"#), Err("duplicate name `a` at line 1 column 20".to_string()));
        assert_eq!(twice(r#"{"a b": 1, "a b": 1}"#), Err("duplicate name at line 1 column 16".to_string()));
        assert_eq!(twice(r#"{"é": 1, "\u00e9": 1}"#), Err("duplicate name at line 1 column 18".to_string()));
    }

    mod derived {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct Obj {
            pub a: String,
            #[serde(default)]
            pub b: Vec<u64>,
            pub c: Option<bool>,
            #[serde(rename = "match")]
            pub m: Option<u64>,
        }
    }

    mod ours {
        config_object! {
            #[derive(Debug)]
            pub struct Obj {
                pub a: String = required,
                pub b: Vec<u64> = default,
                pub c: Option<bool> = none,
                pub m ("match"): Option<u64> = none,
            }
        }
    }

    /// `config_object!` accepts what serde's derive (with `deny_unknown_fields`) accepts, with
    /// the same messages at the same places, but for the derive's positional array form.
    #[test]
    fn config_object_reads_what_the_derive_reads() {
        let docs = [
            r#"{"a": "x"}"#,
            r#"{"a": "x", "b": [1, 2], "c": true, "match": 3}"#,
            r#"{"match": 3, "c": null, "a": "\u0078"}"#,
            r#"{"b": [1]}"#,
            r#"{"a": "x", "d": 1}"#,
            r#"{"a": "x", "m": 1}"#,
            r#"{"a": "x", "a": "y"}"#,
            r#"{"a": "x", "c": null, "c": true}"#,
            r#"{"a": 1}"#,
            r#"{"a": "x", "b": {}}"#,
            r#"{"a": "x", "c": "yes"}"#,
            r#"{"a": "x", "match": -1}"#,
            r#"{"a": "x", "match": 1.5}"#,
            r#"{"a": "x", "b": [1,]}"#,
            r#"{"a": "x" "b": []}"#,
            r#"{"a": "x""#,
            r#"{"a": "x"} {}"#,
            r#""obj""#,
            r#"null"#,
            r#"7"#,
            r#"{}"#,
        ];
        for doc in docs {
            let want = serde_json::from_str::<derived::Obj>(doc).map(|o| (o.a, o.b, o.c, o.m)).map_err(|e| e.to_string());
            let got = serde_json::from_str::<ours::Obj>(doc).map(|o| (o.a, o.b, o.c, o.m)).map_err(|e| e.to_string());
            assert_eq!(got, want, "{doc}");
        }
        let array = r#"["x", [1], true, 3]"#;
        assert!(serde_json::from_str::<derived::Obj>(array).is_ok());
        let refused = serde_json::from_str::<ours::Obj>(array).map(|_| ()).map_err(|e| e.to_string());
        assert_eq!(refused, Err("invalid type: sequence, expected struct Obj at line 1 column 0".to_string()));
    }
}
