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

use serde::de::{self, DeserializeSeed, Deserializer, Visitor};

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
                        $( let mut $field: Option<$ty> = None; )*
                        while let Some(i) = map.next_key_seed($crate::config::shape::Fields(FIELDS))? {
                            $(
                                if i == Field::$field as usize {
                                    if $field.is_some() {
                                        return Err(::serde::de::Error::duplicate_field(FIELDS[i]));
                                    }
                                    $field = Some(map.next_value()?);
                                    continue;
                                }
                            )*
                        }
                        Ok($name {
                            $( $field: match $field {
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
