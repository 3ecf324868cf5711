//! CLEVR's object attributes and their values, in CLEVR v1.0's spelling.

/// One of the four attributes every CLEVR object has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Attr {
    Size,
    Color,
    Material,
    Shape,
}

pub const SIZES: [&str; 2] = ["large", "small"];
pub const COLORS: [&str; 8] = [
    "gray", "red", "blue", "green", "brown", "purple", "cyan", "yellow",
];
pub const MATERIALS: [&str; 2] = ["rubber", "metal"];
pub const SHAPES: [&str; 3] = ["cube", "sphere", "cylinder"];

/// CLEVR's RGB values of its 8 colors (same order as [`COLORS`]).
pub const COLOR_RGB: [[u8; 3]; 8] = [
    [87, 87, 87],
    [173, 35, 35],
    [42, 75, 215],
    [29, 105, 20],
    [129, 74, 25],
    [129, 38, 192],
    [41, 208, 208],
    [255, 238, 51],
];

/// Radius in world units of a large and a small object (CLEVR's values).
pub const SIZE_RADIUS: [f32; 2] = [0.7, 0.35];

/// Index of each value within its attribute, for readability at call sites.
pub const LARGE: usize = 0;
pub const SMALL: usize = 1;
pub const METAL: usize = 1;
pub const CUBE: usize = 0;
pub const SPHERE: usize = 1;
pub const CYLINDER: usize = 2;

impl Attr {
    /// In the order CLEVR writes adjectives ("large red rubber cube") and filter nodes.
    pub const ALL: [Attr; 4] = [Attr::Size, Attr::Color, Attr::Material, Attr::Shape];

    pub fn name(self) -> &'static str {
        match self {
            Attr::Size => "size",
            Attr::Color => "color",
            Attr::Material => "material",
            Attr::Shape => "shape",
        }
    }

    pub fn values(self) -> &'static [&'static str] {
        match self {
            Attr::Size => &SIZES,
            Attr::Color => &COLORS,
            Attr::Material => &MATERIALS,
            Attr::Shape => &SHAPES,
        }
    }

    /// Position in [`Attr::ALL`] (and in an object's attribute array).
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn from_name(name: &str) -> Option<Attr> {
        Attr::ALL.into_iter().find(|a| a.name() == name)
    }

    /// Index of `value` among this attribute's values.
    pub fn value_index(self, value: &str) -> Option<usize> {
        self.values().iter().position(|v| *v == value)
    }
}

/// CLEVR's 28 answers: yes, no, 0..10, then the attribute values.
pub fn answer_vocabulary() -> Vec<String> {
    let mut all: Vec<String> = vec!["yes".into(), "no".into()];
    all.extend((0..=10).map(|n| n.to_string()));
    for attr in Attr::ALL {
        all.extend(attr.values().iter().map(|v| v.to_string()));
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twenty_eight_distinct_answers() {
        let mut a = answer_vocabulary();
        assert_eq!(a.len(), 28);
        a.sort();
        a.dedup();
        assert_eq!(a.len(), 28);
        for attr in Attr::ALL {
            assert_eq!(Attr::from_name(attr.name()), Some(attr));
            assert_eq!(attr.value_index(attr.values()[1]), Some(1));
        }
    }
}
