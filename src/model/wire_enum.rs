//! `wire_enum!`: string enums as Genesys sends them, tolerant of values added later.
//!
//! Genesys adds enum values continually and the SDKs map unknown ones to a sentinel.
//! Convoy keeps the unknown text (`Unknown("…")`) so it can be logged and shown by
//! `convoy inspect`, and never turns a new value into a parse error.

/// Declares an enum with the listed variants (each with its exact wire string) plus
/// `Unknown(String)`, with string (de)serialization, `as_str` and `Display`.
#[macro_export]
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $( $(#[$vmeta:meta])* $variant:ident = $wire:literal ),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
            /// A value this version of Convoy does not know; kept verbatim.
            Unknown(String),
        }

        impl $name {
            /// Every known variant, in declaration order.
            pub const KNOWN: &'static [$name] = &[$($name::$variant),+];

            /// The exact string Genesys uses for this value.
            pub fn as_str(&self) -> &str {
                match self {
                    $( $name::$variant => $wire, )+
                    $name::Unknown(other) => other.as_str(),
                }
            }

            /// The wire string of a known variant, borrowed for good (`None` for
            /// `Unknown`, whose text is its own).
            pub fn known_str(&self) -> Option<&'static str> {
                match self {
                    $( $name::$variant => Some($wire), )+
                    $name::Unknown(_) => None,
                }
            }

            /// Maps a wire string to a variant; unrecognised text becomes `Unknown`.
            pub fn from_wire(text: &str) -> Self {
                match text {
                    $( $wire => $name::$variant, )+
                    other => $name::Unknown(other.to_owned()),
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <::std::borrow::Cow<'de, str> as ::serde::Deserialize>::deserialize(deserializer)?;
                Ok($name::from_wire(&text))
            }
        }
    };
}
