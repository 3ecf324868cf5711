//! Enums written as words (config values, flag values): one table names every variant, and
//! the name, the parsing and the printing all follow from it ([`named_enum!`]).

/// The names a value may take, as error messages list them: "a", "a or b", "a, b or c".
pub(crate) fn one_of(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => (*one).to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// Implements `name()`, `FromStr` and `Display` for a fieldless `Copy` enum from one table
/// of names: `named_enum!(Stem, "stem", { ImageNet => "imagenet", Small => "small" });`.
/// A name not in the table is refused as "unknown stem 'x' (expected imagenet or small)".
macro_rules! named_enum {
    ($ty:ident, $what:literal, { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// The name it is written as, in configs and on the command line.
            pub fn name(self) -> &'static str {
                match self {
                    $($ty::$variant => $name,)+
                }
            }
        }

        impl std::str::FromStr for $ty {
            type Err = anyhow::Error;
            fn from_str(s: &str) -> anyhow::Result<Self> {
                match s {
                    $($name => Ok($ty::$variant),)+
                    other => anyhow::bail!(
                        "unknown {} '{other}' (expected {})",
                        $what,
                        $crate::named::one_of(&[$($name),+])
                    ),
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::one_of;

    #[test]
    fn lists_names_as_messages_do() {
        assert_eq!(one_of(&["tiny"]), "tiny");
        assert_eq!(one_of(&["iid", "qtype"]), "iid or qtype");
        assert_eq!(one_of(&["cpu", "cuda", "auto"]), "cpu, cuda or auto");
    }
}
