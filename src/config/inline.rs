//! Settings read inline from a section's mapping, as Go's `yaml:",inline"` reads them:
//! the HTTP client settings (`http_client.rs`) and the service discovery configs
//! (`discovery/`) share a mapping with a scrape job's or an Alertmanager entry's own
//! fields.
//!
//! Not `#[serde(flatten)]`: that buffers the mapping and reads both parts from the
//! buffer, where `serde_ignored` no longer sees unknown fields (they would pass
//! silently) and the YAML parser's errors lose their line. [`Inline`] reads the one
//! mapping in one pass instead: the inline settings' keys go to them, every other key
//! (known to the section or not, so unknown ones are reported as before) to the
//! section, whose own messages (`expected struct ScrapeConfig`, …) are unchanged.

use std::fmt;
use std::ops::Deref;

use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, Visitor};
use serde::Deserialize;

/// Settings read inline from a section's mapping, by key.
pub(crate) trait InlineFields: Default {
    /// The field `key` names, if it is one of these settings.
    fn field_name(key: &str) -> Option<&'static str>;

    /// Reads the value of field `name` (from [`Self::field_name`]) out of `map`.
    fn read_value<'de, A: MapAccess<'de>>(
        &mut self,
        name: &str,
        map: &mut A,
    ) -> Result<(), A::Error>;
}

/// Implements [`InlineFields`] for a struct whose fields (all `Option`s, each read as
/// the key of its name) are listed.
macro_rules! impl_inline_fields {
    ($type:ty { $($field:ident),* $(,)? }) => {
        impl $crate::config::inline::InlineFields for $type {
            fn field_name(key: &str) -> Option<&'static str> {
                [$(stringify!($field)),*].into_iter().find(|name| *name == key)
            }

            fn read_value<'de, A: serde::de::MapAccess<'de>>(
                &mut self,
                name: &str,
                map: &mut A,
            ) -> Result<(), A::Error> {
                $(if name == stringify!($field) {
                    self.$field = map.next_value()?;
                })*
                Ok(())
            }
        }
    };
}
pub(crate) use impl_inline_fields;

/// A section of the file (`T`, serde-derived) and the settings `I` read inline from its
/// mapping; the section's fields are reached through it.
#[derive(Debug, Default)]
pub(crate) struct Inline<T, I> {
    /// The section's own fields.
    pub section: T,
    /// The settings read inline.
    pub inline: I,
}

impl<T, I> Deref for Inline<T, I> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.section
    }
}

impl<'de, T: Deserialize<'de>, I: InlineFields> Deserialize<'de> for Inline<T, I> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut inline = I::default();
        let section = T::deserialize(SplitDeserializer {
            inner: deserializer,
            inline: &mut inline,
        })?;
        Ok(Inline { section, inline })
    }
}

/// The deserializer `T` reads from: the section's, with the settings' keys taken out
/// of its mapping into `inline`.
struct SplitDeserializer<'a, D, I> {
    inner: D,
    inline: &'a mut I,
}

impl<'de, D: Deserializer<'de>, I: InlineFields> Deserializer<'de> for SplitDeserializer<'_, D, I> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_any(SplitVisitor {
            inner: visitor,
            inline: self.inline,
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner.deserialize_struct(
            name,
            fields,
            SplitVisitor {
                inner: visitor,
                inline: self.inline,
            },
        )
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
        byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
        identifier ignored_any
    }
}

/// `T`'s visitor, handed the mapping without the settings' keys.
struct SplitVisitor<'a, V, I> {
    inner: V,
    inline: &'a mut I,
}

impl<'de, V: Visitor<'de>, I: InlineFields> Visitor<'de> for SplitVisitor<'_, V, I> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.inner.visit_map(SplitMap {
            inner: map,
            inline: self.inline,
            seen: Vec::new(),
        })
    }
}

/// The section's mapping as `T` sees it: the settings' entries are read into `inline`
/// as they come, the others handed on.
struct SplitMap<'a, A, I> {
    inner: A,
    inline: &'a mut I,
    /// The settings read so far: one twice is serde's `duplicate field` error, as for
    /// `T`'s own fields.
    seen: Vec<&'static str>,
}

impl<'de, A: MapAccess<'de>, I: InlineFields> MapAccess<'de> for SplitMap<'_, A, I> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        while let Some(FieldKey(key)) = self.inner.next_key()? {
            let Some(name) = I::field_name(&key) else {
                return seed
                    .deserialize(IntoDeserializer::<A::Error>::into_deserializer(key))
                    .map(Some);
            };
            if self.seen.contains(&name) {
                return Err(de::Error::duplicate_field(name));
            }
            self.seen.push(name);
            self.inline.read_value(name, &mut self.inner)?;
        }
        Ok(None)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        self.inner.next_value_seed(seed)
    }
}

/// A key of a section's mapping, read as derived structs read their field names (so a
/// key that is not a string is refused in the same words).
struct FieldKey(String);

impl<'de> Deserialize<'de> for FieldKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = FieldKey;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("field identifier")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<FieldKey, E> {
                Ok(FieldKey(v.to_string()))
            }
        }
        deserializer.deserialize_identifier(KeyVisitor)
    }
}
